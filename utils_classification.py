"""Text classification on Chinese text, the pieces run_classification.py, predict.py and export_onnx.py share:
reading and checking TSV/CSV/JSON-lines files, labels, the encoding settings saved with a model, texts -> model
inputs (truncation head / tail / head+tail, sentence pairs, sliding windows), metrics and reports, class weights.
"""

import copy
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from plotting import plot_confusion_matrix
from script_utils import DataError, SavedSettings, decoded_lines, window_starts
from training import FineTuningTrainer, collapse_warning

logger = logging.getLogger(__name__)


@dataclass
class ClassificationSettings(SavedSettings):
    """How texts become model inputs; saved in config.json under "text_classification"."""

    CONFIG_KEY = "text_classification"

    max_seq_length: int = 128  # tokens per example (per window), [CLS]/[SEP] included
    text_columns: tuple = ("text",)  # one text, or two (a sentence pair)
    truncation_strategy: str = "head"  # head, tail or head+tail
    head_tokens: Optional[int] = None  # head+tail: tokens kept from the start (default: 128 of 510, scaled)
    window_stride: Optional[int] = None  # --head windows: a new window every N tokens (default: half a window)
    max_windows: Optional[int] = None  # --head windows: at most N windows per document (default 8)

    @property
    def budget(self):
        """Text tokens per example (per window): max_seq_length less [CLS] a [SEP] (b [SEP])."""
        return self.max_seq_length - (3 if len(self.text_columns) == 2 else 2)

    @classmethod
    def of_model(cls, config):
        """The settings of a trained model: what run_classification.py saved, with the defaults it used for the rest
        (a model without them: head truncation to its own length)."""
        saved = cls.saved_in(config)
        saved.setdefault("max_seq_length", min(getattr(config, "max_position_embeddings", 512), 512))
        settings = cls(**saved)
        settings.text_columns = list(settings.text_columns)
        if len(settings.text_columns) > 2:
            raise ValueError(f"text_columns {settings.text_columns}: BERT takes one text or a pair.")
        if settings.head_tokens is None:
            settings.head_tokens = default_head_tokens(settings.budget)
        if config.model_type == "bert_windows":
            settings.window_stride = settings.window_stride or max(settings.budget // 2, 1)
            settings.max_windows = settings.max_windows or 8
        return settings


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


def read_files(files, data_args, limits):
    """Check every data file ({split: path}) before anything heavy: the text columns (from the first file), each
    file's columns and labels, every row. Returns (text_columns, {split: FileSchema}, {split: scan_file result})."""
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
    if len(text_columns) > 2:
        raise DataError(f"{first}: {len(text_columns)} text columns {text_columns}; BERT takes one text or a pair.")
    if len(text_columns) == 2 and next(iter(schemas.values())).named_by_position and not data_args.text_column_names:
        logger.warning(f"{first}: no header and 3 columns per line: read as a sentence pair (text_a<TAB>text_b<TAB>"
                       f"label). If only one column is the text, pass --text_column_names text_a (or text_b); to keep "
                       f"the pair and silence this, pass --text_column_names text_a,text_b.")
    return text_columns, schemas, scans


def label_ids(scans, files, label_list, label_file):
    """{label as written in the data: id} for every label the files use (names, or ids into --label_file's names);
    a label the model cannot learn or does not know is an error naming the file and line. Logs the labels."""
    ids_allowed = bool(label_file) or "train" not in scans  # THUCNews: ids in the data, names in class.txt
    all_labels = set().union(*(labels for _, labels, _, _ in scans.values()))
    label2id_in_data = label_to_id_map(label_list, all_labels if ids_allowed else [])
    train_ids = {label2id_in_data[l] for l in scans["train"][1] if l in label2id_in_data} if "train" in scans else None
    for split, (_, labels, first_line, _) in scans.items():
        for label in sorted(labels, key=first_line.get):
            where = f"{files[split]}:{first_line[label]}"
            if label not in label2id_in_data and split == "train":
                raise DataError(f"{where}: label '{label}' is not in --label_file {label_file} "
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
    return label2id_in_data


# ----------------------------------------------------------------------------------------------------------------
# Texts -> model inputs: truncation (head / tail / head+tail), sentence pairs, sliding windows
# ----------------------------------------------------------------------------------------------------------------


class ClassificationEncoder:
    """Texts -> model inputs, as run_classification.py trains on them and predict.py / export_onnx.py serve them.

    Called with a batch {text column: [texts]} (the columns of settings.text_columns: one text or a pair), it returns
    input_ids, token_type_ids, attention_mask, length and truncated (whether any text was cut) per example. With
    windows (--head windows) input_ids holds each document's windows `[CLS] chunk [SEP]`, and n_windows counts them.

    Single texts cut at the head or the tail are the tokenizer's own (truncation_side right / left). The rest is built
    from the texts' tokens, as no tokenizer call gives these ids: head+tail keeps both ends; pairs are trimmed
    longest-first with the odd token of the budget going to the first text (the tokenizers library gives it to the
    second); windows end flush with the document.
    """

    def __init__(self, tokenizer, settings, windows=False):
        self.settings, self.windows = settings, windows
        self.tokenizer = copy.deepcopy(tokenizer)  # its own truncation state: the script's tokenizer is saved as is
        self.tokenizer.truncation_side = "left" if settings.truncation_strategy == "tail" else "right"

    def __call__(self, batch):
        s, tok = self.settings, self.tokenizer
        texts = [batch[column] for column in s.text_columns]
        if len(texts) == 1 and not self.windows and s.truncation_strategy in ("head", "tail"):
            enc = tok(texts[0], truncation=True, max_length=s.max_seq_length, return_token_type_ids=True,
                      return_attention_mask=True, verbose=False)
            return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                    "attention_mask": enc["attention_mask"], "length": [len(x) for x in enc["input_ids"]],
                    "truncated": [bool(e.overflowing) for e in enc.encodings]}
        ids = [tok(column, add_special_tokens=False, verbose=False)["input_ids"] for column in texts]
        cls_id, sep_id, budget = tok.cls_token_id, tok.sep_token_id, s.budget
        if self.windows:  # one document -> its windows; the windows model fuses their [CLS] vectors
            input_ids, truncated = [], []
            for a in ids[0]:
                starts = window_starts(len(a), budget, s.window_stride)
                truncated.append(len(starts) > s.max_windows)  # the cap drops windows (and maybe tokens)
                input_ids.append([[cls_id] + a[i:i + budget] + [sep_id] for i in cap_windows(starts, s.max_windows)])
            return {"input_ids": input_ids, "length": [sum(len(w) for w in doc) for doc in input_ids],
                    "n_windows": [len(doc) for doc in input_ids], "truncated": truncated}
        input_ids, token_type_ids, truncated = [], [], []
        for i, a in enumerate(ids[0]):
            if len(ids) == 2:
                b = ids[1][i]
                keep_a, keep_b = pair_budgets(len(a), len(b), budget)
                a_cut = truncate(a, keep_a, s.truncation_strategy, s.head_tokens)
                b_cut = truncate(b, keep_b, s.truncation_strategy, s.head_tokens)
                input_ids.append([cls_id] + a_cut + [sep_id] + b_cut + [sep_id])
                token_type_ids.append([0] * (len(a_cut) + 2) + [1] * (len(b_cut) + 1))
                truncated.append(len(a_cut) + len(b_cut) < len(a) + len(b))
            else:
                a_cut = truncate(a, budget, s.truncation_strategy, s.head_tokens)
                input_ids.append([cls_id] + a_cut + [sep_id])
                token_type_ids.append([0] * len(input_ids[-1]))
                truncated.append(len(a_cut) < len(a))
        return {"input_ids": input_ids, "token_type_ids": token_type_ids,
                "attention_mask": [[1] * len(x) for x in input_ids], "length": [len(x) for x in input_ids],
                "truncated": truncated}


def count_tokens(tokenizer, columns):
    """Text tokens per example (both texts of a pair together), without [CLS]/[SEP]: for --max_seq_length auto."""
    counts = [[len(x) for x in tokenizer(list(column), add_special_tokens=False, verbose=False)["input_ids"]]
              for column in columns]
    return np.sum(counts, axis=0)


def auto_max_seq_length(lengths, percentile, model_limit):
    """--max_seq_length auto: the `percentile` of the token lengths (special tokens included), rounded up to a multiple
    of 8, at most the model's positions; logged with the length percentiles."""
    pct = np.percentile(lengths, [50, 90, 95, 99, 100])
    chosen = int(math.ceil(np.percentile(lengths, percentile) / 8) * 8)
    max_seq_length = min(chosen, model_limit)
    logger.info(f"--max_seq_length auto: token lengths incl. special tokens p50={pct[0]:.0f} p90={pct[1]:.0f} "
                f"p95={pct[2]:.0f} p99={pct[3]:.0f} max={pct[4]:.0f}; p{percentile:g} rounded up to a multiple of 8 "
                f"-> max_seq_length={max_seq_length} ({np.mean(lengths > max_seq_length):.1%} of texts will be "
                f"truncated)")
    return max_seq_length


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


def show_examples(dataset, tokenizer, text_columns, label_list, n):
    """--show_examples: the first n encoded examples (tokens, token_type_ids, attention mask; windows one by one)."""
    for example in dataset.select(range(min(n, len(dataset)))):
        print(f"\n--- training example (line {example['line']}) ---")
        for column in text_columns:
            print(f"{column}: {example[column]}")
        if "token_type_ids" not in example:  # windows
            for j, window in enumerate(example["input_ids"]):
                print(f"window {j}: {' '.join(tokenizer.convert_ids_to_tokens(window))}")
        else:
            print(f"tokens:         {' '.join(tokenizer.convert_ids_to_tokens(example['input_ids']))}")
            print(f"input_ids:      {example['input_ids']}")
            print(f"token_type_ids: {example['token_type_ids']}")
            print(f"attention_mask: {example['attention_mask']}")
        print(f"label:          {example['label']} ({label_list[example['label']]})")


def write_predictions(path, test, text_columns, label_list, probs):
    """predict_results.tsv: one row per test text in file order (line, texts, predicted label, its probability, and
    the true label when the file has labels). `test` is in length order; its "row" column maps back."""
    preds = probs.argmax(axis=-1)
    has_labels = "label" in test.column_names
    columns = {c: test[c] for c in text_columns}
    lines, labels = test["line"], test["label"] if has_labels else None
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(["line"] + text_columns + ["predicted_label", "probability"] + (["label"] if has_labels
                                                                                          else [])) + "\n")
        for i in np.argsort(np.array(test["row"])):  # back to file order
            # one row per text, whatever the text holds (CSV/JSON texts may contain tabs or newlines)
            fields = [str(lines[i])] + [" ".join(columns[c][i].split()) for c in text_columns]
            fields += [label_list[preds[i]], f"{probs[i, preds[i]]:.4f}"]
            if has_labels:
                fields.append(label_list[labels[i]])
            f.write("\t".join(fields) + "\n")


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



# ----------------------------------------------------------------------------------------------------------------
# Class weights (freezing and per-group learning rates live in training.py: NER and QA use them too)
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

