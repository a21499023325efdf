"""Named-entity recognition on Chinese text, the pieces run_ner.py and predict.py share: reading CoNLL, CLUENER and
tokens/tags files into sentences with entity spans (tag schemes BIO, BIOES/BILOU, BMES; repairs counted), the
encoding settings saved with a model, characters -> tokens -> overlapping chunks with labels, and chunk predictions ->
one tag per character -> entities, metrics (seqeval) and prediction files.
"""

import json
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from heads.modeling_token_heads import parse_tag
from script_utils import DataError, SavedSettings, decoded_lines
from training import collapse_warning

logger = logging.getLogger(__name__)

@dataclass
class NERSettings(SavedSettings):
    """How sentences become chunks and labels; saved in config.json under "token_classification"."""

    CONFIG_KEY = "token_classification"

    max_seq_length: int = 128  # tokens per chunk, [CLS] and [SEP] included
    chunk_stride: Optional[int] = None  # a new chunk every N tokens in longer sentences (default: half a chunk)
    label_all_tokens: bool = False  # labels on every sub-token of a character, not only the first
    label_scheme: str = "BIO"  # the tags the model learns: BIO or BIOES

    @classmethod
    def of_model(cls, config):
        """The settings of a trained model: what run_ner.py saved, with the defaults it used for the rest."""
        saved = cls.saved_in(config)
        if "label_scheme" not in saved:
            parsed = model_labels([config.id2label[i] for i in range(config.num_labels)])
            saved["label_scheme"] = parsed[1] if parsed else "BIO"
        settings = cls(**saved)
        settings.chunk_stride = settings.chunk_stride or max((settings.max_seq_length - 2) // 2, 1)
        return settings


# ----------------------------------------------------------------------------------------------------------------
# Reading data files: every problem becomes one clear line naming the file, the line and the fix
# ----------------------------------------------------------------------------------------------------------------


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


def report_reading(reader, split, sentences):
    """Log what a FileReader read: format, tag scheme, sentences, entities per type, skips and repairs."""
    n_entities = Counter(t for s in sentences for _, _, t in (s.spans or []))
    by_type = ", ".join(f"{t} {c}" for t, c in sorted(n_entities.items()))
    logger.info(f"{split}: {reader.path}: {reader.format}, tag scheme {reader.scheme}; {len(sentences)} sentences, "
                f"{sum(len(s.units) for s in sentences)} characters"
                + (f", {sum(n_entities.values())} entities ({by_type})" if sentences[0].spans is not None
                   else " (no tags)")
                + (f"; skipped {dict(reader.skipped)}" if reader.skipped else ""))
    for kind, count in reader.repaired.items():
        logger.warning(f"{reader.path}: {count} x {kind}; first at line {reader.first_line[kind]}. Repaired and "
                       f"counted in data_summary.json; fix the file to silence this.")


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


def split_summary(reader, split, sentences, columns, stats, budget):
    """A split's entry in data_summary.json (what was read, repaired, skipped and chunked), logged in short."""
    tokenizer_stats = {CharTokenizer.KINDS[k]: stats[k] for k in CharTokenizer.KINDS if stats[k]}
    logger.info(f"{split}: {stats['sentences']} sentences -> {stats['chunks']} chunks ({stats['sentences_chunked']} "
                f"sentences longer than {budget} tokens cut into overlapping chunks); characters "
                + (", ".join(f"{k}: {v}" for k, v in tokenizer_stats.items()) or "all one token each"))
    return {"file": reader.path, "format": reader.format, "tag_scheme_in_file": reader.scheme,
            "sentences": stats["sentences"], "characters": sum(len(s.units) for s in sentences),
            "entities": dict(sorted(Counter(t for s in sentences for _, _, t in (s.spans or [])).items())),
            "repaired": dict(reader.repaired), "skipped": dict(reader.skipped), "first_line": dict(reader.first_line),
            "chunks": stats["chunks"], "sentences_chunked": stats["sentences_chunked"],
            "characters_by_tokenizer": tokenizer_stats, "mean_chunk_tokens": round(float(np.mean(columns["length"])), 2)}


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
