#!/usr/bin/env python
"""Fine-tune a BERT-style model for Chinese text classification (single sentences or sentence pairs).

One file, top to bottom: arguments -> data -> preprocessing -> model -> train -> evaluate -> predict -> report.

    python run_classification.py \
        --model_name_or_path bert-base-chinese \
        --train_file data/train.txt --validation_file data/dev.txt --test_file data/test.txt \
        --label_file data/class.txt \
        --do_train --do_eval --do_predict \
        --num_train_epochs 4 --per_device_train_batch_size 32 --learning_rate 2e-5 \
        --output_dir outputs/thucnews

Data: THUCNews-style TSV (`text<TAB>label`, header optional, label given as an id or a name), CSV with a header,
or JSON lines. Two text columns (`--text_column_names sentence1,sentence2`) are encoded as a real BERT pair:
`[CLS] a [SEP] b [SEP]` with token_type_ids 0 for a and 1 for b.

What differs from the Hugging Face example (on purpose):
  * batches are padded dynamically and grouped by length (`--train_sampling_strategy group_by_length`), instead of
    padding everything to 128 tokens; `--pad_to_max_length` gives the old behaviour back;
  * long texts are truncated by `--truncation_strategy head|tail|head+tail` (head+tail: 128 + 382 of 510 tokens,
    "How to Fine-Tune BERT for Text Classification?", Sun et al. 2019); `--max_seq_length auto` picks the length
    from the training data's length percentiles;
  * metrics are computed locally with scikit-learn (no Hub download), and the run ends with a classification report,
    a confusion-matrix PNG, training curves and a predictions TSV;
  * bad input is rejected before training with an error naming the file, the line and the fix.

Arguments can also come from one .json or .yaml file: `python run_classification.py args.yaml`.
"""

import hashlib
import json
import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    set_seed,
)

from checkpoints import checkpoint_to_resume
from model_card import finish_output_dir
from plotting import plot_training_curves
from script_utils import (
    check_max_seq_length,
    data_files,
    DataError,
    decoded_lines,
    parse_args,
    run_main,
    setup_logging,
)
from training import collapse_warning, FineTuningTrainer, FineTuningTrainingArguments, freeze_parameters

import heads  # registers the custom heads (CNN, LSTM, attention, windows, ...) with the Auto classes

logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message=".*null_placement.*")  # pyarrow, via datasets' sort: not ours to fix


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Hub id (e.g. bert-base-chinese) or local directory of a pretrained model. Leave it out "
                  "and give --config_name to train from scratch."},
    )
    config_name: Optional[str] = field(
        default=None, metadata={"help": "Config name or path, if not the same as model_name_or_path."}
    )
    tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer name or path (a dir with vocab.txt), if not the same as model."}
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version: branch, tag or commit id."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token for private models."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow custom modeling code from the Hub/model dir to run. Off unless you trust the code."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace a checkpoint's classifier whose number of labels differs from this data's."},
    )
    head: Optional[str] = field(
        default=None,
        metadata={"help": "What sits on top of BERT (see heads/): linear, cnn, lstm, gru, attention, or windows (long "
                  "documents: sliding windows fused into one vector). Default: the checkpoint's own head, else "
                  "linear.", "choices": list(heads.HEAD_NAMES)},
    )
    pooling: Optional[str] = field(
        default=None,
        metadata={"help": "For --head linear: pooler ([CLS] through BERT's dense+tanh, the default), cls (raw [CLS]), "
                  "mean, max, attention, concat_last_k (last --pooling_last_k layers' [CLS]).",
                  "choices": list(heads.POOLINGS)},
    )
    pooling_last_k: Optional[int] = field(default=None, metadata={"help": "k for --pooling concat_last_k (4)."})
    cnn_filter_sizes: Optional[str] = field(default=None, metadata={"help": "--head cnn filter sizes (2,3,4)."})
    cnn_num_filters: Optional[int] = field(default=None, metadata={"help": "--head cnn filters per size (128)."})
    rnn_hidden_size: Optional[int] = field(default=None, metadata={"help": "--head lstm/gru size per direction (256)."})
    rnn_num_layers: Optional[int] = field(default=None, metadata={"help": "--head lstm/gru layers (1)."})
    attention_hidden_size: Optional[int] = field(
        default=None, metadata={"help": "--head attention/windows: size of W in u^T tanh(H W + b) (hidden size)."}
    )
    window_fusion: Optional[str] = field(
        default=None, metadata={"help": "--head windows: how window [CLS] vectors become one document vector (max).",
                                "choices": ["max", "mean", "attention", "transformer"]},
    )
    classifier_dropout: Optional[float] = field(default=None, metadata={"help": "Dropout before the classifier."})
    freeze: str = field(
        default="none",
        metadata={"help": "all: BERT is a fixed feature extractor, only the head trains; embeddings: freeze the "
                  "embedding layer; none.", "choices": ["none", "all", "embeddings"]},
    )
    freeze_layers: Optional[str] = field(
        default=None, metadata={"help": "Encoder layers to freeze, comma-separated ids, e.g. 0,1,2 (the lowest)."}
    )


@dataclass
class DataTrainingArguments:
    train_file: Optional[str] = field(default=None, metadata={"help": "Training data: .tsv/.txt, .csv or .json(l)."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Validation data, same format."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Test data for --do_predict; labels optional."})
    text_column_names: Optional[str] = field(
        default=None,
        metadata={"help": "Text column(s), comma-separated; two columns make a sentence pair. Default: 'text' or "
                  "'sentence1,sentence2' or 'text_a,text_b' if present; in a TSV without header every column "
                  "before the last (the label)."},
    )
    label_column_name: str = field(default="label", metadata={"help": "Label column name."})
    has_header: Optional[bool] = field(
        default=None,
        metadata={"help": "Whether TSV/CSV files start with a header line. Default: detected (a header is a first "
                  "line that contains the label column name or a text column name)."},
    )
    label_file: Optional[str] = field(
        default=None,
        metadata={"help": "class.txt: one label name per line, line i = label id i. Labels in the data may then be "
                  "ids or names."},
    )
    max_seq_length: Optional[str] = field(
        default=None,
        metadata={"help": "Max tokens per example including [CLS]/[SEP] (default 128); longer texts are truncated by "
                  "--truncation_strategy. 'auto': the --auto_length_percentile of training lengths, rounded up to "
                  "a multiple of 8. With a trained model and no training, the model's own setting is the default "
                  "(this holds for all encoding options: truncation, windows)."},
    )
    auto_length_percentile: float = field(
        default=99.0, metadata={"help": "Percentile of training token lengths used by --max_seq_length auto."}
    )
    truncation_strategy: Optional[str] = field(
        default=None,
        metadata={"help": "head (default): keep the first tokens; tail: keep the last; head+tail: keep --head_tokens "
                  "from the start and the rest from the end.", "choices": ["head", "tail", "head+tail"]},
    )
    head_tokens: Optional[int] = field(
        default=None,
        metadata={"help": "Tokens kept from the start with head+tail. Default: 128 of 510 (Sun et al. 2019), scaled "
                  "to other lengths (e.g. 32 of 126 at max_seq_length 128)."},
    )
    window_stride: Optional[int] = field(
        default=None,
        metadata={"help": "--head windows: each window holds max_seq_length tokens (with [CLS]/[SEP]); a new window "
                  "starts every N tokens (default: half a window), the last one flush with the end."},
    )
    max_windows: Optional[int] = field(
        default=None, metadata={"help": "--head windows: at most N windows per document (default 8; evenly spaced, "
                                "first and last kept) to bound memory; documents that need more are counted."},
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every example to max_seq_length (the Hugging Face example's default; slower). "
                  "Default: pad each batch to its longest example."},
    )
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N validation rows."})
    max_predict_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N test rows."})
    skip_bad_rows: bool = field(
        default=False,
        metadata={"help": "Skip (and count) malformed rows instead of stopping with an error."},
    )
    show_examples: int = field(
        default=0, metadata={"help": "Print N encoded training examples: tokens, token_type_ids, attention mask."}
    )
    class_weights: Optional[str] = field(
        default=None,
        metadata={"help": "Weighted cross-entropy for imbalanced classes: 'auto' (n / (classes x count), sklearn's "
                  "'balanced') or a file with one weight per line in label-id order, or 'name<TAB>weight' lines."},
    )
    early_stopping_patience: Optional[int] = field(
        default=None,
        metadata={"help": "Stop after N evaluations without improvement of --metric_for_best_model (default "
                  "accuracy) and reload the best checkpoint at the end."},
    )
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the cache."})


# ----------------------------------------------------------------------------------------------------------------
# Reading data files: every problem becomes one clear line naming the file, the line and the fix
# ----------------------------------------------------------------------------------------------------------------


def file_format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".tsv", ".txt"):
        return "tsv"
    if ext == ".csv":
        return "csv"
    if ext in (".json", ".jsonl"):
        return "json"
    raise DataError(f"{path}: unknown extension '{ext}'; use .tsv/.txt (tab-separated), .csv or .json/.jsonl.")


DEFAULT_TEXT_COLUMNS = (("sentence1", "sentence2"), ("text_a", "text_b"), ("text",), ("text_a",), ("sentence",))


def table_rows(path):
    """Yield (line_number, fields) for TSV/CSV; fields is [] for a blank line. The caller handles the header."""
    fmt = file_format(path)
    lines = decoded_lines(path)
    if fmt == "tsv":
        # Quoting off: Chinese text is full of quote characters that a CSV parser would swallow.
        for line_no, text in lines:
            yield line_no, text.split("\t") if text.strip() else []
        return
    yield from csv_rows(path, lines)


def csv_rows(path, lines):
    """CSV records with the line each starts on. A quoted text may span lines, but a stray quote makes the reader
    swallow the rows after it into one field (silently merging them): a record whose inner lines each look like a row
    of their own, or a quote never closed, is an error naming the line where the quote opens."""
    import csv

    taken = []  # (line_number, text) of the physical lines the reader used for the current record

    def feed():
        for line_no, text in lines:
            taken.append((line_no, text))
            yield text + "\n"  # the line break stays inside a quoted text that spans lines

    n_columns = None
    for fields in csv.reader(feed()):
        span, taken[:] = list(taken), []
        start, end = span[0][0], span[-1][0]
        if len(span) > 1:
            try:
                list(csv.reader([text + "\n" for _, text in span], strict=True))
            except csv.Error:
                raise DataError(f"{path}:{start}: a quote (\") opened here is never closed, so lines {start}-{end} "
                                f"would be one text; close the quote, or write a quote inside a quoted text as \"\"")
            row_like = [line_no for line_no, text in span[1:-1]
                        if n_columns and len(next(csv.reader([text]), [])) == n_columns]
            if row_like:
                raise DataError(f"{path}:{start}: a quoted text runs from line {start} to line {end} and swallows "
                                f"{len(row_like)} line(s) that look like rows of their own (e.g. line {row_like[0]}): "
                                f"a stray quote (\")? Remove it or close it; a quote inside a quoted text is written "
                                f"\"\"")
        is_blank = not any(f.strip() for f in fields)
        if n_columns is None and not is_blank:
            n_columns = len(fields)
        yield start, [] if is_blank else fields


def detect_header(first_fields, text_columns, label_column):
    names = {label_column} | set(text_columns or [c for group in DEFAULT_TEXT_COLUMNS for c in group])
    return any(f.strip() in names for f in first_fields)


def choose_text_columns(available, requested, label_column, path):
    if requested:
        missing = [c for c in requested if c not in available]
        if missing:
            raise DataError(f"{path}: column(s) {missing} not found; the file has columns {available}. "
                            f"Fix --text_column_names.")
        return requested
    for group in DEFAULT_TEXT_COLUMNS:
        if all(c in available for c in group):
            return list(group)
    others = [c for c in available if c != label_column]
    if len(others) == 1:
        return others
    raise DataError(f"{path}: cannot tell which columns hold the text among {available}; "
                    f"pass --text_column_names (one column, or two for sentence pairs).")


@dataclass
class FileSchema:
    text_columns: list
    label_column: Optional[str]  # None: the file has no labels (allowed for the test file only)
    named_by_position: bool = False  # no header line: the columns are called text / text_a, text_b, ... and label


def read_examples(path, data_args, schema=None, skipped=None, layout=None):
    """Yield (line_number, {column: str}) for every usable row of `path`.

    With `schema` None this only discovers the file's columns (used once per file). Malformed rows raise DataError,
    or are counted in `skipped` (a Counter of reasons) when --skip_bad_rows is set. Blank lines are always skipped
    and counted. `layout` (a dict) learns whether the file has a header line ("header_line": True/False).

    A TSV/CSV without a header names its columns by position: text<TAB>label, text_a<TAB>text_b<TAB>label, ...; with
    three or more columns, --text_column_names text_a (or text_b, ...) picks the text column(s) among them.
    """
    skipped = skipped if skipped is not None else Counter()
    fmt = file_format(path)
    label_column = data_args.label_column_name

    def bad(line_no, message):
        if data_args.skip_bad_rows:
            skipped[message.split(";")[0]] += 1  # the reason, without the fix
            return
        raise DataError(f"{path}:{line_no}: {message}")

    if fmt == "json":
        for line_no, text in decoded_lines(path):
            if not text.strip():
                skipped["blank line"] += 1
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                bad(line_no, f"invalid JSON ({e.msg}); each line must be one JSON object")
                continue
            if not isinstance(obj, dict):
                bad(line_no, "not a JSON object; each line must look like {\"text\": ..., \"label\": ...}")
                continue
            row = {k: "" if v is None else str(v) for k, v in obj.items()}
            yield line_no, row
        return

    header = None
    for line_no, fields in table_rows(path):
        if not fields:
            skipped["blank line"] += 1
            continue
        if header is None:
            is_header = data_args.has_header
            if is_header is None:
                is_header = detect_header(fields, split_names(data_args.text_column_names), label_column)
            if layout is not None:
                layout["header_line"] = bool(is_header)
            if is_header:
                header = [f.strip() for f in fields]
                continue
            requested = split_names(data_args.text_column_names)
            by_position = [f"text_{chr(ord('a') + i)}" for i in range(len(fields) - 1)] if len(fields) > 2 else []
            n_text = len(schema.text_columns) if schema else max(1, len(fields) - 1)
            text_names = requested or (["text"] if n_text == 1 else ["text_a", "text_b"][:n_text])
            header = text_names + [label_column] if len(fields) > len(text_names) else text_names
            if requested and by_position and set(requested) <= set(by_position):
                header = by_position + [label_column]  # --text_column_names text_a picks columns by position
            elif schema is not None and len(fields) == len(schema.text_columns):
                header = schema.text_columns  # a test file without labels
        if len(fields) != len(header):
            separated = "tab-separated" if fmt == "tsv" else "comma-separated"
            if len(fields) == 1 and len(header) > 1:
                bad(line_no, f"{'no tab' if fmt == 'tsv' else 'no comma'} in this line; expected {len(header)} "
                             f"{separated} columns ({('<TAB>' if fmt == 'tsv' else ',').join(header)})")
            else:
                fix = ("a stray tab inside the text? Remove it" if fmt == "tsv"
                       else "a comma in an unquoted text? Quote the text")
                bad(line_no, f"wrong number of columns; {len(fields)} instead of {len(header)} "
                             f"({('<TAB>' if fmt == 'tsv' else ',').join(header)}): {fix} or use --skip_bad_rows")
            continue
        yield line_no, dict(zip(header, fields))


def split_names(names):
    return [n.strip() for n in names.split(",") if n.strip()] if names else None


def discover_schema(path, data_args, text_columns=None):
    """Look at the first row of a file to learn its columns and whether it has labels."""
    known = FileSchema(list(text_columns), None) if text_columns else None  # headerless: column count known
    layout = {}
    for _, row in read_examples(path, data_args, known, layout=layout):
        available = list(row)
        if text_columns is None:
            text_columns = choose_text_columns(available, split_names(data_args.text_column_names),
                                               data_args.label_column_name, path)
        else:
            missing = [c for c in text_columns if c not in available]
            if missing:
                raise DataError(f"{path}: column(s) {missing} not found; the file has columns {available}.")
        label = data_args.label_column_name if data_args.label_column_name in available else None
        return FileSchema(text_columns, label, named_by_position=layout.get("header_line") is False)
    raise DataError(f"{path}: no data rows (empty file?).")


def scan_file(path, data_args, schema, limit=None):
    """Validate every row before anything is trained; return (n_rows, label Counter, first line per label, skipped)."""
    labels, first_line, skipped, n_rows = Counter(), {}, Counter(), 0
    for line_no, row in read_examples(path, data_args, schema, skipped):
        if limit is not None and n_rows >= limit:
            break
        problem = None
        for column in schema.text_columns:
            if column not in row:
                problem = f"missing column '{column}'"
            elif not row[column].strip():
                problem = f"empty text in column '{column}'; remove the line or pass --skip_bad_rows"
        if schema.label_column is not None and problem is None:
            if not row.get(schema.label_column, "").strip():
                problem = f"empty label in column '{schema.label_column}'; fill it in or remove the line"
        if problem:
            if not data_args.skip_bad_rows:
                raise DataError(f"{path}:{line_no}: {problem}")
            skipped[problem.split(";")[0]] += 1
            continue
        n_rows += 1
        if schema.label_column is not None:
            label = row[schema.label_column].strip()
            labels[label] += 1
            first_line.setdefault(label, line_no)
    if n_rows == 0:
        raise DataError(f"{path}: no usable rows (skipped: {dict(skipped) or 'none'}).")
    return n_rows, labels, first_line, skipped


def build_label_list(train_labels, label_file):
    """Label names in id order: from --label_file, else the training labels (numeric ids sorted as numbers)."""
    if label_file:
        names, first_line = [], {}
        for line_no, line in decoded_lines(label_file):
            name = line.strip()
            if not name:
                continue
            if name in first_line:
                raise DataError(f"{label_file}:{line_no}: duplicate label name '{name}' (also on line "
                                f"{first_line[name]}); each line names a different label (line i = label id i).")
            first_line[name] = line_no
            names.append(name)
        return names
    labels = list(train_labels)
    if all(l.lstrip("-").isdigit() for l in labels):
        return sorted(labels, key=int)  # keeps the spelling ("01") of each id
    return sorted(labels)


def label_to_id_map(label_list, observed_labels):
    """Map every observed label string (a name, or an id into label_list) to its id."""
    mapping = {name: i for i, name in enumerate(label_list)}
    for label in observed_labels:
        if label not in mapping and label.isdigit() and int(label) < len(label_list):
            mapping[label] = int(label)  # THUCNews: ids in the data, names in class.txt
    return mapping


def generate_examples(path, data_args, text_columns, label_column, label2id, limit):
    """Rows for datasets.Dataset.from_generator (written to an Arrow file, not kept in memory)."""
    scanned = 0
    for line_no, row in read_examples(path, data_args, FileSchema(list(text_columns), label_column)):
        if limit is not None and scanned >= limit:
            return
        if any(not row.get(c, "").strip() for c in text_columns):
            continue  # counted by scan_file
        if label_column is not None and not row.get(label_column, "").strip():
            continue
        example = {"row": scanned, "line": line_no}
        example.update({c: row[c] for c in text_columns})
        if label_column is not None:
            example["label"] = label2id[row[label_column].strip()]
        scanned += 1
        yield example


# ----------------------------------------------------------------------------------------------------------------
# Truncation: head / tail / head+tail, applied to token ids before [CLS]/[SEP] are added
# ----------------------------------------------------------------------------------------------------------------


def truncate(ids, budget, strategy, head_tokens):
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget:]
    head = min(head_tokens, budget)
    return ids[:head] + ids[len(ids) - (budget - head):]


def default_head_tokens(budget):
    return round(budget * 128 / 510)  # 128 of 510 as in Sun et al. 2019


def pair_budgets(len_a, len_b, budget):
    """Longest-first: trim the longer text until the pair fits."""
    if len_a + len_b <= budget:
        return len_a, len_b
    half = budget // 2
    if len_a <= half:
        return len_a, budget - len_a
    if len_b <= half:
        return budget - len_b, len_b
    return budget - half, half


def window_starts(n_tokens, content, stride):
    """Start offsets of overlapping windows of `content` tokens every `stride` tokens, the last one flush with the
    end, so every token is covered."""
    starts = list(range(0, max(n_tokens - content, 0) + 1, stride))
    if starts[-1] + content < n_tokens:
        starts.append(n_tokens - content)
    return starts


def cap_windows(starts, max_windows):
    """At most `max_windows` of the windows, evenly spaced, first and last included (bounded memory per document)."""
    if len(starts) <= max_windows:
        return starts
    keep = np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(int))
    return [starts[i] for i in keep]


class WindowCollator:
    """Pads documents of windows to [batch, max_windows_in_batch, max_window_len]; missing windows are all padding
    (attention_mask 0), which the windows model ignores."""

    def __init__(self, pad_token_id):
        self.pad_token_id = pad_token_id

    def __call__(self, features):
        n_windows = max(len(f["input_ids"]) for f in features)
        width = max(len(w) for f in features for w in f["input_ids"])
        batch = {k: torch.full((len(features), n_windows, width), self.pad_token_id if k == "input_ids" else 0,
                               dtype=torch.long) for k in ("input_ids", "token_type_ids", "attention_mask")}
        for i, f in enumerate(features):
            for j, window in enumerate(f["input_ids"]):
                batch["input_ids"][i, j, :len(window)] = torch.tensor(window)
                batch["attention_mask"][i, j, :len(window)] = 1
        if "label" in features[0]:
            batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch


# ----------------------------------------------------------------------------------------------------------------
# Metrics and reports (scikit-learn, matplotlib: nothing downloaded)
# ----------------------------------------------------------------------------------------------------------------


def compute_metrics(eval_pred):
    from sklearn.metrics import accuracy_score, f1_score

    logits, labels = eval_pred
    preds = np.argmax(logits, axis=-1)
    warning = collapse_warning(preds, labels)
    if warning:
        logger.warning(warning)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, preds, average="weighted", zero_division=0)),
    }


def write_report(output_dir, split, labels, preds, label_names):
    """classification_report as text and JSON, and a confusion-matrix PNG. Returns the text report."""
    from sklearn.metrics import classification_report, confusion_matrix

    ids = list(range(len(label_names)))
    text = classification_report(labels, preds, labels=ids, target_names=label_names, digits=4, zero_division=0)
    report = classification_report(labels, preds, labels=ids, target_names=label_names, output_dict=True,
                                   zero_division=0)
    matrix = confusion_matrix(labels, preds, labels=ids)
    warning = collapse_warning(preds, labels, name_of=lambda i: f"class '{label_names[i]}'")
    if warning:
        text = f"WARNING: {warning}\n\n{text}"
        report["warning"] = warning
    with open(os.path.join(output_dir, f"{split}_classification_report.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(output_dir, f"{split}_classification_report.json"), "w", encoding="utf-8") as f:
        json.dump({"report": report, "confusion_matrix": matrix.tolist(), "labels": label_names}, f,
                  ensure_ascii=False, indent=2)
    plot_confusion_matrix(matrix, label_names, os.path.join(output_dir, f"{split}_confusion_matrix.png"),
                          title=f"{split}: {len(labels)} texts, accuracy {np.mean(labels == preds):.4f}")
    return text


def plot_confusion_matrix(matrix, names, path, title):
    """The label names as they are (体育, 财经, ...): plotting.pyplot() brings a font that draws Chinese."""
    from plotting import pyplot

    plt = pyplot()

    n = len(names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # colour = recall share of the true row
    ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if row_share[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Class weights (freezing and per-group learning rates live in script_utils.py: NER and QA use them too)
# ----------------------------------------------------------------------------------------------------------------


def parse_weight(text, path):
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: '{text}' is not a number; write one weight per line or 'name<TAB>weight' lines.")


def read_class_weights(spec, label_list, train_label_ids):
    """--class_weights auto | FILE -> a tensor of one weight per label id."""
    n = len(label_list)
    if spec == "auto":
        counts = np.bincount(np.asarray(train_label_ids), minlength=n).astype(np.float64)
        weights = len(train_label_ids) / (n * np.maximum(counts, 1))
    else:
        lines = [line.strip() for _, line in decoded_lines(spec) if line.strip()]
        if all("\t" in line for line in lines):
            named = dict(line.split("\t", 1) for line in lines)
            unknown = [k for k in named if k not in label_list]
            if unknown:
                raise DataError(f"{spec}: unknown label(s) {unknown}; labels are {label_list}.")
            weights = [parse_weight(named.get(name, "1.0"), spec) for name in label_list]
        else:
            if len(lines) != n:
                raise DataError(f"{spec}: {len(lines)} weights for {n} labels; write one weight per line in label-id "
                                f"order, or 'name<TAB>weight' lines.")
            weights = [parse_weight(x, spec) for x in lines]
    return torch.tensor(weights, dtype=torch.float32)


class ClassificationTrainer(FineTuningTrainer):
    """Trainer with the recipe's optimizer groups, optional class weights, and evaluation in dataset order."""

    def __init__(self, *args, class_weights=None, **kwargs):
        if class_weights is not None:
            kwargs["compute_loss_func"] = self.weighted_cross_entropy
        self.class_weights = class_weights
        super().__init__(*args, **kwargs)

    def weighted_cross_entropy(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()  # fp32 loss under mixed precision
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=self.class_weights.to(logits.device),
                                                 reduction="sum")
        # With compute_loss_func the Trainer does not divide by gradient accumulation steps: normalise by the number
        # of examples in the whole accumulated batch, as the unweighted loss does.
        return loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def main(args=None):
    model_args, data_args, training_args = parse_args(
        (ModelArguments, DataTrainingArguments, FineTuningTrainingArguments), args)

    setup_logging(logger, training_args)

    resume = checkpoint_to_resume(training_args)  # never overwrites results unless asked
    set_seed(training_args.seed)
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision,
                  "token": model_args.token, "trust_remote_code": model_args.trust_remote_code}
    check_max_seq_length(data_args.max_seq_length, model_args.config_name or model_args.model_name_or_path,
                         minimum=4, hub_kwargs=hub_kwargs, allow_auto=True)  # now, not after the model has loaded

    # ---- Data: validate every file before anything heavy happens -------------------------------------------------
    files, limits = data_files(data_args, training_args)  # split -> path, split -> --max_*_samples

    first = next(iter(files.values()))
    text_columns = discover_schema(first, data_args).text_columns
    schemas, scans = {}, {}
    for split, path in files.items():
        schemas[split] = discover_schema(path, data_args, text_columns)
        if split != "test" and schemas[split].label_column is None:
            raise DataError(f"{path}: no label column '{data_args.label_column_name}' (first row: "
                            f"{schemas[split].text_columns} only); is it tab-separated text<TAB>label? Otherwise set "
                            f"--label_column_name.")
        scans[split] = scan_file(path, data_args, schemas[split], limits[split])
        n_rows, labels, _, skipped = scans[split]
        logger.info(f"{split}: {path}: {n_rows} rows, columns {schemas[split].text_columns}"
                    + (f" + label '{schemas[split].label_column}'" if schemas[split].label_column else " (no labels)")
                    + (f"; skipped {sum(skipped.values())} rows: {dict(skipped)}" if skipped else ""))
    is_pair = len(text_columns) == 2
    if len(text_columns) > 2:
        raise DataError(f"{first}: {len(text_columns)} text columns {text_columns}; BERT takes one text or a pair.")
    first_schema = next(iter(schemas.values()))
    if is_pair and first_schema.named_by_position and not data_args.text_column_names:
        logger.warning(f"{first}: no header and 3 columns per line: read as a sentence pair (text_a<TAB>text_b<TAB>"
                       f"label). If only one column is the text, pass --text_column_names text_a (or text_b); to keep "
                       f"the pair and silence this, pass --text_column_names text_a,text_b.")

    # Labels: mapped once; the saved config keeps the names (id2label), so predictions come back as names.
    if "train" in scans:
        label_list = build_label_list(scans["train"][1], data_args.label_file)
    else:  # evaluating or predicting with a trained model: its config knows the labels
        config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path,
                                            trust_remote_code=model_args.trust_remote_code)
        label_list = [config.id2label[i] for i in range(config.num_labels)]
    ids_allowed = bool(data_args.label_file) or "train" not in scans  # THUCNews: ids in the data, names in class.txt
    all_labels = set().union(*(labels for _, labels, _, _ in scans.values()))
    label2id_in_data = label_to_id_map(label_list, all_labels if ids_allowed else [])
    train_ids = {label2id_in_data[l] for l in scans["train"][1] if l in label2id_in_data} if "train" in scans else None
    for split, (_, labels, first_line, _) in scans.items():
        for label in sorted(labels, key=first_line.get):
            where = f"{files[split]}:{first_line[label]}"
            if label not in label2id_in_data and split == "train":
                raise DataError(f"{where}: label '{label}' is not in --label_file {data_args.label_file} "
                                f"({len(label_list)} labels); add it there or fix the row.")
            if label not in label2id_in_data and train_ids is None:
                raise DataError(f"{where}: label '{label}' is not one of the model's labels {label_list[:20]}.")
            if label not in label2id_in_data or (train_ids is not None and label2id_in_data[label] not in train_ids):
                raise DataError(f"{where}: label '{label}' never occurs in the training data (labels: "
                                f"{label_list[:20]}); fix the label or add training examples for it.")
    if train_ids is not None and len(train_ids) < len(label_list):
        missing = [label_list[i] for i in range(len(label_list)) if i not in train_ids]
        logger.warning(f"Labels with no training example: {missing}")
    logger.info(f"{len(label_list)} labels: " + ", ".join(f"{i}={n}" for i, n in enumerate(label_list[:30])))
    if "train" in scans:
        counts = scans["train"][1]
        logger.info("training label counts: " + ", ".join(
            f"{label_list[label2id_in_data[l]]}={c}" for l, c in sorted(counts.items(),
                                                                       key=lambda x: label2id_in_data[x[0]])))

    raw = {}
    for split, path in files.items():
        stat = os.stat(path)
        schema = schemas[split]
        fingerprint_source = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns, schema.text_columns,
                                         schema.label_column, label2id_in_data, limits[split], data_args.has_header,
                                         data_args.skip_bad_rows], ensure_ascii=False)

        with training_args.main_process_first(desc=f"reading {split}"):  # one process writes the Arrow cache
            raw[split] = datasets.Dataset.from_generator(
                generate_examples, split=datasets.Split.TRAIN,
                # tuples, not lists: datasets would read a list in gen_kwargs as shards for parallel generation
                gen_kwargs={"path": path, "data_args": data_args, "text_columns": tuple(schema.text_columns),
                            "label_column": schema.label_column, "label2id": label2id_in_data,
                            "limit": limits[split]},
                fingerprint=hashlib.sha256(fingerprint_source.encode()).hexdigest()[:16],
            )

    # ---- Model and tokenizer --------------------------------------------------------------------------------------
    config_source = model_args.config_name or model_args.model_name_or_path
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    if not config_source or not tokenizer_source:
        raise ValueError("Pass --model_name_or_path, or --config_name and --tokenizer_name to train from scratch.")
    config = AutoConfig.from_pretrained(
        config_source, num_labels=len(label_list), id2label=dict(enumerate(label_list)),
        label2id={n: i for i, n in enumerate(label_list)}, finetuning_task="text-classification", **hub_kwargs)
    config.problem_type = "single_label_classification"
    # The head: a flag turns the BERT config into a head config (heads/); without one the checkpoint keeps its own
    # (a plain BERT gets the linear head on the pooler; other architectures, e.g. ERNIE, pass through unchanged).
    if model_args.head or model_args.pooling or heads.head_of(config) is not None:
        filter_sizes = model_args.cnn_filter_sizes
        config = heads.head_config(
            model_args.head, config, pooling=model_args.pooling, pooling_last_k=model_args.pooling_last_k,
            cnn_filter_sizes=tuple(int(k) for k in filter_sizes.split(",")) if filter_sizes else None,
            cnn_num_filters=model_args.cnn_num_filters, rnn_hidden_size=model_args.rnn_hidden_size,
            rnn_num_layers=model_args.rnn_num_layers, attention_hidden_size=model_args.attention_hidden_size,
            window_fusion=model_args.window_fusion, classifier_dropout=model_args.classifier_dropout)
        logger.info(f"Head: {' '.join(x for x in heads.head_of(config) if x)} (model_type {config.model_type})")
    use_windows = config.model_type == "bert_windows"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **hub_kwargs)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError(f"Tokenizer {tokenizer_source} has no [CLS]/[SEP] tokens; this script builds BERT inputs.")
    if model_args.model_name_or_path:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            **hub_kwargs)
    else:
        logger.info(f"Training a new model from scratch with config {config_source}")
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=
                                                               model_args.trust_remote_code)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model: {type(model).__name__}, {n_params:,} parameters, vocab {len(tokenizer)}")
    if model_args.freeze != "none" or model_args.freeze_layers:
        frozen = freeze_parameters(model, model_args.freeze, model_args.freeze_layers)
        logger.info(f"Frozen (--freeze {model_args.freeze}, --freeze_layers {model_args.freeze_layers}): "
                    f"{frozen:,} parameters; trainable {n_params - frozen:,} of {n_params:,} "
                    f"({(n_params - frozen) / n_params:.1%})")

    # ---- Preprocessing: tokenize once (cached Arrow files), pick max length, truncate, add [CLS]/[SEP] -----------
    def tokenize(batch):
        out = {}
        for i, column in enumerate(text_columns):
            ids = tokenizer(batch[column], add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            out[f"ids_{i}"] = ids
        out["n_tokens"] = [sum(len(out[f"ids_{i}"][j]) for i in range(len(text_columns)))
                           for j in range(len(batch[text_columns[0]]))]
        return out

    tokenized = {}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"tokenizing {split}"):
            tokenized[split] = ds.map(tokenize, batched=True, num_proc=data_args.preprocessing_num_workers,
                                      load_from_cache_file=not data_args.overwrite_cache,
                                      desc=f"Tokenizing {split}")

    # Encoding settings: flags given win; without training, a trained model's saved settings (config.json,
    # "text_classification") come next, so it sees texts encoded as in training; then the recipe's defaults.
    saved = (getattr(config, "text_classification", None) or {}) if "train" not in tokenized else {}

    def setting(name, default=None):
        value = getattr(data_args, name)
        return value if value is not None else saved.get(name, default)

    max_seq_length = setting("max_seq_length", "128")
    if max_seq_length == "auto" and saved.get("max_seq_length"):
        max_seq_length = saved["max_seq_length"]
    truncation_strategy = setting("truncation_strategy", "head")
    if is_pair and truncation_strategy == "head+tail":
        raise ValueError("--truncation_strategy head+tail is for single texts; sentence pairs are trimmed "
                         "longest-first (use head or tail).")
    if saved:
        logger.info(f"Encoding as the model was trained, unless a flag says otherwise: {saved}")

    special = 3 if is_pair else 2  # [CLS] a [SEP] (b [SEP])
    model_limit = getattr(config, "max_position_embeddings", 512)
    if max_seq_length == "auto":
        source = tokenized["train"] if "train" in tokenized else next(iter(tokenized.values()))
        lengths = np.array(source["n_tokens"]) + special
        pct = np.percentile(lengths, [50, 90, 95, 99, 100])
        chosen = int(math.ceil(np.percentile(lengths, data_args.auto_length_percentile) / 8) * 8)
        max_seq_length = min(chosen, model_limit)
        logger.info(f"--max_seq_length auto: token lengths incl. special tokens p50={pct[0]:.0f} p90={pct[1]:.0f} "
                    f"p95={pct[2]:.0f} p99={pct[3]:.0f} max={pct[4]:.0f}; p{data_args.auto_length_percentile:g} "
                    f"rounded up to a multiple of 8 -> max_seq_length={max_seq_length} "
                    f"({np.mean(lengths > max_seq_length):.1%} of texts will be truncated)")
    else:
        max_seq_length = int(max_seq_length)
    if max_seq_length > model_limit:
        raise ValueError(f"--max_seq_length {max_seq_length} exceeds the model's {model_limit} positions.")
    budget = max_seq_length - special
    if budget < 2:
        raise ValueError(f"--max_seq_length {max_seq_length} leaves no room for text.")
    head_tokens = setting("head_tokens", default_head_tokens(budget))
    if truncation_strategy == "head+tail":
        logger.info(f"head+tail truncation: first {min(head_tokens, budget)} + last "
                    f"{budget - min(head_tokens, budget)} of {budget} text tokens")

    # Saved in config.json, so evaluation/prediction with this model later encodes texts the same way.
    model.config.text_classification = {"max_seq_length": max_seq_length, "text_columns": text_columns,
                                        "truncation_strategy": truncation_strategy,
                                        "head_tokens": head_tokens}
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id

    if use_windows:
        if is_pair:
            raise ValueError("--head windows is for long single texts, not sentence pairs.")
        window_stride, max_windows = setting("window_stride", budget // 2), setting("max_windows", 8)
        if not 0 < window_stride <= budget:
            raise ValueError(f"--window_stride {window_stride} must be in 1..{budget} (the text tokens per window).")
        logger.info(f"Sliding windows: {max_seq_length} tokens each ({budget} of text), a new one every "
                    f"{window_stride} tokens, at most {max_windows} per document")
        model.config.text_classification.update(window_stride=window_stride, max_windows=max_windows)

    def encode_windows(batch):
        """One document -> a list of windows [CLS] chunk [SEP]; the windows model fuses their [CLS] vectors."""
        input_ids, truncated = [], []
        for a in batch["ids_0"]:
            starts = window_starts(len(a), budget, window_stride)
            truncated.append(len(starts) > max_windows)  # the cap drops windows (and maybe tokens)
            starts = cap_windows(starts, max_windows)
            input_ids.append([[cls_id] + a[s:s + budget] + [sep_id] for s in starts])
        return {"input_ids": input_ids, "length": [sum(len(w) for w in doc) for doc in input_ids],
                "n_windows": [len(doc) for doc in input_ids], "truncated": truncated}

    def encode(batch):
        if use_windows:
            return encode_windows(batch)
        input_ids, token_type_ids, truncated = [], [], []
        for i in range(len(batch["ids_0"])):
            a = batch["ids_0"][i]
            if is_pair:
                b = batch["ids_1"][i]
                keep_a, keep_b = pair_budgets(len(a), len(b), budget)
                a_cut = truncate(a, keep_a, truncation_strategy, head_tokens)
                b_cut = truncate(b, keep_b, truncation_strategy, head_tokens)
                ids = [cls_id] + a_cut + [sep_id] + b_cut + [sep_id]
                types = [0] * (len(a_cut) + 2) + [1] * (len(b_cut) + 1)
                truncated.append(len(a_cut) + len(b_cut) < len(a) + len(b))
            else:
                a_cut = truncate(a, budget, truncation_strategy, head_tokens)
                ids = [cls_id] + a_cut + [sep_id]
                types = [0] * len(ids)
                truncated.append(len(a_cut) < len(a))
            input_ids.append(ids)
            token_type_ids.append(types)
        return {"input_ids": input_ids, "token_type_ids": token_type_ids,
                "attention_mask": [[1] * len(x) for x in input_ids],
                "length": [len(x) for x in input_ids], "truncated": truncated}

    encoded = {}
    data_summary = {"max_seq_length": max_seq_length, "truncation_strategy": truncation_strategy,
                    "text_columns": text_columns, "labels": label_list, "splits": {}}
    for split, ds in tokenized.items():
        with training_args.main_process_first(desc=f"encoding {split}"):
            ds = ds.map(encode, batched=True,
                        remove_columns=[f"ids_{i}" for i in range(len(text_columns))] + ["n_tokens"],
                        num_proc=data_args.preprocessing_num_workers,
                        load_from_cache_file=not data_args.overwrite_cache, desc=f"Truncating/encoding {split}")
        n_truncated = int(np.sum(ds["truncated"]))
        logger.info(f"{split}: {len(ds)} examples, {n_truncated} ({n_truncated / max(len(ds), 1):.1%}) longer than "
                    f"max_seq_length={max_seq_length} truncated ({truncation_strategy}); mean length "
                    f"{np.mean(ds['length']):.1f} tokens")
        n_rows, labels, _, skipped = scans[split]
        data_summary["splits"][split] = {
            "file": files[split], "examples": len(ds), "skipped_rows": dict(skipped), "truncated": n_truncated,
            "mean_tokens": round(float(np.mean(ds["length"])), 2),
            "label_counts": {label_list[label2id_in_data[l]]: c for l, c in labels.items()}}
        if split != "train":
            ds = ds.sort("length")  # evaluation in length order: less padding; "row" maps results back
        encoded[split] = ds

    if data_args.show_examples and "train" in encoded:
        for example in encoded["train"].select(range(min(data_args.show_examples, len(encoded["train"])))):
            print(f"\n--- training example (line {example['line']}) ---")
            for column in text_columns:
                print(f"{column}: {example[column]}")
            if use_windows:
                for j, window in enumerate(example["input_ids"]):
                    print(f"window {j}: {' '.join(tokenizer.convert_ids_to_tokens(window))}")
                print(f"label:          {example['label']} ({label_list[example['label']]})")
                continue
            tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
            print(f"tokens:         {' '.join(tokens)}")
            print(f"input_ids:      {example['input_ids']}")
            print(f"token_type_ids: {example['token_type_ids']}")
            print(f"attention_mask: {example['attention_mask']}")
            print(f"label:          {example['label']} ({label_list[example['label']]})")

    # ---- Trainer --------------------------------------------------------------------------------------------------
    if use_windows:
        collator = WindowCollator(tokenizer.pad_token_id)
    elif data_args.pad_to_max_length:
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
        training_args.metric_for_best_model = training_args.metric_for_best_model or "accuracy"
        training_args.greater_is_better = not training_args.metric_for_best_model.endswith("loss")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))

    class_weights = None
    if data_args.class_weights and "train" in encoded:
        class_weights = read_class_weights(data_args.class_weights, label_list, encoded["train"]["label"])
        logger.info("class weights: " + ", ".join(f"{n}={w:.3f}" for n, w in zip(label_list, class_weights.tolist())))

    trainer = ClassificationTrainer(
        class_weights=class_weights,
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=encoded.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    output_dir = training_args.output_dir
    is_main = trainer.is_world_process_zero()
    results = {}
    if is_main:  # what was read, skipped and truncated, next to the metrics
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "data_summary.json"), "w", encoding="utf-8") as f:
            json.dump(data_summary, f, ensure_ascii=False, indent=2)

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # safetensors weights, config with id2label/label2id, tokenizer files
        metrics = dict(train_result.metrics, train_samples=len(encoded["train"]), max_seq_length=max_seq_length,
                       train_tokens_per_epoch=int(np.sum(encoded["train"]["length"])))  # non-padding tokens
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if is_main and plot_training_curves(trainer.state.log_history,
                                            os.path.join(output_dir, "training_curves.png")):
            logger.info(f"Training curves: {os.path.join(output_dir, 'training_curves.png')}")

    if "validation" in encoded:
        output = trainer.predict(encoded["validation"], metric_key_prefix="eval")
        metrics = dict(output.metrics, eval_samples=len(encoded["validation"]))
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        if is_main:
            preds = np.argmax(output.predictions, axis=-1)
            results["eval"] = write_report(output_dir, "eval", output.label_ids, preds, label_list)

    if training_args.do_predict:
        test = encoded["test"]
        has_labels = "label" in test.column_names
        output = trainer.predict(test, metric_key_prefix="predict")
        logits = torch.tensor(output.predictions, dtype=torch.float32)
        probs = torch.softmax(logits, dim=-1).numpy()
        preds = probs.argmax(axis=-1)
        order = np.argsort(np.array(test["row"]))  # back to file order
        if has_labels:
            labels = np.array(test["label"])
            metrics = dict(output.metrics, predict_samples=len(test))
            trainer.log_metrics("predict", metrics)
            trainer.save_metrics("predict", metrics)
        if is_main:
            path = os.path.join(output_dir, "predict_results.tsv")
            columns = {c: test[c] for c in text_columns}
            lines_ = test["line"]
            with open(path, "w", encoding="utf-8") as f:
                header = ["line"] + text_columns + ["predicted_label", "probability"] + (["label"] if has_labels
                                                                                           else [])
                f.write("\t".join(header) + "\n")
                for i in order:
                    # one row per text, whatever the text holds (CSV/JSON texts may contain tabs or newlines)
                    fields = [str(lines_[i])] + [" ".join(columns[c][i].split()) for c in text_columns]
                    fields += [label_list[preds[i]], f"{probs[i, preds[i]]:.4f}"]
                    if has_labels:
                        fields.append(label_list[labels[i]])
                    f.write("\t".join(fields) + "\n")
            logger.info(f"Predictions for {len(test)} texts: {path}")
            if has_labels:
                results["predict"] = write_report(output_dir, "predict", labels, preds, label_list)

    # ---- Hub-ready output directory: model card (README.md), then --push_to_hub -----------------------------------
    if training_args.do_train:
        row = raw["validation" if "validation" in raw else "train"][0]
        example = {"text": row[text_columns[0]], "text_pair": row[text_columns[1]]} if is_pair else row[text_columns[0]]
        finish_output_dir(trainer, "text-classification", logger=logger, data_files=files, example=example,
                          base_model=model_args.model_name_or_path)

    # ---- The report, as the course shows it -----------------------------------------------------------------------
    if is_main and results:
        for split, text in results.items():
            name = {"eval": "validation", "predict": "test"}[split]
            print(f"\n***** Classification report: {name} ({files['validation' if split == 'eval' else 'test']}) "
                  f"*****\n{text}")
        written = sorted(f for f in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, f)))
        print(f"Files in {output_dir}: {', '.join(written)}")
    return trainer


if __name__ == "__main__":
    run_main(main)
