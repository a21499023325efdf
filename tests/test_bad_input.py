"""Bad input, as a new user would give it, against the four run scripts and predict.py: one table.

Each row: the script, how its input is built, the arguments, the expected exit code (as `python script.py ...`
would end: 2 for a one-line `error: FILE:LINE: problem; fix`, or argparse's own error; 0 where the input is fine but
deserves a warning) and a fragment of the message. Every row runs with a pre-existing results directory beside it
("results": an old model card, metrics, a confusion matrix, predictions): no file in it may change. Failing rows
point their output there (training scripts with --overwrite_output_dir, so the data checks are reached: they must
stop the run before anything is written); rows that run to the end write into a fresh directory.

Runs in-process through run_main (the scripts' `__main__` path) on a tiny BERT; nothing is downloaded.
"""

import hashlib
import io
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import predict  # noqa: E402
import run_classification as rc  # noqa: E402
import run_mlm  # noqa: E402
import run_ner  # noqa: E402
import run_qa as rq  # noqa: E402
from script_utils import run_main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

MODULES = {"classification": rc, "ner": run_ner, "qa": rq, "mlm": run_mlm, "predict": predict}
CLASS_NAMES = ["体育", "财经"]


# ------------------------------------------------------------------------------------------------------------------
# Models the rows use: a tiny untrained BERT (from scratch), a trained classifier and a trained NER tagger
# ------------------------------------------------------------------------------------------------------------------


def ner_lines(sentences, drop_first_tag=False):
    """CoNLL lines 'char TAG' (BIO) of [(text, [(start, end, type)])], a blank line between sentences."""
    lines = []
    for text, spans in sentences:
        tags = ["O"] * len(text)
        for start, end, kind in spans:
            tags[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
        lines += [f"{c} {t}" for c, t in zip(text, tags)] + [""]
    if drop_first_tag:
        lines[0] = lines[0].split(" ")[0]
    return lines[:-1]


NER_SENTENCES = [("的甲乙是在", [(1, 3, "PER")]), ("丙丁了有和", [(0, 2, "LOC")]), ("人这甲中大", [(2, 3, "PER")]),
                 ("为丙上个国", [(1, 2, "LOC")])] * 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input_models")
    tiny = h.build_tiny_bert(root / "tiny")
    rows = h.keyword_rows(48, n_classes=2, seed=3)
    h.write_tsv(root / "train.tsv", rows)
    h.write_label_file(root / "class.txt", CLASS_NAMES)
    rc.main(h.tiny_train_args(tiny, root / "classifier", "--train_file", root / "train.tsv", "--label_file",
                              root / "class.txt", "--do_train", "--max_steps", "2"))
    h.write_lines(root / "ner.txt", ner_lines(NER_SENTENCES))
    run_ner.main(h.tiny_train_args(tiny, root / "tagger", "--train_file", root / "ner.txt", "--do_train",
                                   "--max_steps", "2"))
    return {"tiny": tiny, "classifier": root / "classifier", "tagger": root / "tagger"}


@dataclass
class Ctx:
    """Where a row builds its input: `tmp` (files), `keep` (the pre-existing results), `fresh` (a new output dir)."""

    tmp: Path
    keep: Path
    fresh: Path
    tiny: Path
    classifier: Path
    tagger: Path

    def file(self, name, lines, encoding="utf-8"):
        return h.write_lines(self.tmp / name, lines, encoding)

    def train(self, out, *extra):
        """Training-script arguments on the tiny model; into `out` (the pre-existing dir: --overwrite_output_dir)."""
        overwrite = ["--overwrite_output_dir"] if out == self.keep else []
        return h.tiny_train_args(self.tiny, out, "--max_steps", "1", *overwrite, *extra)


def keyword_tsv(ctx, name="train.tsv", n=24, seed=0, label_names=False):
    rows = h.keyword_rows(n, n_classes=2, seed=seed)
    return h.write_tsv(ctx.tmp / name, [(t, CLASS_NAMES[l] if label_names else l) for t, l in rows])


def stray_quote_csv(ctx, name, closed=True):
    """The issue's CSV: 42 lines, line 7 opens a quote, line 22 closes it (or nothing closes it)."""
    lines = ["text,label"] + [f"{h.filler_text(6, seed=i)},{CLASS_NAMES[i % 2]}" for i in range(41)]
    lines[6] = '"乙的一是,财经'
    if closed:
        lines[21] = '丙的一是",体育'
    return ctx.file(name, lines)


def corpus(ctx, lines):
    return ctx.file("corpus.txt", lines)


def squad(ctx, name, questions):
    """questions: (id, context, answer text, answer_start or None for no 'answers' key)."""
    data = {"version": "v1", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": [{"id": q, "question": "甲是什么", **({"answers": [{"text": a, "answer_start": s}]}
                                                                   if s is not None else {})}]}
        for q, c, a, s in questions]}]}
    path = ctx.tmp / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------------------------------------
# Checks for the rows that run to the end
# ------------------------------------------------------------------------------------------------------------------


def one_record_per_input_line(ctx):
    records = read_jsonl(ctx.fresh / "p.jsonl")
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r.get("skipped") for r in records] == [None, "blank line"] * 3
    assert all(r["label"] in CLASS_NAMES and r["text"] for r in records[0::2])
    assert all("label" not in r and r["text"] == "" for r in records[1::2])


def one_text_column(ctx):
    summary = json.loads((ctx.fresh / "data_summary.json").read_text(encoding="utf-8"))
    assert summary["text_columns"] == ["text_a"]


def repaired_ids_listed(ctx):
    summary = json.loads((ctx.fresh / "data_summary.json").read_text(encoding="utf-8"))["splits"]["train"]
    assert summary["answers_repaired"] == 1 and summary["answers_repaired_question_ids"] == ["q_moved"]


def trained_without_evaluation(ctx):
    assert (ctx.fresh / "model.safetensors").exists() and not (ctx.fresh / "eval_results.json").exists()


# ------------------------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    script: str
    build: Callable  # ctx -> arguments (the input files written under ctx.tmp)
    exit: int
    message: str  # a regular expression searched in everything the run printed and logged
    stdin: Optional[bytes] = None
    check: Optional[Callable] = None  # ctx -> further assertions (rows that run to the end)


QA_WINDOWS = ["--max_seq_length", "32", "--doc_stride", "8", "--max_query_length", "8"]
GBK_LINES = ["国足今晚迎战日本\t体育", "股市今天大涨\t财经"]

ROWS = [
    # ---- issue 12, item 1: a stray quote in a CSV silently merged rows ----------------------------------------------
    Row("csv_stray_quote_merges_rows", "classification",
        lambda c: c.train(c.keep, "--train_file", stray_quote_csv(c, "train.csv"), "--do_train"),
        2, r"train\.csv:7: a quoted text runs from line 7 to line 22 and swallows 14 line\(s\) that look like rows"),
    Row("csv_stray_quote_in_test_file", "classification",
        lambda c: c.train(c.keep, "--train_file", keyword_tsv(c, label_names=True), "--test_file",
                          stray_quote_csv(c, "test.csv"), "--do_train", "--do_predict"),
        2, r"test\.csv:7: a quoted text runs from line 7 to line 22"),
    Row("csv_quote_never_closed", "classification",
        lambda c: c.train(c.keep, "--train_file", stray_quote_csv(c, "train.csv", closed=False), "--do_train"),
        2, r"train\.csv:7: a quote \(\"\) opened here is never closed"),
    Row("csv_line_without_comma", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.csv", ["text,label", "的一是,0", "在不了有"]),
                          "--do_train"),
        2, r"train\.csv:3: no comma in this line; expected 2 comma-separated columns"),
    # ---- item 2: --do_eval / --do_predict alone overwrote an existing results directory -----------------------------
    Row("eval_only_into_results", "classification",
        lambda c: ["--model_name_or_path", c.classifier, "--validation_file", keyword_tsv(c, "dev.tsv"),
                   "--do_eval", "--output_dir", c.keep, "--report_to", "none"],
        2, r"Output directory .*results already holds results .*evaluating or predicting into it would overwrite"),
    Row("predict_only_into_results", "classification",
        lambda c: ["--model_name_or_path", c.classifier, "--test_file", keyword_tsv(c, "test.tsv"),
                   "--do_predict", "--output_dir", c.keep, "--report_to", "none"],
        2, r"already holds results .*--overwrite_output_dir"),
    Row("ner_eval_only_into_results", "ner",
        lambda c: ["--model_name_or_path", c.tagger, "--validation_file", c.file("dev.txt", ner_lines(NER_SENTENCES)),
                   "--do_eval", "--output_dir", c.keep, "--report_to", "none"],
        2, r"already holds results"),
    Row("mlm_eval_only_into_results", "mlm",
        lambda c: ["--model_name_or_path", c.tiny, "--validation_file", corpus(c, ["的一是在不了。"] * 3),
                   "--do_eval", "--output_dir", c.keep, "--report_to", "none"],
        2, r"already holds results"),
    Row("training_into_results", "classification",
        lambda c: h.tiny_train_args(c.tiny, c.keep, "--train_file", keyword_tsv(c), "--do_train"),
        2, r"already holds results\. Pass --resume_from_checkpoint last"),
    # ---- item 3: NER, one missing tag on the first line read the whole file as untagged -----------------------------
    Row("ner_test_file_first_tag_missing", "ner",
        lambda c: ["--model_name_or_path", c.tagger, "--test_file",
                   c.file("test.txt", ner_lines(NER_SENTENCES, drop_first_tag=True)), "--do_predict",
                   "--output_dir", c.keep, "--overwrite_output_dir", "--report_to", "none"],
        2, r"test\.txt:1: no tag on this line; expected 'char TAG'"),
    Row("ner_train_file_first_tag_missing", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ner_lines(NER_SENTENCES, drop_first_tag=True)),
                          "--do_train"),
        2, r"train\.txt:1: no tag on this line; expected 'char TAG'"),
    Row("ner_tags_on_a_few_lines_of_an_untagged_file", "ner",
        lambda c: ["--model_name_or_path", c.tagger, "--test_file",
                   c.file("test.txt", ["的", "甲 B-PER", "乙", "是", "在"]), "--do_predict",
                   "--output_dir", c.keep, "--overwrite_output_dir", "--report_to", "none"],
        2, r"test\.txt:2: a tag on this line .* but most lines of the file have none"),
    # ---- item 4: predict.py on GBK input --------------------------------------------------------------------------
    Row("predict_gbk_file", "predict",
        lambda c: ["--model", c.classifier, "--input", c.file("in.txt", GBK_LINES, "gbk"),
                   "--output", c.keep / "predictions.jsonl"],
        2, r"in\.txt:1: not UTF-8 \(looks like GB18030\); convert it first, e.g\. iconv -f GB18030 -t UTF-8"),
    Row("predict_gbk_stdin", "predict",
        lambda c: ["--model", c.classifier, "--output", c.keep / "predictions.jsonl"],
        2, r"<stdin>:1: not UTF-8 \(looks like GB18030\).*iconv -f GB18030 -t UTF-8",
        stdin="\n".join(GBK_LINES).encode("gbk") + b"\n"),
    # ---- item 5: predict.py dropped blank lines without a word ------------------------------------------------------
    Row("predict_keeps_one_record_per_line", "predict",
        lambda c: ["--model", c.classifier, "--input",
                   c.file("in.txt", ["国足的一是甲", "", "股市的一是乙", "  ", "的一是甲", ""]),
                   "--output", c.fresh / "p.jsonl"],
        0, r"3 blank line\(s\) not predicted \(lines 2, 4, 6\)", check=one_record_per_input_line),
    # ---- the weak spots of round two --------------------------------------------------------------------------------
    Row("three_columns_read_as_a_pair_warns", "classification",
        lambda c: c.train(c.fresh, "--train_file", h.write_tsv(c.tmp / "train.tsv", [
            (t, h.filler_text(3, seed=i), l) for i, (t, l) in enumerate(h.keyword_rows(24))]), "--do_train"),
        0, r"WARNING.*train\.tsv: no header and 3 columns per line: read as a sentence pair.*"
           r"--text_column_names text_a"),
    Row("three_columns_one_picked", "classification",
        lambda c: c.train(c.fresh, "--train_file", h.write_tsv(c.tmp / "train.tsv", [
            (t, h.filler_text(3, seed=i), l) for i, (t, l) in enumerate(h.keyword_rows(24))]), "--do_train",
            "--text_column_names", "text_a"),
        0, r"columns \['text_a'\] \+ label 'label'", check=one_text_column),
    Row("label_file_duplicate_names", "classification",
        lambda c: c.train(c.keep, "--train_file", keyword_tsv(c), "--do_train", "--label_file",
                          c.file("class.txt", ["体育", "财经", "体育"])),
        2, r"class\.txt:3: duplicate label name '体育' \(also on line 1\)"),
    Row("max_seq_length_0", "classification",
        lambda c: c.train(c.keep, "--train_file", keyword_tsv(c), "--do_train", "--max_seq_length", "0"),
        2, r"--max_seq_length 0 leaves no room for text"),
    Row("max_seq_length_100000", "classification",
        lambda c: c.train(c.keep, "--train_file", keyword_tsv(c), "--do_train", "--max_seq_length", "100000"),
        2, r"--max_seq_length 100000 exceeds the model's 128 positions"),
    Row("max_seq_length_abc", "classification",
        lambda c: c.train(c.keep, "--train_file", keyword_tsv(c), "--do_train", "--max_seq_length", "abc"),
        2, r"--max_seq_length abc: not a whole number; pass e\.g\. 128 or auto"),
    Row("ner_max_seq_length_0", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ner_lines(NER_SENTENCES)), "--do_train",
                          "--max_seq_length", "0"),
        2, r"--max_seq_length 0 leaves no room for text"),
    Row("ner_max_seq_length_100000", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ner_lines(NER_SENTENCES)), "--do_train",
                          "--max_seq_length", "100000"),
        2, r"--max_seq_length 100000 exceeds the model's 128 positions"),
    Row("ner_max_seq_length_abc", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ner_lines(NER_SENTENCES)), "--do_train",
                          "--max_seq_length", "abc"),
        2, r"--max_seq_length.*invalid int value: 'abc'"),
    Row("qa_default_length_beyond_the_model", "qa",
        lambda c: c.train(c.keep, "--train_file", squad(c, "train.json", [("q1", "的甲是在", "甲", 1)]), "--do_train"),
        2, r"--max_seq_length 384 exceeds the model's 128 positions"),
    Row("qa_max_seq_length_0", "qa",
        lambda c: c.train(c.keep, "--train_file", squad(c, "train.json", [("q1", "的甲是在", "甲", 1)]),
                          "--do_train", "--max_seq_length", "0"),
        2, r"--max_seq_length 0 leaves no room for text"),
    Row("mlm_max_seq_length_100000", "mlm",
        lambda c: c.train(c.keep, "--train_file", corpus(c, ["的一是在不了。"] * 4), "--do_train",
                          "--max_seq_length", "100000"),
        2, r"--max_seq_length 100000 exceeds the model's 128 positions"),
    Row("mlm_one_line_corpus_trains", "mlm",
        lambda c: c.train(c.fresh, "--train_file", corpus(c, ["的一是在不了有和人这中大为上个国。"]), "--do_train",
                          "--max_seq_length", "16"),
        0, r"WARNING.*1 document, nothing to hold out for validation: training without evaluation.*"
           r"--validation_split_percentage 0 --eval_strategy no", check=trained_without_evaluation),
    Row("mlm_one_line_corpus_do_eval", "mlm",
        lambda c: c.train(c.keep, "--train_file", corpus(c, ["的一是在不了有和人这中大为上个国。"]), "--do_train",
                          "--do_eval", "--max_seq_length", "16"),
        2, r"corpus\.txt: 1 document, nothing to hold out for --do_eval; pass --validation_file"),
    Row("predict_model_dir_without_config", "predict",
        lambda c: ["--model", c.tmp, "--output", c.keep / "predictions.jsonl", "甲"],
        2, r"--model .*: not a model directory \(no config\.json\)"),
    Row("qa_repaired_answers_are_named", "qa",
        lambda c: c.train(c.fresh, "--train_file", squad(c, "train.json", [
            ("q_ok", "的甲是在不了", "甲", 1), ("q_moved", "的一是甲在不", "甲", 0)]), "--do_train", *QA_WINDOWS),
        0, r"answer_start repaired in 1 question\(s\), ids: q_moved", check=repaired_ids_listed),
    # ---- what round one fixed: still one clear line -----------------------------------------------------------------
    Row("tsv_line_without_tab", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.tsv", ["的一是\t0", "在不了\t1", "有和人"]),
                          "--do_train"),
        2, r"train\.tsv:3: no tab in this line; expected 2 tab-separated columns"),
    Row("tsv_stray_tab", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.tsv", ["的一是\t0", "在不了\t1", "有\t和人\t0"]),
                          "--do_train"),
        2, r"train\.tsv:3: wrong number of columns; 3 instead of 2 .*a stray tab"),
    Row("gbk_training_file", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.tsv", GBK_LINES, "gbk"), "--do_train"),
        2, r"train\.tsv:1: not UTF-8 \(looks like GB18030\)"),
    Row("empty_text", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.tsv", ["的一是\t0", " \t1"]), "--do_train"),
        2, r"train\.tsv:2: empty text in column 'text'"),
    Row("label_not_in_label_file", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.tsv", ["的一是\t体育", "在不了\t娱乐"]), "--do_train",
                          "--label_file", c.file("class.txt", CLASS_NAMES)),
        2, r"train\.tsv:2: label '娱乐' is not in --label_file"),
    Row("dev_label_never_trained", "classification",
        lambda c: c.train(c.keep, "--train_file", keyword_tsv(c), "--validation_file",
                          c.file("dev.tsv", ["的一是\t0", "在不了\t7"]), "--do_train", "--do_eval"),
        2, r"dev\.tsv:2: label '7' never occurs in the training data"),
    Row("unknown_extension", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.xlsx", ["x"]), "--do_train"),
        2, r"train\.xlsx: unknown extension '\.xlsx'"),
    Row("missing_file", "classification",
        lambda c: c.train(c.keep, "--train_file", c.tmp / "nope.tsv", "--do_train"),
        2, r"nope\.tsv: file not found"),
    Row("invalid_json_line", "classification",
        lambda c: c.train(c.keep, "--train_file", c.file("train.jsonl", ['{"text": "的一", "label": 0}', '{"text": ']),
                          "--do_train"),
        2, r"train\.jsonl:2: invalid JSON"),
    Row("do_train_without_file", "classification",
        lambda c: c.train(c.keep, "--do_train"),
        2, r"--do_train needs --train_file"),
    Row("ner_bad_tag", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ["的 O", "甲 X-PER"]), "--do_train"),
        2, r"train\.txt:2: tag 'X-PER' is neither O nor PREFIX-TYPE"),
    Row("ner_cluener_wrong_span", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.json", [json.dumps(
            {"text": "的甲乙是", "label": {"PER": {"甲乙": [[0, 1]]}}}, ensure_ascii=False)]), "--do_train"),
        2, r"train\.json:1: PER span \[0, 1\] is '的甲' in the text, not '甲乙'"),
    Row("ner_no_entities", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ["的 O", "是 O"]), "--do_train"),
        2, r"train\.txt: no entities at all"),
    Row("ner_gbk", "ner",
        lambda c: c.train(c.keep, "--train_file", c.file("train.txt", ["国 B-LOC", "足 O"], "gbk"), "--do_train"),
        2, r"train\.txt:1: not UTF-8"),
    Row("qa_missing_answers", "qa",
        lambda c: c.train(c.keep, "--train_file", squad(c, "train.json", [("q1", "的甲是在", "甲", None)]),
                          "--do_train", *QA_WINDOWS),
        2, r"train\.json: .*missing 'answers'"),
    Row("qa_duplicate_id", "qa",
        lambda c: c.train(c.keep, "--train_file", squad(c, "train.json", [("q1", "的甲是", "甲", 1),
                                                                         ("q1", "在甲了", "甲", 1)]), "--do_train",
                          *QA_WINDOWS),
        2, r"duplicate id 'q1'"),
    Row("mlm_json_without_text", "mlm",
        lambda c: c.train(c.keep, "--train_file", c.file("corpus.jsonl", ['{"content": "的一是"}']), "--do_train"),
        2, r"corpus\.jsonl:1: no key 'text'"),
    Row("predict_empty_text", "predict",
        lambda c: ["--model", c.classifier, "--input", c.file("in.tsv", ["text\tlabel", "\t0"]),
                   "--output", c.keep / "predictions.jsonl"],
        2, r"in\.tsv:2: empty text"),
    Row("predict_json_empty_text", "predict",
        lambda c: ["--model", c.classifier, "--input", c.file("in.jsonl", ['{"text": "的一是"}', '{"text": ""}']),
                   "--output", c.keep / "predictions.jsonl"],
        2, r"in\.jsonl:2: empty text"),
    Row("predict_missing_onnx", "predict",
        lambda c: ["--model", c.classifier, "--onnx", c.tmp / "model.onnx", "甲"],
        2, r"--onnx .*model\.onnx: no such file"),
    Row("predict_bf16_and_fp16", "predict",
        lambda c: ["--model", c.classifier, "--bf16", "--fp16", "甲"],
        2, r"--bf16 and --fp16: choose one"),
]


def run_cli(module, args):
    """`python script.py args`: the exit code; an exception that escapes run_main (a traceback) fails the test."""
    try:
        run_main(lambda: module.main([str(a) for a in args]))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def tree_hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def old_results(keep):
    """A results directory from an earlier run, as a user would have it."""
    keep.mkdir()
    (keep / "README.md").write_text("# old model\n\n| accuracy | 0.9312 |\n", encoding="utf-8")
    for name in ("eval_results.json", "all_results.json", "data_summary.json"):
        (keep / name).write_text(json.dumps({"eval_accuracy": 0.9312, "splits": {"train": {}}}), encoding="utf-8")
    (keep / "eval_confusion_matrix.png").write_bytes(b"\x89PNG old")
    (keep / "predictions.jsonl").write_text('{"text": "old", "label": "体育"}\n', encoding="utf-8")
    (keep / "predict_results.tsv").write_text("line\ttext\tpredicted_label\n", encoding="utf-8")


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input(row, models, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(logging.root, "handlers", [])  # the scripts' own handlers, on this test's stdout/stderr
    ctx = Ctx(tmp=tmp_path / "in", keep=tmp_path / "results", fresh=tmp_path / "fresh", tiny=models["tiny"],
              classifier=models["classifier"], tagger=models["tagger"])
    ctx.tmp.mkdir()
    old_results(ctx.keep)
    before = tree_hashes(ctx.keep)
    args = row.build(ctx)
    if row.stdin is not None:
        # as a pipe delivers it: bytes underneath, text decoded leniently on top (a C/POSIX locale)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(row.stdin), encoding="utf-8",
                                                           errors="surrogateescape"))
    code = run_cli(MODULES[row.script], args)
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text
    assert code == row.exit, output[-3000:]
    assert re.search(row.message, output, re.S), output[-3000:]
    if row.exit != 0:
        assert "Traceback" not in captured.err
    assert tree_hashes(ctx.keep) == before  # nothing in the earlier results changed
    if row.check is not None:
        row.check(ctx)
