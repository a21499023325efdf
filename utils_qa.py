"""Question answering on Chinese text, the pieces run_qa.py and predict.py share (Hugging Face's utils_qa.py and
trainer_qa.py of this recipe): reading and checking SQuAD-style or JSON-lines files, the encoding settings saved with
a model, questions and contexts -> windows with character offsets, window logits -> answers, CMRC2018/SQuAD EM and
F1, and the Trainer that evaluates with them.
"""

import bisect
import json
import logging
import math
import os
import re
import string
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

import datasets
import numpy as np
from transformers.trainer_utils import speed_metrics

from script_utils import DataError, SavedSettings, window_starts
from training import FineTuningTrainer

logger = logging.getLogger(__name__)

READER_VERSION = 1  # part of the datasets cache fingerprint: bump when reading/repairing rules change


@dataclass
class QASettings(SavedSettings):
    """How questions and contexts become windows, and the longest answer; saved in config.json under
    "question_answering" (a model trained with --version_2_with_negative keeps predicting "no answer")."""

    CONFIG_KEY = "question_answering"

    max_seq_length: int = 384  # tokens per window: [CLS] question [SEP] context [SEP]
    doc_stride: int = 128  # neighbouring windows overlap by at least this many context tokens
    max_query_length: int = 64  # longer questions are cut
    max_answer_length: int = 30  # tokens
    version_2_with_negative: bool = False

    def check(self, model_limit):
        """Settings that cannot work: an error naming the flag and the fix."""
        if self.max_seq_length > model_limit:
            raise DataError(f"--max_seq_length {self.max_seq_length} exceeds the model's {model_limit} positions "
                            f"(max_position_embeddings); pass --max_seq_length {model_limit} or less.")
        min_content = self.max_seq_length - self.max_query_length - 3  # context tokens with the longest question
        if min_content < 1 or not 0 <= self.doc_stride < min_content:
            raise DataError(f"--doc_stride {self.doc_stride} must be smaller than the context tokens of a window with "
                            f"the longest question: max_seq_length - max_query_length - 3 = {self.max_seq_length} - "
                            f"{self.max_query_length} - 3 = {min_content}. Lower --doc_stride or --max_query_length, "
                            f"or raise --max_seq_length.")


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


def report_reading(path, split, stats, fmt, version_2):
    """Log what read_qa_file found in a file: questions, answers repaired or not found (with their ids), skips."""
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
# Questions and contexts -> windows; answer characters -> token positions
# ----------------------------------------------------------------------------------------------------------------


def encode_windows(batch, indices, tokenizer, settings, context_type=1, with_labels=False):
    """Questions and contexts -> windows `[CLS] question [SEP] context window [SEP]`, for Dataset.map(batched=True,
    with_indices=True) and predict.py. The question is cut to max_query_length tokens; the context tokens are cut into
    windows that overlap by at least doc_stride tokens, the last one flush with the end of the context (the
    tokenizer's own overflow windows end with a short remainder instead). char_start/char_end: the context characters
    each position covers (-1 for [CLS], question and [SEP]); example_index: the row of the question.
    context_type: the segment id of the context (0 for models without segment embeddings).

    with_labels: start/end positions of the first answer found in the context ([CLS] = 0 in windows without it), and
    per question whether the answer has tokens, lies on token boundaries and fits in a window (data summary).
    """
    questions = tokenizer(batch["question"], add_special_tokens=False, verbose=False)["input_ids"]
    contexts = tokenizer(batch["context"], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = defaultdict(list)
    for i, example_index in enumerate(indices):
        question = questions[i][:settings.max_query_length]
        ids, offsets = contexts["input_ids"][i], contexts["offset_mapping"][i]
        content = settings.max_seq_length - len(question) - 3
        starts = window_starts(len(ids), content, content - settings.doc_stride)
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
            out["question_truncated"].append(len(questions[i]) > settings.max_query_length)
            out["context_tokens"].append(len(ids))
            if with_labels:
                inside = span is not None and s <= span[0] and span[1] < e
                out["start_positions"].append(prefix + span[0] - s if inside else 0)  # else [CLS]
                out["end_positions"].append(prefix + span[1] - s if inside else 0)
                out["has_answer_span"].append(span is not None)
                out["answer_not_aligned"].append(span is not None and not aligned)
                out["answer_longer_than_window"].append(span is not None and span[1] - span[0] + 1 > content)
    return dict(out)


WINDOW_FACTS = ["question_truncated", "context_tokens", "has_answer_span", "answer_not_aligned",
                "answer_longer_than_window"]  # encode_windows' data-summary columns, dropped before training


def window_summary(features, examples, labelled):
    """What a split's windows hold, for data_summary.json: windows per question, cut questions, context length, and
    with labels the answers the model cannot point at exactly (not on token boundaries, longer than a window)."""
    first = np.array(features["window_index"]) == 0
    n_windows, n_questions = len(features), int(first.sum())
    summary = {"windows": n_windows, "windows_per_question": round(n_windows / max(n_questions, 1), 3),
               "questions_truncated": int(np.array(features["question_truncated"])[first].sum()),
               "context_tokens_mean": round(float(np.mean(np.array(features["context_tokens"])[first])), 1),
               "mean_window_tokens": round(float(np.mean(features["length"])), 1)}
    if labelled:
        has_span = np.array(features["has_answer_span"])[first]
        summary["answers_not_on_token_boundaries"] = int(np.array(features["answer_not_aligned"])[first].sum())
        summary["answers_longer_than_a_window"] = int(np.array(features["answer_longer_than_window"])[first].sum())
        summary["windows_with_the_answer"] = int(np.sum(np.array(features["start_positions"]) > 0))
        summary["questions_whose_answer_has_no_tokens"] = int(
            sum(1 for a, h in zip(examples["answers"], has_span) if any(s >= 0 for s in a["answer_start"]) and not h))
    return summary


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
    """Evaluates answers, not windows: logits of every window -> the best span per question -> EM/F1.

    train_examples / eval_examples: the questions behind the windows (a window's "example_index" is a row of these).
    answer_settings: n_best_size, max_answer_length, version_2_with_negative, null_score_diff_threshold, metric.
    """

    def __init__(self, *args, train_examples=None, eval_examples=None, answer_settings=None, **kwargs):
        super().__init__(*args, **kwargs)
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

