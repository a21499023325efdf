#!/usr/bin/env python
"""Fine-tune a BERT-style model for Chinese named-entity recognition: every character gets a label.

One file, top to bottom: arguments -> data -> preprocessing -> model -> train -> evaluate -> predict -> report.

    python run_ner.py \
        --model_name_or_path bert-base-chinese \
        --train_file data/cluener/train.json --validation_file data/cluener/dev.json --test_file data/cluener/dev.json \
        --head crf --do_train --do_eval --do_predict \
        --num_train_epochs 4 --per_device_train_batch_size 32 --learning_rate 3e-5 --head_learning_rate 1e-3 \
        --output_dir outputs/cluener_crf

Data (one sentence per example; the format comes from the extension and the first line, or --data_format):
  * CoNLL style, one character per line: `char TAG` or `char<TAB>TAG` (the tag is the last column, or
    --tag_column; other columns are ignored), a blank line between sentences. A space character is written
    `<space><TAB>TAG`. Test files may have the character column only.
  * CLUENER JSON lines: {"text": ..., "label": {type: {entity: [[start, end_inclusive], ...]}}} ("label" optional in
    test files).
  * JSON lines with token and tag lists: {"tokens": [...], "tags": [...]} ("ner_tags" also read; tags optional in
    test files).
Tag schemes BIO, BIOES (also written BILOU) and BMES are detected per file and read into entity spans; the model is
trained in one scheme (--label_scheme BIO or BIOES), logged and saved in config.json. `I-X` without `B-X` (and in
BIOES, `B-X` without `E-X`) is repaired (the entity starts / ends there) and counted, never silently. Nested or
overlapping CLUENER entities, which one label per character cannot hold, keep the longest and are counted.

Characters are the words: each character is tokenized on its own, so it always maps to at least one token; one the
tokenizer drops (spaces, control characters) becomes [UNK], one it does not know too, one it normalises (full-width
or upper-case letters) keeps its one token; every case is counted in data_summary.json. The label sits on the first
sub-token (-100 elsewhere), or on all of them with B->I relabelling (--label_all_tokens). A sentence longer than
--max_seq_length is cut into overlapping chunks (a new one every --chunk_stride tokens, never inside a character)
instead of being truncated; each chunk is labelled with the entities clipped to it, and predictions are merged back
(each token's scores from the chunk where it is furthest from an edge, then one decoding over the whole sentence:
Viterbi with the CRF's transitions for the CRF heads).

Heads (--head, heads/modeling_token_heads.py): softmax (BertForTokenClassification), lstm (BiLSTM), crf, lstm_crf;
all return logits [batch, seq_len, num_labels] and save with their code (auto_map). --head_learning_rate gives the
head (LSTM, classifier, CRF transitions) its own learning rate.

Metrics: entity-level precision/recall/F1 (micro) and macro-F1 over entity types, by seqeval (conlleval-style
lenient matching, or --strict), per type in {eval,predict}_entity_report.{txt,json}; predictions as JSON lines with
entities {text, type, start, end} in character offsets of the original sentence (end exclusive) and as CoNLL.

The output directory holds the model (config.json with id2label and the encoding settings under
"token_classification", the head's code for the custom heads), train/eval/predict/all_results.json (eval_f1,
eval_macro_f1, eval_precision, eval_recall, eval_accuracy = character tag accuracy, ...), eval_entity_report.txt/.json
(per type), data_summary.json (sentences, entities, repairs, skipped sentences, chunks, characters the tokenizer
dropped/normalised/did not know, per split), training_curves.png, and with --do_predict predict_entities.jsonl,
predict_tags.conll, predict_cluener.json (CLUENER input) and predict_entity_report.* (when the test file has tags).

Arguments can also come from one .json or .yaml file: `python run_ner.py args.yaml`.
"""

import json
import logging
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
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
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

import heads  # registers the token-classification heads (lstm, crf, lstm_crf) with the Auto classes

logger = logging.getLogger(__name__)
warnings.filterwarnings("ignore", message=".*null_placement.*")  # pyarrow, via datasets: not ours to fix


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Hub id (e.g. bert-base-chinese) or local directory of a pretrained model (a run_mlm.py "
                  "checkpoint works). Leave it out and give --config_name to train from scratch."},
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
        metadata={"help": "Replace a checkpoint's classifier (and CRF) whose number of labels differs from this "
                  "data's."},
    )
    head: Optional[str] = field(
        default=None,
        metadata={"help": "What sits on top of BERT (heads/modeling_token_heads.py): softmax (a linear layer per "
                  "token), lstm (BiLSTM), crf (linear + CRF), lstm_crf. Default: the checkpoint's own head, else "
                  "softmax.", "choices": list(heads.TOKEN_HEAD_NAMES)},
    )
    rnn_hidden_size: Optional[int] = field(default=None, metadata={"help": "--head lstm/lstm_crf: size per "
                                                                             "direction (256)."})
    rnn_num_layers: Optional[int] = field(default=None, metadata={"help": "--head lstm/lstm_crf: layers (1)."})
    crf_constraints: Optional[bool] = field(
        default=None,
        metadata={"help": "--head crf/lstm_crf: forbid the transitions the tag scheme does not allow (I-X after O, "
                  "...) in decoding and in the likelihood (default true; --crf_constraints false to allow all)."},
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
    train_file: Optional[str] = field(default=None, metadata={"help": "Training data: CoNLL (.txt, .conll, ...), "
                                                                       "CLUENER or tokens/tags JSON lines (.json)."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Validation data (any of the formats)."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Test data for --do_predict; tags optional."})
    data_format: Optional[str] = field(
        default=None,
        metadata={"help": "conll, cluener or tokens (JSON lines with tokens/tags). Default: .json/.jsonl files are "
                  "cluener when their first object has 'text', tokens when it has 'tokens'; other files conll.",
                  "choices": ["conll", "cluener", "tokens"]},
    )
    tag_column: Optional[int] = field(
        default=None, metadata={"help": "CoNLL files: the 0-based column holding the tag (default: the last)."}
    )
    label_scheme: Optional[str] = field(
        default=None,
        metadata={"help": "Tag scheme the model learns: BIO (default) or BIOES. Input files may use BIO, BIOES "
                  "(BILOU) or BMES whatever this is. A trained model keeps its own.", "choices": ["BIO", "BIOES"]},
    )
    max_seq_length: Optional[int] = field(
        default=None,
        metadata={"help": "Max tokens per chunk including [CLS]/[SEP] (default 128). Longer sentences are cut into "
                  "overlapping chunks, never truncated. With a trained model and no training, the model's own "
                  "setting is the default (so are --chunk_stride and --label_all_tokens)."},
    )
    chunk_stride: Optional[int] = field(
        default=None,
        metadata={"help": "Long sentences: a new chunk starts every N tokens (default: half of max_seq_length - 2); "
                  "the last chunk ends with the sentence, chunks start at character boundaries."},
    )
    label_all_tokens: bool = field(
        default=False,
        metadata={"help": "Label every sub-token of a character (B-X, I-X, I-X...) instead of only the first "
                  "(-100 on the others, the default). The character's prediction comes from its sub-tokens. A "
                  "model trained with it keeps it."},
    )
    strict: bool = field(
        default=False,
        metadata={"help": "seqeval strict mode: an entity counts only if its predicted tags are well-formed in the "
                  "scheme (an I-X after O is no entity). Default: conlleval-style lenient matching."},
    )
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every chunk to max_seq_length (slower). Default: pad each batch to its "
                                         "longest chunk."},
    )
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N training "
                                                                              "sentences."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N validation "
                                                                             "sentences."})
    max_predict_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N test "
                                                                                "sentences."})
    skip_bad_rows: bool = field(
        default=False, metadata={"help": "Skip (and count) malformed sentences instead of stopping with an error."}
    )
    show_examples: int = field(
        default=0, metadata={"help": "Print N encoded training chunks: tokens with their labels."}
    )
    early_stopping_patience: Optional[int] = field(
        default=None,
        metadata={"help": "Stop after N evaluations without improvement of --metric_for_best_model (default f1) and "
                  "reload the best checkpoint at the end."},
    )
    training_curves: bool = field(
        default=True, metadata={"help": "Write training_curves.png (loss, validation F1 per evaluation)."}
    )


# ----------------------------------------------------------------------------------------------------------------
# Reading data files: every problem becomes one clear line naming the file, the line and the fix
# ----------------------------------------------------------------------------------------------------------------


# Tag prefixes of every scheme, read as BIOES: BMES' M and BIO's I are "inside", BILOU's L/U are E/S.
PREFIXES = {"B": "B", "I": "I", "M": "I", "E": "E", "L": "E", "S": "S", "U": "S"}


def parse_tag(tag):
    """"B-PER" / "B_PER" -> ("B", "PER"), "O" -> ("O", None), "M-LOC" -> ("I", "LOC"); None if not a tag."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[0] in PREFIXES and tag[1] in "-_" and tag[2:].strip():
        return PREFIXES[tag[0]], tag[2:]
    return None


def scheme_name(raw_prefixes):
    """The scheme a file's tag prefixes (as written) show."""
    if "M" in raw_prefixes:
        return "BMES"
    if raw_prefixes & {"L", "U"}:
        return "BILOU"
    if raw_prefixes & {"E", "S"}:
        return "BIOES"
    return "BIO" if raw_prefixes else "O only"


@dataclass
class Sentence:
    line: int  # first line of the sentence in its file
    units: list  # the characters (the tokens of a tokens/tags file), each one label
    spans: Optional[list] = None  # [(start, end_exclusive, type)] over units; None = no labels
    tags: Optional[list] = None  # while reading CoNLL/tokens files: (prefix, type) per unit
    unit_lines: Optional[list] = None  # CoNLL: the line of each unit
    id: Optional[object] = None  # the "id" of a JSON line, kept in the predictions

    def text(self):
        return "".join(self.units)

    def char_offsets(self):
        """Character offset of each unit in text(), plus the total length at the end."""
        offsets = [0]
        for unit in self.units:
            offsets.append(offsets[-1] + len(unit))
        return offsets

    def line_of(self, unit):
        return self.unit_lines[unit] if self.unit_lines else self.line


class FileReader:
    """Reads one data file into Sentences; collects what it skipped, repaired and which tag scheme it saw."""

    def __init__(self, path, data_args, limit=None):
        self.path, self.data_args, self.limit = path, data_args, limit
        self.skipped, self.repaired, self.first_line = Counter(), Counter(), {}
        self.raw_prefixes = set()
        self.format = self.detect_format()

    def bad(self, line_no, message):
        """A malformed sentence: an error, or with --skip_bad_rows counted under its reason (the text before ';')."""
        if self.data_args.skip_bad_rows:
            self.skipped[message.split(";")[0]] += 1
            self.first_line.setdefault(message.split(";")[0], line_no)
            return
        raise DataError(f"{self.path}:{line_no}: {message}")

    def repair(self, kind, line_no):
        self.repaired[kind] += 1
        self.first_line.setdefault(kind, line_no)

    def detect_format(self):
        if self.data_args.data_format:
            return self.data_args.data_format
        if os.path.splitext(self.path)[1].lower() not in (".json", ".jsonl"):
            return "conll"
        for line_no, text in decoded_lines(self.path):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{self.path}:{line_no}: invalid JSON ({e.msg}); .json files must be JSON lines, "
                                f"one sentence object per line")
            if isinstance(obj, dict) and "tokens" in obj:
                return "tokens"
            if isinstance(obj, dict) and "text" in obj:
                return "cluener"
            raise DataError(f"{self.path}:{line_no}: a JSON line with neither 'text' (CLUENER) nor 'tokens' "
                            f"(tokens/tags); pass --data_format or fix the file.")
        raise DataError(f"{self.path}: no data lines (empty file?).")

    def sentences(self):
        """All sentences (up to the limit), labelled ones with spans. Raises DataError on bad input."""
        read = {"conll": self.read_conll, "cluener": self.read_cluener, "tokens": self.read_tokens}[self.format]
        out = []
        for sentence in read():
            if self.limit is not None and len(out) >= self.limit:
                break
            out.append(sentence)
        self.scheme = "spans" if self.format == "cluener" else scheme_name(self.raw_prefixes)
        bioes = self.scheme in ("BIOES", "BILOU", "BMES")
        for sentence in out:
            if sentence.tags is not None:
                sentence.spans = self.tags_to_spans(sentence, bioes)
                sentence.tags = None
        labelled = {s.spans is not None for s in out}
        if len(labelled) > 1:
            first = next(s for s in out if s.spans is None)
            raise DataError(f"{self.path}:{first.line}: this sentence has no tags but others have; tag every "
                            f"sentence or none (test files).")
        if not out:
            raise DataError(f"{self.path}: no usable sentences (skipped: {dict(self.skipped) or 'none'}).")
        return out

    def tags_to_spans(self, sentence, bioes):
        """(prefix, type) per unit -> entity spans; malformed entities are repaired and counted."""
        spans, start, kind = [], None, None

        def close(end):
            nonlocal start
            if start is not None:
                if bioes:  # BIOES: an entity ends with E- (or is one S-)
                    self.repair("B-/I- without E- (entity ended there)", sentence.line_of(end - 1))
                spans.append((start, end, kind))
                start = None

        for i, (prefix, entity_type) in enumerate(sentence.tags):
            if prefix == "O":
                close(i)
            elif prefix == "B":
                close(i)
                start, kind = i, entity_type
            elif prefix == "S":
                close(i)
                spans.append((i, i + 1, entity_type))
            elif start is not None and kind == entity_type:  # I- or E- continuing the open entity
                if prefix == "E":
                    spans.append((start, i + 1, kind))
                    start = None
            else:  # I- or E- with no B- of the same type before it: the entity starts here
                close(i)
                self.repair("I- without B- (entity started there)", sentence.line_of(i))
                if prefix == "E":
                    spans.append((i, i + 1, entity_type))
                else:
                    start, kind = i, entity_type
        close(len(sentence.tags))
        return spans

    @staticmethod
    def conll_fields(text):
        if "\t" in text:  # tab-separated: the character may itself be a space
            fields = text.split("\t")
            return [fields[0].strip(" ") or fields[0]] + [f.strip(" ") for f in fields[1:]]
        return [f for f in text.split(" ") if f]

    def conll_is_tagged(self):
        """Whether a CoNLL file has tags: what most of its lines say. One line without its tag is then an error at that
        line, instead of a reason to read the whole file as untagged (and drop every other tag)."""
        tag_column = self.data_args.tag_column
        tagged = untagged = 0
        for _, text in decoded_lines(self.path):
            if not text.strip(" \t") or text.startswith("-DOCSTART-"):
                continue
            n = len(self.conll_fields(text))
            if (n >= 2 if tag_column is None else n > tag_column):
                tagged += 1
            else:
                untagged += 1
        return tagged > 0 and tagged >= untagged

    def read_conll(self):
        tag_column = self.data_args.tag_column
        if tag_column == 0:
            raise DataError(f"{self.path}: --tag_column 0 is the character column.")
        labelled = self.conll_is_tagged()
        units, tags, lines, broken = [], [], [], False

        def flush():
            nonlocal units, tags, lines, broken
            sentence = None
            if units and not broken:
                sentence = Sentence(line=lines[0], units=units, tags=tags if labelled else None, unit_lines=lines)
            units, tags, lines, broken = [], [], [], False
            return sentence

        for line_no, text in decoded_lines(self.path):
            if not text.strip(" \t"):
                sentence = flush()
                if sentence:
                    yield sentence
                continue
            if text.startswith("-DOCSTART-"):
                sentence = flush()
                if sentence:
                    yield sentence
                self.skipped["-DOCSTART- line"] += 1
                continue
            fields = self.conll_fields(text)
            if broken:
                continue
            if not fields[0]:
                self.bad(line_no, "empty character column; write a space character as '<space><TAB>TAG'")
                broken = True
                continue
            if labelled:
                if len(fields) < 2 or (tag_column is not None and len(fields) <= tag_column):
                    self.bad(line_no, f"no tag on this line; expected 'char TAG' (the tag in column "
                                      f"{tag_column if tag_column is not None else 'last'}), got {text!r}, while "
                                      f"the file's other lines have tags. A space character is written "
                                      f"'<space><TAB>TAG'")
                    broken = True
                    continue
                tag = fields[tag_column if tag_column is not None else -1]
                parsed = parse_tag(tag)
                if parsed is None:
                    self.bad(line_no, f"tag '{tag}' is neither O nor PREFIX-TYPE (B-, I-, E-, S-, M-, e.g. B-PER); "
                                      f"fix the tag")
                    broken = True
                    continue
                if parsed[0] != "O":
                    self.raw_prefixes.add(tag[0])
                tags.append(parsed)
            elif len(fields) >= 2 and (tag_column is None or len(fields) > tag_column):
                self.bad(line_no, f"a tag on this line ({text!r}) but most lines of the file have none; tag every "
                                  f"line ('char TAG'), or none (a test file)")
                broken = True
                continue
            units.append(fields[0])
            lines.append(line_no)
        sentence = flush()
        if sentence:
            yield sentence

    def json_objects(self):
        for line_no, text in decoded_lines(self.path):
            if not text.strip():
                self.skipped["blank line"] += 1
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                self.bad(line_no, f"invalid JSON ({e.msg}); each line must be one JSON object")
                continue
            if not isinstance(obj, dict):
                self.bad(line_no, "not a JSON object; each line must be one sentence object")
                continue
            yield line_no, obj

    def read_cluener(self):
        for line_no, obj in self.json_objects():
            text = obj.get("text")
            if not isinstance(text, str):
                self.bad(line_no, "no 'text' string; CLUENER lines look like {\"text\": ..., \"label\": {...}}")
                continue
            if not text.strip():
                self.bad(line_no, "empty sentence; remove the line or pass --skip_bad_rows")
                continue
            label = obj.get("label")
            sentence = Sentence(line=line_no, units=list(text), id=obj.get("id"))
            if label is None:
                yield sentence
                continue
            spans = self.cluener_spans(line_no, text, label)
            if spans is not None:
                sentence.spans = spans
                yield sentence

    def cluener_spans(self, line_no, text, label):
        if not isinstance(label, dict):
            self.bad(line_no, "'label' is not an object; write {type: {entity: [[start, end], ...]}}")
            return None
        spans = set()
        for entity_type, entities in label.items():
            if not isinstance(entities, dict):
                self.bad(line_no, f"label '{entity_type}' is not an object; write {{entity: [[start, end], ...]}}")
                return None
            for entity, positions in entities.items():
                if not isinstance(positions, list):
                    self.bad(line_no, f"positions of '{entity}' are not a list of [start, end] pairs")
                    return None
                for pos in positions:
                    if (not isinstance(pos, list) or len(pos) != 2 or not all(isinstance(p, int) for p in pos)
                            or not 0 <= pos[0] <= pos[1] < len(text)):
                        self.bad(line_no, f"{entity_type} '{entity}': span {pos} is not [start, end] with 0 <= start "
                                          f"<= end < {len(text)} (the text length); fix the offsets (0-based, end "
                                          f"inclusive)")
                        return None
                    start, end = pos
                    if text[start:end + 1] != entity:
                        self.bad(line_no, f"{entity_type} span [{start}, {end}] is '{text[start:end + 1]}' in the "
                                          f"text, not '{entity}'; fix the offsets (0-based, end inclusive) or the "
                                          f"entity")
                        return None
                    spans.add((start, end + 1, entity_type))
        # One label per character: of overlapping (nested) entities keep the longest, then the first.
        kept = []
        for span in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0], s[2])):
            if all(span[1] <= k[0] or span[0] >= k[1] for k in kept):
                kept.append(span)
            else:
                self.repair("nested/overlapping entity dropped (the longest kept)", line_no)
        return sorted(kept)

    def read_tokens(self):
        for line_no, obj in self.json_objects():
            tokens = obj.get("tokens")
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                self.bad(line_no, "'tokens' is not a list of non-empty strings")
                continue
            if not tokens:
                self.bad(line_no, "empty sentence (no tokens); remove the line or pass --skip_bad_rows")
                continue
            tags = obj.get("tags", obj.get("ner_tags"))
            sentence = Sentence(line=line_no, units=tokens, id=obj.get("id"))
            if tags is None:
                yield sentence
                continue
            if not isinstance(tags, list) or len(tags) != len(tokens):
                n = len(tags) if isinstance(tags, list) else "no list of"
                self.bad(line_no, f"{len(tokens)} tokens but {n} tags; give exactly one tag per token")
                continue
            parsed = [parse_tag(t) if isinstance(t, str) else None for t in tags]
            if None in parsed:
                tag = tags[parsed.index(None)]
                self.bad(line_no, f"tag {tag!r} is neither O nor PREFIX-TYPE (B-, I-, E-, S-, M-, e.g. B-PER); fix "
                                  f"the tag")
                continue
            self.raw_prefixes.update(t[0] for t, p in zip(tags, parsed) if p[0] != "O")
            sentence.tags = parsed
            yield sentence


# ----------------------------------------------------------------------------------------------------------------
# Tag schemes: entity spans <-> one tag per position
# ----------------------------------------------------------------------------------------------------------------


def label_names(entity_types, scheme):
    prefixes = ("B", "I") if scheme == "BIO" else ("B", "I", "E", "S")
    return ["O"] + [f"{p}-{t}" for t in entity_types for p in prefixes]


def spans_to_tags(spans, n, scheme):
    """[(start, end_exclusive, type)] over n positions -> n tags in `scheme` (BIO or BIOES)."""
    tags = ["O"] * n
    for start, end, entity_type in spans:
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{entity_type}"
            continue
        tags[start] = f"B-{entity_type}"
        for i in range(start + 1, end):
            tags[i] = f"I-{entity_type}"
        if scheme == "BIOES":
            tags[end - 1] = f"E-{entity_type}"
    return tags


def clip_spans(spans, start, end):
    """Entities cut to the window [start, end), offsets relative to `start` (a clipped entity starts with B-)."""
    return [(max(s, start) - start, min(e, end) - start, t) for s, e, t in spans if s < end and e > start]


def model_labels(label_list):
    """(entity types, scheme) of a model's labels; None if they are not BIO/BIOES tags."""
    parts = [parse_tag(label) for label in label_list]
    if any(p is None for p in parts) or "O" not in label_list:
        return None
    prefixes = {p for p, _ in parts if p != "O"}
    types = sorted({t for _, t in parts if t is not None})
    scheme = "BIOES" if prefixes & {"E", "S"} else "BIO"
    if set(label_list) != set(label_names(types, scheme)):
        return None
    return types, scheme


# ----------------------------------------------------------------------------------------------------------------
# Characters -> tokens, sentences -> chunks
# ----------------------------------------------------------------------------------------------------------------


class CharTokenizer:
    """Token ids of one character (unit) at a time, cached. Every unit gets at least one token: one the tokenizer
    drops (a space, a control character) becomes [UNK]; at most `max_tokens` sub-tokens are kept."""

    KINDS = {"dropped": "dropped by the tokenizer -> [UNK]", "unknown": "not in the vocab -> [UNK]",
             "split": "split into several sub-tokens", "normalised": "normalised by the tokenizer (e.g. lowercased)",
             "cut": "longer than a chunk, sub-tokens cut"}

    def __init__(self, tokenizer, max_tokens):
        self.tokenizer, self.max_tokens, self.cache = tokenizer, max_tokens, {}
        self.unk = tokenizer.unk_token_id

    def __call__(self, unit, stats):
        hit = self.cache.get(unit)
        if hit is None:
            tokens = self.tokenizer.tokenize(unit)
            kinds = []
            if not tokens:
                ids, kinds = [self.unk], ["dropped"]
            else:
                ids = self.tokenizer.convert_tokens_to_ids(tokens)
                if all(i == self.unk for i in ids) and unit != self.tokenizer.unk_token:
                    kinds.append("unknown")
                elif len(ids) > 1:
                    kinds.append("split")
                elif tokens[0] != unit:
                    kinds.append("normalised")
            if len(ids) > self.max_tokens:
                ids, kinds = ids[: self.max_tokens], kinds + ["cut"]
            hit = self.cache[unit] = (ids, kinds)
        for kind in hit[1]:
            stats[kind] += 1
        return hit[0]


def plan_chunks(offsets, budget, stride):
    """Chunks [(first_unit, end_unit)] of a sentence whose unit i has tokens offsets[i]..offsets[i+1]-1: at most
    `budget` tokens each, a new one about every `stride` tokens (at a unit boundary, never leaving a gap), the last
    one ending with the sentence. One chunk if it fits."""
    n = len(offsets) - 1
    total = offsets[-1]
    chunks, start = [], 0
    while True:
        end = start + 1
        while end < n and offsets[end + 1] - offsets[start] <= budget:
            end += 1
        chunks.append((start, end))
        if end == n:
            return chunks
        nxt = start + 1  # the furthest unit start within `stride` tokens, and not past this chunk's end
        while nxt + 1 <= end and offsets[nxt + 1] - offsets[start] <= stride:
            nxt += 1
        # Once the rest fits, the final chunk starts as early as it can (more context), flush with the end.
        last = next(i for i in range(start + 1, n) if total - offsets[i] <= budget)
        start = min(nxt, last)


def encode_split(sentences, char_tokenizer, tokenizer, label2id, scheme, budget, stride, label_all_tokens):
    """Sentences -> (columns for a Dataset of chunks, chunk meta [(sentence, token_start, token_end)], per-sentence
    token offsets of the units, stats)."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    columns = {"input_ids": [], "attention_mask": [], "length": []}
    labelled = sentences[0].spans is not None
    if labelled:
        columns["labels"] = []
    meta, unit_offsets, stats = [], [], Counter()
    for index, sentence in enumerate(sentences):
        unit_ids = [char_tokenizer(u, stats) for u in sentence.units]
        offsets = [0]
        for ids in unit_ids:
            offsets.append(offsets[-1] + len(ids))
        flat = [i for ids in unit_ids for i in ids]
        unit_offsets.append(offsets)
        plan = plan_chunks(offsets, budget, stride)
        stats["sentences"] += 1
        stats["sentences_chunked"] += len(plan) > 1
        if labelled and label_all_tokens:  # the entities over tokens: every sub-token tagged
            token_spans = [(offsets[s], offsets[e], t) for s, e, t in sentence.spans]
        for first, end in plan:
            ts, te = offsets[first], offsets[end]
            input_ids = [cls_id] + flat[ts:te] + [sep_id]
            columns["input_ids"].append(input_ids)
            columns["attention_mask"].append([1] * len(input_ids))
            columns["length"].append(len(input_ids))
            meta.append((index, ts, te))
            if not labelled:
                continue
            labels = [-100] * len(input_ids)
            if label_all_tokens:
                for k, tag in enumerate(spans_to_tags(clip_spans(token_spans, ts, te), te - ts, scheme)):
                    labels[1 + k] = label2id[tag]
            else:  # the first sub-token of each unit
                unit_tags = spans_to_tags(clip_spans(sentence.spans, first, end), end - first, scheme)
                for k, tag in enumerate(unit_tags):
                    labels[1 + offsets[first + k] - ts] = label2id[tag]
            columns["labels"].append(labels)
    stats["chunks"] = len(meta)
    return columns, meta, unit_offsets, stats


# ----------------------------------------------------------------------------------------------------------------
# Predictions: chunks -> sentences -> one tag per character -> entities and metrics (seqeval)
# ----------------------------------------------------------------------------------------------------------------


def merge_chunks(predictions, meta, unit_offsets):
    """predictions [n_chunks, max_len, C] (positions 1.. are the chunk's tokens) -> per sentence [n_tokens, C]: each
    token's scores from the chunk in which it is furthest from a cut (the most context on both sides; the sentence's
    own start and end are no cut)."""
    n_labels = predictions.shape[-1]
    merged = [np.zeros((offsets[-1], n_labels), dtype=np.float32) for offsets in unit_offsets]
    best = [np.full(offsets[-1], -1) for offsets in unit_offsets]
    for k, (index, ts, te) in enumerate(meta):
        position = np.arange(ts, te)
        n_tokens = unit_offsets[index][-1]
        left = position - ts if ts > 0 else np.full(te - ts, n_tokens)
        right = te - 1 - position if te < n_tokens else np.full(te - ts, n_tokens)
        distance = np.minimum(left, right)
        better = distance > best[index][position]
        merged[index][position[better]] = predictions[k, 1:1 + te - ts][better]
        best[index][position[better]] = distance[better]
    return merged


def decode_sentences(model, merged, unit_offsets, label_list, scheme, label_all_tokens, batch_size=256):
    """Merged token scores -> one tag per unit and sentence: Viterbi over the whole sentence for the CRF heads
    (transitions and constraints of the model), argmax otherwise."""
    model = getattr(model, "module", model)
    crf = getattr(model, "crf", None)
    positions = [np.arange(offsets[-1]) if label_all_tokens else np.array(offsets[:-1]) for offsets in unit_offsets]
    paths = []
    if crf is None:
        paths = [scores[pos].argmax(-1).tolist() for scores, pos in zip(merged, positions)]
    else:
        device = crf.transitions.device
        for b in range(0, len(merged), batch_size):
            rows = [scores[pos] for scores, pos in zip(merged[b:b + batch_size], positions[b:b + batch_size])]
            width = max(len(r) for r in rows)
            emissions = torch.zeros(len(rows), width, len(label_list))
            mask = torch.zeros(len(rows), width, dtype=torch.bool)
            for i, r in enumerate(rows):
                emissions[i, :len(r)] = torch.from_numpy(r)
                mask[i, :len(r)] = True
            paths += crf.decode(emissions.to(device), mask.to(device))
    tags = []
    for path, offsets in zip(paths, unit_offsets):
        labels = [label_list[i] for i in path]
        if not label_all_tokens:
            tags.append(labels)
            continue
        unit_tags = []  # a unit from its sub-tokens: the first's type; begins/ends from the first/last prefix
        for u in range(len(offsets) - 1):
            first, last = parse_tag(labels[offsets[u]]), parse_tag(labels[offsets[u + 1] - 1])
            if first[0] == "O":
                unit_tags.append("O")
                continue
            begins = first[0] in ("B", "S")
            ends = last[0] in ("E", "S") and last[1] == first[1]
            if scheme == "BIO":
                prefix = "B" if begins else "I"
            else:
                prefix = {(True, True): "S", (True, False): "B", (False, True): "E", (False, False): "I"}[(begins,
                                                                                                          ends)]
            unit_tags.append(f"{prefix}-{first[1]}")
        tags.append(unit_tags)
    return tags


def entities_of(tags, scheme, strict):
    """[(type, start_unit, end_unit_exclusive)] of one tag sequence, as seqeval counts them."""
    if strict:
        from seqeval.scheme import IOB2, IOBES, Entities

        found = Entities([tags], IOBES if scheme == "BIOES" else IOB2).entities[0]
        return [(e.tag, e.start, e.end) for e in found]
    from seqeval.metrics.sequence_labeling import get_entities

    return [(t, s, e + 1) for t, s, e in get_entities(tags)]


def entity_metrics(gold_tags, pred_tags, scheme, strict):
    """(metrics, text report, report dict) from seqeval: micro precision/recall/F1, macro F1, tag accuracy."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES

    kwargs = {"mode": "strict", "scheme": IOBES if scheme == "BIOES" else IOB2} if strict else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # types with no prediction: 0, as zero_division says
        report = classification_report(gold_tags, pred_tags, output_dict=True, zero_division=0, **kwargs)
        text = classification_report(gold_tags, pred_tags, digits=4, zero_division=0, **kwargs)
    report = {k: {m: float(v) if m != "support" else int(v) for m, v in d.items()} for k, d in report.items()}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    total = sum(len(t) for t in gold_tags)
    correct = sum(g == p for gs, ps in zip(gold_tags, pred_tags) for g, p in zip(gs, ps))
    metrics = {"precision": micro["precision"], "recall": micro["recall"], "f1": micro["f1-score"],
               "macro_f1": report.get("macro avg", {}).get("f1-score", 0.0), "accuracy": correct / max(total, 1)}
    return metrics, text, report


def entity_dicts(sentence, tags, scheme, strict):
    """Entities of a tagged sentence as {text, type, start, end} in character offsets (end exclusive)."""
    offsets, text = sentence.char_offsets(), sentence.text()
    return [{"text": text[offsets[s]:offsets[e]], "type": t, "start": offsets[s], "end": offsets[e]}
            for t, s, e in entities_of(tags, scheme, strict)]


def no_entity_collapse(pred_tags, gold_tags):
    """The collapse warning when >= 95% of sentences get no entity though fewer than 90% have none."""
    return collapse_warning([set(t) <= {"O"} for t in pred_tags], [set(t) <= {"O"} for t in gold_tags],
                            name_of=lambda only_o: "no entity" if only_o else "entities")


def write_reports(output_dir, split, metrics, text, report, strict, scheme):
    with open(os.path.join(output_dir, f"{split}_entity_report.txt"), "w", encoding="utf-8") as f:
        f.write(f"entity-level, seqeval {'strict' if strict else 'default (conlleval)'} mode, scheme {scheme}\n\n")
        f.write(text)
    with open(os.path.join(output_dir, f"{split}_entity_report.json"), "w", encoding="utf-8") as f:
        json.dump({"metrics": metrics, "per_type": report, "mode": "strict" if strict else "default",
                   "scheme": scheme}, f, ensure_ascii=False, indent=2)


def write_predictions(output_dir, sentences, pred_tags, gold_tags, scheme, strict, data_format):
    """predict_entities.jsonl (one line per sentence, in file order: entities, and the gold ones when the file has
    tags), predict_tags.conll (char<TAB>[gold<TAB>]predicted tag), and for CLUENER input predict_cluener.json in
    CLUENER's own format (end inclusive)."""
    paths = [os.path.join(output_dir, "predict_entities.jsonl"), os.path.join(output_dir, "predict_tags.conll")]
    cluener = data_format == "cluener"
    if cluener:
        paths.append(os.path.join(output_dir, "predict_cluener.json"))
    files = [open(p, "w", encoding="utf-8") for p in paths]
    try:
        for i, (sentence, tags) in enumerate(zip(sentences, pred_tags)):
            entities = entity_dicts(sentence, tags, scheme, strict)
            record = {"line": sentence.line, "text": sentence.text(), "entities": entities}
            if sentence.id is not None:
                record = {"id": sentence.id, **record}
            if gold_tags is not None:
                record["gold_entities"] = entity_dicts(sentence, gold_tags[i], scheme, False)
            files[0].write(json.dumps(record, ensure_ascii=False) + "\n")
            for u, unit in enumerate(sentence.units):
                columns = [unit] + ([gold_tags[i][u]] if gold_tags is not None else []) + [tags[u]]
                files[1].write("\t".join(columns) + "\n")
            files[1].write("\n")
            if cluener:
                label = {}
                for e in entities:
                    label.setdefault(e["type"], {}).setdefault(e["text"], []).append([e["start"], e["end"] - 1])
                row = ({"id": sentence.id} if sentence.id is not None else {}) | {"text": sentence.text(),
                                                                                    "label": label}
                files[2].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for f in files:
            f.close()
    return paths


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
    check_max_seq_length(data_args.max_seq_length, model_args.config_name or model_args.model_name_or_path,
                         minimum=3, hub_kwargs=hub_kwargs)  # now, not after the model has loaded

    # ---- Data: read and check every file before anything heavy happens -------------------------------------------
    files, limits = data_files(data_args, training_args)  # split -> path, split -> --max_*_samples
    sentences, readers = {}, {}
    for split, path in files.items():
        readers[split] = reader = FileReader(path, data_args, limits[split])
        sentences[split] = reader.sentences()
        if split != "test" and sentences[split][0].spans is None:
            raise DataError(f"{path}:{sentences[split][0].line}: no tags; {split} data needs them ('char TAG' lines, "
                            f"CLUENER 'label', or 'tags').")
        n_entities = Counter(t for s in sentences[split] for _, _, t in (s.spans or []))
        by_type = ", ".join(f"{t} {c}" for t, c in sorted(n_entities.items()))
        logger.info(f"{split}: {path}: {reader.format}, tag scheme {reader.scheme}; {len(sentences[split])} "
                    f"sentences, {sum(len(s.units) for s in sentences[split])} characters"
                    + (f", {sum(n_entities.values())} entities ({by_type})" if sentences[split][0].spans is not None
                       else " (no tags)")
                    + (f"; skipped {dict(reader.skipped)}" if reader.skipped else ""))
        for kind, count in reader.repaired.items():
            logger.warning(f"{path}: {count} x {kind}; first at line {reader.first_line[kind]}. Repaired and counted "
                           f"in data_summary.json; fix the file to silence this.")

    # ---- Labels: entity types x scheme; a trained model keeps its own -------------------------------------------
    config_source = model_args.config_name or model_args.model_name_or_path
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    if not config_source or not tokenizer_source:
        raise ValueError("Pass --model_name_or_path, or --config_name and --tokenizer_name to train from scratch.")
    if "train" in sentences:
        entity_types = sorted({t for s in sentences["train"] for _, _, t in s.spans})
        if not entity_types:
            raise DataError(f"{files['train']}: no entities at all; nothing to learn.")
        # Training on from a trained NER model: its labels (and their order) must stay, or its classifier and CRF
        # would be loaded with other meanings.
        own = AutoConfig.from_pretrained(config_source, **hub_kwargs) if model_args.model_name_or_path else None
        own_labels = [own.id2label[i] for i in range(own.num_labels)] if own is not None else []
        own_ner = model_labels(own_labels) if own_labels else None
        scheme = data_args.label_scheme or (own_ner[1] if own_ner else "BIO")
        label_list = label_names(entity_types, scheme)
        if own_ner and set(own_labels) == set(label_list):
            label_list = own_labels
        elif own_ner:
            raise ValueError(f"{model_args.model_name_or_path} is a trained NER model with the labels "
                             f"{own_labels[:12]}, the training data has {label_list[:12]}; continue with data of the "
                             f"same entity types, or start from a BERT/MLM checkpoint.")
        saved = {}
    else:  # evaluating or predicting with a trained model: its config knows the labels and the encoding
        trained = AutoConfig.from_pretrained(config_source, **hub_kwargs)
        label_list = [trained.id2label[i] for i in range(trained.num_labels)]
        parsed = model_labels(label_list)
        if parsed is None:
            raise ValueError(f"{config_source}: the model's labels {label_list[:10]} are not NER tags; train it first "
                             f"(--do_train).")
        entity_types, scheme = parsed
        if data_args.label_scheme and data_args.label_scheme != scheme:
            raise ValueError(f"--label_scheme {data_args.label_scheme}: the model was trained with {scheme}.")
        saved = getattr(trained, "token_classification", None) or {}
    known = set(entity_types)
    for split in ("validation", "test"):
        for sentence in sentences.get(split, []):
            for start, _, entity_type in sentence.spans or []:
                if entity_type not in known:
                    where = f"{files[split]}:{sentence.line_of(start)}"
                    raise DataError(f"{where}: entity type '{entity_type}' "
                                    + ("never occurs in the training data" if "train" in sentences
                                       else "is not one of the model's") + f" (types: {entity_types}); fix the tag "
                                    f"or add training examples of it.")
    label2id = {label: i for i, label in enumerate(label_list)}
    logger.info(f"{len(label_list)} labels ({scheme}): {', '.join(label_list[:41])}")

    # ---- Model and tokenizer -------------------------------------------------------------------------------------
    config = AutoConfig.from_pretrained(config_source, num_labels=len(label_list),
                                        id2label=dict(enumerate(label_list)), label2id=label2id,
                                        finetuning_task="ner", **hub_kwargs)
    config = heads.token_head_config(model_args.head, config, rnn_hidden_size=model_args.rnn_hidden_size,
                                     rnn_num_layers=model_args.rnn_num_layers,
                                     crf_constraints=model_args.crf_constraints,
                                     classifier_dropout=model_args.classifier_dropout)
    head = heads.token_head_of(config)
    logger.info(f"Head: {head} (model_type {config.model_type})")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **hub_kwargs)
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.unk_token_id is None:
        raise ValueError(f"Tokenizer {tokenizer_source} lacks [CLS]/[SEP]/[UNK]; this script builds BERT inputs.")
    if model_args.model_name_or_path:
        model, info = AutoModelForTokenClassification.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            output_loading_info=True, **hub_kwargs)
        # The custom heads raise on a missing encoder themselves; BertForTokenClassification (softmax) would train
        # a random encoder with only a log line.
        lost = sorted({k for k in info["missing_keys"] if k.startswith("bert.")}
                      | {k[0] for k in info["mismatched_keys"] if k[0].startswith("bert.")})
        if lost:
            raise ValueError(f"{model_args.model_name_or_path}: {len(lost)} encoder weights missing from the "
                             f"checkpoint or of another shape (e.g. {lost[:3]}); load a BERT checkpoint (keys bert.*).")
        new = sorted(k for k in info["missing_keys"] if not k.startswith("bert."))
        if new:
            logger.info(f"Newly initialised head weights: {new}")
    else:
        logger.info(f"Training a new model from scratch with config {config_source}")
        model = AutoModelForTokenClassification.from_config(config, trust_remote_code=model_args.trust_remote_code)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model: {type(model).__name__}, {n_params:,} parameters, vocab {len(tokenizer)}")
    if model_args.freeze != "none" or model_args.freeze_layers:
        frozen = freeze_parameters(model, model_args.freeze, model_args.freeze_layers)
        logger.info(f"Frozen (--freeze {model_args.freeze}, --freeze_layers {model_args.freeze_layers}): "
                    f"{frozen:,} parameters; trainable {n_params - frozen:,} of {n_params:,}")

    # ---- Preprocessing: characters -> tokens -> overlapping chunks with labels ---------------------------------
    # Flags given win; without training, the trained model's settings (config.json "token_classification"), then
    # the recipe's defaults.
    def setting(name, default):
        value = getattr(data_args, name)
        return value if value is not None else saved.get(name, default)

    max_seq_length = int(setting("max_seq_length", 128))
    model_limit = getattr(config, "max_position_embeddings", 512)
    if max_seq_length > model_limit:
        raise ValueError(f"--max_seq_length {max_seq_length} exceeds the model's {model_limit} positions.")
    budget = max_seq_length - 2  # [CLS] chunk [SEP]
    if budget < 1:
        raise ValueError(f"--max_seq_length {max_seq_length} leaves no room for text.")
    chunk_stride = int(setting("chunk_stride", max(budget // 2, 1)))
    if not 0 < chunk_stride <= budget:
        raise ValueError(f"--chunk_stride {chunk_stride} must be in 1..{budget} (the text tokens per chunk).")
    label_all_tokens = data_args.label_all_tokens or bool(saved.get("label_all_tokens", False))
    if saved:
        logger.info(f"Encoding as the model was trained, unless a flag says otherwise: {saved}")
    model.config.token_classification = {"max_seq_length": max_seq_length, "chunk_stride": chunk_stride,
                                         "label_all_tokens": label_all_tokens, "label_scheme": scheme}
    labelled_tokens = "every sub-token" if label_all_tokens else "the first sub-token"
    logger.info(f"Chunks of at most {max_seq_length} tokens ({budget} of text), a new one every {chunk_stride} "
                f"tokens in longer sentences; labels on {labelled_tokens} of each character")

    char_tokenizer = CharTokenizer(tokenizer, budget)
    encoded, metas, offsets_of = {}, {}, {}
    data_summary = {"max_seq_length": max_seq_length, "chunk_stride": chunk_stride, "label_scheme": scheme,
                    "label_all_tokens": label_all_tokens, "labels": label_list, "head": head, "splits": {}}
    for split, split_sentences in sentences.items():
        columns, metas[split], offsets_of[split], stats = encode_split(
            split_sentences, char_tokenizer, tokenizer, label2id, scheme, budget, chunk_stride, label_all_tokens)
        encoded[split] = datasets.Dataset.from_dict(columns)
        tokenizer_stats = {CharTokenizer.KINDS[k]: stats[k] for k in CharTokenizer.KINDS if stats[k]}
        logger.info(f"{split}: {stats['sentences']} sentences -> {stats['chunks']} chunks "
                    f"({stats['sentences_chunked']} sentences longer than {budget} tokens cut into overlapping "
                    f"chunks); characters "
                    + (", ".join(f"{k}: {v}" for k, v in tokenizer_stats.items()) or "all one token each"))
        reader = readers[split]
        data_summary["splits"][split] = {
            "file": files[split], "format": reader.format, "tag_scheme_in_file": reader.scheme,
            "sentences": stats["sentences"], "characters": sum(len(s.units) for s in split_sentences),
            "entities": dict(sorted(Counter(t for s in split_sentences for _, _, t in (s.spans or [])).items())),
            "repaired": dict(reader.repaired), "skipped": dict(reader.skipped),
            "first_line": dict(reader.first_line), "chunks": stats["chunks"],
            "sentences_chunked": stats["sentences_chunked"], "characters_by_tokenizer": tokenizer_stats,
            "mean_chunk_tokens": round(float(np.mean(columns["length"])), 2)}

    if data_args.show_examples and "train" in encoded:
        for k in range(min(data_args.show_examples, len(encoded["train"]))):
            example = encoded["train"][k]
            index = metas["train"][k][0]
            print(f"\n--- training chunk {k} (sentence at line {sentences['train'][index].line}) ---")
            tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
            print(" ".join(f"{t}/{label_list[l] if l != -100 else '-'}" for t, l in zip(tokens, example["labels"])))

    # ---- Trainer --------------------------------------------------------------------------------------------------
    collator = DataCollatorForTokenClassification(
        tokenizer, padding="max_length" if data_args.pad_to_max_length else True,
        max_length=max_seq_length if data_args.pad_to_max_length else None,
        pad_to_multiple_of=8 if training_args.fp16 else None)
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

    def predict_tags(split, predictions):
        if len(predictions) != len(metas[split]):
            raise RuntimeError(f"{split}: {len(predictions)} predictions for {len(metas[split])} chunks.")
        merged = merge_chunks(predictions, metas[split], offsets_of[split])
        return decode_sentences(trainer.model, merged, offsets_of[split], label_list, scheme, label_all_tokens)

    gold = {split: [spans_to_tags(s.spans, len(s.units), scheme) for s in ss] if ss[0].spans is not None else None
            for split, ss in sentences.items()}

    def compute_metrics(eval_pred):  # the validation set, during training
        tags = predict_tags("validation", eval_pred.predictions)
        warning = no_entity_collapse(tags, gold["validation"])
        if warning:
            logger.warning(warning)
        return entity_metrics(gold["validation"], tags, scheme, data_args.strict)[0]

    trainer = FineTuningTrainer(
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=encoded.get("validation"),
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics if "validation" in encoded else None,
        callbacks=callbacks,
    )
    output_dir = training_args.output_dir
    is_main = trainer.is_world_process_zero()
    if is_main:  # what was read, repaired, skipped and chunked, next to the metrics
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "data_summary.json"), "w", encoding="utf-8") as f:
            json.dump(data_summary, f, ensure_ascii=False, indent=2)

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # weights, config with id2label and token_classification, tokenizer, head code
        metrics = dict(train_result.metrics, train_samples=len(sentences["train"]), train_chunks=len(encoded["train"]),
                       max_seq_length=max_seq_length, train_tokens_per_epoch=int(np.sum(encoded["train"]["length"])))
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if is_main and data_args.training_curves and plot_training_curves(
                trainer.state.log_history, os.path.join(output_dir, "training_curves.png"),
                metrics=("eval_f1", "eval_macro_f1")):
            logger.info(f"Training curves: {os.path.join(output_dir, 'training_curves.png')}")

    trainer.compute_metrics = None  # from here on the sentences are decoded once, below
    reports = {}
    for split, prefix in (("validation", "eval"), ("test", "predict")):
        if split not in encoded:
            continue
        output = trainer.predict(encoded[split], metric_key_prefix=prefix)
        tags = predict_tags(split, output.predictions)
        metrics = dict(output.metrics, **{f"{prefix}_samples": len(sentences[split])})
        if gold[split] is not None:
            entity, text, report = entity_metrics(gold[split], tags, scheme, data_args.strict)
            warning = no_entity_collapse(tags, gold[split])
            if warning:
                text, report["warning"] = f"WARNING: {warning}\n\n{text}", warning
            metrics.update({f"{prefix}_{k}": v for k, v in entity.items()})
            if is_main:
                write_reports(output_dir, prefix, entity, text, report, data_args.strict, scheme)
                reports[split] = text
        if split == "validation" or gold[split] is not None:
            trainer.log_metrics(prefix, metrics)
            trainer.save_metrics(prefix, metrics)
        if split == "test" and is_main:
            paths = write_predictions(output_dir, sentences[split], tags, gold[split], scheme, data_args.strict,
                                      readers[split].format)
            logger.info(f"Predictions for {len(sentences[split])} sentences: {', '.join(paths)}")

    # ---- Hub-ready output directory: model card (README.md), then --push_to_hub -----------------------------------
    if training_args.do_train:
        example = sentences["validation" if "validation" in sentences else "train"][0].text()
        finish_output_dir(trainer, "token-classification", logger=logger, data_files=files, example=example,
                          base_model=model_args.model_name_or_path)

    # ---- The report ---------------------------------------------------------------------------------------------
    if is_main and reports:
        for split, text in reports.items():
            print(f"\n***** Entity report: {split} ({files[split]}; seqeval "
                  f"{'strict' if data_args.strict else 'default'} mode) *****\n{text}")
        written = sorted(f for f in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, f)))
        print(f"Files in {output_dir}: {', '.join(written)}")
    return trainer


if __name__ == "__main__":
    run_main(main)
