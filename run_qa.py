#!/usr/bin/env python
"""Fine-tune a BERT-style model for extractive question answering on Chinese text (CMRC2018, DRCD, SQuAD formats).

One file, top to bottom: arguments -> data -> preprocessing -> model -> train -> evaluate -> predict -> report.

    python run_qa.py \
        --model_name_or_path bert-base-chinese \
        --train_file data/cmrc2018/train.json --validation_file data/cmrc2018/dev.json \
        --do_train --do_eval \
        --max_seq_length 384 --doc_stride 128 --num_train_epochs 2 --learning_rate 3e-5 \
        --per_device_train_batch_size 32 --output_dir outputs/cmrc2018

The model reads `[CLS] question [SEP] context window [SEP]` and predicts where the answer starts and ends in the
context (the fourth task of the BERT paper).

Data: SQuAD v1/v2 JSON (`{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers"}]}]}]}`: CMRC2018,
DRCD, SQuAD) or flat JSON lines (`{"id", "question", "context", "answers": [{"text", "answer_start"}]}`, or answers
as `{"text": [...], "answer_start": [...]}` as in Hugging Face datasets). Simplified and Traditional Chinese work
unchanged. Answers whose `answer_start` does not point at their text are moved to the nearest occurrence; answers not
in the context are skipped for training (still gold answers for the metrics); both are counted and reported.

What differs from the Hugging Face example (on purpose):
  * Chinese text has no spaces, so character offsets from the fast tokenizer (not whitespace) map every token back
    to the context; the predicted answer is always an exact substring of the original context;
  * long contexts are cut into windows that overlap by at least `--doc_stride` tokens, the last one flush with the end
    of the context; windows without the answer point to [CLS] in training; batches are padded dynamically;
  * post-processing is written here for transformers 5 (the example's `trainer_qa`/`utils_qa` helpers break on it):
    the n best start/end pairs over all windows of a question, spans found in two windows scored once;
  * EM/F1 are computed locally, nothing is downloaded: `--metric cmrc2018` (default) is the CMRC2018 evaluation
    (CJK characters compared one by one, English words and numbers as tokens, punctuation removed, F1 from the longest
    common substring, best over all gold answers); `--metric squad` is SQuAD's English EM/F1;
  * bad input is rejected before training with an error naming the file and the place in the JSON, e.g.
    `error: train.json: data[3].paragraphs[0].qas[2]: missing 'question'; ...`.

Arguments can also come from one .json or .yaml file: `python run_qa.py args.yaml`.
"""

import bisect
import hashlib
import json
import logging
import math
import os
import re
import string
import time
import unicodedata
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import transformers
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    set_seed,
)
from transformers.trainer_utils import speed_metrics

from checkpoints import checkpoint_to_resume
from model_card import finish_output_dir
from plotting import plot_training_curves
from script_utils import check_max_seq_length, data_files, DataError, parse_args, run_main, setup_logging
from training import FineTuningTrainer, FineTuningTrainingArguments, freeze_parameters

logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message=".*null_placement.*")  # pyarrow, via datasets' sort: not ours to fix

READER_VERSION = 1  # part of the datasets cache fingerprint: bump when reading/repairing rules change


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Hub id (e.g. bert-base-chinese) or local directory of a pretrained model, e.g. a run_mlm.py "
                  "output (its encoder is kept, the MLM head dropped). Leave it out and give --config_name to "
                  "train from scratch."},
    )
    config_name: Optional[str] = field(
        default=None, metadata={"help": "Config name or path, if not the same as model_name_or_path."}
    )
    tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer name or path (a fast tokenizer), if not the same as model."}
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version: branch, tag or commit id."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token for private models."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow custom modeling code from the Hub/model dir to run. Off unless you trust the code."},
    )
    freeze: str = field(
        default="none",
        metadata={"help": "all: BERT is a fixed feature extractor, only the span head trains; embeddings: freeze the "
                  "embedding layer; none.", "choices": ["none", "all", "embeddings"]},
    )
    freeze_layers: Optional[str] = field(
        default=None, metadata={"help": "Encoder layers to freeze, comma-separated ids, e.g. 0,1,2 (the lowest)."}
    )


@dataclass
class DataTrainingArguments:
    train_file: Optional[str] = field(default=None, metadata={"help": "Training data: SQuAD-style .json or .jsonl."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Validation data (with answers)."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Test data for --do_predict; answers optional."})
    max_seq_length: Optional[int] = field(
        default=None,
        metadata={"help": "Tokens per window: [CLS] question [SEP] context [SEP] (default 384). With a trained model "
                  "and no training, the model's own setting is the default (this holds for --doc_stride, "
                  "--max_query_length, --max_answer_length and --version_2_with_negative too)."},
    )
    doc_stride: Optional[int] = field(
        default=None,
        metadata={"help": "Contexts longer than a window are cut into windows that overlap by at least this many "
                  "tokens (default 128); the last window ends with the context."},
    )
    max_query_length: Optional[int] = field(
        default=None, metadata={"help": "Questions longer than this many tokens are cut (default 64); counted."}
    )
    max_answer_length: Optional[int] = field(
        default=None, metadata={"help": "Longest answer predicted, in tokens (default 30)."}
    )
    n_best_size: int = field(
        default=20, metadata={"help": "Start and end candidates per window, and answers kept in nbest_predictions."}
    )
    version_2_with_negative: bool = field(
        default=False,
        metadata={"help": "SQuAD v2: some questions have no answer in the context; the model learns to point at "
                  "[CLS] for them and predicts '' when the null score wins by --null_score_diff_threshold. A model "
                  "trained with it keeps it for evaluation and prediction."},
    )
    null_score_diff_threshold: float = field(
        default=0.0,
        metadata={"help": "--version_2_with_negative: predict no answer when null score - best span score > this. "
                  "The eval metrics report the best threshold (best_f1_threshold)."},
    )
    metric: str = field(
        default="cmrc2018",
        metadata={"help": "cmrc2018: Chinese-aware EM/F1 (CJK characters one by one, English words and numbers as "
                  "tokens, punctuation removed, F1 over the longest common substring), as the CMRC2018 evaluation; "
                  "squad: SQuAD's English EM/F1 (lowercase, no punctuation/articles, bag of words).",
                  "choices": ["cmrc2018", "squad"]},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every window to max_seq_length (slower). Default: pad each batch to its longest "
                  "window."},
    )
    max_train_samples: Optional[int] = field(default=None,
                                             metadata={"help": "Use only the first N training questions."})
    max_eval_samples: Optional[int] = field(default=None,
                                            metadata={"help": "Use only the first N validation questions."})
    max_predict_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N test questions."})
    show_examples: int = field(
        default=0, metadata={"help": "Print N encoded training windows: tokens, token_type_ids, answer positions."}
    )
    early_stopping_patience: Optional[int] = field(
        default=None,
        metadata={"help": "Stop after N evaluations without improvement of --metric_for_best_model (default f1) and "
                  "reload the best checkpoint at the end."},
    )
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the cache."})


DEFAULTS = {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64, "max_answer_length": 30,
            "version_2_with_negative": False}


# ----------------------------------------------------------------------------------------------------------------
# Reading data files: every problem becomes one clear line naming the file, the place in the JSON and the fix
# ----------------------------------------------------------------------------------------------------------------

SQUAD_SHAPE = '{"data": [{"title": ..., "paragraphs": [{"context": ..., "qas": [{"id", "question", "answers"}]}]}]}'
LINE_SHAPE = '{"id": ..., "question": ..., "context": ..., "answers": [{"text": ..., "answer_start": ...}]}'


def type_name(value):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def load_records(path):
    """Parse a data file. Returns (format, records): ("squad", {"data": [...]}) or ("lines", [(where, object)])
    where `where` is "line N" (JSON lines) or "[i]" (a JSON list of flat records)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8; convert it first, e.g. iconv -f GB18030 -t UTF-8 {path} > "
                        f"utf8_{os.path.basename(path)}")
    if not text.strip():
        raise DataError(f"{path}: empty file.")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as whole_error:
        # Not one JSON document: JSON lines, if the first non-blank line is a complete object.
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if line.strip())
        try:
            json.loads(lines[first])
        except json.JSONDecodeError:
            raise DataError(f"{path}:{whole_error.lineno}:{whole_error.colno}: invalid JSON ({whole_error.msg}); "
                            f"expected SQuAD-style JSON {SQUAD_SHAPE} or JSON lines, one {LINE_SHAPE} per line.")
        records = []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append((f"line {i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: invalid JSON ({e.msg}); each line must be one object {LINE_SHAPE}")
        return "lines", records
    if isinstance(obj, dict) and "data" in obj:
        return "squad", obj
    if isinstance(obj, dict) and ("question" in obj or "context" in obj):
        return "lines", [("line 1", obj)]  # JSON lines with a single line
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj) and "paragraphs" not in obj[0]:
        return "lines", [(f"[{i}]", r) for i, r in enumerate(obj)]
    if isinstance(obj, list):
        raise DataError(f"{path}: the top level is a list; SQuAD-style files are {SQUAD_SHAPE} (wrap the list in "
                        f'{{"data": ...}}), JSON lines files hold one {LINE_SHAPE} per line.')
    raise DataError(f"{path}: the top level is {type_name(obj)} without a 'data' list; expected {SQUAD_SHAPE} or "
                    f"JSON lines, one {LINE_SHAPE} per line.")


def iter_questions(path, fmt, records):
    """Yield (where, title, context, qa) for every question, checking the structure around it."""

    def need(obj, key, where, kind, fix):
        if not isinstance(obj, dict):
            raise DataError(f"{path}: {where}: expected an object, got {type_name(obj)}; {fix}")
        if key not in obj:
            raise DataError(f"{path}: {where}: missing '{key}'; {fix}")
        value = obj[key]
        if not isinstance(value, kind):
            raise DataError(f"{path}: {where}.{key}: expected {type_name(kind())}, got {type_name(value)}; {fix}")
        return value

    if fmt == "lines":
        for where, record in records:
            if not isinstance(record, dict):
                raise DataError(f"{path}: {where}: expected an object {LINE_SHAPE}, got {type_name(record)}.")
            yield where, str(record.get("title") or ""), record.get("context"), record
        return
    articles = need(records, "data", "top level", list, f"expected {SQUAD_SHAPE}")
    for i, article in enumerate(articles):
        where = f"data[{i}]"
        paragraphs = need(article, "paragraphs", where, list,
                          'each article is {"title": ..., "paragraphs": [{"context": ..., "qas": [...]}]}')
        title = str(article.get("title") or "")
        for j, paragraph in enumerate(paragraphs):
            p_where = f"{where}.paragraphs[{j}]"
            if not isinstance(paragraph, dict):
                raise DataError(f"{path}: {p_where}: expected an object {{\"context\": ..., \"qas\": [...]}}, got "
                                f"{type_name(paragraph)}.")
            context = paragraph.get("context")
            qas = need(paragraph, "qas", p_where, list, 'each paragraph is {"context": ..., "qas": [...]}; '
                       'add the questions or remove the paragraph')
            if qas:
                check_context(path, p_where, context, "paragraph")
            for k, qa in enumerate(qas):
                yield f"{p_where}.qas[{k}]", title, context, qa


def check_context(path, where, context, entry):
    if context is None:
        raise DataError(f"{path}: {where}: missing 'context'; add the passage text or remove the {entry}.")
    if not isinstance(context, str):
        raise DataError(f"{path}: {where}: 'context' must be a string, got {type_name(context)}.")
    if not context.strip():
        raise DataError(f"{path}: {where}: empty context; add the passage text or remove the {entry}.")


def parse_answers(path, where, value, fmt):
    """The answers of one question as [(text, answer_start or None, where)]; structural problems are DataErrors."""
    fix = 'answers are a list of {"text": ..., "answer_start": ...} objects'
    if fmt == "lines" and isinstance(value, dict):  # Hugging Face datasets: {"text": [...], "answer_start": [...]}
        texts, starts = value.get("text"), value.get("answer_start", [None] * len(value.get("text") or []))
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(f"{path}: {where}.answers: expected {{\"text\": [...], \"answer_start\": [...]}} with "
                            f"lists of the same length, or {fix}.")
        value = [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
    if not isinstance(value, list):
        raise DataError(f"{path}: {where}.answers: expected a list, got {type_name(value)}; {fix}.")
    answers = []
    for m, answer in enumerate(value):
        a_where = f"{where}.answers[{m}]"
        if not isinstance(answer, dict):
            raise DataError(f"{path}: {a_where}: expected an object, got {type_name(answer)}; {fix}.")
        if "text" not in answer:
            raise DataError(f"{path}: {a_where}: missing 'text'; {fix}.")
        text, start = answer["text"], answer.get("answer_start")
        if not isinstance(text, str):
            raise DataError(f"{path}: {a_where}.text: expected a string, got {type_name(text)}.")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            if isinstance(start, str) and start.strip().lstrip("-").isdigit():
                start = int(start)
            else:
                raise DataError(f"{path}: {a_where}.answer_start: expected a character offset (an integer), got "
                                f"{type_name(start)} {start!r}.")
        answers.append((text, start, a_where))
    return answers


def locate_answer(context, text, start):
    """(start, status): the answer's character offset in `context`. status: "ok" (answer_start points at the text),
    "repaired" (moved to the occurrence nearest to answer_start), "not_found" (start -1)."""
    if start is not None and 0 <= start and context.startswith(text, start):
        return start, "ok"
    positions, p = [], context.find(text)
    while p != -1:
        positions.append(p)
        p = context.find(text, p + 1)
    if not positions:
        return -1, "not_found"
    target = start if start is not None else 0
    return min(positions, key=lambda q: (abs(q - target), q)), "repaired"


# What read_qa_file counts. answers_ok: answer_start points at the text; answers_repaired: it did not, the answer was
# moved to the nearest occurrence of its text; answers_not_found: the text is not in the context (skipped for
# training, still a gold answer for the metrics); answers_empty: blank answer text (skipped).
STAT_KEYS = ("questions_read", "questions_used", "questions_unanswerable", "answers", "answers_ok", "answers_repaired",
             "answers_not_found", "answers_empty")


def read_qa_file(path, split, version_2, limit=None):
    """Validate a whole file before anything is trained. Returns (examples, stats, format).

    split: "train", "validation" or "test" (answers optional). Structural problems (missing fields, duplicate ids,
    empty contexts or questions, answers that are not a list) raise DataError naming the file and the JSON path.
    Answer problems are repaired or skipped and counted in `stats`; so are questions that cannot be used
    (training: no answer found in the context; without --version_2_with_negative: unanswerable questions).
    """
    fmt, records = load_records(path)
    stats, skipped = Counter(), Counter()
    seen_ids, examples = {}, []
    ids_of = {"repaired": [], "not_found": []}  # question ids per answer problem, to look them up in the file
    for where, title, context, qa in iter_questions(path, fmt, records):
        if limit is not None and stats["questions_read"] >= limit:
            break
        if not isinstance(qa, dict):
            raise DataError(f"{path}: {where}: expected a question object {{\"id\", \"question\", \"answers\"}}, got "
                            f"{type_name(qa)}.")
        if fmt == "lines":
            check_context(path, where, context, "line")
        for key, fix in (("question", "add the question text"), ("id", "give every question a unique id")):
            value = qa.get(key)
            if value is None:
                raise DataError(f"{path}: {where}: missing '{key}'; {fix} or remove the question.")
            if key == "question" and not isinstance(value, str):
                raise DataError(f"{path}: {where}: 'question' must be a string, got {type_name(value)}.")
            if key == "id" and (isinstance(value, (bool, dict, list)) or not str(value).strip()):
                raise DataError(f"{path}: {where}: 'id' must be a non-empty string or number, got {value!r}.")
        qid = str(qa["id"])
        if qid in seen_ids:
            raise DataError(f"{path}: {where}: duplicate id '{qid}' (first at {seen_ids[qid]}); ids must be unique.")
        seen_ids[qid] = where
        stats["questions_read"] += 1
        if not qa["question"].strip():  # real data has these (CMRC2018 trial): nothing to ask, so skipped and counted
            logger.warning(f"{path}: {where}: empty question (id {qid}); skipped")
            skipped["empty question"] += 1
            continue
        impossible = bool(qa.get("is_impossible", False))
        if "answers" not in qa and not impossible:
            if split != "test":
                raise DataError(f"{path}: {where}: missing 'answers'; every {split} question needs its answers "
                                f"(put questions without answers in --test_file).")
            raw_answers, has_gold = [], False
        else:
            raw_answers, has_gold = ([] if impossible else parse_answers(path, where, qa.get("answers", []), fmt)), True

        texts, starts = [], []
        for text, start, a_where in raw_answers:
            stats["answers"] += 1
            stripped = text.strip()
            if not stripped:
                stats["answers_empty"] += 1  # skipped
                continue
            if start is not None and stripped != text:  # " 北京 " at 12 -> "北京" at 13
                start += len(text) - len(text.lstrip())
            position, status = locate_answer(context, stripped, start)
            stats[f"answers_{status}"] += 1
            if status in ids_of and qid not in ids_of[status][-1:]:
                ids_of[status].append(qid)
            texts.append(stripped)
            starts.append(position)

        unanswerable = has_gold and not texts
        stats["questions_unanswerable"] += unanswerable
        reason = None
        if unanswerable and not version_2 and split != "test":
            reason = "unanswerable (no answer; pass --version_2_with_negative)"
        elif split == "train" and texts and all(s < 0 for s in starts):
            reason = "no answer found in the context"
        if reason:
            skipped[reason] += 1
            continue
        examples.append({"row": len(examples), "id": qid, "where": where, "title": title, "context": context,
                         "question": qa["question"], "answers": {"text": texts, "answer_start": starts},
                         "has_gold": has_gold})
    stats["questions_used"] = len(examples)
    stats = {k: stats[k] for k in STAT_KEYS}
    stats["questions_skipped"] = dict(skipped)
    stats["answers_repaired_question_ids"] = ids_of["repaired"]
    stats["answers_not_found_question_ids"] = ids_of["not_found"]
    if not examples:
        raise DataError(f"{path}: no usable questions (read {stats['questions_read']}, skipped {dict(skipped)}).")
    return examples, stats, fmt


EXAMPLE_FEATURES = datasets.Features({
    "row": datasets.Value("int64"), "id": datasets.Value("string"), "where": datasets.Value("string"),
    "title": datasets.Value("string"), "context": datasets.Value("string"), "question": datasets.Value("string"),
    "answers": {"text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int64"))},
    "has_gold": datasets.Value("bool"),
})


def generate_examples(path, split, version_2, limit):
    """Rows for datasets.Dataset.from_generator (written to an Arrow file, not kept in memory)."""
    examples, _, _ = read_qa_file(path, split, version_2, limit)
    yield from examples


# ----------------------------------------------------------------------------------------------------------------
# Windows over long contexts; answer characters -> token positions
# ----------------------------------------------------------------------------------------------------------------


def window_starts(n_tokens, content, step):
    """Start offsets of windows of `content` tokens every `step` tokens, the last one flush with the end, so every
    token is covered and neighbouring windows overlap by at least content - step tokens."""
    starts = list(range(0, max(n_tokens - content, 0) + 1, step))
    if starts[-1] + content < n_tokens:
        starts.append(n_tokens - content)
    return starts


def token_span(offsets, char_start, char_end):
    """First and last token covering characters [char_start, char_end) of the text, or None if no token does
    (e.g. the answer is only whitespace). `offsets`: (start, end) character offsets of the text's tokens, in order."""
    ends = [o[1] for o in offsets]
    starts = [o[0] for o in offsets]
    first = bisect.bisect_right(ends, char_start)  # first token ending after char_start
    last = bisect.bisect_left(starts, char_end) - 1  # last token starting before char_end
    if first >= len(offsets) or last < first:
        return None
    return first, last


# ----------------------------------------------------------------------------------------------------------------
# Post-processing: logits of every window -> the best answer span of each question, as text of its context
# ----------------------------------------------------------------------------------------------------------------


def postprocess_predictions(examples, features, start_logits, end_logits, n_best_size=20, max_answer_length=30,
                            version_2=False, null_score_diff_threshold=0.0):
    """Returns (predictions {id: text}, nbest {id: [candidates]}, null_odds {id: null - best span score}).

    `features` holds, per window, `example_index` and `char_start`/`char_end` (the context characters each input
    position covers; -1 for [CLS], question and [SEP]). Per window the `n_best_size` best starts and ends inside the
    context are paired (end >= start, at most `max_answer_length` tokens); a span seen in two overlapping windows
    counts once, with its best score. The answer is `context[char_start:char_end]`: the exact original text. The null
    score is the lowest [CLS] start+end score over the question's windows; with `version_2` the answer is '' when
    null - best span score > `null_score_diff_threshold`.
    """
    by_example = defaultdict(list)
    for f, example_index in enumerate(features["example_index"]):
        by_example[example_index].append(f)
    char_starts, char_ends = features["char_start"], features["char_end"]
    predictions, nbest, null_odds = {}, {}, {}
    for e, (qid, context) in enumerate(zip(examples["id"], examples["context"])):
        spans, null_score = {}, None
        for f in by_example.get(e, []):
            cs, ce = np.asarray(char_starts[f]), np.asarray(char_ends[f])
            n = len(cs)
            s_logits, e_logits = np.asarray(start_logits[f][:n], dtype=np.float64), np.asarray(end_logits[f][:n],
                                                                                                   dtype=np.float64)
            score = s_logits[0] + e_logits[0]
            null_score = score if null_score is None else min(null_score, score)
            inside = np.nonzero(cs >= 0)[0]
            if not len(inside):
                continue
            top_starts = inside[np.argsort(-s_logits[inside], kind="stable")[:n_best_size]]
            top_ends = inside[np.argsort(-e_logits[inside], kind="stable")[:n_best_size]]
            length = top_ends[None, :] - top_starts[:, None] + 1
            scores = s_logits[top_starts][:, None] + e_logits[top_ends][None, :]
            scores[(length < 1) | (length > max_answer_length)] = -np.inf
            # This window's n best pairs are enough: a span in the overall n best is among the n best of the window
            # where it scores highest.
            order = np.argsort(-scores, axis=None, kind="stable")[:n_best_size]
            for i, j in zip(*np.unravel_index(order, scores.shape)):
                if not np.isfinite(scores[i, j]):
                    break
                s, t = top_starts[i], top_ends[j]
                key = (int(cs[s]), int(ce[t]))
                if key not in spans or scores[i, j] > spans[key][0]:
                    spans[key] = (scores[i, j], s_logits[s], e_logits[t])
        candidates = [{"text": context[a:b], "answer_start": a, "score": v[0], "start_logit": v[1], "end_logit": v[2]}
                      for (a, b), v in sorted(spans.items(), key=lambda kv: -kv[1][0])[:n_best_size]]
        best = candidates[0] if candidates else None
        answer = best["text"] if best else ""
        if version_2 and null_score is not None:
            odds = null_score - best["score"] if best else math.inf
            null_odds[qid] = float(odds) if best else None
            if odds > null_score_diff_threshold:
                answer = ""
            candidates.append({"text": "", "answer_start": -1, "score": null_score, "start_logit": None,
                               "end_logit": None})
            candidates.sort(key=lambda c: -c["score"])
        if candidates:
            scores = np.array([c["score"] for c in candidates])
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            for c, p in zip(candidates, probs):
                c["probability"] = float(p)
        predictions[qid] = answer
        nbest[qid] = [{"text": c["text"], "probability": c["probability"], "answer_start": c["answer_start"],
                       "start_logit": None if c["start_logit"] is None else float(c["start_logit"]),
                       "end_logit": None if c["end_logit"] is None else float(c["end_logit"])} for c in candidates]
    return predictions, nbest, null_odds


# ----------------------------------------------------------------------------------------------------------------
# Metrics: CMRC2018 (Chinese) and SQuAD (English) exact match and F1, computed locally
# ----------------------------------------------------------------------------------------------------------------

# The CMRC2018 evaluation's own punctuation list (it also serves there as a separator); every other Unicode
# punctuation character (ASCII and full-width alike) is removed as well.
CMRC_PUNCTUATION = set("-:_*^/\\~`+=，。：？！“”；’《》…·、「」（）－～『』")
CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF),
              (0x2F800, 0x2FA1F), (0x30000, 0x3134F))  # the ranges BERT's tokenizer splits into single characters
WORD_RE = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*|\S")  # words/numbers (3.14, 1,000, don't kept whole); else 1 char


def is_cjk(ch):
    cp = ord(ch)
    return any(a <= cp <= b for a, b in CJK_RANGES)


def is_punctuation(ch):
    return ch in CMRC_PUNCTUATION or unicodedata.category(ch).startswith("P")


def cmrc_tokens(text):
    """CMRC2018's mixed segmentation: lowercase; every CJK character is a token; runs of other characters are split
    into words and numbers (English words, "3.14", "2V2" stay whole); punctuation is removed. The official script's
    own punctuation list (CMRC_PUNCTUATION) is dropped before splitting, so "M-Touch" is one token "mtouch" there
    and here; other punctuation (ASCII "(", ",", "."; full-width "．", "【") is removed too, where the official
    script, whose list is shorter, keeps it as tokens."""
    tokens, run = [], []

    def flush():
        if run:
            tokens.extend(t for t in WORD_RE.findall("".join(run)) if not all(is_punctuation(c) for c in t))
            run.clear()

    for ch in text.lower().strip():
        if ch in CMRC_PUNCTUATION:
            continue  # dropped without splitting, as in the official script: "M-Touch" -> "mtouch"
        if is_cjk(ch):
            flush()
            tokens.append(ch)
        else:
            run.append(ch)
    flush()
    return tokens


def longest_common_substring(a, b):
    """Length of the longest common contiguous run of two token lists (the CMRC2018 evaluation's `find_lcs`)."""
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def cmrc_scores(prediction, gold):
    """(exact match, F1) of one prediction against one gold answer, CMRC2018 style."""
    p, g = cmrc_tokens(prediction), cmrc_tokens(gold)
    if not p or not g:
        return float(p == g), float(p == g)
    lcs = longest_common_substring(g, p)
    if lcs == 0:
        return float(p == g), 0.0
    precision, recall = lcs / len(p), lcs / len(g)
    return float(p == g), 2 * precision * recall / (precision + recall)


def squad_normalize(text):
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_scores(prediction, gold):
    """(exact match, F1) of one prediction against one gold answer, as SQuAD's evaluate-v2.0.py."""
    p, g = squad_normalize(prediction).split(), squad_normalize(gold).split()
    if not p or not g:
        return float(p == g), float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return float(p == g), 0.0
    precision, recall = common / len(p), common / len(g)
    return float(p == g), 2 * precision * recall / (precision + recall)


def question_scores(prediction, golds, metric="cmrc2018"):
    """(EM, F1) in [0, 1], best over all gold answers; no gold answer (unanswerable) is the gold answer ''."""
    scorer = cmrc_scores if metric == "cmrc2018" else squad_scores
    scores = [scorer(prediction, gold) for gold in (golds or [""])]
    return max(s[0] for s in scores), max(s[1] for s in scores)


def qa_metrics(golds, predictions, metric="cmrc2018", null_odds=None, best_answers=None):
    """EM and F1 in percent over every question in `golds` ({id: [gold texts]}; [] = unanswerable). A question without
    a prediction scores 0. With `null_odds` and `best_answers` (SQuAD v2): the best null threshold too."""
    scores = {qid: question_scores(predictions.get(qid, ""), g, metric) if qid in predictions else (0.0, 0.0)
              for qid, g in golds.items()}
    n = max(len(scores), 1)
    result = {"exact_match": 100.0 * sum(s[0] for s in scores.values()) / n,
              "f1": 100.0 * sum(s[1] for s in scores.values()) / n,
              "total": len(scores), "missing_predictions": sum(1 for q in golds if q not in predictions)}
    has_answer = [q for q, g in golds.items() if g]
    no_answer = [q for q, g in golds.items() if not g]
    if no_answer:
        for name, ids in (("has_answer", has_answer), ("no_answer", no_answer)):
            result[f"{name}_total"] = len(ids)
            if ids:
                result[f"{name}_exact_match"] = 100.0 * sum(scores[q][0] for q in ids) / len(ids)
                result[f"{name}_f1"] = 100.0 * sum(scores[q][1] for q in ids) / len(ids)
    if null_odds is not None and best_answers is not None:
        # Sweep the threshold t (predict '' when null_odds > t): start with every question null, then switch
        # questions to their best span in increasing order of null_odds (questions with equal odds together).
        ordered = sorted((q for q in golds if null_odds.get(q) is not None), key=lambda q: null_odds[q])
        for k, name in ((0, "exact_match"), (1, "f1")):
            null = {q: float(not golds[q]) for q in golds}
            total = best = sum(null.values())
            # below the lowest odds every question is null
            threshold = null_odds[ordered[0]] - 1.0 if ordered else 0.0
            for i, q in enumerate(ordered):
                total += question_scores(best_answers.get(q, ""), golds[q], metric)[k] - null[q]
                last_of_tie = i + 1 == len(ordered) or null_odds[ordered[i + 1]] != null_odds[q]
                if last_of_tie and total > best:
                    best, threshold = total, null_odds[q]
            result[f"best_{name}"] = 100.0 * best / n
            result[f"best_{name}_threshold"] = float(threshold)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Trainer: the recipe's optimizer groups; evaluation = logits of every window -> answers -> EM/F1
# ----------------------------------------------------------------------------------------------------------------


class QATrainer(FineTuningTrainer):
    def __init__(self, *args, train_examples=None, eval_examples=None, answer_settings=None, **kwargs):
        super().__init__(*args, **kwargs)
        # The questions behind the windows (a window's "example_index" is a row of these).
        self.train_examples, self.eval_examples = train_examples, eval_examples
        self.answer_settings = answer_settings or {}

    def predict_answers(self, features, examples, prefix, ignore_keys=None):
        """Run the model over every window of `features`, turn the logits into answers, score them when `examples`
        have gold answers. Returns (metrics, predictions, nbest, null_odds)."""
        dataloader = self.get_eval_dataloader(features) if prefix == "eval" else self.get_test_dataloader(features)
        start = time.time()
        output = self.evaluation_loop(dataloader, description="Evaluation" if prefix == "eval" else "Prediction",
                                      prediction_loss_only=False, ignore_keys=ignore_keys, metric_key_prefix=prefix)
        metrics = dict(output.metrics)
        batch = self.args.eval_batch_size * self.args.world_size
        metrics.update(speed_metrics(prefix, start, num_samples=output.num_samples,
                                     num_steps=math.ceil(output.num_samples / batch)))
        start_logits, end_logits = output.predictions[:2]
        start = time.time()
        s = self.answer_settings
        predictions, nbest, null_odds = postprocess_predictions(
            examples, features, start_logits, end_logits, n_best_size=s["n_best_size"],
            max_answer_length=s["max_answer_length"], version_2=s["version_2_with_negative"],
            null_score_diff_threshold=s["null_score_diff_threshold"])
        metrics[f"{prefix}_postprocess_runtime"] = round(time.time() - start, 3)
        metrics[f"{prefix}_questions"] = len(examples)
        golds = {qid: answers["text"] for qid, answers, has_gold in zip(examples["id"], examples["answers"],
                                                                      examples["has_gold"]) if has_gold}
        if golds and len(golds) == len(examples):
            best_answers = {qid: next((c["text"] for c in cands if c["text"]), "") for qid, cands in nbest.items()}
            scores = qa_metrics(golds, predictions, s["metric"], null_odds if s["version_2_with_negative"] else None,
                                best_answers)
            # (every question has a prediction here: total and missing_predictions say nothing)
            metrics.update({f"{prefix}_{k}": v for k, v in scores.items() if k not in ("total", "missing_predictions")})
        return metrics, predictions, nbest, null_odds

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        features = self.eval_dataset if eval_dataset is None else eval_dataset
        metrics, *_ = self.predict_answers(features, self.eval_examples, metric_key_prefix, ignore_keys)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def main(args=None):
    model_args, data_args, training_args = parse_args((ModelArguments, DataTrainingArguments, FineTuningTrainingArguments),
                                                      args)

    setup_logging(logger, training_args)

    resume = checkpoint_to_resume(training_args)  # never overwrites results unless asked
    set_seed(training_args.seed)
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision,
                  "token": model_args.token, "trust_remote_code": model_args.trust_remote_code}
    # [CLS] question [SEP] context [SEP]: at least one token of each
    check_max_seq_length(data_args.max_seq_length, model_args.config_name or model_args.model_name_or_path,
                         minimum=5, hub_kwargs=hub_kwargs)

    files, limits = data_files(data_args, training_args)  # split -> path, split -> --max_*_samples

    # ---- Settings: flags given win; without training, a trained model's saved settings (config.json,
    # "question_answering") come next, so it sees questions encoded as in training; then the recipe's defaults.
    config_source = model_args.config_name or model_args.model_name_or_path
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    if not config_source or not tokenizer_source:
        raise ValueError("Pass --model_name_or_path, or --config_name and --tokenizer_name to train from scratch.")
    config = AutoConfig.from_pretrained(config_source, num_labels=2, finetuning_task="question-answering",
                                        **hub_kwargs)
    saved = (getattr(config, "question_answering", None) or {}) if "train" not in files else {}
    given = {name: getattr(data_args, name) for name in DEFAULTS}
    given["version_2_with_negative"] = data_args.version_2_with_negative or None  # a flag: only True counts as given
    settings = {name: given[name] if given[name] is not None else saved.get(name, default)
                for name, default in DEFAULTS.items()}
    if saved:
        logger.info(f"Encoding as the model was trained, unless a flag says otherwise: {saved}")
    max_seq_length, doc_stride = settings["max_seq_length"], settings["doc_stride"]
    max_query_length, version_2 = settings["max_query_length"], settings["version_2_with_negative"]
    model_limit = getattr(config, "max_position_embeddings", 512)
    if max_seq_length > model_limit:
        raise DataError(f"--max_seq_length {max_seq_length} exceeds the model's {model_limit} positions "
                        f"(max_position_embeddings); pass --max_seq_length {model_limit} or less.")
    min_content = max_seq_length - max_query_length - 3  # context tokens per window with the longest question
    if min_content < 1 or not 0 <= doc_stride < min_content:
        raise DataError(f"--doc_stride {doc_stride} must be smaller than the context tokens of a window with the "
                         f"longest question: max_seq_length - max_query_length - 3 = {max_seq_length} - "
                         f"{max_query_length} - 3 = {min_content}. Lower --doc_stride or --max_query_length, or raise "
                         f"--max_seq_length.")
    if data_args.n_best_size < 1 or settings["max_answer_length"] < 1:
        raise ValueError("--n_best_size and --max_answer_length must be at least 1.")

    # ---- Data: validate every file before anything heavy happens -------------------------------------------------
    reads = {}
    for split, path in files.items():
        _, stats, fmt = read_qa_file(path, split, version_2, limits[split])
        reads[split] = (stats, fmt)
        logger.info(f"{split}: {path} ({'SQuAD-style JSON' if fmt == 'squad' else 'JSON lines'}): "
                    f"{stats['questions_read']} questions, {stats['answers']} answers"
                    + (f", {stats['questions_unanswerable']} unanswerable" if stats["questions_unanswerable"] else "")
                    + f"; answer_start repaired (moved to the nearest occurrence of the text): "
                      f"{stats['answers_repaired']}; answers not in the context: {stats['answers_not_found']}"
                    + (" (skipped for training)" if split == "train" else " (still gold answers for the metrics)")
                    + (f"; empty answers skipped: {stats['answers_empty']}" if stats["answers_empty"] else "")
                    + f"; {stats['questions_used']} questions used"
                    + (f", skipped: {stats['questions_skipped']}" if stats["questions_skipped"] else ""))
        for status, what in (("repaired", "answer_start repaired"), ("not_found", "answers not in the context")):
            ids = stats[f"answers_{status}_question_ids"]
            if ids:
                logger.warning(f"{path}: {what} in {len(ids)} question(s), ids: {', '.join(ids[:20])}"
                               + (f" ... (all {len(ids)} in data_summary.json)" if len(ids) > 20 else ""))
        if stats["questions_unanswerable"] and not version_2 and split != "test":
            logger.warning(f"{path}: {stats['questions_unanswerable']} questions have no answer (SQuAD v2 style) and "
                           f"were skipped; pass --version_2_with_negative to learn and score 'no answer'.")

    raw = {}
    for split, path in files.items():
        stat = os.stat(path)
        fingerprint_source = json.dumps([READER_VERSION, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, split,
                                         version_2, limits[split]])
        with training_args.main_process_first(desc=f"reading {split}"):  # one process writes the Arrow cache
            raw[split] = datasets.Dataset.from_generator(
                generate_examples, split=datasets.Split.TRAIN, features=EXAMPLE_FEATURES,
                gen_kwargs={"path": path, "split": split, "version_2": version_2, "limit": limits[split]},
                fingerprint=hashlib.sha256(fingerprint_source.encode()).hexdigest()[:16],
            )

    # ---- Model and tokenizer --------------------------------------------------------------------------------------
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **hub_kwargs)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"Tokenizer {tokenizer_source} is not a fast (Rust) tokenizer: question answering needs its "
                         f"character offsets to map answers onto tokens. Use a model dir with tokenizer.json.")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"Tokenizer {tokenizer_source} has no [CLS]/[SEP] tokens; this script builds BERT inputs.")
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"Tokenizer {tokenizer_source} has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{config.vocab_size}; use the tokenizer the model was built with.")
    if model_args.model_name_or_path:
        model, loading = AutoModelForQuestionAnswering.from_pretrained(
            model_args.model_name_or_path, config=config, output_loading_info=True, **hub_kwargs)
        body = model.base_model_prefix + "."
        missing = [k for k in loading.get("missing_keys", []) if k.startswith(body)]
        new = [k for k in loading.get("missing_keys", []) if not k.startswith(body)]
        unused = loading.get("unexpected_keys", [])
        logger.info(f"Weights from {model_args.model_name_or_path}: encoder "
                    + ("loaded" if not missing else f"PARTLY RANDOM ({len(missing)} tensors missing, e.g. "
                                                      f"{sorted(missing)[:3]})")
                    + (f"; new (random): {sorted(new)}" if new else "")
                    + (f"; not used: {len(unused)} tensors, e.g. {sorted(unused)[:3]}" if unused else ""))
        if missing:
            logger.warning(f"{len(missing)} encoder tensors were not in {model_args.model_name_or_path} and start "
                           f"from random values: is it a BERT checkpoint of the same shape?")
    else:
        logger.info(f"Training a new model from scratch with config {config_source}")
        model = AutoModelForQuestionAnswering.from_config(config, trust_remote_code=model_args.trust_remote_code)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model: {type(model).__name__}, {n_params:,} parameters, vocab {len(tokenizer)}")
    if model_args.freeze != "none" or model_args.freeze_layers:
        frozen = freeze_parameters(model, model_args.freeze, model_args.freeze_layers)
        logger.info(f"Frozen (--freeze {model_args.freeze}, --freeze_layers {model_args.freeze_layers}): "
                    f"{frozen:,} parameters; trainable {n_params - frozen:,} of {n_params:,} "
                    f"({(n_params - frozen) / n_params:.1%})")
    # Saved in config.json, so evaluation/prediction with this model later encodes questions the same way.
    model.config.question_answering = dict(settings)

    # ---- Preprocessing: [CLS] question [SEP] context window [SEP], character offsets of every context token ------
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    context_type = 1 if getattr(config, "type_vocab_size", 2) > 1 else 0  # models without segment embeddings: all 0

    def encode(batch, indices, with_labels):
        questions = tokenizer(batch["question"], add_special_tokens=False, verbose=False)["input_ids"]
        contexts = tokenizer(batch["context"], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        out = defaultdict(list)
        for i, example_index in enumerate(indices):
            question = questions[i][:max_query_length]
            ids, offsets = contexts["input_ids"][i], contexts["offset_mapping"][i]
            content = max_seq_length - len(question) - 3
            starts = window_starts(len(ids), content, content - doc_stride)
            span, aligned = None, True
            if with_labels:
                answers = batch["answers"][i]
                found = [(t, s) for t, s in zip(answers["text"], answers["answer_start"]) if s >= 0]
                if found:  # trained on the first answer found in the context (CMRC2018 dev lists up to 3)
                    text, char_start = found[0]
                    span = token_span(offsets, char_start, char_start + len(text))
                    aligned = span is not None and (offsets[span[0]][0], offsets[span[1]][1]) == (
                        char_start, char_start + len(text))
            prefix = len(question) + 2  # [CLS] question [SEP]
            for w, s in enumerate(starts):
                e = min(s + content, len(ids))
                input_ids = [cls_id] + question + [sep_id] + ids[s:e] + [sep_id]
                out["input_ids"].append(input_ids)
                out["token_type_ids"].append([0] * prefix + [context_type] * (e - s + 1))
                out["attention_mask"].append([1] * len(input_ids))
                out["char_start"].append([-1] * prefix + [o[0] for o in offsets[s:e]] + [-1])
                out["char_end"].append([-1] * prefix + [o[1] for o in offsets[s:e]] + [-1])
                out["example_index"].append(example_index)
                out["window_index"].append(w)
                out["length"].append(len(input_ids))
                # question-level facts, on every window (counted on window 0)
                out["question_truncated"].append(len(questions[i]) > max_query_length)
                out["context_tokens"].append(len(ids))
                if with_labels:
                    inside = span is not None and s <= span[0] and span[1] < e
                    out["start_positions"].append(prefix + span[0] - s if inside else 0)  # else [CLS]
                    out["end_positions"].append(prefix + span[1] - s if inside else 0)
                    out["has_answer_span"].append(span is not None)
                    out["answer_not_aligned"].append(span is not None and not aligned)
                    out["answer_longer_than_window"].append(span is not None and span[1] - span[0] + 1 > content)
        return dict(out)

    encoded, data_summary = {}, {"settings": dict(settings, n_best_size=data_args.n_best_size,
                                                 null_score_diff_threshold=data_args.null_score_diff_threshold,
                                                 metric=data_args.metric), "splits": {}}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"encoding {split}"):
            features = ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names,
                              fn_kwargs={"with_labels": split != "test"},
                              num_proc=data_args.preprocessing_num_workers,
                              load_from_cache_file=not data_args.overwrite_cache, desc=f"Encoding {split}")
        first = np.array(features["window_index"]) == 0
        n_windows, n_questions = len(features), int(first.sum())
        summary = {"file": files[split], "format": reads[split][1], **reads[split][0],
                   "windows": n_windows, "windows_per_question": round(n_windows / max(n_questions, 1), 3),
                   "questions_truncated": int(np.array(features["question_truncated"])[first].sum()),
                   "context_tokens_mean": round(float(np.mean(np.array(features["context_tokens"])[first])), 1),
                   "mean_window_tokens": round(float(np.mean(features["length"])), 1)}
        if split != "test":
            has_span = np.array(features["has_answer_span"])[first]
            summary["answers_not_on_token_boundaries"] = int(np.array(features["answer_not_aligned"])[first].sum())
            summary["answers_longer_than_a_window"] = int(
                np.array(features["answer_longer_than_window"])[first].sum())
            summary["windows_with_the_answer"] = int(np.sum(np.array(features["start_positions"]) > 0))
            summary["questions_whose_answer_has_no_tokens"] = int(
                sum(1 for a, h in zip(ds["answers"], has_span) if any(s >= 0 for s in a["answer_start"]) and not h))
        data_summary["splits"][split] = summary
        logger.info(f"{split}: {n_questions} questions -> {n_windows} windows of at most {max_seq_length} tokens "
                    f"({summary['windows_per_question']} per question, context {summary['context_tokens_mean']} "
                    f"tokens on average); questions cut to {max_query_length} tokens: "
                    f"{summary['questions_truncated']}"
                    + (f"; answers not on token boundaries (the model can only predict whole tokens): "
                       f"{summary['answers_not_on_token_boundaries']}; answers longer than a window: "
                       f"{summary['answers_longer_than_a_window']}" if split != "test" else ""))
        drop = ["question_truncated", "context_tokens", "has_answer_span", "answer_not_aligned",
                "answer_longer_than_window"]
        features = features.remove_columns([c for c in drop if c in features.column_names])
        if split != "train":
            features = features.sort("length")  # evaluation in length order: less padding; example_index maps back
        encoded[split] = features

    if data_args.show_examples and "train" in encoded:
        starts = np.array(encoded["train"]["start_positions"])  # windows holding an answer first
        shown = [int(i) for i in np.argsort(starts == 0, kind="stable")[:data_args.show_examples]]
        for f in encoded["train"].select(shown):
            example = raw["train"][f["example_index"]]
            tokens = tokenizer.convert_ids_to_tokens(f["input_ids"])
            s, e = f["start_positions"], f["end_positions"]
            print(f"\n--- training window {f['window_index']} of question {example['id']} ({example['where']}) ---")
            print(f"question:       {example['question']}")
            print(f"tokens:         {' '.join(tokens)}")
            print(f"token_type_ids: {f['token_type_ids']}")
            answer = example["context"][f["char_start"][s]:f["char_end"][e]] if s > 0 else "[CLS] (not in this window)"
            print(f"answer:         positions {s}..{e}: {answer}  (gold: {example['answers']['text'][:1]})")

    # ---- Trainer --------------------------------------------------------------------------------------------------
    if data_args.pad_to_max_length:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_seq_length)
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if training_args.fp16 else None)
    if "validation" not in encoded and training_args.eval_strategy != "no":
        training_args.eval_strategy = transformers.trainer_utils.IntervalStrategy.NO
    callbacks = []
    if data_args.early_stopping_patience is not None:
        if "validation" not in encoded:
            raise ValueError("--early_stopping_patience needs --validation_file.")
        if training_args.save_strategy != training_args.eval_strategy:
            raise ValueError("--early_stopping_patience reloads the best checkpoint at the end: --save_strategy must "
                             f"equal --eval_strategy (got {training_args.save_strategy} and "
                             f"{training_args.eval_strategy}).")
        training_args.load_best_model_at_end = True
        training_args.metric_for_best_model = training_args.metric_for_best_model or "f1"
        training_args.greater_is_better = not training_args.metric_for_best_model.endswith("loss")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))

    answer_settings = {"n_best_size": data_args.n_best_size, "max_answer_length": settings["max_answer_length"],
                       "version_2_with_negative": version_2, "metric": data_args.metric,
                       "null_score_diff_threshold": data_args.null_score_diff_threshold}
    trainer = QATrainer(
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=encoded.get("validation"),
        train_examples=raw.get("train"),
        eval_examples=raw.get("validation"),
        answer_settings=answer_settings,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=callbacks,
    )
    output_dir = training_args.output_dir
    is_main = trainer.is_world_process_zero()
    if is_main:  # what was read, repaired, skipped and cut, next to the metrics
        os.makedirs(output_dir, exist_ok=True)
        write_json(os.path.join(output_dir, "data_summary.json"), data_summary)

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # safetensors weights, config with the question_answering settings, tokenizer files
        metrics = dict(train_result.metrics, train_samples=len(encoded["train"]),
                       train_questions=len(raw["train"]), max_seq_length=max_seq_length, doc_stride=doc_stride,
                       train_tokens_per_epoch=int(np.sum(encoded["train"]["length"])))  # non-padding tokens
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        curves = os.path.join(output_dir, "training_curves.png")
        if is_main and plot_training_curves(trainer.state.log_history, curves,
                                            metrics=("eval_exact_match", "eval_f1")):
            logger.info(f"Training curves: {curves}")

    report = []
    for split, prefix, stem in (("validation", "eval", "eval_"), ("test", "predict", "")):
        if split not in encoded:
            continue
        metrics, predictions, nbest, null_odds = trainer.predict_answers(encoded[split], raw[split], prefix)
        metrics[f"{prefix}_samples"] = len(encoded[split])
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        if is_main:
            write_json(os.path.join(output_dir, f"{stem}predictions.json"), predictions)
            write_json(os.path.join(output_dir, f"{stem}nbest_predictions.json"), nbest)
            if version_2:
                write_json(os.path.join(output_dir, f"{stem}null_odds.json"), null_odds)
            logger.info(f"{split}: answers for {len(predictions)} questions in "
                        f"{os.path.join(output_dir, stem + 'predictions.json')}")
            if f"{prefix}_f1" in metrics:
                report.append((split, files[split], metrics[f"{prefix}_exact_match"], metrics[f"{prefix}_f1"],
                               len(predictions), raw[split].select(range(min(3, len(raw[split])))), predictions))

    # ---- Hub-ready output directory: model card (README.md), then --push_to_hub -----------------------------------
    if training_args.do_train:
        row = raw["validation" if "validation" in raw else "train"][0]
        finish_output_dir(trainer, "question-answering", logger=logger, data_files=files,
                          example={"question": row["question"], "context": row["context"]},
                          base_model=model_args.model_name_or_path)

    # ---- The report -----------------------------------------------------------------------------------------------
    if is_main and report:
        for split, path, em, f1, n, shown, predictions in report:
            print(f"\n***** {split} ({path}): {n} questions, {data_args.metric} EM {em:.2f}, F1 {f1:.2f} *****")
            for example in shown:
                print(f"  {example['id']}: {example['question']}\n    gold: {example['answers']['text'][:3]}  "
                      f"predicted: {predictions[example['id']]!r}")
    if is_main:
        written = sorted(f for f in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, f)))
        print(f"Files in {output_dir}: {', '.join(written)}")
    return trainer


if __name__ == "__main__":
    run_main(main)
