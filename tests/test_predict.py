"""predict.py through main([...]): a model trained by run_classification.py predicts the same labels and
probabilities as the script's own --do_predict (same truncation, pairs, sliding windows), from text arguments, stdin
or a TSV / JSON-lines file, in any batch size. Tiny BERTs trained for a few steps; nothing downloaded."""

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import numpy as np  # noqa: E402

import predict  # noqa: E402
import run_classification as rc  # noqa: E402
from script_utils import DataError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")
CLASS_NAMES = ["体育", "财经", "科技"]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def script_predictions(out):
    return h.read_tsv(out / "predict_results.tsv")[1]


def assert_same_as_script(results, rows):
    assert len(results) == len(rows)
    for result, row in zip(results, rows):
        assert result["label"] == row["predicted_label"]
        assert abs(result["score"] - float(row["probability"])) < 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3 classes with names from class.txt; max_seq_length 12 with head+tail truncation, so most texts are cut."""
    d = tmp_path_factory.mktemp("predict_trained")
    rows = h.keyword_rows(240, n_classes=3, seed=4, min_len=4, max_len=30)
    h.write_tsv(d / "train.tsv", rows[:180])
    h.write_tsv(d / "dev.tsv", rows[180:210])
    h.write_tsv(d / "test.tsv", rows[210:])
    h.write_label_file(d / "class.txt", CLASS_NAMES)
    model_dir = h.build_tiny_bert(d / "tiny")
    out = d / "out"
    rc.main(h.tiny_train_args(model_dir, out, "--train_file", d / "train.tsv", "--validation_file", d / "dev.tsv",
                              "--test_file", d / "test.tsv", "--label_file", d / "class.txt", "--do_train",
                              "--do_eval", "--do_predict", "--max_seq_length", "12", "--truncation_strategy",
                              "head+tail", "--head_tokens", "3", epochs=2, learning_rate="5e-3"))
    return {"dir": d, "out": out, "test": rows[210:]}


def test_file_input_matches_the_scripts_predictions(trained, tmp_path):
    results = predict.main(["--model", str(trained["out"]), "--input", str(trained["dir"] / "test.tsv"),
                            "--output", str(tmp_path / "p.jsonl")])
    assert read_jsonl(tmp_path / "p.jsonl") == results
    assert_same_as_script(results, script_predictions(trained["out"]))
    assert [r["text"] for r in results] == [t for t, _ in trained["test"]]
    assert [r["true_label"] for r in results] == [str(label) for _, label in trained["test"]]  # ids, as in the file
    summary = json.loads((trained["out"] / "data_summary.json").read_text(encoding="utf-8"))
    assert sum(r["truncated"] for r in results) == summary["splits"]["test"]["truncated"] > 0
    assert {r["label"] for r in results} <= set(CLASS_NAMES)


def test_arguments_stdin_and_jsonl_agree(trained, tmp_path, monkeypatch, capsys):
    texts = [t for t, _ in trained["test"][:4]]
    from_args = predict.main(["--model", str(trained["out"]), *texts])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # stdout: JSON lines only
    assert printed == from_args

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(texts) + "\n\n"))
    from_stdin = predict.main(["--model", str(trained["out"])])
    h.write_jsonl(tmp_path / "in.jsonl", [{"id": f"x{i}", "text": t} for i, t in enumerate(texts)])
    from_jsonl = predict.main(["--model", str(trained["out"]), "--input", str(tmp_path / "in.jsonl")])
    assert [r["id"] for r in from_jsonl] == ["x0", "x1", "x2", "x3"]
    for a, b, c in zip(from_args, from_stdin, from_jsonl):
        assert a["text"] == b["text"] == c["text"]
        assert a["label"] == b["label"] == c["label"] and a["score"] == b["score"] == c["score"]


def test_top_k_probabilities(trained):
    text = trained["test"][0][0]
    (two,) = predict.main(["--model", str(trained["out"]), "--top_k", "2", text])
    assert len(two["top_k"]) == 2 and two["top_k"][0] == {"label": two["label"], "score": two["score"]}
    assert two["top_k"][0]["score"] >= two["top_k"][1]["score"]
    (everything,) = predict.main(["--model", str(trained["out"]), "--top_k", "0", text])
    assert sorted(x["label"] for x in everything["top_k"]) == sorted(CLASS_NAMES)
    assert abs(sum(x["score"] for x in everything["top_k"]) - 1) < 1e-4


def test_batch_size_and_padding_do_not_change_logits(trained):
    predictor = predict.load_predictor(str(trained["out"]), device="cpu")
    records = [{"text": t} for t, _ in trained["test"]]
    one, _ = predictor.logits(records, batch_size=1)
    many, _ = predictor.logits(records, batch_size=64)  # padded to the longest text of the batch
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_long_texts_are_cut_as_in_training(trained):
    predictor = predict.load_predictor(str(trained["out"]), device="cpu")
    assert (predictor.max_seq_length, predictor.truncation_strategy, predictor.head_tokens) == (12, "head+tail", 3)
    text = "首" + h.filler_text(30, seed=1) + "尾"
    (feature,), (truncated,) = predictor.encode([{"text": text}])
    tokens = predictor.tokenizer.convert_ids_to_tokens(feature["input_ids"])
    expected = ["[CLS]"] + list(text[:3]) + list(text[-7:]) + ["[SEP]"]  # 3 head + 7 tail = 12 - 2 special
    assert tokens == expected and truncated


def test_bf16_autocast_runs(trained):
    fp32 = predict.main(["--model", str(trained["out"]), "--input", str(trained["dir"] / "test.tsv")])
    bf16 = predict.main(["--model", str(trained["out"]), "--input", str(trained["dir"] / "test.tsv"), "--bf16"])
    assert max(abs(a["score"] - b["score"]) for a, b in zip(fp32, bf16)) < 0.05


def test_sentence_pair_model(model_dir, tmp_path):
    rows = h.keyword_rows(48, n_classes=2, seed=9)
    records = [{"sentence1": t, "sentence2": h.filler_text(5 + i % 7, seed=i), "label": str(l)}
               for i, (t, l) in enumerate(rows)]
    h.write_jsonl(tmp_path / "train.jsonl", records[:32])
    h.write_jsonl(tmp_path / "test.jsonl", records[32:])
    out = tmp_path / "out"
    rc.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.jsonl", "--test_file",
                              tmp_path / "test.jsonl", "--do_train", "--do_predict", "--max_seq_length", "16",
                              "--max_steps", "2"))
    results = predict.main(["--model", str(out), "--input", str(tmp_path / "test.jsonl")])
    assert_same_as_script(results, script_predictions(out))
    assert results[0]["text_pair"] == records[32]["sentence2"] and results[0]["true_label"] == records[32]["label"]
    pairs = predict.main(["--model", str(out), records[32]["sentence1"], records[32]["sentence2"]])
    assert pairs[0]["label"] == results[0]["label"] and pairs[0]["score"] == results[0]["score"]
    with pytest.raises(DataError, match="give the texts in pairs"):
        predict.main(["--model", str(out), "one text only"])


def test_sliding_windows_model(model_dir, tmp_path):
    rows = [(h.filler_text(8 + 3 * i, seed=i) + "甲乙"[i % 2] + h.filler_text(5, seed=99 + i), i % 2)
            for i in range(24)]
    h.write_tsv(tmp_path / "train.tsv", rows[:16])
    h.write_tsv(tmp_path / "test.tsv", rows[16:])
    out = tmp_path / "out"
    rc.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.tsv", "--test_file",
                              tmp_path / "test.tsv", "--do_train", "--do_predict", "--head", "windows",
                              "--max_seq_length", "10", "--window_stride", "4", "--max_windows", "3",
                              "--max_steps", "2"))
    predictor = predict.load_predictor(str(out), device="cpu")
    assert predictor.windows and (predictor.window_stride, predictor.max_windows) == (4, 3)
    (feature,), _ = predictor.encode([{"text": rows[-1][0]}])
    assert len(feature["input_ids"]) == 3 and all(len(w) <= 10 for w in feature["input_ids"])
    results = predict.main(["--model", str(out), "--input", str(tmp_path / "test.tsv"), "--batch_size", "3"])
    assert_same_as_script(results, script_predictions(out))


@pytest.mark.parametrize("content, name, message", [
    (None, "missing.tsv", r"missing.tsv: file not found"),
    ("text\tlabel\n\t0\n", "empty.tsv", r"empty.tsv:2: empty text"),
    ("sentence\tlabel\n甲\t0\n", "header.tsv", r"header.tsv:1: the header \['sentence', 'label'\] lacks \['text'\]"),
    ('{"text": "甲"}\n{"text": \n', "broken.jsonl", r"broken.jsonl:2: invalid JSON"),
    ('{"content": "甲"}\n', "keys.jsonl", r"keys.jsonl:1: no 'text' field \(the keys are \['content'\]\)"),
])
def test_bad_input_names_the_file_and_line(trained, tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        predict.main(["--model", str(trained["out"]), "--input", str(path)])


def test_task_is_read_from_the_config(model_dir, tmp_path):
    from transformers import AutoConfig, BertForTokenClassification

    config = AutoConfig.from_pretrained(str(model_dir))
    assert predict.detect_task(type(config)(architectures=["BertForSequenceClassification"])) == "text-classification"
    config.token_classification = {"max_seq_length": 32, "chunk_stride": 16}
    assert predict.detect_task(config) == "token-classification"
    with pytest.raises(ValueError, match="Cannot tell the task"):
        predict.detect_task(type(config)(architectures=["BertModel"]))
    # NER / QA models: dispatched to their predictors by the settings their scripts save
    config.num_labels = 3
    ner_dir = tmp_path / "ner"
    BertForTokenClassification(config).save_pretrained(str(ner_dir))
    h.build_tiny_bert(ner_dir)  # the tokenizer (and a config that would say nothing about the task) ...
    config.save_pretrained(str(ner_dir))  # ... replaced by the NER one
    assert isinstance(predict.load_predictor(str(ner_dir), device="cpu"), predict.TokenClassificationPredictor)


# ------------------------------------------------------------------------------------------------------------------
# NER (run_ner.py) and QA (run_qa.py) models: the same answers as the scripts' own --do_predict
# ------------------------------------------------------------------------------------------------------------------


def conll_sentences(n, seed):
    import random

    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        chars, tags = [], []
        for _ in range(rng.randint(1, 3)):
            filler = [rng.choice(h.FILLER) for _ in range(rng.randint(1, 6))]
            entity = [rng.choice("甲乙")] + ["丙"] * rng.randint(0, 2)
            chars += filler + entity
            tags += ["O"] * len(filler) + ["B-PER"] + ["I-PER"] * (len(entity) - 1)
        sentences.append((chars, tags))
    return sentences


def write_conll(path, sentences):
    lines = []
    for chars, tags in sentences:
        lines += [f"{c} {t}" for c, t in zip(chars, tags)] + [""]
    return h.write_lines(path, lines[:-1])


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_ner_model_matches_run_ner(model_dir, tmp_path, head):
    run_ner = pytest.importorskip("run_ner")
    write_conll(tmp_path / "train.txt", conll_sentences(64, seed=1))
    test = conll_sentences(12, seed=2)
    write_conll(tmp_path / "test.txt", test)
    out = tmp_path / "out"
    # max_seq_length 12: sentences of up to ~27 characters are cut into overlapping chunks and merged back
    run_ner.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.txt", "--test_file",
                                   tmp_path / "test.txt", "--do_train", "--do_predict", "--head", head,
                                   "--max_seq_length", "12", "--chunk_stride", "5", epochs=2, learning_rate="5e-3"))
    expected = read_jsonl(out / "predict_entities.jsonl")
    texts = ["".join(chars) for chars, _ in test]
    assert [e["text"] for e in expected] == texts
    results = predict.main(["--model", str(out), *texts])
    assert [r["entities"] for r in results] == [e["entities"] for e in expected]
    assert any(r["entities"] for r in results)  # it found entities: the comparison is not between empty lists
    for r in results:
        for entity in r["entities"]:
            assert r["text"][entity["start"]:entity["end"]] == entity["text"]


def test_qa_model_matches_run_qa(tmp_path):
    run_qa = pytest.importorskip("run_qa")
    vocab = h.VOCAB + [c for c in "什么答案？" if c not in h.VOCAB]
    model_dir = h.build_tiny_bert(tmp_path / "tiny_qa", vocab=vocab)

    def squad(path, n, seed, long=False):
        import random

        rng = random.Random(seed)
        paragraphs = []
        for i in range(n):
            context = h.filler_text(rng.randint(40, 70) if long else rng.randint(10, 25), seed=seed * 100 + i)
            start = rng.randint(0, len(context) - 3)
            answer = context[start:start + rng.randint(1, 3)]
            paragraphs.append({"context": context, "qas": [{"id": f"{seed}-{i}", "question": "什么是答案？",
                                                            "answers": [{"text": answer, "answer_start": start}]}]})
        path.write_text(json.dumps({"version": "v1", "data": [{"title": "t", "paragraphs": paragraphs}]},
                                   ensure_ascii=False), encoding="utf-8")
        return [(p["qas"][0]["id"], p["context"]) for p in paragraphs]

    squad(tmp_path / "train.json", 48, seed=1)
    test = squad(tmp_path / "test.json", 8, seed=2, long=True)  # contexts of several windows
    out = tmp_path / "out"
    run_qa.main(h.tiny_train_args(model_dir, out, "--train_file", tmp_path / "train.json", "--test_file",
                                  tmp_path / "test.json", "--do_train", "--do_predict", "--max_seq_length", "32",
                                  "--doc_stride", "8", "--max_query_length", "12", epochs=2, learning_rate="5e-3"))
    expected = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    from_squad = predict.main(["--model", str(out), "--input", str(tmp_path / "test.json"), "--top_k", "3"])
    assert {r["id"]: r["answer"] for r in from_squad} == expected
    for r, (qid, context) in zip(from_squad, test):
        assert r["id"] == qid and len(r["n_best"]) == 3
        assert r["answer"] == "" or context[r["start"]:r["end"]] == r["answer"]
    h.write_jsonl(tmp_path / "test.jsonl", [{"id": qid, "question": "什么是答案？", "context": c} for qid, c in test])
    from_jsonl = predict.main(["--model", str(out), "--input", str(tmp_path / "test.jsonl")])
    assert [r["answer"] for r in from_jsonl] == [r["answer"] for r in from_squad]
    (one,) = predict.main(["--model", str(out), "什么是答案？", test[0][1]])
    assert one["answer"] == from_squad[0]["answer"] and one["score"] == from_squad[0]["score"]
