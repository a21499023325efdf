"""--dataset_name in all four scripts, through main() on tiny models: a folder written by save_to_disk (ClassLabel
labels and NER tags), a Hub-style folder of train/validation data files, and the errors for a missing column, an
unknown split and an empty split. Everything is built here; nothing is downloaded."""

import json
import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import datasets  # noqa: E402

import run_classification  # noqa: E402
import run_mlm  # noqa: E402
import run_ner  # noqa: E402
import run_qa  # noqa: E402
from script_utils import DataError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

# ClassLabel order differs from sorted order: the model's labels must follow the dataset's names.
CLASS_NAMES = ["科技", "体育", "财经"]


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def keyword_split(n, seed):
    rows = h.keyword_rows(n, n_classes=3, seed=seed, min_len=4, max_len=20)
    return {"sentence": [t for t, _ in rows], "label": [label for _, label in rows],
            "idx": list(range(len(rows)))}


@pytest.fixture(scope="module")
def tnews_like(tmp_path_factory):
    """A CLUE TNEWS-style DatasetDict saved with save_to_disk: sentence, ClassLabel label (test: -1, unlabelled)."""
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=CLASS_NAMES), "idx": datasets.Value("int32")})
    test = keyword_split(30, seed=3)
    test["label"] = [-1] * len(test["label"])
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(keyword_split(300, seed=1), features=features),
        "validation": datasets.Dataset.from_dict(keyword_split(60, seed=2), features=features),
        "test": datasets.Dataset.from_dict(test, features=features),
    })
    path = tmp_path_factory.mktemp("tnews") / "tnews_like"
    dd.save_to_disk(str(path))
    return path


def test_classification_from_a_save_to_disk_dataset_with_classlabels(tnews_like, tmp_path_factory):
    model_dir = h.build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_64"), hidden_size=64)
    out = tmp_path_factory.mktemp("runs") / "tnews"
    run_classification.main(h.tiny_train_args(
        model_dir, out, "--dataset_name", tnews_like, "--text_column_names", "sentence", "--do_train", "--do_eval",
        "--do_predict", epochs=3, learning_rate="2e-3", batch_size=8))
    results = load_json(out / "all_results.json")
    assert results["eval_accuracy"] > 0.8, results  # 3 balanced classes: chance is 1/3
    config = load_json(out / "config.json")
    assert [config["id2label"][str(i)] for i in range(3)] == CLASS_NAMES  # the ClassLabel order, not sorted
    predictions = h.read_tsv(out / "predict_results.tsv")[1]
    assert len(predictions) == 30 and {p["predicted_label"] for p in predictions} <= set(CLASS_NAMES)
    summary = load_json(out / "data_summary.json")
    assert summary["splits"]["train"]["file"] == "tnews_like[train]"
    assert set(summary["splits"]["train"]["label_counts"]) == set(CLASS_NAMES)
    assert "on **tnews_like**" in (out / "README.md").read_text(encoding="utf-8")


def write_hub_folder(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        h.write_jsonl(folder / name, records)
    return folder


def test_classification_from_a_hub_style_folder_and_split_names(model_dir, tmp_path):
    rows = h.keyword_rows(40, n_classes=2, seed=0)
    records = [{"text": t, "label": ["正面", "负面"][y]} for t, y in rows]
    folder = write_hub_folder(tmp_path / "reviews", {"train.json": records[:30], "dev.json": records[30:]})
    out = tmp_path / "out"
    run_classification.main(h.tiny_train_args(model_dir, out, "--dataset_name", folder, "--do_train", "--do_eval",
                                              "--max_steps", "1"))
    assert load_json(out / "eval_results.json")["eval_samples"] == 10  # dev.json is the validation split
    # the training split as the validation split, by name
    out2 = tmp_path / "out2"
    run_classification.main(h.tiny_train_args(model_dir, out2, "--dataset_name", folder, "--do_train", "--do_eval",
                                              "--validation_split_name", "train", "--max_steps", "1"))
    assert load_json(out2 / "eval_results.json")["eval_samples"] == 30


def test_dataset_errors_name_the_dataset_split_and_fix(tnews_like, model_dir, tmp_path):
    def error_of(*extra):
        with pytest.raises(DataError) as e:
            run_classification.main(h.tiny_train_args(model_dir, tmp_path / "out", "--dataset_name", tnews_like,
                                                      *extra))
        return str(e.value)

    message = error_of("--do_train", "--train_split_name", "training")
    assert "no split 'training'" in message and "--train_split_name" in message and "validation" in message
    message = error_of("--do_train", "--text_column_names", "content")
    assert "tnews_like[train]" in message and "['content'] not found" in message
    assert "--text_column_names" in message
    message = error_of("--do_train", "--train_file", tmp_path / "x.tsv")
    assert "not both" in message
    empty = write_hub_folder(tmp_path / "empty", {"train.json": [{"text": "甲乙", "label": "a"}],
                                                  "validation.json": []})
    with pytest.raises(DataError, match=re.escape('empty: a split is empty (Instruction "validation"')):
        run_classification.main(h.tiny_train_args(model_dir, tmp_path / "out", "--dataset_name", empty,
                                                  "--do_train"))
    with pytest.raises(DataError, match="cannot load it"):
        run_classification.main(h.tiny_train_args(model_dir, tmp_path / "out", "--dataset_name",
                                                  tmp_path / "no_such_dataset", "--do_train"))


# ------------------------------------------------------------------------------------------------------------------
# NER: msra_ner-style tokens + ClassLabel ner_tags
# ------------------------------------------------------------------------------------------------------------------

NER_NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ENTITY_CHARS = {"PER": ("甲", "乙"), "LOC": ("丙", "丁")}


def ner_split(n, seed):
    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        chars, labels = [], []
        for _ in range(rng.randint(1, 2)):
            filler = [rng.choice(h.FILLER) for _ in range(rng.randint(1, 4))]
            chars, labels = chars + filler, labels + ["O"] * len(filler)
            entity_type = rng.choice(sorted(ENTITY_CHARS))
            first, rest = ENTITY_CHARS[entity_type]
            n_rest = rng.randint(0, 2)
            chars += [first] + [rest] * n_rest
            labels += [f"B-{entity_type}"] + [f"I-{entity_type}"] * n_rest
        tokens.append(chars)
        tags.append([NER_NAMES.index(t) for t in labels])
    return {"id": [str(i) for i in range(n)], "tokens": tokens, "ner_tags": tags}


@pytest.fixture(scope="module")
def msra_like(tmp_path_factory):
    features = datasets.Features({"id": datasets.Value("string"),
                                  "tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER_NAMES))})
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(ner_split(96, 0), features=features),
                               "test": datasets.Dataset.from_dict(ner_split(24, 1), features=features)})
    path = tmp_path_factory.mktemp("msra") / "msra_like"
    dd.save_to_disk(str(path))
    return path


def test_ner_from_classlabel_tags_with_entity_level_metrics(msra_like, model_dir, tmp_path):
    out = tmp_path / "out"
    trainer = run_ner.main(h.tiny_train_args(
        model_dir, out, "--dataset_name", msra_like, "--validation_split_name", "test", "--do_train", "--do_eval",
        "--do_predict", "--head", "crf", "--head_learning_rate", "2e-2", "--return_entity_level_metrics",
        "--metric_for_best_model", "PER_f1", "--early_stopping_patience", "3", "--save_strategy", "epoch",
        epochs=5, learning_rate="5e-3"))
    results = load_json(out / "all_results.json")
    assert results["eval_f1"] > 0.8, results
    for name in ("PER_precision", "PER_recall", "PER_f1", "PER_number", "LOC_f1"):
        assert f"eval_{name}" in results, name
    assert trainer.state.best_metric == max(e["eval_PER_f1"] for e in trainer.state.log_history
                                            if "eval_PER_f1" in e)
    entities = [json.loads(line) for line in (out / "predict_entities.jsonl").read_text().splitlines()]
    assert len(entities) == 24


def test_ner_column_names_and_integer_tags_without_names(model_dir, tmp_path):
    split = ner_split(20, 2)
    records = [{"chars": t, "labels": [NER_NAMES[i] for i in tags]} for t, tags in zip(split["tokens"],
                                                                                        split["ner_tags"])]
    h.write_jsonl(tmp_path / "train.json", records)
    out = tmp_path / "out"
    run_ner.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.json", "--text_column_name",
                                   "chars", "--label_column_name", "labels", "--do_train", "--max_steps", "1"))
    assert load_json(out / "data_summary.json")["splits"]["train"]["entities"]["PER"] > 0
    # integer tags in a file: no names to map them through, so an error that says how to give them
    h.write_jsonl(tmp_path / "ints.json", [{"tokens": t, "ner_tags": tags} for t, tags in zip(split["tokens"],
                                                                                           split["ner_tags"])])
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'ints.json'}:1: tag 0") + ".*ClassLabel"):
        run_ner.main(h.tiny_train_args(model_dir, tmp_path / "o2", "--train_file", tmp_path / "ints.json",
                                       "--do_train"))


# ------------------------------------------------------------------------------------------------------------------
# QA: a cmrc2018-style dataset; MLM: a text column
# ------------------------------------------------------------------------------------------------------------------


def qa_records(n, seed, prefix):
    rng = random.Random(seed)
    records = []
    for i in range(n):
        answer = "甲" + h.filler_text(rng.randint(1, 3), seed=rng.random()) + "乙"
        context = h.filler_text(rng.randint(8, 40), seed=rng.random())
        at = rng.randint(0, len(context))
        records.append({"id": f"{prefix}{i}", "context": context[:at] + answer + context[at:],
                        "question": "甲乙之间是什么？", "answers": {"text": [answer], "answer_start": [at]}})
    return records


def test_qa_from_a_cmrc2018_style_dataset(tmp_path):
    vocab = h.VOCAB + [c for c in "？之间是什么" if c not in h.VOCAB]
    model_dir = h.build_tiny_bert(tmp_path / "bert", vocab=vocab)
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(qa_records(40, 0, "t")),
                               "validation": datasets.Dataset.from_list(qa_records(12, 1, "d"))})
    dd.save_to_disk(str(tmp_path / "cmrc_like"))
    out = tmp_path / "out"
    run_qa.main(h.tiny_train_args(model_dir, out, "--dataset_name", tmp_path / "cmrc_like", "--do_train",
                                  "--do_eval", "--max_seq_length", "48", "--doc_stride", "16", "--max_query_length",
                                  "12",
                                  "--max_steps", "2"))
    predictions = load_json(out / "eval_predictions.json")
    assert sorted(predictions) == sorted(f"d{i}" for i in range(12))
    summary = load_json(out / "data_summary.json")["splits"]["validation"]
    assert summary["file"] == "cmrc_like[validation]" and summary["answers_ok"] == 12


def test_mlm_from_a_dataset_text_column(model_dir, tmp_path):
    rng = random.Random(0)
    lines = [h.filler_text(rng.randint(10, 30), seed=rng.random()) for _ in range(60)]
    folder = write_hub_folder(tmp_path / "corpus", {"train.jsonl": [{"content": t} for t in lines]})
    out = tmp_path / "out"
    run_mlm.main(h.tiny_train_args(model_dir, out, "--dataset_name", folder, "--text_column_name", "content",
                                   "--do_train", "--do_eval", "--max_seq_length", "32", "--max_steps", "2"))
    results = load_json(out / "eval_results.json")
    assert results["perplexity"] > 1
    with pytest.raises(DataError, match=re.escape("corpus[train]: no column 'text'")):
        run_mlm.main(h.tiny_train_args(model_dir, tmp_path / "o2", "--dataset_name", folder, "--do_train"))
