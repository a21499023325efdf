"""Tests for run_classification.py, driven through main([...]) on a tiny BERT trained from scratch.

Every model, vocab and data file is written by the tests into pytest tmp dirs: nothing is downloaded and the shared
benchmark data is never read. Each training run is a few steps of a 2-layer, 32-wide BERT, so the whole file runs in
about a minute on 2 CPU cores.
"""

import glob
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import run_classification as rc  # noqa: E402
import utils_classification  # noqa: E402
from script_utils import DataError  # noqa: E402

# pyarrow deprecation warning raised inside datasets' Dataset.sort (the script filters it; pytest resets filters)
pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")


# ------------------------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------------------------


def run(model_dir, output_dir, *extra, **kwargs):
    return rc.main(h.tiny_train_args(model_dir, output_dir, *extra, **kwargs))


def quick(model_dir, output_dir, *extra):
    """One optimizer step: enough to exercise reading, encoding, saving and evaluating."""
    return run(model_dir, output_dir, "--do_train", "--max_steps", "1", *extra)


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def tokens_of(trainer, example):
    return trainer.processing_class.convert_ids_to_tokens(example["input_ids"])


# A learnable task: the keyword character KEYWORDS[k] decides class k. Data labels are ids (THUCNews style) and the
# names come from class.txt, so the whole id -> name mapping is exercised.
CLASS_NAMES = ["体育", "财经", "科技"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # 64 wide (32 sometimes gets stuck at 2 of 3 classes for a few epochs). Batch 8: 3 epochs reach 100% for 16 of 16
    # seeds with the default batches (15 of 16 with random ones); at batch 16 a third of the seeds stay at 2 of 3
    # classes after 3-4 epochs with either sampler.
    model_dir = h.build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_64"), hidden_size=64)
    d = tmp_path_factory.mktemp("learnable")
    rows = h.keyword_rows(450, n_classes=3, seed=8, min_len=4, max_len=20)
    train, dev, test = rows[:300], rows[300:390], rows[390:]
    h.write_tsv(d / "train.tsv", train)
    h.write_tsv(d / "dev.tsv", dev)
    h.write_tsv(d / "test.tsv", test)
    h.write_tsv(d / "test_unlabeled.tsv", [(text,) for text, _ in test])
    h.write_label_file(d / "class.txt", CLASS_NAMES)
    out = d / "out"
    trainer = run(model_dir, out,
                  "--train_file", d / "train.tsv", "--validation_file", d / "dev.tsv", "--test_file", d / "test.tsv",
                  "--label_file", d / "class.txt", "--do_train", "--do_eval", "--do_predict",
                  epochs=3, learning_rate="2e-3", batch_size=8)
    return {"dir": d, "out": out, "trainer": trainer, "train": train, "dev": dev, "test": test}


# ------------------------------------------------------------------------------------------------------------------
# Truncation functions (which tokens survive)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy, head_tokens, expected", [
    ("head", 2, [0, 1, 2, 3, 4, 5]),
    ("tail", 2, [4, 5, 6, 7, 8, 9]),
    ("head+tail", 2, [0, 1, 6, 7, 8, 9]),
    ("head+tail", 4, [0, 1, 2, 3, 8, 9]),
    ("head+tail", 0, [4, 5, 6, 7, 8, 9]),
    ("head+tail", 6, [0, 1, 2, 3, 4, 5]),
    ("head+tail", 99, [0, 1, 2, 3, 4, 5]),  # head_tokens larger than the budget: all head
])
def test_truncate_keeps_the_right_tokens(strategy, head_tokens, expected):
    assert utils_classification.truncate(list(range(10)), 6, strategy, head_tokens) == expected


@pytest.mark.parametrize("strategy", ["head", "tail", "head+tail"])
def test_truncate_leaves_short_texts_alone(strategy):
    assert utils_classification.truncate([7, 8, 9], 3, strategy, 1) == [7, 8, 9]
    assert utils_classification.truncate([7, 8], 5, strategy, 1) == [7, 8]


def test_default_head_tokens_follows_sun_et_al():
    assert utils_classification.default_head_tokens(510) == 128  # max_seq_length 512: 128 + 382
    assert utils_classification.default_head_tokens(126) == 32  # max_seq_length 128: 32 + 94 (the help text's example)
    assert utils_classification.default_head_tokens(8) == 2


@pytest.mark.parametrize("len_a, len_b, budget, expected", [
    (3, 4, 10, (3, 4)),  # fits: untouched
    (5, 5, 10, (5, 5)),  # exactly fits
    (20, 3, 10, (7, 3)),  # only the longer text is trimmed
    (3, 20, 10, (3, 7)),
    (20, 20, 10, (5, 5)),  # both long: half each
    (20, 20, 11, (6, 5)),  # odd budget: the extra token goes to the first text
    (6, 6, 11, (6, 5)),
])
def test_pair_budgets_longest_first(len_a, len_b, budget, expected):
    keep = utils_classification.pair_budgets(len_a, len_b, budget)
    assert keep == expected
    assert sum(keep) == min(len_a + len_b, budget)


# ------------------------------------------------------------------------------------------------------------------
# Learnable task, label mapping round trip, predictions file
# ------------------------------------------------------------------------------------------------------------------


def test_learnable_keyword_task_beats_chance(trained):
    out = trained["out"]
    eval_metrics = load_json(out / "eval_results.json")
    assert eval_metrics["eval_samples"] == len(trained["dev"])
    assert eval_metrics["eval_accuracy"] >= 0.8, eval_metrics  # chance is 1/3
    assert eval_metrics["eval_macro_f1"] >= 0.8, eval_metrics
    predict_metrics = load_json(out / "predict_results.json")
    assert predict_metrics["predict_accuracy"] >= 0.8, predict_metrics
    train_metrics = load_json(out / "train_results.json")
    assert train_metrics["train_samples"] == len(trained["train"])
    assert train_metrics["epoch"] == pytest.approx(3.0)


def test_saved_config_has_label_file_names(trained):
    config = load_json(trained["out"] / "config.json")
    assert config["id2label"] == {str(i): name for i, name in enumerate(CLASS_NAMES)}
    assert config["label2id"] == {name: i for i, name in enumerate(CLASS_NAMES)}
    assert config.get("num_labels", len(config["id2label"])) == 3
    # ids in the data were mapped onto class.txt's order
    ds = trained["trainer"].train_dataset
    assert ds["label"] == [label for _, label in trained["train"]]
    assert ds["text"] == [text for text, _ in trained["train"]]


def test_reloaded_model_gives_identical_logits(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = trained["out"]
    texts = [text for text, _ in trained["test"]]
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert reloaded.config.id2label == dict(enumerate(CLASS_NAMES))
    original = trained["trainer"].model.eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits_reloaded = reloaded(**batch).logits
        logits_original = original(**{k: v.to(original.device) for k, v in batch.items()}).logits.cpu()
    torch.testing.assert_close(logits_reloaded, logits_original, rtol=0, atol=1e-6)

    # ...and they are the logits behind predict_results.tsv (label names and probabilities)
    header, rows = h.read_tsv(out / "predict_results.tsv")
    probs = torch.softmax(logits_reloaded, dim=-1)
    for row, p in zip(rows, probs):
        assert row["predicted_label"] == CLASS_NAMES[int(p.argmax())]
        assert float(row["probability"]) == pytest.approx(float(p.max()), abs=1.5e-4)  # written with 4 decimals


def test_predict_results_one_row_per_test_line_in_file_order(trained):
    header, rows = h.read_tsv(trained["out"] / "predict_results.tsv")
    assert header == ["line", "text", "predicted_label", "probability", "label"]
    test = trained["test"]
    assert len(rows) == len(test)
    # file order (the script evaluates in length order internally; texts here have different lengths)
    assert [int(r["line"]) for r in rows] == list(range(1, len(test) + 1))
    assert [r["text"] for r in rows] == [text for text, _ in test]
    assert [r["label"] for r in rows] == [CLASS_NAMES[label] for _, label in test]  # true labels as names
    assert {r["predicted_label"] for r in rows} <= set(CLASS_NAMES)
    for r in rows:
        assert 1 / 3 <= float(r["probability"]) <= 1.0
        assert re.fullmatch(r"\d\.\d{4}", r["probability"])
    accuracy = np.mean([r["predicted_label"] == r["label"] for r in rows])
    assert accuracy >= 0.8


def test_reports_and_plots_are_written(trained):
    out = trained["out"]
    report = (out / "eval_classification_report.txt").read_text(encoding="utf-8")
    for name in CLASS_NAMES:
        assert name in report
    as_json = load_json(out / "eval_classification_report.json")
    assert as_json["labels"] == CLASS_NAMES
    matrix = np.array(as_json["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == len(trained["dev"])
    for png in ("eval_confusion_matrix.png", "predict_confusion_matrix.png", "training_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_output_dir_with_results_is_refused(trained, model_dir):
    d = trained["dir"]
    before = sorted(os.listdir(trained["out"]))
    with pytest.raises(ValueError, match="already holds results") as excinfo:
        run(model_dir, trained["out"], "--train_file", d / "train.tsv", "--do_train")
    assert "--resume_from_checkpoint last" in str(excinfo.value)
    assert "--overwrite_output_dir" in str(excinfo.value)
    assert sorted(os.listdir(trained["out"])) == before


def test_predict_only_with_the_saved_model(trained, tmp_path):
    """The saved model predicts on its own: labels come from its config, unlabeled test file, no label column."""
    out = tmp_path / "predict_only"
    rc.main(["--model_name_or_path", str(trained["out"]), "--output_dir", str(out),
             "--test_file", str(trained["dir"] / "test_unlabeled.tsv"), "--do_predict",
             "--report_to", "none", "--disable_tqdm", "true"])
    header, rows = h.read_tsv(out / "predict_results.tsv")
    assert header == ["line", "text", "predicted_label", "probability"]
    _, first_run = h.read_tsv(trained["out"] / "predict_results.tsv")
    assert [(r["line"], r["text"], r["predicted_label"]) for r in rows] == \
           [(r["line"], r["text"], r["predicted_label"]) for r in first_run]
    for mine, theirs in zip(rows, first_run):  # other batch sizes pad differently: equal up to float noise
        assert float(mine["probability"]) == pytest.approx(float(theirs["probability"]), abs=2e-4)


def test_predict_only_rejects_label_unknown_to_the_model(trained, tmp_path):
    h.write_tsv(tmp_path / "test.tsv", [("的一甲", "体育"), ("的一乙", "娱乐")])
    with pytest.raises(DataError, match=r"test\.tsv:2: label '娱乐' is not one of the model's labels"):
        rc.main(["--model_name_or_path", str(trained["out"]), "--output_dir", str(tmp_path / "o"),
                 "--test_file", str(tmp_path / "test.tsv"), "--do_predict", "--report_to", "none"])


# ------------------------------------------------------------------------------------------------------------------
# Input formats: TSV variants, CSV, JSON lines
# ------------------------------------------------------------------------------------------------------------------

SIX = ["的一是", "在不了有", "和人这中大", "为上个", "国我以要他", "时来用们"]


def _variant(name):
    """(lines, extra args, expected text columns, expected texts per column, expected label ids, id2label)."""
    if name == "header_names":
        labels = ["体育", "财经", "体育", "科技", "财经", "科技"]
        return (["text\tlabel"] + [f"{t}\t{l}" for t, l in zip(SIX, labels)], [], ["text"], [SIX],
                [0, 2, 0, 1, 2, 1], ["体育", "科技", "财经"])  # sorted names (code points) without a label file
    if name == "no_header_ids_with_label_file":
        labels = ["0", "1", "2", "财经", "0", "科技"]  # ids and names may be mixed when a label file is given
        return ([f"{t}\t{l}" for t, l in zip(SIX, labels)], ["--label_file", "{dir}/class.txt"], ["text"], [SIX],
                [0, 1, 2, 1, 0, 2], CLASS_NAMES)
    if name == "no_header_names":
        labels = ["正面", "负面", "正面", "负面", "负面", "正面"]
        return ([f"{t}\t{l}" for t, l in zip(SIX, labels)], [], ["text"], [SIX], [0, 1, 0, 1, 1, 0], ["正面", "负面"])
    if name == "no_header_numeric_labels_sorted_as_numbers":
        labels = ["10", "2", "1", "10", "2", "1"]
        return ([f"{t}\t{l}" for t, l in zip(SIX, labels)], [], ["text"], [SIX], [2, 1, 0, 2, 1, 0], ["1", "2", "10"])
    if name == "header_custom_columns_swapped":
        labels = ["a", "b", "a", "b", "a", "b"]
        return (["category\tcontent"] + [f"{l}\t{t}" for t, l in zip(SIX, labels)],
                ["--text_column_names", "content", "--label_column_name", "category"], ["content"], [SIX],
                [0, 1, 0, 1, 0, 1], ["a", "b"])
    if name == "bom_crlf_header":
        labels = ["x", "y", "x", "y", "x", "y"]
        return (["\ufefftext\tlabel\r"] + [f"{t}\t{l}\r" for t, l in zip(SIX, labels)], [], ["text"], [SIX],
                [0, 1, 0, 1, 0, 1], ["x", "y"])
    if name == "pairs_header":
        b = SIX[::-1]
        return (["sentence1\tsentence2\tlabel"] + [f"{x}\t{y}\t{i % 2}" for i, (x, y) in enumerate(zip(SIX, b))], [],
                ["sentence1", "sentence2"], [SIX, b], [0, 1, 0, 1, 0, 1], ["0", "1"])
    if name == "pairs_no_header":
        b = SIX[::-1]
        return ([f"{x}\t{y}\t{i % 2}" for i, (x, y) in enumerate(zip(SIX, b))], [],
                ["text_a", "text_b"], [SIX, b], [0, 1, 0, 1, 0, 1], ["0", "1"])
    raise KeyError(name)


VARIANTS = ["header_names", "no_header_ids_with_label_file", "no_header_names",
            "no_header_numeric_labels_sorted_as_numbers", "header_custom_columns_swapped", "bom_crlf_header",
            "pairs_header", "pairs_no_header"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_tsv_variants(variant, model_dir, tmp_path):
    lines, extra, columns, texts, labels, id2label = _variant(variant)
    h.write_label_file(tmp_path / "class.txt", CLASS_NAMES)
    (tmp_path / "train.tsv").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    (tmp_path / "dev.tsv").write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    extra = [a.replace("{dir}", str(tmp_path)) for a in extra]
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv",
                    "--validation_file", tmp_path / "dev.tsv", "--do_eval", *extra)
    ds = trainer.train_dataset
    for column, expected in zip(columns, texts):
        assert ds[column] == expected
    assert ds["label"] == labels
    assert trainer.model.config.id2label == dict(enumerate(id2label))
    assert load_json(tmp_path / "out" / "config.json")["id2label"] == {str(i): n for i, n in enumerate(id2label)}
    header_lines = 1 if "header" in variant and "no_header" not in variant else 0
    assert ds["line"] == list(range(1 + header_lines, len(SIX) + 1 + header_lines))
    assert load_json(tmp_path / "out" / "eval_results.json")["eval_samples"] == len(SIX)
    if len(columns) == 2:  # a real BERT pair: [CLS] a [SEP] b [SEP] with segment ids 0 / 1
        tok = trainer.processing_class
        for i, example in enumerate(ds):
            a, b = list(texts[0][i]), list(texts[1][i])
            assert tokens_of(trainer, example) == ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
            assert example["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
            assert example["input_ids"][0] == tok.cls_token_id
    else:
        for i, example in enumerate(ds):
            assert tokens_of(trainer, example) == ["[CLS]", *texts[0][i], "[SEP]"]
            assert set(example["token_type_ids"]) == {0}


def test_csv_input_with_quoted_commas(model_dir, tmp_path):
    texts = ["的一,是", '在"不"了', "和人 这", "为上个", "国我,以", "时来用们"]
    labels = ["好", "坏", "好", "坏", "好", "坏"]
    h.write_csv(tmp_path / "train.csv", list(zip(texts, labels)), header=["text", "label"])
    h.write_csv(tmp_path / "test.csv", [(t,) for t in texts[:3]], header=["text"])
    h.write_csv(tmp_path / "dev.csv", list(zip(texts, labels)), header=["text", "label"])
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.csv",
                    "--validation_file", tmp_path / "dev.csv", "--test_file", tmp_path / "test.csv",
                    "--do_eval", "--do_predict")
    assert trainer.train_dataset["text"] == texts
    assert trainer.train_dataset["label"] == [0 if l == "坏" else 1 for l in labels]  # sorted: 坏 < 好
    assert trainer.train_dataset["line"] == [2, 3, 4, 5, 6, 7]
    header, rows = h.read_tsv(tmp_path / "out" / "predict_results.tsv")
    assert header == ["line", "text", "predicted_label", "probability"]
    assert len(rows) == 3 and [r["line"] for r in rows] == ["2", "3", "4"]


def test_jsonl_input_pairs_and_unlabeled_test(model_dir, tmp_path):
    records = [{"sentence1": a, "sentence2": b, "label": i % 2, "id": i}
               for i, (a, b) in enumerate(zip(SIX, SIX[::-1]))]
    h.write_jsonl(tmp_path / "train.jsonl", records)
    (tmp_path / "dev.json").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n",
                                       encoding="utf-8")
    h.write_jsonl(tmp_path / "test.jsonl", [{"sentence1": r["sentence1"], "sentence2": r["sentence2"]}
                                            for r in records])
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.jsonl",
                    "--validation_file", tmp_path / "dev.json", "--test_file", tmp_path / "test.jsonl",
                    "--do_eval", "--do_predict")
    ds = trainer.train_dataset
    assert ds["sentence1"] == SIX and ds["sentence2"] == SIX[::-1]
    assert ds["label"] == [0, 1, 0, 1, 0, 1]
    assert trainer.model.config.id2label == {0: "0", 1: "1"}
    ex = ds[0]
    assert tokens_of(trainer, ex) == ["[CLS]", *SIX[0], "[SEP]", *SIX[-1], "[SEP]"]
    assert ex["token_type_ids"] == [0] * (len(SIX[0]) + 2) + [1] * (len(SIX[-1]) + 1)
    header, rows = h.read_tsv(tmp_path / "out" / "predict_results.tsv")
    assert header == ["line", "sentence1", "sentence2", "predicted_label", "probability"]
    assert [r["sentence1"] for r in rows] == SIX


# ------------------------------------------------------------------------------------------------------------------
# Bad input: one DataError naming the file, the line and the fix, before any model is built
# ------------------------------------------------------------------------------------------------------------------

GOOD = ["的一是\t0", "在不了\t1", "和人这\t0", "中大为\t1"]


def _bad_input_case(name, d):
    """Write the files for one bad-input case into `d`; return (extra args, regex the message must match)."""
    train, dev = d / "train.tsv", d / "dev.tsv"
    h.write_lines(dev, GOOD)
    args = ["--train_file", str(train), "--validation_file", str(dev), "--do_eval"]
    if name == "missing_file":
        return ["--train_file", str(d / "nope.tsv"), "--do_train"], re.escape(f"{d / 'nope.tsv'}: file not found")
    if name == "unknown_extension":
        h.write_lines(d / "train.xlsx", GOOD)
        return (["--train_file", str(d / "train.xlsx")],
                re.escape(f"{d / 'train.xlsx'}: unknown extension '.xlsx'") + ".*\\.tsv.*\\.csv.*\\.json")
    if name == "wrong_text_column":
        h.write_lines(train, ["text\tlabel"] + GOOD)
        return (args + ["--text_column_names", "content"],
                re.escape(f"{train}: column(s) ['content'] not found; the file has columns ['text', 'label']")
                + ".*--text_column_names")
    if name == "wrong_label_column":
        h.write_lines(train, ["text\tlabel"] + GOOD)
        return (args + ["--label_column_name", "category"],
                re.escape(f"{train}: no label column 'category'") + ".*--label_column_name")
    if name == "no_tab":
        h.write_lines(train, GOOD[:2] + ["这一行没有制表符"] + GOOD[2:])
        return args, re.escape(f"{train}:3: no tab in this line; expected 2 tab-separated columns")
    if name == "no_tab_in_first_line":  # the columns are learnt from line 1: the message must still say "tab"
        h.write_lines(train, ["这一行没有制表符"] + GOOD)
        return args, re.escape(f"{train}") + ".*tab"
    if name == "stray_tab":
        h.write_lines(train, GOOD[:3] + ["的一\t是\t1"] + GOOD[3:])
        return args, re.escape(f"{train}:4: ") + r".*\b3\b.*\b2\b.*stray tab.*--skip_bad_rows"
    if name == "empty_text":
        h.write_lines(train, ["text\tlabel"] + GOOD[:1] + ["  \t1"] + GOOD[1:])
        return args, re.escape(f"{train}:3: empty text in column 'text'") + ".*--skip_bad_rows"
    if name == "empty_label":
        h.write_lines(train, GOOD[:1] + ["的一是\t "] + GOOD[1:])
        return args, re.escape(f"{train}:2: empty label in column 'label'")
    if name == "label_not_in_label_file":
        h.write_lines(train, GOOD[:2] + ["的一是\t5"] + GOOD[2:])
        h.write_label_file(d / "class.txt", ["负面", "正面"])
        return (args + ["--label_file", str(d / "class.txt")],
                re.escape(f"{train}:3: label '5' is not in --label_file {d / 'class.txt'} (2 labels)")
                + ".*add it there")
    if name == "validation_label_not_in_training":
        h.write_lines(train, GOOD)
        h.write_lines(dev, GOOD[:3] + ["中大为\t2"])
        return args, re.escape(f"{dev}:4: label '2' never occurs in the training data")
    if name == "validation_label_in_label_file_but_not_in_training":
        h.write_lines(train, GOOD)
        h.write_lines(dev, GOOD[:1] + ["中大为\t科技"] + GOOD[1:])
        h.write_label_file(d / "class.txt", ["负面", "正面", "科技"])
        return (args + ["--label_file", str(d / "class.txt")],
                re.escape(f"{dev}:2: label '科技' never occurs in the training data"))
    if name == "gb18030":
        train.write_bytes("text\tlabel\n中文文本\t体育\n".encode("gb18030"))
        return args, (re.escape(f"{train}:2: not UTF-8 (looks like GB18030)") + ".*" +
                      re.escape(f"iconv -f GB18030 -t UTF-8 {train}"))
    if name == "gb18030_larger_than_1mib":
        # A THUCNews-sized GBK/GB18030 file: the encoding guess must not depend on where the first MiB ends.
        # 5 ASCII bytes, then 2-byte characters: byte 2**20 - 1 is the first half of a character.
        train.write_bytes(("ab\t0\n" + "体育新闻" * 140_000 + "\t1\n").encode("gb18030"))
        return args, re.escape(f"{train}:2: not UTF-8 (looks like GB18030)")
    if name == "utf16":
        train.write_bytes(("\n".join(["text\tlabel"] + GOOD) + "\n").encode("utf-16"))
        return args, re.escape(f"{train}:1: not UTF-8 (looks like UTF-16)")
    if name == "empty_file":
        train.write_bytes(b"")
        return args, re.escape(f"{train}: no data rows (empty file?)")
    if name == "header_only":
        h.write_lines(train, ["text\tlabel"])
        return args, re.escape(f"{train}: no data rows (empty file?)")
    if name == "blank_lines_only":
        train.write_text("\n\n  \n", encoding="utf-8")
        return args, re.escape(f"{train}: no data rows (empty file?)")
    if name == "nothing_usable_with_skip_bad_rows":
        h.write_lines(train, ["text\tlabel", "\t0", " \t1"])
        return (args + ["--skip_bad_rows"],
                re.escape(f"{train}: no usable rows (skipped: {{\"empty text in column 'text'\": 2}})"))
    if name == "invalid_json":
        h.write_lines(d / "train.jsonl", ['{"text": "的一是", "label": 0}', '{"text": "在不了", "label": 1'])
        return (["--train_file", str(d / "train.jsonl"), "--do_train"],
                re.escape(f"{d / 'train.jsonl'}:2: invalid JSON"))
    if name == "json_not_an_object":
        h.write_lines(d / "train.jsonl", ['{"text": "的一是", "label": 0}', '["在不了", 1]'])
        return (["--train_file", str(d / "train.jsonl"), "--do_train"],
                re.escape(f"{d / 'train.jsonl'}:2: not a JSON object"))
    raise KeyError(name)


BAD_INPUTS = ["missing_file", "unknown_extension", "wrong_text_column", "wrong_label_column", "no_tab",
              "no_tab_in_first_line", "stray_tab", "empty_text", "empty_label", "label_not_in_label_file",
              "validation_label_not_in_training", "validation_label_in_label_file_but_not_in_training", "gb18030",
              "gb18030_larger_than_1mib", "utf16", "empty_file", "header_only", "blank_lines_only",
              "nothing_usable_with_skip_bad_rows", "invalid_json", "json_not_an_object"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_rejected_with_file_line_and_fix(case, model_dir, tmp_path, monkeypatch):
    extra, pattern = _bad_input_case(case, tmp_path)
    if "--do_train" not in extra:
        extra = extra + ["--do_train"]
    built = []
    monkeypatch.setattr(rc.AutoModelForSequenceClassification, "from_config",
                        lambda *a, **k: built.append(1) or pytest.fail("model built before the data was checked"))
    with pytest.raises(DataError) as excinfo:
        run(model_dir, tmp_path / "out", *extra)
    message = str(excinfo.value)
    assert re.search(pattern, message), f"\n{message}\ndoes not match\n{pattern}"
    assert "\n" not in message  # one clear line
    assert isinstance(excinfo.value, ValueError)
    assert not built


@pytest.mark.parametrize("extra, message", [
    (["--do_eval"], "--do_eval needs --validation_file"),
    (["--do_predict"], "--do_predict needs --test_file"),
    (["--text_column_names", "a,b", "--truncation_strategy", "head+tail"], "head+tail is for single texts"),
    (["--max_seq_length", "256"], "--max_seq_length 256 exceeds the model's 128 positions"),
    (["--max_seq_length", "3"], "--max_seq_length 3 leaves no room for text"),
    (["--early_stopping_patience", "1"], "--early_stopping_patience needs --validation_file"),
])
def test_bad_arguments_are_refused(extra, message, model_dir, tmp_path):
    h.write_tsv(tmp_path / "train.tsv", [("的一", "是在", 0), ("不了", "有和", 1)], header=["a", "b", "label"])
    with pytest.raises(ValueError, match=re.escape(message)):
        run(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--do_train",
            *([] if "a,b" in extra else ["--text_column_names", "a"]), *extra)


def test_skip_bad_rows_counts_skipped_rows(model_dir, tmp_path, capsys):
    lines = ["text\tlabel", "的一是\t0", "", "没有制表符", "在不了\t1", "和\t人\t0", "  \t1", "这中大\t1", "为上个\t ",
             "国我以\t0"]
    h.write_lines(tmp_path / "train.tsv", lines)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train.tsv'}:4: no tab in this line")):
        quick(model_dir, tmp_path / "refused", "--train_file", tmp_path / "train.tsv", "--eval_strategy", "no")
    capsys.readouterr()
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--skip_bad_rows",
                    "--log_level", "info", "--eval_strategy", "no")
    ds = trainer.train_dataset
    assert ds["text"] == ["的一是", "在不了", "这中大", "国我以"]
    assert ds["line"] == [2, 5, 8, 10]
    assert ds["label"] == [0, 1, 1, 0]
    log = capsys.readouterr().out
    summary = re.search(r"train: .*train\.tsv: (\d+) rows.*skipped (\d+) rows", log)
    assert summary, log
    assert summary.groups() == ("4", "5")  # blank line, no tab, stray tab, empty text, empty label
    assert load_json(tmp_path / "out" / "train_results.json")["train_samples"] == 4
    skipped = load_json(tmp_path / "out" / "data_summary.json")["splits"]["train"]["skipped_rows"]
    assert sum(skipped.values()) == 5, skipped
    assert skipped["blank line"] == 1
    assert skipped["empty text in column 'text'"] == 1
    assert skipped["empty label in column 'label'"] == 1
    assert any(k.startswith("no tab") for k in skipped), skipped


# ------------------------------------------------------------------------------------------------------------------
# Truncation end to end, --show_examples, --max_seq_length auto
# ------------------------------------------------------------------------------------------------------------------

LONG = "首" + h.filler_text(20, seed=3) + "尾"  # 22 tokens, distinct first and last markers
SHORT = "前后左右"


@pytest.mark.parametrize("strategy, head_tokens, kept", [
    ("head", None, list(LONG[:8])),
    ("tail", None, list(LONG[-8:])),
    ("head+tail", None, list(LONG[:2]) + list(LONG[-6:])),  # default: round(8 * 128 / 510) = 2 from the head
    ("head+tail", 3, list(LONG[:3]) + list(LONG[-5:])),
])
def test_truncation_strategies_end_to_end(strategy, head_tokens, kept, model_dir, tmp_path, capsys):
    h.write_tsv(tmp_path / "train.tsv", [(LONG, "甲"), (SHORT, "乙")])
    extra = ["--head_tokens", head_tokens] if head_tokens is not None else []
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--eval_strategy", "no",
                    "--max_seq_length", "10", "--truncation_strategy", strategy, "--show_examples", "2", *extra)
    long_ex, short_ex = trainer.train_dataset[0], trainer.train_dataset[1]
    assert tokens_of(trainer, long_ex) == ["[CLS]", *kept, "[SEP]"]
    assert len(long_ex["input_ids"]) == 10 and long_ex["truncated"]
    assert tokens_of(trainer, short_ex) == ["[CLS]", *SHORT, "[SEP]"] and not short_ex["truncated"]
    assert ("首" in kept) == (strategy != "tail")
    assert ("尾" in kept) == (strategy != "head")
    out = capsys.readouterr().out
    assert "--- training example (line 1) ---" in out
    assert f"text: {LONG}" in out
    assert f"tokens:         [CLS] {' '.join(kept)} [SEP]" in out
    assert f"tokens:         [CLS] {' '.join(SHORT)} [SEP]" in out
    assert "token_type_ids: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]" in out
    assert "attention_mask: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]" in out
    assert "label:          1 (甲)" in out  # sorted label names: 乙 < 甲


@pytest.mark.parametrize("strategy", ["head", "tail"])
def test_pair_truncation_trims_the_longer_text(strategy, model_dir, tmp_path, capsys):
    a, b = LONG, "前后左"
    h.write_tsv(tmp_path / "train.tsv", [(a, b, 0), (b, a, 1)], header=["sentence1", "sentence2", "label"])
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--eval_strategy", "no",
                    "--max_seq_length", "16", "--truncation_strategy", strategy, "--show_examples", "1")
    # budget 16 - 3 = 13: the short text keeps its 3 tokens, the long one is trimmed to 10 by the strategy
    a_kept = list(a[:10]) if strategy == "head" else list(a[-10:])
    first, second = trainer.train_dataset[0], trainer.train_dataset[1]
    assert tokens_of(trainer, first) == ["[CLS]", *a_kept, "[SEP]", *b, "[SEP]"]
    assert first["token_type_ids"] == [0] * 12 + [1] * 4
    assert tokens_of(trainer, second) == ["[CLS]", *b, "[SEP]", *a_kept, "[SEP]"]
    assert second["token_type_ids"] == [0] * 5 + [1] * 11
    assert first["truncated"] and second["truncated"]
    out = capsys.readouterr().out
    assert f"sentence1: {a}" in out and f"sentence2: {b}" in out
    assert f"tokens:         [CLS] {' '.join(a_kept)} [SEP] {' '.join(b)} [SEP]" in out
    assert f"token_type_ids: {[0] * 12 + [1] * 4}" in out


@pytest.mark.parametrize("percentile, expected", [(None, 48), ("50", 16)])
def test_max_seq_length_auto_uses_length_percentile(percentile, expected, model_dir, tmp_path):
    # 96 texts of 10 tokens (12 with [CLS]/[SEP]) and 4 of 40 (42): p99 = 42 -> 48; p50 = 12 -> 16
    rows = [(h.filler_text(10, seed=i), i % 2) for i in range(96)] + [(h.filler_text(40, seed=i), i % 2)
                                                                       for i in range(4)]
    h.write_tsv(tmp_path / "train.tsv", rows)
    extra = ["--auto_length_percentile", percentile] if percentile else []
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--eval_strategy", "no",
                    "--max_seq_length", "auto", *extra)
    chosen = load_json(tmp_path / "out" / "train_results.json")["max_seq_length"]
    assert chosen == expected and chosen % 8 == 0
    lengths = trainer.train_dataset["length"]
    assert max(lengths) == min(42, chosen)
    assert sum(trainer.train_dataset["truncated"]) == (4 if chosen < 42 else 0)


def test_max_seq_length_auto_is_capped_by_the_model(model_dir, tmp_path):
    h.write_tsv(tmp_path / "train.tsv", [(h.filler_text(200, seed=i), i % 2) for i in range(4)])
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--eval_strategy", "no",
                    "--max_seq_length", "auto")
    assert load_json(tmp_path / "out" / "train_results.json")["max_seq_length"] == 128
    assert set(trainer.train_dataset["length"]) == {128}


# ------------------------------------------------------------------------------------------------------------------
# Training control: early stopping, resume, overwrite
# ------------------------------------------------------------------------------------------------------------------


def _small_task(d, n_train=64, n_dev=32):
    rows = h.keyword_rows(n_train + n_dev, n_classes=2, seed=11)
    h.write_tsv(d / "train.tsv", rows[:n_train])
    h.write_tsv(d / "dev.tsv", rows[n_train:])
    return ["--train_file", d / "train.tsv", "--validation_file", d / "dev.tsv", "--do_train", "--do_eval"]


def test_early_stopping_stops_when_the_metric_stalls(model_dir, tmp_path):
    data = _small_task(tmp_path)
    # learning rate 0: the accuracy never improves, so patience 1 stops after the second evaluation of 10 epochs
    trainer = run(model_dir, tmp_path / "out", *data, "--early_stopping_patience", "1", "--eval_strategy", "epoch",
                  epochs=10, learning_rate="0", save="epoch")
    assert trainer.state.epoch == pytest.approx(2.0)
    assert trainer.state.global_step == 2 * 4  # 64 rows / batch 16 = 4 steps per epoch
    assert trainer.args.load_best_model_at_end and trainer.args.metric_for_best_model == "accuracy"
    assert trainer.state.best_model_checkpoint is not None
    assert Path(trainer.state.best_model_checkpoint).name == "checkpoint-4"
    evals = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert len(evals) == 2 and evals[0]["eval_accuracy"] == evals[1]["eval_accuracy"]
    assert load_json(tmp_path / "out" / "train_results.json")["epoch"] == pytest.approx(2.0)


def test_resume_from_last_checkpoint_continues_and_finishes(model_dir, tmp_path, monkeypatch):
    data = _small_task(tmp_path)
    out = tmp_path / "out"
    first = run(model_dir, out, *data, epochs=2, save="epoch")
    assert first.state.global_step == 8
    assert {"checkpoint-4", "checkpoint-8"} <= set(os.listdir(out))

    with pytest.raises(ValueError, match=r"already holds results and checkpoint .*checkpoint-8\. Pass "
                                         r"--resume_from_checkpoint last to continue, --overwrite_output_dir"):
        run(model_dir, out, *data, epochs=3, save="epoch")

    steps, resumed_from = [], []
    original_step, original_train = transformers.Trainer.training_step, transformers.Trainer.train

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return original_step(self, *args, **kwargs)

    def recording_train(self, resume_from_checkpoint=None, **kwargs):
        resumed_from.append(resume_from_checkpoint)
        return original_train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    # the script's Trainer subclass inherits these
    monkeypatch.setattr(transformers.Trainer, "training_step", counting_step)
    monkeypatch.setattr(transformers.Trainer, "train", recording_train)
    second = run(model_dir, out, *data, "--resume_from_checkpoint", "last", epochs=3, save="epoch")
    assert resumed_from == [str(out / "checkpoint-8")]
    assert len(steps) == 4  # only the third epoch is trained
    assert second.state.global_step == 12 and second.state.epoch == pytest.approx(3.0)
    assert "checkpoint-12" in os.listdir(out)
    assert load_json(out / "train_results.json")["epoch"] == pytest.approx(3.0)
    assert len([e for e in second.state.log_history if "eval_accuracy" in e]) == 3  # history carried over


def test_resume_last_needs_a_checkpoint(model_dir, tmp_path):
    data = _small_task(tmp_path)
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint last: .*does not exist"):
        run(model_dir, tmp_path / "missing", *data, "--resume_from_checkpoint", "last")
    (tmp_path / "no_ckpt").mkdir()
    (tmp_path / "no_ckpt" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint last: no checkpoint-\* folder in"):
        run(model_dir, tmp_path / "no_ckpt", *data, "--resume_from_checkpoint", "last")


def test_overwrite_output_dir_replaces_results(model_dir, tmp_path):
    data = _small_task(tmp_path, n_train=16, n_dev=8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "all_results.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds results"):
        run(model_dir, out, *data, "--max_steps", "1")
    run(model_dir, out, *data, "--max_steps", "1", "--overwrite_output_dir")
    assert load_json(out / "all_results.json")["train_samples"] == 16


# ------------------------------------------------------------------------------------------------------------------
# Reporting, argument files, bf16
# ------------------------------------------------------------------------------------------------------------------


def test_report_to_tensorboard_writes_events(model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = _small_task(tmp_path, n_train=32, n_dev=8)
    args = h.tiny_train_args(model_dir, tmp_path / "out", *data, "--max_steps", "2", "--logging_steps", "1")
    args[args.index("--report_to") + 1] = "tensorboard"
    rc.main(args)
    events = glob.glob(str(tmp_path / "out" / "**" / "events.out.tfevents.*"), recursive=True)
    assert events
    scalars = set()
    for path in events:
        acc = EventAccumulator(path)
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
    assert "train/loss" in scalars, scalars


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_arguments_from_a_file(fmt, model_dir, tmp_path):
    import yaml

    data = _small_task(tmp_path, n_train=16, n_dev=8)
    settings = {
        "config_name": str(model_dir), "tokenizer_name": str(model_dir), "output_dir": str(tmp_path / "out"),
        "train_file": str(data[1]), "validation_file": str(data[3]), "do_train": True, "do_eval": True,
        "max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 0.001, "max_seq_length": "12",
        "truncation_strategy": "tail", "report_to": "none", "save_strategy": "no", "disable_tqdm": True,
    }
    path = tmp_path / f"args.{fmt}"
    path.write_text(json.dumps(settings) if fmt == "json" else yaml.safe_dump(settings, allow_unicode=True),
                    encoding="utf-8")
    trainer = rc.main([str(path)])
    assert trainer.args.max_steps == 2 and trainer.args.per_device_train_batch_size == 8
    assert trainer.state.global_step == 2
    results = load_json(tmp_path / "out" / "all_results.json")
    assert results["max_seq_length"] == 12 and results["eval_samples"] == 8
    assert max(trainer.train_dataset["length"]) <= 12


def test_bf16_on_cpu_runs(model_dir, tmp_path, monkeypatch):
    import training

    monkeypatch.setattr(training, "cpu_bf16_is_fast", lambda: True)  # bf16 is kept on any CPU here (a tiny model)
    data = _small_task(tmp_path, n_train=32, n_dev=16)
    trainer = run(model_dir, tmp_path / "out", *data, "--bf16", "true", "--max_steps", "2")
    assert trainer.args.bf16 and trainer.args.use_cpu
    assert trainer.args.device.type == "cpu"
    results = load_json(tmp_path / "out" / "all_results.json")
    assert math.isfinite(results["train_loss"]) and math.isfinite(results["eval_loss"])
    assert 0.0 <= results["eval_accuracy"] <= 1.0


# ------------------------------------------------------------------------------------------------------------------
# Scenarios found broken while writing this suite (kept as plain tests: they must pass once the script is fixed)
# ------------------------------------------------------------------------------------------------------------------


def test_train_without_validation_file(model_dir, tmp_path):
    """--do_train alone (no --validation_file) trains, saves and ends cleanly."""
    h.write_tsv(tmp_path / "train.tsv", h.keyword_rows(16, seed=1))
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv")
    assert trainer.state.global_step == 1
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert not (tmp_path / "out" / "eval_results.json").exists()


def test_unlabeled_pair_test_file_without_header(model_dir, tmp_path):
    """Sentence pairs without header: train has 3 columns (a, b, label), the unlabeled test file 2 (a, b)."""
    pairs = [("的一是", "在不了", 0), ("有和人", "这中大", 1)] * 4
    h.write_tsv(tmp_path / "train.tsv", pairs)
    h.write_tsv(tmp_path / "dev.tsv", pairs)
    h.write_tsv(tmp_path / "test.tsv", [(a, b) for a, b, _ in pairs[:2]])
    quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--validation_file",
          tmp_path / "dev.tsv", "--test_file", tmp_path / "test.tsv", "--do_eval", "--do_predict")
    header, rows = h.read_tsv(tmp_path / "out" / "predict_results.tsv")
    assert header == ["line", "text_a", "text_b", "predicted_label", "probability"]
    assert [(r["text_a"], r["text_b"]) for r in rows] == [("的一是", "在不了"), ("有和人", "这中大")]


def test_predictions_file_stays_one_row_per_text_with_tabs_and_newlines(model_dir, tmp_path):
    """JSON lines and CSV texts may contain tabs and newlines; predict_results.tsv must still have one row each."""
    records = [{"text": "的一\t是", "label": 0}, {"text": "在不\n了", "label": 1}, {"text": "和人\r\n这", "label": 0}]
    h.write_jsonl(tmp_path / "train.jsonl", records)
    h.write_jsonl(tmp_path / "dev.jsonl", records)
    h.write_jsonl(tmp_path / "test.jsonl", records)
    quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.jsonl", "--validation_file",
          tmp_path / "dev.jsonl", "--test_file", tmp_path / "test.jsonl", "--do_eval", "--do_predict")
    with open(tmp_path / "out" / "predict_results.tsv", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert lines[0].split("\t") == ["line", "text", "predicted_label", "probability", "label"]
    assert len(lines) == 1 + len(records), lines
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "2", "3"]
    assert all(len(line.split("\t")) == 5 for line in lines), lines


def test_zero_padded_numeric_labels_keep_their_spelling(model_dir, tmp_path):
    rows = [("的一是", "01"), ("有和人", "02"), ("在不了", "10")] * 2
    h.write_tsv(tmp_path / "train.tsv", rows)
    h.write_tsv(tmp_path / "dev.tsv", rows)
    trainer = quick(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv",
                    "--validation_file", tmp_path / "dev.tsv", "--do_eval")
    assert trainer.model.config.id2label == {0: "01", 1: "02", 2: "10"}
    assert trainer.train_dataset["label"] == [0, 1, 2, 0, 1, 2]
