"""Flags users bring from the Hugging Face examples, through main() on tiny models: headerless --column_names (the
cnews format, label first), --shuffle_train_dataset before --max_train_samples, --use_fast_tokenizer, and run_mlm's
--model_type / --dtype / max_seq_length default."""

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import torch  # noqa: E402

import run_classification  # noqa: E402
import run_mlm  # noqa: E402
from script_utils import DataError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_headerless_label_first_files_with_column_names(model_dir, tmp_path):
    rows = h.keyword_rows(40, n_classes=2, seed=0)
    names = ["体育", "娱乐"]
    h.write_lines(tmp_path / "train.txt", [f"{names[y]}\t{t}" for t, y in rows[:30]])  # cnews: label<TAB>text
    h.write_lines(tmp_path / "test.txt", [t for t, _ in rows[30:]])  # no labels
    out = tmp_path / "out"
    run_classification.main(h.tiny_train_args(
        model_dir, out, "--train_file", tmp_path / "train.txt", "--test_file", tmp_path / "test.txt",
        "--column_names", "label,text", "--do_train", "--do_predict", "--max_steps", "1"))
    summary = load_json(out / "data_summary.json")["splits"]["train"]
    expected = {name: sum(names[y] == name for _, y in rows[:30]) for name in names}
    assert summary["examples"] == 30 and summary["label_counts"] == expected
    predictions = h.read_tsv(out / "predict_results.tsv")[1]
    assert [p["text"] for p in predictions] == [t for t, _ in rows[30:]]
    # a row with more columns than --column_names names is an error at its line
    h.write_lines(tmp_path / "bad.txt", [f"{names[y]}\t{t}" for t, y in rows[:3]] + ["体育\t甲乙\t丙"])
    with pytest.raises(DataError, match="bad.txt:4: wrong number of columns; 3 instead of 2"):
        run_classification.main(h.tiny_train_args(model_dir, tmp_path / "o2", "--train_file", tmp_path / "bad.txt",
                                                  "--column_names", "label,text", "--do_train"))


def test_shuffle_train_dataset_comes_before_max_train_samples(model_dir, tmp_path):
    rng = random.Random(0)
    rows = [(h.filler_text(8, seed=rng.random()), "甲丙"[i % 2] if i < 50 else "乙") for i in range(100)]
    h.write_lines(tmp_path / "train.tsv", [f"{t}\t{y}" for t, y in rows])

    def label_counts(*extra):
        out = tmp_path / f"out{len(extra)}"
        run_classification.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.tsv",
                                                  "--do_train", "--max_steps", "1", "--max_train_samples", "20",
                                                  *extra))
        summary = load_json(out / "data_summary.json")["splits"]["train"]
        assert summary["examples"] == 20
        return summary["label_counts"]

    assert label_counts().get("乙", 0) == 0  # the first 20 rows are 甲 and 丙
    shuffled = label_counts("--shuffle_train_dataset", "--shuffle_seed", "1")
    assert sum(shuffled.values()) == 20 and shuffled["乙"] > 0


def test_text_column_delimiter_joins_more_than_two_columns(model_dir, tmp_path):
    rows = h.keyword_rows(24, n_classes=2, seed=1)
    records = [{"title": t[:3], "keywords": t[3:6], "body": t[6:] or "的", "label": str(y)} for t, y in rows]
    h.write_jsonl(tmp_path / "train.jsonl", records)
    columns = ["--text_column_names", "title,keywords,body"]
    with pytest.raises(DataError, match="--text_column_delimiter"):  # three texts are no BERT input by themselves
        run_classification.main(h.tiny_train_args(model_dir, tmp_path / "o1", "--train_file",
                                                  tmp_path / "train.jsonl", "--do_train", *columns))
    out = tmp_path / "out"
    run_classification.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.jsonl",
                                              "--test_file", tmp_path / "train.jsonl", "--do_train", "--do_predict",
                                              "--max_steps", "1", "--text_column_delimiter", "，", *columns))
    predictions = h.read_tsv(out / "predict_results.tsv")[1]
    assert [p["text"] for p in predictions] == ["，".join((r["title"], r["keywords"], r["body"])) for r in records]
    assert load_json(out / "config.json")["text_classification"]["text_columns"] == ["text"]


def test_use_fast_tokenizer_false_is_a_clear_error(model_dir, tmp_path):
    h.write_lines(tmp_path / "train.tsv", ["甲乙\ta", "丙丁\tb"])
    with pytest.raises(ValueError, match="needs a fast"):
        run_classification.main(h.tiny_train_args(model_dir, tmp_path / "out", "--train_file",
                                                  tmp_path / "train.tsv", "--do_train", "--use_fast_tokenizer",
                                                  "false"))


def mlm_args(tokenizer_dir, out, *extra):
    return ["--tokenizer_name", str(tokenizer_dir), "--output_dir", str(out), "--per_device_train_batch_size", "8",
            "--learning_rate", "1e-3", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
            "--seed", "0", "--dataloader_num_workers", "0", *[str(a) for a in extra]]


def test_mlm_model_type_from_scratch_dtype_and_max_seq_length_default(model_dir, tmp_path):
    rng = random.Random(0)
    h.write_lines(tmp_path / "corpus.txt", [h.filler_text(rng.randint(20, 60), seed=rng.random()) for _ in range(40)])
    out = tmp_path / "scratch"
    run_mlm.main(mlm_args(model_dir, out, "--model_type", "bert", "--config_overrides",
                          "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,"
                          "max_position_embeddings=48", "--train_file", tmp_path / "corpus.txt", "--do_train",
                          "--max_steps", "2"))
    config = load_json(out / "config.json")
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("bert", 32, 1)
    assert config["vocab_size"] == len(h.VOCAB)  # the tokenizer's
    # no --max_seq_length: the model's maximum (48 positions here), not the old fixed 128
    assert load_json(out / "pretraining_args.json")["max_seq_length"] == 48
    # --dtype: the checkpoint loads in the dtype asked for
    trainer = run_mlm.main(mlm_args(out, tmp_path / "bf16", "--model_name_or_path", out, "--validation_file",
                                    tmp_path / "corpus.txt", "--do_eval", "--dtype", "bfloat16"))
    assert next(trainer.model.parameters()).dtype == torch.bfloat16
    trainer = run_mlm.main(mlm_args(out, tmp_path / "fp32", "--model_name_or_path", out, "--validation_file",
                                    tmp_path / "corpus.txt", "--do_eval", "--max_seq_length", "32"))
    assert next(trainer.model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="--model_type"):
        run_mlm.main(mlm_args(model_dir, tmp_path / "none", "--train_file", tmp_path / "corpus.txt", "--do_train"))
