"""Tests for run_ner.py and the token-classification heads (heads/modeling_token_heads.py).

Everything runs through `run_ner.main()` on a tiny BERT (hidden 32, 2 layers) with fixtures written here; nothing is
downloaded and none of the benchmark datasets is read. The CRF is also checked on its own against brute force.

Run with: pytest -q tests/test_run_ner.py --durations=5
"""

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path)

import heads  # noqa: E402
import run_ner  # noqa: E402
import utils_ner  # noqa: E402
from heads.modeling_token_heads import CRF, allowed_transitions  # noqa: E402
from script_utils import DataError  # noqa: E402
from transformers import AutoModelForTokenClassification, AutoTokenizer, BertConfig, BertForMaskedLM  # noqa: E402

# Entities of the learnable fixture: PER = 甲 乙..., LOC = 丙 丁...; the rest is filler. Names have no hyphen on
# purpose: they become directory names, and a directory name becomes a module name under trust_remote_code.
TYPES = {"PER": ("甲", "乙"), "LOC": ("丙", "丁")}
HEADS = list(heads.TOKEN_HEAD_NAMES)
LSTM_ARGS = ["--rnn_hidden_size", "8"]


# ------------------------------------------------------------------------------------------------------------------
# Fixture data: sentences as (characters, [(start, end_exclusive, type)]) written in every format
# ------------------------------------------------------------------------------------------------------------------


def make_sentences(n, seed=0, min_filler=1, max_filler=5, max_entities=2):
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        chars, spans = [], []
        for _ in range(rng.randint(1, max_entities)):
            chars += [rng.choice(h.FILLER) for _ in range(rng.randint(min_filler, max_filler))]
            entity_type = rng.choice(sorted(TYPES))
            first, rest = TYPES[entity_type]
            start = len(chars)
            chars += [first] + [rest] * rng.randint(0, 2)
            spans.append((start, len(chars), entity_type))
        chars += [rng.choice(h.FILLER) for _ in range(rng.randint(0, 3))]
        sentences.append(("".join(chars), spans))
    return sentences


def long_sentences(sentences, k):
    """Concatenate every k sentences into one (entities shifted): sentences longer than a small max_seq_length."""
    out = []
    for i in range(0, len(sentences) - k + 1, k):
        text, spans = "", []
        for t, s in sentences[i:i + k]:
            spans += [(a + len(text), b + len(text), ty) for a, b, ty in s]
            text += t
        out.append((text, spans))
    return out


def tags_of(text, spans, scheme):
    """Tags as a file in `scheme` writes them: BIO, BIOES, BMES, BILOU."""
    tags = ["O"] * len(text)
    for start, end, entity_type in spans:
        if scheme == "BIO":
            tags[start:end] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (end - start - 1)
            continue
        inside, last, single = {"BIOES": ("I", "E", "S"), "BMES": ("M", "E", "S"), "BILOU": ("I", "L", "U")}[scheme]
        if end - start == 1:
            tags[start] = f"{single}-{entity_type}"
        else:
            tags[start:end] = ([f"B-{entity_type}"] + [f"{inside}-{entity_type}"] * (end - start - 2)
                               + [f"{last}-{entity_type}"])
    return tags


def write_conll(path, sentences, scheme="BIO", sep=" ", extra_column=False, with_tags=True):
    lines = []
    for text, spans in sentences:
        for ch, tag in zip(text, tags_of(text, spans, scheme)):
            fields = [ch] + (["x"] if extra_column else []) + ([tag] if with_tags else [])
            lines.append(sep.join(fields))
        lines.append("")
    return h.write_lines(path, lines[:-1])


def write_cluener(path, sentences, with_labels=True):
    records = []
    for i, (text, spans) in enumerate(sentences):
        record = {"id": i, "text": text}
        if with_labels:
            label = {}
            for start, end, entity_type in spans:
                label.setdefault(entity_type, {}).setdefault(text[start:end], []).append([start, end - 1])
            record["label"] = label
        records.append(record)
    return h.write_jsonl(path, records)


def write_tokens(path, sentences, scheme="BIO"):
    return h.write_jsonl(path, [{"tokens": list(text), "tags": tags_of(text, spans, scheme)}
                                for text, spans in sentences])


def entity_set(text, spans):
    return sorted((text[s:e], t, s, e) for s, e, t in spans)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_sentences(path, **data_args):
    args = run_ner.DataTrainingArguments(**data_args)
    return utils_ner.FileReader(str(path), args).sentences()


def run(model_dir, out, *extra, epochs=1, learning_rate="5e-3", batch_size=16):
    return run_ner.main(h.tiny_train_args(model_dir, out, *extra, epochs=epochs, learning_rate=learning_rate,
                                          batch_size=batch_size))


# ------------------------------------------------------------------------------------------------------------------
# Formats and schemes
# ------------------------------------------------------------------------------------------------------------------

FORMATS = {
    "conll_bio_space": lambda p, s: write_conll(p.with_suffix(".txt"), s, "BIO"),
    "conll_bioes_tab": lambda p, s: write_conll(p.with_suffix(".txt"), s, "BIOES", sep="\t"),
    "conll_bmes_extra_column": lambda p, s: write_conll(p.with_suffix(".conll"), s, "BMES", extra_column=True),
    "conll_bilou": lambda p, s: write_conll(p.with_suffix(".bio"), s, "BILOU"),
    "cluener": lambda p, s: write_cluener(p.with_suffix(".json"), s),
    "tokens_bio": lambda p, s: write_tokens(p.with_suffix(".jsonl"), s, "BIO"),
    "tokens_bmes": lambda p, s: write_tokens(p.with_suffix(".json"), s, "BMES"),
}
EXPECTED_SCHEME = {"conll_bio_space": "BIO", "conll_bioes_tab": "BIOES", "conll_bmes_extra_column": "BMES",
                   "conll_bilou": "BILOU", "cluener": "spans", "tokens_bio": "BIO", "tokens_bmes": "BMES"}


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_and_scheme_reads_the_same_entities(tmp_path, name):
    sentences = make_sentences(12, seed=3) + [("甲乙", [(0, 2, "PER")]), ("丙", [(0, 1, "LOC")])]
    path = FORMATS[name](tmp_path / "data", sentences)
    reader = utils_ner.FileReader(str(path), run_ner.DataTrainingArguments())
    got = reader.sentences()
    assert reader.scheme == EXPECTED_SCHEME[name]
    assert not reader.repaired and not reader.skipped
    assert [(s.text(), s.spans) for s in got] == [(t, sorted(sp)) for t, sp in sentences]
    if name.startswith("conll"):  # CoNLL keeps the line of every character, for error messages
        assert got[1].unit_lines[0] == len(sentences[0][0]) + 2


def test_formats_round_trip_through_main(model_dir, tmp_path):
    """Train on BIOES CoNLL, evaluate on CLUENER JSON, predict on BMES tokens/tags: the gold entities come out as the
    fixture's entities in character offsets; the CoNLL and CLUENER prediction files read back to the same entities
    as predict_entities.jsonl."""
    train, dev, test = make_sentences(24, seed=1), make_sentences(8, seed=2), make_sentences(10, seed=4)
    write_conll(tmp_path / "train.txt", train, "BIOES", sep="\t")
    write_cluener(tmp_path / "dev.json", dev)
    write_tokens(tmp_path / "test.jsonl", test, "BMES")
    out = tmp_path / "out"
    run(model_dir, out, "--train_file", tmp_path / "train.txt", "--validation_file", tmp_path / "dev.json",
        "--test_file", tmp_path / "test.jsonl", "--do_train", "--do_eval", "--do_predict", "--label_scheme", "BIOES",
        "--eval_strategy", "no")
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary["label_scheme"] == "BIOES"
    assert summary["labels"][:5] == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    assert [summary["splits"][s]["tag_scheme_in_file"] for s in ("train", "validation", "test")] == \
        ["BIOES", "spans", "BMES"]
    predicted = read_jsonl(out / "predict_entities.jsonl")
    assert len(predicted) == len(test)
    for record, (text, spans) in zip(predicted, test):
        assert record["text"] == text
        assert sorted((e["text"], e["type"], e["start"], e["end"]) for e in record["gold_entities"]) == \
            entity_set(text, spans)
        for e in record["entities"]:
            assert text[e["start"]:e["end"]] == e["text"]
    # predict_tags.conll: char, gold, predicted (the last column); read back, the predictions are the same entities
    back = read_sentences(out / "predict_tags.conll")
    assert [(s.text(), sorted((s.text()[a:b], t, a, b) for a, b, t in s.spans)) for s in back] == \
        [(r["text"], sorted((e["text"], e["type"], e["start"], e["end"]) for e in r["entities"])) for r in predicted]
    gold_back = read_sentences(out / "predict_tags.conll", tag_column=1)
    assert [s.spans for s in gold_back] == [sorted(sp) for _, sp in test]
    eval_report = json.loads((out / "eval_entity_report.json").read_text())
    assert eval_report["scheme"] == "BIOES" and set(eval_report["per_type"]) >= {"PER", "LOC", "micro avg"}


def test_cluener_predictions_in_cluener_format(model_dir, tmp_path):
    test = make_sentences(6, seed=5)
    write_cluener(tmp_path / "train.json", make_sentences(16, seed=6))
    write_cluener(tmp_path / "test.json", test, with_labels=False)
    out = tmp_path / "out"
    run(model_dir, out, "--train_file", tmp_path / "train.json", "--test_file", tmp_path / "test.json",
        "--do_train", "--do_predict", "--max_steps", "1")
    rows = read_jsonl(out / "predict_cluener.json")
    entities = read_jsonl(out / "predict_entities.jsonl")
    assert [r["id"] for r in rows] == list(range(6)) and [r["text"] for r in rows] == [t for t, _ in test]
    assert all("gold_entities" not in r for r in entities)  # the test file has no labels
    assert not (out / "predict_entity_report.txt").exists()
    for row, record in zip(rows, entities):
        spans = sorted((s, e + 1, t) for t, ents in row["label"].items() for ps in ents.values() for s, e in ps)
        assert spans == sorted((e["start"], e["end"], e["type"]) for e in record["entities"])
    assert len(read_sentences(out / "predict_cluener.json")) == 6  # valid CLUENER: spans match the text


# ------------------------------------------------------------------------------------------------------------------
# Learning, chunking, alignment
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learned(model_dir, tmp_path_factory):
    """A CRF trained on the learnable fixture; validated and tested on long sentences cut into chunks (max 16
    tokens), so every character must come back from overlapping chunks."""
    root = tmp_path_factory.mktemp("learned")
    train = make_sentences(96, seed=10)
    dev = long_sentences(make_sentences(40, seed=11), 4)  # 10 sentences of 4 pieces, about 40-60 characters
    write_conll(root / "train.txt", train)
    write_cluener(root / "dev.json", dev)
    write_conll(root / "test.txt", dev, "BIOES")
    out = root / "out"
    trainer = run(model_dir, out, "--train_file", root / "train.txt", "--validation_file", root / "dev.json",
                  "--test_file", root / "test.txt", "--do_train", "--do_eval", "--do_predict", "--head", "crf",
                  "--max_seq_length", "16", "--chunk_stride", "5", "--head_learning_rate", "2e-2",
                  "--eval_strategy", "epoch", epochs=6)
    return root, out, dev, trainer


def test_learnable_fixture_reaches_high_entity_f1(learned):
    _, out, _, trainer = learned
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_f1"] > 0.8, results
    assert results["predict_f1"] == pytest.approx(results["eval_f1"])  # the same sentences, BIOES tags
    assert 0 < results["eval_macro_f1"] <= 1 and results["eval_samples"] == 10
    history = [h["eval_f1"] for h in trainer.state.log_history if "eval_f1" in h]
    assert len(history) == 6 and history[-1] > history[0]  # one evaluation per epoch
    for name in ("eval_entity_report.txt", "eval_entity_report.json", "predict_entity_report.txt",
                 "training_curves.png", "data_summary.json", "config.json", "modeling_token_heads.py", "README.md"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: token-classification" in card and "trust_remote_code=True" in card
    text = (out / "eval_entity_report.txt").read_text()
    assert "PER" in text and "LOC" in text and "micro avg" in text


def test_chunking_covers_every_character(learned):
    _, out, dev, _ = learned
    summary = json.loads((out / "data_summary.json").read_text())
    split = summary["splits"]["validation"]
    assert split["sentences_chunked"] == split["sentences"] == 10 and split["chunks"] > 30
    predicted = read_jsonl(out / "predict_entities.jsonl")
    conll = read_sentences(out / "predict_tags.conll", tag_column=1)  # the gold column
    for (text, spans), record, sentence in zip(dev, predicted, conll):
        assert len(text) > 16 and record["text"] == text and sentence.text() == text  # one line per character
        assert sorted((e["start"], e["end"], e["type"]) for e in record["gold_entities"]) == sorted(spans)
        assert sentence.spans == sorted(spans)  # no entity lost at a chunk boundary


def test_plan_chunks_properties():
    rng = random.Random(0)
    for _ in range(300):
        counts = [rng.choice([1, 1, 1, 2, 3]) for _ in range(rng.randint(1, 40))]
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        budget = rng.randint(3, 12)
        stride = rng.randint(1, budget)
        chunks = utils_ner.plan_chunks(offsets, budget, stride)
        assert chunks[0][0] == 0 and chunks[-1][1] == len(counts)
        for (s, e), (s2, _) in zip(chunks, chunks[1:]):
            assert s < s2 <= e  # progress and no gap
        for s, e in chunks:
            assert e > s and offsets[e] - offsets[s] <= budget
        if offsets[-1] <= budget:
            assert chunks == [(0, len(counts))]


def conll_columns(path):
    """Sentences of a written predict_tags.conll as lists of tab-separated fields per character."""
    blocks = Path(path).read_text(encoding="utf-8").split("\n\n")
    return [[line.split("\t") for line in block.split("\n")] for block in blocks if block.strip()]


def forbidden_steps(tags):
    """(position, previous, tag) where a BIO tag sequence takes a transition the scheme forbids."""
    bad = []
    for i, tag in enumerate(tags):
        previous = tags[i - 1] if i else "O"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            bad.append((i, previous, tag))
    return bad


def test_crf_predictions_respect_the_scheme(learned):
    _, out, dev, _ = learned
    sentences = conll_columns(out / "predict_tags.conll")
    assert len(sentences) == len(dev)
    for fields in sentences:
        assert all(len(f) == 3 for f in fields)  # char, gold, predicted
        assert forbidden_steps([f[2] for f in fields]) == []


def test_alignment_keeps_one_label_per_character(model_dir, tmp_path):
    """Spaces (dropped by the tokenizer), full-width and Latin letters (not in the vocab) and a rare character
    (-> [UNK]) each keep their one label, inside and outside entities; offsets are those of the original text. (The
    CRF learns quickly that an [UNK] between B-PER and I-PER must be I-PER: O -> I-PER is forbidden.)"""
    text = "的 甲\u3000乙是Ａ丙龘丁了x"  # 的 _ 甲 _ 乙 是 Ａ 丙 龘 丁 了 x
    spans = [(2, 5, "PER"), (7, 10, "LOC")]  # "甲\u3000乙" and "丙龘丁"
    train = make_sentences(32, seed=7) + [(text, spans)] * 8
    write_cluener(tmp_path / "train.json", train)
    write_cluener(tmp_path / "test.json", [(text, spans)])
    out = tmp_path / "out"
    run(model_dir, out, "--train_file", tmp_path / "train.json", "--test_file", tmp_path / "test.json",
        "--do_train", "--do_predict", "--show_examples", "1", "--head", "crf", epochs=8)
    summary = json.loads((out / "data_summary.json").read_text())["splits"]["test"]
    assert summary["characters_by_tokenizer"] == {"dropped by the tokenizer -> [UNK]": 2,
                                                  "not in the vocab -> [UNK]": 3}
    fields = conll_columns(out / "predict_tags.conll")[0]
    assert [f[0] for f in fields] == list(text)  # every character, the space and U+3000 included
    assert [f[1] for f in fields] == tags_of(text, spans, "BIO")
    record = read_jsonl(out / "predict_entities.jsonl")[0]
    assert sorted((e["text"], e["start"], e["end"]) for e in record["gold_entities"]) == \
        [("丙龘丁", 7, 10), ("甲\u3000乙", 2, 5)]
    assert {(e["text"], e["type"]) for e in record["entities"]} == {("甲\u3000乙", "PER"), ("丙龘丁", "LOC")}


def test_label_all_tokens(model_dir, tmp_path):
    """Units of several sub-tokens (a tokens/tags file with two-character tokens): the first sub-token, or all of
    them with B->I relabelling; the unit's prediction maps back to the unit."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    char_tokenizer = utils_ner.CharTokenizer(tokenizer, 10)
    sentence = utils_ner.Sentence(line=1, units=["的", "甲乙", "乙", "是"], spans=[(1, 3, "PER")])
    label2id = {n: i for i, n in enumerate(utils_ner.label_names(["PER"], "BIOES"))}
    id2label = {i: n for n, i in label2id.items()}
    first, _, offsets, stats = utils_ner.encode_split([sentence], char_tokenizer, tokenizer, label2id, "BIOES", 10, 5,
                                                    False)
    every, *_ = utils_ner.encode_split([sentence], char_tokenizer, tokenizer, label2id, "BIOES", 10, 5, True)
    assert [id2label.get(i, "-") for i in first["labels"][0]] == ["-", "O", "B-PER", "-", "E-PER", "O", "-"]
    assert [id2label.get(i, "-") for i in every["labels"][0]] == ["-", "O", "B-PER", "I-PER", "E-PER", "O", "-"]
    assert offsets == [[0, 1, 3, 4, 5]] and stats["split"] == 1
    # decoding: a unit's tag comes from its sub-tokens (first: type and begin; last: end)
    scores = torch.full((5, len(label2id)), -5.0)
    for position, tag in enumerate(["O", "B-PER", "I-PER", "E-PER", "O"]):
        scores[position, label2id[tag]] = 5.0
    tags = utils_ner.decode_sentences(torch.nn.Module(), [scores.numpy()], offsets, list(label2id), "BIOES", True)
    assert tags == [["O", "B-PER", "E-PER", "O"]]
    # and through main: predictions stay one per unit
    records = [{"tokens": ["的", "甲乙", "乙", "是"], "tags": ["O", "B-PER", "I-PER", "O"]}] * 16
    h.write_jsonl(tmp_path / "train.jsonl", records)
    out = tmp_path / "out"
    run(model_dir, out, "--train_file", tmp_path / "train.jsonl", "--test_file", tmp_path / "train.jsonl",
        "--do_train", "--do_predict", "--label_all_tokens", "--head", "lstm_crf", *LSTM_ARGS, epochs=8,
        batch_size=8, learning_rate="1e-2")
    fields = conll_columns(out / "predict_tags.conll")[0]
    assert [f[0] for f in fields] == ["的", "甲乙", "乙", "是"]
    assert [f[2] for f in fields] == ["O", "B-PER", "I-PER", "O"]
    assert read_jsonl(out / "predict_entities.jsonl")[0]["entities"] == [
        {"text": "甲乙乙", "type": "PER", "start": 1, "end": 4}]
    assert json.loads((out / "config.json").read_text())["token_classification"]["label_all_tokens"] is True


# ------------------------------------------------------------------------------------------------------------------
# Heads: a run_mlm.py checkpoint loads into every head; save and reload give the same model and predictions
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlm_dir(model_dir, tmp_path_factory):
    """A tiny BertForMaskedLM as run_mlm.py saves it (bert.embeddings.*, bert.encoder.*, cls.*) + tokenizer."""
    directory = tmp_path_factory.mktemp("mlm")
    torch.manual_seed(1)
    model = BertForMaskedLM(BertConfig.from_pretrained(str(model_dir)))
    model.save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner_data")
    write_conll(root / "train.txt", make_sentences(24, seed=20))
    write_conll(root / "test.txt", make_sentences(6, seed=21) + long_sentences(make_sentences(8, seed=22), 4))
    return root


@pytest.fixture(scope="module")
def from_mlm(mlm_dir, ner_data, tmp_path_factory):
    """Every head trained for 3 steps from the MLM checkpoint with the encoder frozen (so it must still equal the
    checkpoint's), the head at its own learning rate; lstm_crf under --bf16."""
    root = tmp_path_factory.mktemp("from_mlm")
    runs = {}
    # transformers allocates the weights a checkpoint lacks with torch.empty_like, then runs _init_weights on them:
    # NaN in that memory shows any head parameter (CRF transitions, LSTM) that _init_weights leaves out
    empty_like = torch.empty_like

    def nan_empty_like(tensor, *args, **kwargs):
        out = empty_like(tensor, *args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    patch = pytest.MonkeyPatch()
    patch.setattr(torch, "empty_like", nan_empty_like)
    for head in HEADS:
        out = root / head
        extra = (LSTM_ARGS if "lstm" in head else []) + (["--bf16"] if head == "lstm_crf" else [])
        trainer = run_ner.main(h.tiny_train_args(
            mlm_dir, out, "--model_name_or_path", mlm_dir, "--train_file", ner_data / "train.txt",
            "--test_file", ner_data / "test.txt", "--do_train", "--do_predict", "--head", head, "--freeze", "all",
            "--max_steps", "3", "--head_learning_rate", "5e-2", "--max_seq_length", "16", *extra,
            learning_rate="1e-3")[2:])  # [2:]: no --config_name (the model dir is the config)
        runs[head] = (out, trainer)
    patch.undo()
    return root, runs


@pytest.mark.parametrize("head", HEADS)
def test_mlm_checkpoint_encoder_transfers_to_every_head(mlm_dir, from_mlm, head):
    out, trainer = from_mlm[1][head]
    mlm = BertForMaskedLM.from_pretrained(str(mlm_dir)).state_dict()
    model = trainer.model.state_dict()
    encoder = [k for k in mlm if k.startswith(("bert.embeddings.", "bert.encoder."))]
    assert len(encoder) > 20
    for key in encoder:
        torch.testing.assert_close(model[key], mlm[key], msg=key)
    assert not any(k.startswith("cls.") for k in model)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # every head weight initialised
    assert json.loads((out / "train_results.json").read_text())["train_loss"] > 0
    expected = {"softmax": "BertForTokenClassification", "lstm": "BertLSTMForTokenClassification",
                "crf": "BertCRFForTokenClassification", "lstm_crf": "BertLSTMCRFForTokenClassification"}[head]
    assert type(trainer.model).__name__ == expected
    # the head learned at --head_learning_rate (the encoder is frozen: not in the optimizer at all)
    groups = trainer.optimizer.param_groups
    assert {g["initial_lr"] for g in groups} == {5e-2}
    trained = {id(p) for g in groups for p in g["params"]}
    names = {n for n, p in trainer.model.named_parameters() if id(p) in trained}
    assert names and not any(n.startswith("bert.") for n in names)
    if "crf" in head:
        assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions"} <= names


@pytest.mark.parametrize("head", HEADS)
def test_save_and_reload_give_the_same_model_and_predictions(from_mlm, ner_data, tmp_path, head):
    out, trainer = from_mlm[1][head]
    saved = json.loads((out / "config.json").read_text())
    assert saved["token_classification"] == {"max_seq_length": 16, "chunk_stride": 7, "label_all_tokens": False,
                                             "label_scheme": "BIO"}
    reloaded = AutoModelForTokenClassification.from_pretrained(str(out))
    assert type(reloaded) is type(trainer.model)
    original = trainer.model.state_dict()
    for key, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, original[key].to(value.dtype), msg=key)
    # predicting with the saved dir (no --max_seq_length: the saved 16 is used) gives the same predictions
    again = tmp_path / "again"
    run_ner.main(h.tiny_train_args(out, again, "--model_name_or_path", out, "--test_file", ner_data / "test.txt",
                                   "--do_predict")[2:])
    assert json.loads((again / "data_summary.json").read_text())["max_seq_length"] == 16
    assert (again / "predict_tags.conll").read_text() == (out / "predict_tags.conll").read_text()
    assert (again / "predict_entities.jsonl").read_text() == (out / "predict_entities.jsonl").read_text()
    if "crf" in head:  # three steps from random: the transitions decide, and never allow a forbidden step
        for fields in conll_columns(out / "predict_tags.conll"):
            assert forbidden_steps([f[2] for f in fields]) == []


def test_training_on_from_a_trained_ner_model_keeps_its_labels(from_mlm, tmp_path):
    """Continuing from a trained model: its labels keep their order (the classifier rows keep their meaning); data
    with other entity types is refused instead of being loaded into the wrong rows."""
    out, _ = from_mlm[1]["crf"]
    labels = json.loads((out / "config.json").read_text())["id2label"]
    reordered = [("甲乙", [(0, 2, "PER")]), ("丙丁", [(0, 2, "LOC")])] * 4  # PER first: data order differs
    write_conll(tmp_path / "train.txt", reordered)
    again = tmp_path / "again"
    run_ner.main(h.tiny_train_args(out, again, "--model_name_or_path", out, "--train_file", tmp_path / "train.txt",
                                   "--do_train", "--max_steps", "1")[2:])
    assert json.loads((again / "config.json").read_text())["id2label"] == labels
    assert json.loads((again / "config.json").read_text())["model_type"] == "bert_token_crf"  # its own head
    write_conll(tmp_path / "other.txt", [("甲乙", [(0, 2, "ORG")])])
    with pytest.raises(ValueError, match="is a trained NER model with the labels"):
        run_ner.main(h.tiny_train_args(out, tmp_path / "other", "--model_name_or_path", out, "--train_file",
                                       tmp_path / "other.txt", "--do_train")[2:])


RELOAD_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    import torch
    from transformers import AutoModelForTokenClassification
    assert importlib.util.find_spec("heads") is None, "heads is importable without the repo"
    root, names = sys.argv[1], sys.argv[2:]
    result = {}
    for name in names:
        model = AutoModelForTokenClassification.from_pretrained(f"{root}/{name}", trust_remote_code=True).eval()
        ids = torch.tensor([[2, 5, 6, 7, 8, 3]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        paths = model.decode(logits, torch.ones_like(ids, dtype=torch.bool)) if hasattr(model, "decode") else None
        result[name] = {"logits": logits, "module": type(model).__module__, "paths": paths}
    torch.save(result, f"{root}/reloaded.pt")
""")


def test_custom_heads_reload_with_trust_remote_code_in_a_fresh_process(from_mlm):
    root, runs = from_mlm
    custom = [head for head in HEADS if head != "softmax"]
    for head in custom:
        config = json.loads((root / head / "config.json").read_text())
        config_class, model_class = heads.TOKEN_HEADS[head]
        assert config["auto_map"] == {"AutoConfig": f"configuration_token_heads.{config_class.__name__}",
                                      "AutoModelForTokenClassification": f"modeling_token_heads.{model_class.__name__}"}
        assert {"configuration_token_heads.py", "modeling_token_heads.py", "modeling_heads.py",
                "configuration_heads.py"} <= set(os.listdir(root / head))
    assert "auto_map" not in json.loads((root / "softmax" / "config.json").read_text())
    script = root / "reload.py"
    script.write_text(RELOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(root / "hf_modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(root), *custom], cwd=str(root), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reloaded = torch.load(root / "reloaded.pt")
    ids = torch.tensor([[2, 5, 6, 7, 8, 3]])
    for head in custom:
        # the same dir loaded here with `import heads` (trainer.model may still run under the Trainer's autocast)
        model = AutoModelForTokenClassification.from_pretrained(str(root / head)).eval()
        assert type(model).__module__ == "heads.modeling_token_heads"
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        torch.testing.assert_close(reloaded[head]["logits"], logits, atol=1e-5, rtol=1e-5)
        assert reloaded[head]["module"].startswith("transformers_modules.")
        assert reloaded[head]["paths"] == model.decode(logits, torch.ones_like(ids, dtype=torch.bool))


@pytest.mark.parametrize("broken", ["other_prefix", "missing_layer"])
def test_checkpoint_without_the_encoder_raises(mlm_dir, model_dir, ner_data, tmp_path, broken):
    """Encoder weights under another prefix, or a layer missing: a head would train a random encoder, so every head
    raises (the custom heads in from_pretrained, BertForTokenClassification in run_ner)."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(mlm_dir / "model.safetensors"))
    if broken == "other_prefix":
        state = {k.replace("bert.", "encoder_model.", 1): v for k, v in state.items()}
    else:
        state = {k: v for k, v in state.items() if ".layer.1." not in k}
    directory = tmp_path / broken
    directory.mkdir()
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    BertConfig.from_pretrained(str(model_dir)).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(directory))
    for head in ("softmax", "crf"):
        with pytest.raises(ValueError, match="encoder weights"):
            run_ner.main(h.tiny_train_args(directory, tmp_path / head, "--model_name_or_path", directory,
                                           "--train_file", ner_data / "train.txt", "--do_train", "--head", head)[2:])


# ------------------------------------------------------------------------------------------------------------------
# The CRF on its own: brute force over every path
# ------------------------------------------------------------------------------------------------------------------


def brute_force(crf, emissions, forbid):
    """(best path, log partition) over all C^T paths; forbidden paths excluded when `forbid`."""
    trans, start, end = (t.detach().double() for t in (crf.transitions, crf.start_transitions, crf.end_transitions))
    allowed, allowed_start, allowed_end = crf.constraints or (None, None, None)
    T, C = emissions.shape
    scores = {}
    for path in itertools.product(range(C), repeat=T):
        if forbid and (not allowed_start[path[0]] or not allowed_end[path[-1]]
                       or any(not allowed[a][b] for a, b in zip(path, path[1:]))):
            continue
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
        score = score + sum(trans[a, b] for a, b in zip(path, path[1:]))
        scores[path] = score
    best = max(scores, key=scores.get)
    return list(best), torch.logsumexp(torch.stack(list(scores.values())), 0), scores


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_crf_matches_brute_force(scheme):
    labels = utils_ner.label_names(["A", "B"], scheme) if scheme == "BIO" else utils_ner.label_names(["A"], scheme)
    constraints = allowed_transitions(dict(enumerate(labels)))
    torch.manual_seed(0)
    for forbid in (True, False):
        crf = CRF(len(labels), constraints if forbid else None)
        with torch.no_grad():
            for p in crf.parameters():
                p.normal_(0, 1.0)
        for T in (1, 2, 3, 4):
            emissions = torch.randn(3, T, len(labels)) * 2
            mask = torch.ones(3, T, dtype=torch.bool)
            paths = crf.viterbi(emissions, mask)
            for b in range(3):
                best, log_z, scores = brute_force(crf, emissions[b].double(), forbid)
                assert paths[b].tolist() == best
                gold = list(scores)[b % len(scores)]
                log_likelihood = crf.log_likelihood(emissions[b:b + 1], torch.tensor([gold]), mask[b:b + 1])
                assert float(log_likelihood.detach()) == pytest.approx(float(scores[gold] - log_z), abs=1e-4)


def test_crf_masks_padding_and_unlabelled_positions():
    """A padded row gives the same path and likelihood as the row alone; labels -100 in the middle (later
    sub-tokens) are skipped: the chain runs over the labelled positions only."""
    labels = utils_ner.label_names(["A", "B"], "BIO")
    crf = CRF(len(labels), allowed_transitions(dict(enumerate(labels))))
    torch.manual_seed(1)
    emissions = torch.randn(2, 6, len(labels))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    paths = crf.viterbi(emissions, mask)
    alone = crf.viterbi(emissions[1:, :3], mask[1:, :3])
    assert paths[1, :3].tolist() == alone[0].tolist() and paths[1, 3:].tolist() == [-100] * 3
    tags = torch.tensor([[0, 1, 2, 0, 3, 4], [1, 2, 0, 0, 0, 0]])
    ll = crf.log_likelihood(emissions, tags, mask)
    torch.testing.assert_close(ll[1:], crf.log_likelihood(emissions[1:, :3], tags[1:, :3], mask[1:, :3]))
    gapped = torch.tensor([[1, -100, 2, 0, -100, 0]])
    compact = torch.tensor([[1, 2, 0, 0]])
    nll = crf.neg_log_likelihood(emissions[:1], gapped)
    expected = -crf.log_likelihood(emissions[:1, [0, 2, 3, 5]], compact, torch.ones(1, 4, dtype=torch.bool)) / 4
    torch.testing.assert_close(nll, expected[0])
    assert crf.decode(emissions[:1], gapped != -100) == [crf.viterbi(emissions[:1, [0, 2, 3, 5]],
                                                                     torch.ones(1, 4, dtype=torch.bool))[0].tolist()]


def test_crf_constraints_and_fp32_under_autocast():
    labels = utils_ner.label_names(["A", "B"], "BIO")
    constraints = allowed_transitions(dict(enumerate(labels)))
    allowed, start, _ = constraints
    index = {n: i for i, n in enumerate(labels)}
    assert not start[index["I-A"]] and start[index["B-A"]]
    assert not allowed[index["O"]][index["I-A"]] and not allowed[index["B-B"]][index["I-A"]]
    assert allowed[index["B-A"]][index["I-A"]] and allowed[index["I-A"]][index["I-A"]]
    bioes = utils_ner.label_names(["A"], "BIOES")
    allowed_e, start_e, end_e = allowed_transitions(dict(enumerate(bioes)))
    i = {n: k for k, n in enumerate(bioes)}
    assert not allowed_e[i["B-A"]][i["O"]] and allowed_e[i["B-A"]][i["E-A"]] and not end_e[i["I-A"]]
    assert allowed_transitions({0: "LABEL_0", 1: "LABEL_1"}) is None
    # emissions that favour I- after O everywhere: the constrained CRF still never takes the step
    crf = CRF(len(labels), constraints)
    emissions = torch.zeros(4, 7, len(labels))
    emissions[:, :, index["I-A"]] = 3.0
    emissions[:, ::2, index["O"]] = 4.0
    for path in crf.viterbi(emissions, torch.ones(4, 7, dtype=torch.bool)).tolist():
        assert forbidden_steps([labels[k] for k in path]) == []
    unconstrained = CRF(len(labels)).viterbi(emissions, torch.ones(4, 7, dtype=torch.bool)).tolist()
    assert any(forbidden_steps([labels[k] for k in path]) for path in unconstrained)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = crf.neg_log_likelihood(emissions.bfloat16().requires_grad_(), torch.zeros(4, 7, dtype=torch.long))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


# ------------------------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------------------------


def test_strict_and_default_entity_metrics():
    gold = [["B-A", "I-A", "O", "B-B"]]
    pred = [["I-A", "I-A", "O", "B-B"]]  # an I- without B-: an entity for conlleval, none in strict mode
    lenient, text, report = utils_ner.entity_metrics(gold, pred, "BIO", strict=False)
    strict, *_ = utils_ner.entity_metrics(gold, pred, "BIO", strict=True)
    assert lenient["f1"] == 1.0 and strict["f1"] == pytest.approx(2 / 3)
    assert report["A"]["support"] == 1 and "micro avg" in text
    assert utils_ner.entities_of(pred[0], "BIO", strict=False) == [("A", 0, 2), ("B", 3, 4)]
    assert utils_ner.entities_of(pred[0], "BIO", strict=True) == [("B", 3, 4)]


# ------------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, the line and the fix, before anything trains
# ------------------------------------------------------------------------------------------------------------------

BAD_TRAIN = {
    "conll_missing_tag": ("train.txt", "的 O\n甲 B-PER\n乙\n",
                          r"train\.txt:3: no tag on this line; expected 'char TAG'"),
    "conll_unknown_tag_format": ("train.txt", "的 O\n甲 PER\n", r"train\.txt:2: tag 'PER' is neither O"),
    "tokens_count_mismatch": ("train.jsonl", '{"tokens": ["的", "甲"], "tags": ["O", "B-PER"]}\n'
                                             '{"tokens": ["的", "甲", "乙"], "tags": ["O", "B-PER"]}\n',
                              r"train\.jsonl:2: 3 tokens but 2 tags"),
    "cluener_span_mismatch": ("train.json", '{"text": "的甲乙", "label": {"PER": {"甲乙": [[1, 2]]}}}\n'
                                            '{"text": "的甲乙是", "label": {"PER": {"甲乙": [[2, 3]]}}}\n',
                              r"train\.json:2: PER span \[2, 3\] is '乙是' in the text, not '甲乙'"),
    "cluener_span_out_of_range": ("train.json", '{"text": "的甲", "label": {"PER": {"甲": [[1, 2]]}}}\n',
                                  r"train\.json:1: PER '甲': span \[1, 2\] is not \[start, end\]"),
    "cluener_empty_sentence": ("train.json", '{"text": "的甲", "label": {"PER": {"甲": [[1, 1]]}}}\n'
                                             '{"text": "", "label": {}}\n', r"train\.json:2: empty sentence"),
    "tokens_empty_sentence": ("train.jsonl", '{"tokens": [], "tags": []}\n', r"train\.jsonl:1: empty sentence"),
    "json_invalid": ("train.json", '{"text": "的甲", "label": {}}\n{"text": \n', r"train\.json:2: invalid JSON"),
    "no_tags": ("train.txt", "的\n甲\n", r"train\.txt:1: no tags"),
    "not_utf8": ("train.txt", "的 O\n".encode("gb18030"), r"train\.txt:1: not UTF-8 \(looks like GB18030\)"),
}


@pytest.mark.parametrize("name", BAD_TRAIN)
def test_bad_training_data_names_file_and_line(model_dir, tmp_path, name):
    filename, content, pattern = BAD_TRAIN[name]
    path = tmp_path / filename
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError, match=pattern):
        run(model_dir, tmp_path / "out", "--train_file", path, "--do_train")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_unknown_entity_type_at_evaluation(model_dir, tmp_path):
    write_conll(tmp_path / "train.txt", make_sentences(4, seed=1))
    h.write_lines(tmp_path / "dev.txt", ["的 O", "甲 B-PER", "", "的 O", "是 O", "丙 B-ORG", "丁 I-ORG"])
    with pytest.raises(DataError, match=r"dev\.txt:6: entity type 'ORG' never occurs in the training data"):
        run(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.txt", "--validation_file",
            tmp_path / "dev.txt", "--do_train", "--do_eval")


def test_repairs_are_counted_and_reported(model_dir, tmp_path, capsys):
    """I- without B- starts an entity there (counted, warned); a BIOES entity without E- ends where it stops; a nested
    CLUENER entity is dropped (counted); --skip_bad_rows counts the sentences it skips."""
    h.write_lines(tmp_path / "train.txt", ["的 O", "甲 I-PER", "乙 I-PER", "是 O", "", "丙 B-LOC", "丁 I-LOC",
                                           "甲 I-PER", "", "的 O", "甲 B-PER", "乙 PER"])
    sentences = read_sentences(tmp_path / "train.txt", skip_bad_rows=True)
    assert [s.spans for s in sentences] == [[(1, 3, "PER")], [(0, 2, "LOC"), (2, 3, "PER")]]
    h.write_lines(tmp_path / "bioes.txt", ["丙 B-LOC", "丁 I-LOC", "的 O", "甲 S-PER"])
    reader = utils_ner.FileReader(str(tmp_path / "bioes.txt"), run_ner.DataTrainingArguments())
    assert [s.spans for s in reader.sentences()] == [[(0, 2, "LOC"), (3, 4, "PER")]]
    assert reader.repaired == {"B-/I- without E- (entity ended there)": 1}
    nested_label = {"book": {"《甲乙丙》": [[0, 4]]}, "PER": {"甲乙": [[1, 2]]}}
    h.write_jsonl(tmp_path / "nested.json", [{"text": "《甲乙丙》", "label": nested_label}])
    nested = utils_ner.FileReader(str(tmp_path / "nested.json"), run_ner.DataTrainingArguments())
    assert [s.spans for s in nested.sentences()] == [[(0, 5, "book")]]
    assert nested.repaired == {"nested/overlapping entity dropped (the longest kept)": 1}

    capsys.readouterr()
    run(model_dir, tmp_path / "out", "--train_file", tmp_path / "train.txt", "--do_train", "--skip_bad_rows",
        "--max_steps", "1")
    summary = json.loads((tmp_path / "out" / "data_summary.json").read_text())["splits"]["train"]
    assert summary["repaired"] == {"I- without B- (entity started there)": 2}
    assert summary["first_line"]["I- without B- (entity started there)"] == 2
    assert summary["skipped"] == {"tag 'PER' is neither O nor PREFIX-TYPE (B-, I-, E-, S-, M-, e.g. B-PER)": 1}
    assert summary["sentences"] == 2
    assert "2 x I- without B- (entity started there); first at line 2" in capsys.readouterr().out


def test_never_overwrites_results(model_dir, tmp_path):
    write_conll(tmp_path / "train.txt", make_sentences(4, seed=1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval_results.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds results"):
        run(model_dir, out, "--train_file", tmp_path / "train.txt", "--do_train")
    assert (out / "eval_results.json").read_text() == "{}"
