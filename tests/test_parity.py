"""Parity: the model inputs every script builds, frozen as JSON (tests/fixtures/parity/) from the code before the
scripts were split into run_*.py + utils_*.py (commit e76fbcc). Any change to the ids, segment ids, labels, windows,
chunks, answer positions or MLM examples a script feeds the model fails here.

The cases cover every encoding path on the tests' tiny vocab: classification truncation head / tail / head+tail
(default and given head tokens), --max_seq_length auto, sentence pairs (odd budgets, equal and unequal lengths),
sliding windows (default and given stride, capped); NER chunks with labels on the first or every sub-token, BIO and
BIOES, characters the tokenizer drops, does not know, normalises or splits; QA windows with doc_stride, cut questions,
answer positions, character offsets; MLM blocks, line-by-line pieces, jieba word starts and NSP pairs. predict.py's
encoders are checked against the same ids.

To rewrite the fixtures (only when an encoding change is intended): PARITY_WRITE=1 pytest tests/test_parity.py; the
run then fails on purpose, so that a written fixture never passes unseen.
"""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parity"
WRITE = os.environ.get("PARITY_WRITE") == "1"


def check(name, got):
    """Compare `got` (JSON-able) with the frozen fixture `name`, or write it with PARITY_WRITE=1."""
    path = FIXTURES / f"{name}.json"
    got = json.loads(json.dumps(got, ensure_ascii=False))  # tuples -> lists, int keys -> str, as stored
    if WRITE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        pytest.fail(f"PARITY_WRITE=1: wrote {path}; run again without it.")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], f"{name}: {key} differs from the frozen encoding"


def columns(dataset, names):
    return dataset.select_columns([n for n in names if n in dataset.column_names]).to_dict()


def train_args(model_dir, out, *extra):
    return h.tiny_train_args(model_dir, out, "--do_train", "--max_steps", "1", "--eval_strategy", "no",
                             *extra, batch_size=4)


# ------------------------------------------------------------------------------------------------------------------
# Classification
# ------------------------------------------------------------------------------------------------------------------

# Texts of every length around the windows below, with characters the vocab lacks (ABC, 龍, Ｗ -> [UNK]) and spaces.
SINGLE_TEXTS = ["首", "首尾", "首的一是在不了尾", "首的一是在不了有和尾", "首的一是在不了有和人这中大为上个国尾",
                "首ABC的一是龍在不 了有和人这Ｗ中大为上个国我以要他时来用们尾", h.filler_text(40, seed=1),
                "前" + h.filler_text(25, seed=2) + "后", "左 右", "的一是在不了有和人这中大为上个国我以要他时来用"]
PAIRS = [("的一是", "在不了"), (h.filler_text(7, seed=3), h.filler_text(7, seed=4)),  # equal, both long
         (h.filler_text(7, seed=5), h.filler_text(9, seed=6)),  # a < b, both long: the odd token's side
         (h.filler_text(12, seed=7), h.filler_text(8, seed=8)), ("首", h.filler_text(30, seed=9)),
         (h.filler_text(30, seed=10), "尾"), ("首ABC在", "不 了龍Ｗ"), (h.filler_text(5, seed=11), h.filler_text(6, seed=12))]
CLASSIFICATION_CASES = {
    "head": ("single", ["--max_seq_length", "10", "--truncation_strategy", "head"]),
    "tail": ("single", ["--max_seq_length", "10", "--truncation_strategy", "tail"]),
    "head_tail_default": ("single", ["--max_seq_length", "10", "--truncation_strategy", "head+tail"]),
    "head_tail_3": ("single", ["--max_seq_length", "12", "--truncation_strategy", "head+tail", "--head_tokens", "3"]),
    "auto": ("single", ["--max_seq_length", "auto", "--auto_length_percentile", "50"]),
    "pair_head": ("pair", ["--max_seq_length", "16", "--truncation_strategy", "head"]),
    "pair_tail": ("pair", ["--max_seq_length", "17", "--truncation_strategy", "tail"]),
    "windows": ("single", ["--head", "windows", "--max_seq_length", "10"]),
    "windows_stride_capped": ("single", ["--head", "windows", "--max_seq_length", "10", "--window_stride", "3",
                                         "--max_windows", "3"]),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION_CASES))
def test_classification_encoding(case, model_dir, tmp_path):
    import predict
    import run_classification

    kind, extra = CLASSIFICATION_CASES[case]
    if kind == "single":
        h.write_tsv(tmp_path / "train.tsv", [(t, "甲乙"[i % 2]) for i, t in enumerate(SINGLE_TEXTS)])
        records = [{"text": t} for t in SINGLE_TEXTS]
    else:
        h.write_tsv(tmp_path / "train.tsv", [(a, b, i % 2) for i, (a, b) in enumerate(PAIRS)],
                    header=["sentence1", "sentence2", "label"])
        records = [{"text": a, "text_pair": b} for a, b in PAIRS]
    out = tmp_path / "out"
    trainer = run_classification.main(train_args(model_dir, out, "--train_file", tmp_path / "train.tsv", *extra))
    got = columns(trainer.train_dataset, ["input_ids", "token_type_ids", "attention_mask", "length", "truncated",
                                          "n_windows"])
    got["settings"] = trainer.model.config.text_classification
    check(f"classification_{case}", got)
    # predict.py encodes the same texts into the same ids
    features, truncated = predict.ClassificationPredictor(str(out)).encode(records)
    assert [f["input_ids"] for f in features] == got["input_ids"]
    assert truncated == got["truncated"]
    if "token_type_ids" in got:
        assert [list(f["token_type_ids"]) for f in features] == got["token_type_ids"]


# ------------------------------------------------------------------------------------------------------------------
# NER
# ------------------------------------------------------------------------------------------------------------------

# CoNLL: a space (written <space><TAB>TAG), a control character and an emoji (dropped by the tokenizer -> [UNK]), a
# letter and a character the vocab lacks ([UNK]), a full-width digit (normalised), long sentences (several chunks).
NER_CONLL = [
    "首 B-PER", "的 I-PER", "一 O", " \tO", "是 B-LOC", "在 I-LOC", "\x01\tO", "不 O", "A B-PER", "龍 I-PER", "了 O",
    "１ O", "有 B-LOC", "和 O", "人 O", "这 O", "中 B-PER", "大 O", "为 O", "😀\tO", "上 B-LOC", "个 I-LOC", "国 I-LOC",
    "尾 O", "",
    "前 B-LOC", "后 I-LOC", "",
    "左 O", "右 B-PER", "的 I-PER", "一 I-PER", "是 I-PER", "在 I-PER", "不 I-PER", "了 I-PER", "有 I-PER", "和 O",
    "人 O",
]
# tokens/tags JSON lines: multi-character units (split into several sub-tokens)
NER_TOKENS = [{"tokens": ["的", "甲乙", "乙", "是", "12", "丙丁丙", "了"],
               "tags": ["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]}]


def ner_encoding(tokenizer, sentences, scheme, max_seq_length, stride, label_all_tokens):
    import utils_ner

    label2id = {n: i for i, n in enumerate(utils_ner.label_names(["LOC", "PER"], scheme))}
    budget = max_seq_length - 2
    columns_, meta, offsets, stats = utils_ner.encode_split(sentences, utils_ner.CharTokenizer(tokenizer, budget),
                                                          tokenizer, label2id, scheme, budget, stride,
                                                          label_all_tokens)
    return {"columns": columns_, "meta": meta, "unit_offsets": offsets, "stats": dict(sorted(stats.items()))}


@pytest.mark.parametrize("scheme, max_seq_length, stride, label_all_tokens", [
    ("BIO", 10, 4, False), ("BIOES", 10, 3, True), ("BIO", 128, 63, True), ("BIOES", 7, 5, False)])
def test_ner_chunks_and_alignment(scheme, max_seq_length, stride, label_all_tokens, model_dir, tmp_path):
    from transformers import AutoTokenizer

    import run_ner
    import utils_ner

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    h.write_lines(tmp_path / "train.txt", NER_CONLL)
    h.write_jsonl(tmp_path / "tokens.json", NER_TOKENS)
    args = run_ner.DataTrainingArguments()
    sentences = (utils_ner.FileReader(str(tmp_path / "train.txt"), args).sentences()
                 + utils_ner.FileReader(str(tmp_path / "tokens.json"), args).sentences())
    got = ner_encoding(tokenizer, sentences, scheme, max_seq_length, stride, label_all_tokens)
    got["spans"] = [s.spans for s in sentences]
    check(f"ner_{scheme}_{max_seq_length}_{stride}_{int(label_all_tokens)}", got)


def test_ner_main(model_dir, tmp_path):
    import run_ner

    h.write_lines(tmp_path / "train.txt", NER_CONLL)
    out = tmp_path / "out"
    trainer = run_ner.main(train_args(model_dir, out, "--train_file", tmp_path / "train.txt", "--max_seq_length",
                                      "9", "--label_scheme", "BIOES", "--label_all_tokens"))
    got = columns(trainer.train_dataset, ["input_ids", "attention_mask", "labels", "length"])
    got["settings"] = trainer.model.config.token_classification
    got["id2label"] = trainer.model.config.id2label
    check("ner_main", got)


# ------------------------------------------------------------------------------------------------------------------
# Question answering
# ------------------------------------------------------------------------------------------------------------------

QA_EXTRA = list("问答什么谁哪里北京大学清华市我们模型提出发布年月日，。？（）") + ["bert", "goo", "##gle", "20", "##18"]
QA_VOCAB = h.VOCAB + [t for t in QA_EXTRA if t not in h.VOCAB]


def qa_paragraphs():
    long_a, long_b = h.filler_text(70, seed=20), h.filler_text(45, seed=21)
    return [
        (long_a, [{"id": "a1", "question": "什么是答案？", "answers": [{"text": long_a[30:36], "answer_start": 30}]},
                  {"id": "a2", "question": "谁" + h.filler_text(14, seed=22) + "？",  # cut to max_query_length
                   "answers": [{"text": long_a[64:70], "answer_start": 64}]},
                  {"id": "a3", "question": "哪里？", "answers": [{"text": long_a[:3], "answer_start": 0}]}]),
        (long_b, [{"id": "b1", "question": "什么？", "answers": [{"text": long_b[10:40], "answer_start": 10}]}]),
        ("这个BERT模型由Google提出，2018年发布。", [
            {"id": "c1", "question": "谁提出？", "answers": [{"text": "Google", "answer_start": 9}]},
            {"id": "c2", "question": "哪年？", "answers": [{"text": "2018年", "answer_start": 17}]}]),  # repaired: 18
        ("北京  大学在 北京 ", [{"id": "d1", "question": "哪里？", "answers": [{"text": "大学在 北京",
                                                                         "answer_start": 4}]}]),
    ]


def test_qa_windows_and_positions(tmp_path):
    import predict
    import run_qa

    model_dir = h.build_tiny_bert(tmp_path / "tiny", vocab=QA_VOCAB)
    paragraphs = qa_paragraphs()
    data = {"data": [{"title": "t", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}]}
    (tmp_path / "train.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    trainer = run_qa.main(train_args(model_dir, out, "--train_file", tmp_path / "train.json", "--validation_file",
                                     tmp_path / "train.json", "--do_eval", "--max_seq_length", "32", "--doc_stride", "8",
                                     "--max_query_length", "6"))
    names = ["input_ids", "token_type_ids", "attention_mask", "char_start", "char_end", "example_index",
             "window_index", "length", "start_positions", "end_positions"]
    got = {"train": columns(trainer.train_dataset, names), "validation": columns(trainer.eval_dataset, names),
           "settings": trainer.model.config.question_answering}
    check("qa", got)
    # predict.py builds the same windows for the same questions and contexts
    questions = [q["question"] for _, qs in paragraphs for q in qs]
    contexts = [c for c, qs in paragraphs for _ in qs]
    features = predict.QuestionAnsweringPredictor(str(out)).encode(questions, contexts)
    for name in ("input_ids", "token_type_ids", "char_start", "char_end", "example_index"):
        assert list(features[name]) == got["train"][name], name


# ------------------------------------------------------------------------------------------------------------------
# MLM
# ------------------------------------------------------------------------------------------------------------------

MLM_PHRASES = ["我们是中国人", "发动生产", "这个时候", "他说的对", "工作可以", "一下子", "不可能"]


def mlm_corpus(path):
    import random

    rng = random.Random(5)
    lines = []
    for d in range(12):  # documents of sentences, blank-line separated, one with a very long sentence
        for _ in range(rng.randint(2, 4)):
            lines.append("".join(rng.choice(MLM_PHRASES) for _ in range(rng.randint(1, 4))) + "。")
        if d == 3:
            lines.append("".join(MLM_PHRASES) * 2 + "！")
        lines.append("")
    return h.write_lines(path, lines[:-1])


@pytest.mark.parametrize("case, extra", [
    ("blocks", ["--max_seq_length", "16"]),
    ("line_by_line", ["--max_seq_length", "12", "--line_by_line"]),
    ("whole_word_blocks", ["--max_seq_length", "20", "--whole_word_mask"]),
    ("whole_word_lines", ["--max_seq_length", "9", "--whole_word_mask", "--line_by_line"]),
    ("nsp", ["--max_seq_length", "24", "--nsp", "--whole_word_mask"]),
])
def test_mlm_examples(case, extra, model_dir, tmp_path):
    import run_mlm

    corpus = mlm_corpus(tmp_path / "corpus.txt")
    trainer = run_mlm.main(train_args(model_dir, tmp_path / "out", "--train_file", corpus,
                                      "--validation_split_percentage", "0", *extra))
    check(f"mlm_{case}", columns(trainer.train_dataset, ["input_ids", "word_starts", "token_type_ids",
                                                          "next_sentence_label", "length"]))
