"""Multi-label classification and regression in run_classification.py, every head, predict.py and pipeline(), and
labels that must never be misread. Driven through main([...]) on a tiny BERT trained from scratch; nothing is
downloaded.

Fixtures: texts of filler characters with keyword characters (helpers.KEYWORDS) in them.
  * multi-label: a text holds one or two keywords; its labels are their class names (JSON lines lists, or a TSV with
    --label_delimiter);
  * regression (STS-B style, a Chinese sentence pair and a similarity score): the keyword in sentence1 decides the
    score (0.5, 2.0, 3.5 or 5.0, plus noise), sentence2 is filler.
"""

import json
import math
import random
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModelForSequenceClassification, BertConfig, pipeline  # noqa: E402

import heads  # noqa: E402
import predict  # noqa: E402
import run_classification as rc  # noqa: E402
from script_utils import DataError  # noqa: E402
from utils_classification import LabelScheme  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

NAMES = ["体育", "财经", "科技"]  # class k <-> keyword KEYWORDS[k]
LABEL_SETS = [[0], [1], [2], [0, 1], [1, 2], [0, 2]]
SCORES = [0.5, 2.0, 3.5, 5.0]  # regression: keyword k in sentence1 -> about SCORES[k]
STS_HEADER = ["sentence1", "sentence2", "label"]


def run(model_dir, output_dir, *extra, **kwargs):
    return rc.main(h.tiny_train_args(model_dir, output_dir, *extra, **kwargs))


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def multi_label_rows(n, seed):
    """[{"text", "label": [names]}]: one or two keywords per text, in random places."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        classes = LABEL_SETS[i % len(LABEL_SETS)]
        chars = [rng.choice(h.FILLER) for _ in range(rng.randint(4, 16))]
        for k in classes:
            chars.insert(rng.randrange(len(chars) + 1), h.KEYWORDS[k])
        rows.append({"text": "".join(chars), "label": [NAMES[k] for k in classes]})
    rng.shuffle(rows)
    return rows


def sts_rows(n, seed):
    """(sentence1, sentence2, score as text with 2 decimals)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = i % len(SCORES)
        a = [rng.choice(h.FILLER) for _ in range(rng.randint(4, 12))]
        a.insert(rng.randrange(len(a) + 1), h.KEYWORDS[k])
        rows.append(("".join(a), h.filler_text(rng.randint(4, 12), seed=seed * 1000 + i),
                     f"{SCORES[k] + rng.uniform(-0.3, 0.3):.2f}"))
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory):
    return h.build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_64"), hidden_size=64)


@pytest.fixture(scope="module")
def multi(tiny64, tmp_path_factory):
    d = tmp_path_factory.mktemp("multi_label")
    h.write_jsonl(d / "train.jsonl", multi_label_rows(240, seed=1))
    h.write_jsonl(d / "dev.jsonl", multi_label_rows(60, seed=2))
    h.write_jsonl(d / "test.jsonl", multi_label_rows(42, seed=3))
    trainer = run(tiny64, d / "out", "--train_file", d / "train.jsonl", "--validation_file", d / "dev.jsonl",
                  "--test_file", d / "test.jsonl", "--do_train", "--do_eval", "--do_predict",
                  epochs=3, learning_rate="2e-3", batch_size=8)
    return {"dir": d, "out": d / "out", "trainer": trainer}


@pytest.fixture(scope="module")
def regression(tiny64, tmp_path_factory):
    d = tmp_path_factory.mktemp("regression")
    h.write_tsv(d / "train.tsv", sts_rows(240, seed=1), header=STS_HEADER)
    h.write_tsv(d / "dev.tsv", sts_rows(60, seed=2), header=STS_HEADER)
    h.write_tsv(d / "test.tsv", sts_rows(40, seed=3), header=STS_HEADER)
    trainer = run(tiny64, d / "out", "--train_file", d / "train.tsv", "--validation_file", d / "dev.tsv",
                  "--test_file", d / "test.tsv", "--do_train", "--do_eval", "--do_predict",
                  epochs=3, learning_rate="2e-3", batch_size=8)
    return {"dir": d, "out": d / "out", "trainer": trainer}


# ------------------------------------------------------------------------------------------------------------------
# Multi-label
# ------------------------------------------------------------------------------------------------------------------


def test_multi_label_is_detected_and_learned(multi):
    config = load_json(multi["out"] / "config.json")
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == sorted(NAMES)
    assert config["text_classification"]["multi_label_threshold"] == 0.5
    metrics = load_json(multi["out"] / "eval_results.json")
    # chance: every label on for every text gives micro F1 0.67 and subset accuracy 0
    assert metrics["eval_micro_f1"] > 0.9, metrics
    assert metrics["eval_subset_accuracy"] > 0.7, metrics
    assert {"eval_macro_f1", "eval_samples_f1"} <= set(metrics)
    # the training set holds one or two labels per text: the multi-hot labels the model was trained on
    train = multi["trainer"].train_dataset
    assert all(sum(label) in (1.0, 2.0) and len(label) == 3 for label in train["label"])


def test_multi_label_report_has_every_label_and_no_collapse_warning(multi):
    text = (multi["out"] / "eval_classification_report.txt").read_text(encoding="utf-8")
    for name in NAMES + ["micro avg", "macro avg", "samples avg", "subset accuracy"]:
        assert name in text
    assert "WARNING" not in text
    report = load_json(multi["out"] / "eval_classification_report.json")
    assert report["problem_type"] == "multi_label_classification"
    assert set(report["confusion_matrices"]) == set(NAMES)
    assert "warning" not in report["report"]


def test_multi_label_predictions_list_every_label_above_the_threshold(multi):
    header, rows = h.read_tsv(multi["out"] / "predict_results.tsv")
    assert header == ["line", "text", "predicted_labels", "probabilities", "label"]
    assert [int(r["line"]) for r in rows] == list(range(1, 43))
    right = 0
    for row in rows:
        labels = row["predicted_labels"].split("|") if row["predicted_labels"] else []
        probabilities = [float(p) for p in row["probabilities"].split("|")] if labels else []
        assert len(labels) == len(probabilities)
        assert all(p >= 0.5 for p in probabilities) and probabilities == sorted(probabilities, reverse=True)
        right += set(labels) == set(row["label"].split("|"))
    assert right / len(rows) > 0.7


def test_multi_label_predict_py_and_pipeline_agree_with_the_script(multi):
    out = multi["out"]
    test = [json.loads(line) for line in (multi["dir"] / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    _, rows = h.read_tsv(out / "predict_results.tsv")
    predictor = predict.load_predictor(str(out))
    results = predictor.predict([{"text": r["text"]} for r in test], top_k=0)
    for result, row in zip(results, rows):
        assert [x["label"] for x in result["labels"]] == (row["predicted_labels"].split("|")
                                                         if row["predicted_labels"] else [])
        assert "label" not in result  # a multi-label model has no single answer
        assert all(x["score"] >= 0.5 for x in result["labels"])
    # pipeline(): sigmoid per label (problem_type in config.json), scores do not sum to 1
    classifier = pipeline("text-classification", model=str(out), top_k=None)
    sums = []
    for text, result in zip([r["text"] for r in test[:8]], results[:8]):
        got = classifier(text)
        scores = {x["label"]: x["score"] for x in (got[0] if isinstance(got[0], list) else got)}
        expected = {x["label"]: x["score"] for x in result["top_k"]}
        assert scores.keys() == expected.keys()
        assert all(abs(scores[k] - expected[k]) < 1e-4 for k in scores)
        sums.append(sum(scores.values()))
    assert max(sums) > 1.5  # a text with two labels: both near 1, not a softmax

    # predict.py's command line: true labels (lists) pass through, one JSON line per input
    output = multi["dir"] / "predictions.jsonl"
    predict.main(["--model", str(out), "--input", str(multi["dir"] / "test.jsonl"), "--output", str(output)])
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(test) and lines[0]["true_label"] == test[0]["label"]
    assert [x["label"] for x in lines[0]["labels"]] == [x["label"] for x in results[0]["labels"]]


def test_multi_label_eval_only_uses_the_saved_threshold_unless_given(multi, tmp_path):
    args = ["--model_name_or_path", str(multi["out"]), "--validation_file", str(multi["dir"] / "dev.jsonl"),
            "--do_eval", "--output_dir"]
    common = ["--report_to", "none", "--per_device_eval_batch_size", "64", "--disable_tqdm", "true"]
    rc.main(args + [str(tmp_path / "saved")] + common)
    rc.main(args + [str(tmp_path / "high"), "--multi_label_threshold", "0.999"] + common)
    saved = load_json(tmp_path / "saved" / "eval_results.json")
    high = load_json(tmp_path / "high" / "eval_results.json")
    trained = load_json(multi["out"] / "eval_results.json")
    assert saved["eval_micro_f1"] == pytest.approx(trained["eval_micro_f1"])
    assert high["eval_micro_f1"] < saved["eval_micro_f1"]  # fewer labels clear 0.999


def test_multi_label_tsv_with_label_delimiter(model_dir, tmp_path):
    rows = [(r["text"], "|".join(r["label"])) for r in multi_label_rows(24, seed=5)]
    h.write_tsv(tmp_path / "train.tsv", rows, header=["text", "label"])
    h.write_tsv(tmp_path / "test.tsv", rows[:6], header=["text", "label"])
    trainer = run(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--test_file",
                  tmp_path / "test.tsv", "--label_delimiter", "|", "--multi_label_threshold", "0.3", "--do_train",
                  "--do_predict", "--max_steps", "2")
    config = trainer.model.config
    assert config.problem_type == "multi_label_classification" and config.num_labels == 3
    assert config.text_classification["multi_label_threshold"] == 0.3
    names = [config.id2label[i] for i in range(3)]
    first = trainer.train_dataset[0]
    assert {names[i] for i, on in enumerate(first["label"]) if on} == set(
        dict(rows)[first["text"]].split("|"))
    header, predicted = h.read_tsv(tmp_path / "out" / "predict_results.tsv")
    assert header[-3:] == ["predicted_labels", "probabilities", "label"]
    assert [set(r["label"].split("|")) for r in predicted] == [set(label.split("|")) for _, label in rows[:6]]


@pytest.mark.parametrize("head", ["windows", "lstm"])  # windows: its own collator; every head's loss: further down
def test_multi_label_trains_with_heads(head, model_dir, tmp_path):
    h.write_jsonl(tmp_path / "train.jsonl", multi_label_rows(16, seed=7))
    flags = ["--pooling", "mean"] if head == "mean" else ["--head", head]
    if head == "windows":
        flags += ["--max_seq_length", "8", "--window_stride", "4"]
    trainer = run(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.jsonl",
                  "--validation_file", tmp_path / "train.jsonl", "--do_train", "--do_eval", "--max_steps", "2",
                  *flags)
    metrics = load_json(tmp_path / "out" / "eval_results.json")
    assert math.isfinite(metrics["eval_loss"]) and 0 <= metrics["eval_micro_f1"] <= 1
    assert trainer.model.config.problem_type == "multi_label_classification"
    # the loss is binary cross-entropy on the multi-hot labels
    batch = trainer.data_collator([trainer.train_dataset.remove_columns(
        [c for c in trainer.train_dataset.column_names if c not in ("input_ids", "token_type_ids",
                                                                     "attention_mask", "label")])[i]
        for i in range(4)])
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(**batch)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (4, 3)
    assert out.loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(out.logits, batch["labels"]).item(),
                                            rel=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# Regression
# ------------------------------------------------------------------------------------------------------------------


def test_regression_is_detected_and_learned(regression):
    config = load_json(regression["out"] / "config.json")
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "label"}  # one output
    metrics = load_json(regression["out"] / "eval_results.json")
    assert metrics["eval_pearson"] > 0.8 and metrics["eval_spearman"] > 0.8, metrics
    assert metrics["eval_mse"] < np.var(SCORES) / 2 and metrics["eval_mae"] < 1.0, metrics
    assert metrics["eval_mse"] == pytest.approx(metrics["eval_loss"], rel=1e-4)  # the loss is MSE
    summary = load_json(regression["out"] / "data_summary.json")["splits"]["train"]["label_counts"]
    assert 0.2 <= summary["min"] < summary["max"] <= 5.3
    report = (regression["out"] / "eval_classification_report.txt").read_text(encoding="utf-8")
    assert "pearson" in report and "WARNING" not in report


def test_regression_predictions_are_numbers_everywhere(regression):
    out = regression["out"]
    header, rows = h.read_tsv(out / "predict_results.tsv")
    assert header == ["line", "sentence1", "sentence2", "prediction", "label"]
    predicted = np.array([float(r["prediction"]) for r in rows])
    gold = np.array([float(r["label"]) for r in rows])
    assert np.corrcoef(predicted, gold)[0, 1] > 0.8
    results = predict.load_predictor(str(out)).predict(
        [{"text": r["sentence1"], "text_pair": r["sentence2"]} for r in rows])
    assert [round(r["prediction"], 4) for r in results] == pytest.approx(predicted, abs=2e-4)
    assert "top_k" not in results[0] and "label" not in results[0]
    # pipeline(): no function applied to a regression output (problem_type in config.json)
    classifier = pipeline("text-classification", model=str(out))
    got = classifier({"text": rows[0]["sentence1"], "text_pair": rows[0]["sentence2"]})
    got = got[0] if isinstance(got, list) else got
    assert got["label"] == "label" and got["score"] == pytest.approx(results[0]["prediction"], abs=1e-4)


@pytest.mark.parametrize("head", ["mean", "cnn", "lstm", "gru", "attention", "windows"])
def test_every_head_computes_the_loss_of_its_problem_type(head):
    """Each custom head's loss: binary cross-entropy on multi-hot labels, MSE with one output, as
    BertForSequenceClassification computes them."""
    base = BertConfig(vocab_size=len(h.VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    ids = torch.randint(5, len(h.VOCAB), (4, 2, 6) if head == "windows" else (4, 6))
    for problem_type, num_labels, labels, reference in [
        ("multi_label_classification", 3, torch.tensor([[1., 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]]),
         lambda logits, y: F.binary_cross_entropy_with_logits(logits, y)),
        ("regression", 1, torch.tensor([0.5, 2.0, 3.5, 5.0]), lambda logits, y: F.mse_loss(logits.squeeze(-1), y)),
    ]:
        config = heads.head_config("linear" if head == "mean" else head, base,
                                   pooling="mean" if head == "mean" else None, num_labels=num_labels)
        config.problem_type = problem_type
        model = AutoModelForSequenceClassification.from_config(config)
        out = model(input_ids=ids, labels=labels)
        assert out.logits.shape == (4, num_labels)
        assert out.loss.item() == pytest.approx(reference(out.logits, labels).item(), rel=1e-5)
        out.loss.backward()
        assert model.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head", ["windows", "attention"])
def test_regression_trains_with_heads(head, model_dir, tmp_path):
    h.write_tsv(tmp_path / "train.tsv", sts_rows(16, seed=4), header=STS_HEADER)
    flags = ["--head", head, "--text_column_names", "sentence1"]
    if head == "windows":
        flags += ["--max_seq_length", "8", "--window_stride", "4"]
    trainer = run(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.tsv", "--validation_file",
                  tmp_path / "train.tsv", "--do_train", "--do_eval", "--max_steps", "2", *flags)
    assert trainer.model.config.problem_type == "regression" and trainer.model.config.num_labels == 1
    metrics = load_json(tmp_path / "out" / "eval_results.json")
    assert metrics["eval_mse"] == pytest.approx(metrics["eval_loss"], rel=1e-4)


@pytest.mark.parametrize("labels, delimiter, expected", [
    (["0", "1", "2"], None, "single_label_classification"),  # ids: classes
    (["体育", "财经"], None, "single_label_classification"),
    (["4.5", "2.0", "3"], None, "regression"),  # a number with decimals: all are numbers to predict
    (["1", "2.0", "高"], None, "single_label_classification"),  # not all numbers: class names
    (["体育|财经", "体育"], "|", "multi_label_classification"),
    ([["体育", "财经"], "体育"], None, "multi_label_classification"),  # the string is an error, in scan_file
    ([1.5, 2, 0.5], None, "regression"),  # JSON numbers
    ([1, 2, 0], None, "single_label_classification"),
])
def test_problem_type_is_detected_from_the_training_labels(labels, delimiter, expected, tmp_path):
    from types import SimpleNamespace

    from utils_classification import FileSchema, detect_problem_type

    path = h.write_jsonl(tmp_path / "train.jsonl", [{"text": "的一是", "label": label} for label in labels])
    args = SimpleNamespace(label_column_name="label", label_delimiter=delimiter, skip_bad_rows=False,
                           has_header=None, text_column_names=None)
    assert detect_problem_type(path, args, FileSchema(["text"], "label"))[0] == expected


def test_do_regression_and_problem_type_override_detection(model_dir, tmp_path):
    # whole numbers are classes unless --do_regression
    h.write_tsv(tmp_path / "int.tsv", [(h.filler_text(6, seed=i), i % 3) for i in range(12)], header=["text", "label"])
    trainer = run(model_dir, tmp_path / "numbers", "--train_file", tmp_path / "int.tsv", "--do_train",
                  "--max_steps", "1", "--do_regression")
    assert trainer.model.config.problem_type == "regression" and trainer.model.config.num_labels == 1
    assert set(trainer.train_dataset["label"]) == {0.0, 1.0, 2.0}
    # numbers with decimals are regression unless --problem_type says they are classes
    h.write_tsv(tmp_path / "float.tsv", [(h.filler_text(6, seed=i), ["0.5", "2.0"][i % 2]) for i in range(12)],
                header=["text", "label"])
    trainer = run(model_dir, tmp_path / "float_classes", "--train_file", tmp_path / "float.tsv", "--do_train",
                  "--max_steps", "1", "--problem_type", "single_label_classification")
    assert trainer.model.config.problem_type == "single_label_classification"
    assert set(trainer.model.config.id2label.values()) == {"0.5", "2.0"}


# ------------------------------------------------------------------------------------------------------------------
# Labels never silently misread: an error naming file, line and fix, before any model is built
# ------------------------------------------------------------------------------------------------------------------

GOOD = [{"text": "的一是", "label": "体育"}, {"text": "在不了", "label": "财经"}]


def bad_label_case(name, d):
    """-> (arguments, regex of the error)."""
    train = d / "train.jsonl"
    if name == "list_in_single_label_run":
        h.write_jsonl(train, GOOD + [{"text": "有和人", "label": ["体育", "财经"]}])
        return (["--problem_type", "single_label_classification"],
                re.escape(f"{train}:3: the label in column 'label' is a list [\"体育\", \"财经\"], but this run is "
                          "single-label") + ".*write every training label as a list")
    if name == "single_value_in_multi_label_file":
        h.write_jsonl(train, [{"text": "的一是", "label": ["体育"]}, {"text": "在不了", "label": "财经"}])
        return [], re.escape(f"{train}:2: label \"财经\" in column 'label' is a single value in a multi-label run; "
                             "write it as a list [\"财经\"]")
    if name == "dict":
        h.write_jsonl(train, GOOD + [{"text": "有和人", "label": {"name": "体育"}}])
        return [], re.escape(f"{train}:3: the label in column 'label' is a JSON object")
    if name == "nan":
        h.write_lines(train, ['{"text": "的一是", "label": 1.5}', '{"text": "在不了", "label": NaN}'])
        return [], re.escape(f"{train}:2: empty label in column 'label'; fill it in or remove the line (it is NaN)")
    if name == "null":
        h.write_jsonl(train, GOOD + [{"text": "有和人", "label": None}])
        return [], re.escape(f"{train}:3: empty label in column 'label'")
    if name == "not_a_number_in_regression":
        tsv = d / "train.tsv"
        h.write_tsv(tsv, [("的一是", "1.5"), ("在不了", "高")], header=["text", "label"])
        return (["--train_file", str(tsv), "--do_regression"],
                re.escape(f"{tsv}:3: label \"高\" in column 'label' is not a number") + ".*drop --do_regression")
    if name == "nan_in_regression_tsv":
        tsv = d / "train.tsv"
        h.write_tsv(tsv, [("的一是", "1.5"), ("在不了", "nan"), ("有和人", "2.5")], header=["text", "label"])
        return ["--train_file", str(tsv)], re.escape(f"{tsv}:3: label \"nan\" in column 'label' is not a finite")
    if name == "nested_list":
        h.write_jsonl(train, [{"text": "的一是", "label": ["体育", ["财经"]]}])
        return [], re.escape(f"{train}:1: label [\"体育\", [\"财经\"]] in column 'label': every item")
    if name == "validation_list_for_a_single_label_model":
        h.write_jsonl(train, GOOD * 2)
        dev = d / "dev.jsonl"
        h.write_jsonl(dev, GOOD + [{"text": "有和人", "label": ["体育"]}])
        return (["--validation_file", str(dev), "--do_eval"],
                re.escape(f"{dev}:3: the label in column 'label' is a list [\"体育\"], but this run is single-label"))
    raise KeyError(name)


@pytest.mark.parametrize("case", ["list_in_single_label_run", "single_value_in_multi_label_file", "dict", "nan",
                                  "null", "not_a_number_in_regression", "nan_in_regression_tsv", "nested_list",
                                  "validation_list_for_a_single_label_model"])
def test_labels_are_never_silently_misread(case, model_dir, tmp_path, monkeypatch):
    extra, pattern = bad_label_case(case, tmp_path)
    if "--train_file" not in extra:
        extra = ["--train_file", str(tmp_path / "train.jsonl")] + extra
    monkeypatch.setattr(rc.AutoModelForSequenceClassification, "from_config",
                        lambda *a, **k: pytest.fail("model built before the labels were checked"))
    with pytest.raises(DataError) as excinfo:
        run(model_dir, tmp_path / "out", "--do_train", *extra)
    message = str(excinfo.value)
    assert re.search(pattern, message), f"\n{message}\ndoes not match\n{pattern}"
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_flags_that_do_not_fit_the_problem_type_are_refused(model_dir, tmp_path):
    h.write_jsonl(tmp_path / "train.jsonl", multi_label_rows(8, seed=9))
    with pytest.raises(ValueError, match=re.escape("--class_weights weights cross-entropy (single-label "
                                                   "classification), not multi_label_classification")):
        run(model_dir, tmp_path / "a", "--train_file", tmp_path / "train.jsonl", "--do_train",
            "--class_weights", "auto")
    with pytest.raises(ValueError, match=re.escape("--multi_label_threshold 1.5: a probability in (0, 1)")):
        run(model_dir, tmp_path / "b", "--train_file", tmp_path / "train.jsonl", "--do_train",
            "--multi_label_threshold", "1.5")


# ------------------------------------------------------------------------------------------------------------------
# The collapse guard speaks for each problem type, and only when the model has collapsed
# ------------------------------------------------------------------------------------------------------------------


def test_collapse_warning_per_problem_type():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, size=(40, 3))
    multi = LabelScheme("multi_label_classification", NAMES)
    assert multi.collapse_warning(gold, gold.astype(float)) is None
    empty = np.zeros_like(gold)
    assert "the label set {}" in multi.collapse_warning(empty, gold.astype(float))
    values = rng.uniform(0, 5, size=40)
    regression = LabelScheme("regression", ["score"])
    assert regression.collapse_warning(values + rng.normal(0, 0.5, size=40), values) is None
    assert "collapsed" in regression.collapse_warning(np.full(40, 2.5), values)
    assert regression.metrics(values, np.full(40, 2.5))["pearson"] == 0.0  # undefined correlation: no relation
    single = LabelScheme("single_label_classification", NAMES)
    assert "class '体育'" in single.collapse_warning(np.zeros(40, dtype=int), rng.integers(0, 3, size=40))
