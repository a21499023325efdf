#!/usr/bin/env python
"""Pretrain a Chinese BERT from scratch, or continue pretraining one on your own text: masked language modelling
(MLM), optionally with whole-word masking (jieba words, like Chinese-BERT-wwm) and next-sentence prediction (NSP).

One file, top to bottom: arguments -> corpus -> tokenize -> examples (blocks, lines or sentence pairs) -> model ->
train -> evaluate (perplexity, masked-token accuracy, NSP accuracy) -> save.

    # from scratch: a vocab and a small config from data_scripts/train_tokenizer.py --write_config
    python data_scripts/train_tokenizer.py --train_files corpus.txt --output_dir outputs/tok --write_config
    python run_mlm.py --config_name outputs/tok --tokenizer_name outputs/tok --train_file corpus.txt \
        --do_train --do_eval --max_seq_length 128 --num_train_epochs 10 --learning_rate 5e-4 \
        --per_device_train_batch_size 64 --output_dir outputs/mlm
    # continued pretraining of a checkpoint on domain text, whole-word masking
    python run_mlm.py --model_name_or_path bert-base-chinese --train_file domain.txt --whole_word_mask ...

The output directory is an ordinary checkpoint: `run_classification.py --model_name_or_path outputs/mlm` (any head),
`run_ner.py` and `run_qa.py` load its encoder (`bert.*` weights) and add a fresh task head.

Corpus (`--train_file`, several files allowed; `data_scripts/build_corpus.py` makes a clean one):
  * .txt: one document per line, or documents separated by blank lines with one sentence per line (BERT's own
    format); `--document_format auto` tells them apart by the blank lines;
  * .tsv, and .txt whose first line has a tab (THUCNews' `title<TAB>label`): the text column `--tsv_text_column`;
  * .csv / .json / .jsonl: the column `--text_column_name` (default "text"), one document per row.

Examples:
  * default: the token stream of all documents (a [SEP] between documents) cut into blocks of max_seq_length,
    each `[CLS] ... [SEP]`: no padding, every position trained;
  * `--line_by_line`: one example per line (long lines cut into several), padded per batch: matches short
    downstream texts such as news titles;
  * `--nsp`: sentence pairs `[CLS] A [SEP] B [SEP]`: B follows A in the same document (50%) or is taken from a
    random other document (50%); MLM + NSP loss (BertForPreTraining).

Masking (done per batch, so every epoch sees new masks; the validation set is masked once, with a fixed seed, so
perplexity is comparable across evaluations): each maskable token is chosen with probability --mlm_probability
(0.15); of the chosen, 80% become [MASK], 10% a random token, 10% stay as they are (--mask_replace_prob,
--random_replace_prob). Special tokens ([CLS], [SEP], [PAD], [UNK], ...) are never chosen. With --whole_word_mask
the choice is made per jieba word: every character of a chosen word is masked together (the vocab stays
character-level).

Arguments can also come from one .json or .yaml file: `python run_mlm.py args.yaml`.
"""

import csv
import hashlib
import json
import logging
import math
import os
import random
import re
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoTokenizer,
    BertForMaskedLM,
    BertForPreTraining,
    set_seed,
)
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.bert.modeling_bert import BertForPreTrainingOutput

from checkpoints import checkpoint_to_resume
from model_card import fill_mask_example, finish_output_dir
from plotting import plot_training_curves
from script_utils import check_max_seq_length, DataError, decoded_lines, parse_args, run_main, setup_logging
from training import RecipeTrainer, RecipeTrainingArguments

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "Checkpoint to continue pretraining (bert-base-chinese, a local dir). Leave it out and give "
                  "--config_name to pretrain from scratch."},
    )
    config_name: Optional[str] = field(
        default=None,
        metadata={"help": "Config for a model trained from scratch (a dir with config.json, e.g. from "
                  "data_scripts/train_tokenizer.py --write_config, or a Hub id)."},
    )
    config_overrides: Optional[str] = field(
        default=None,
        metadata={"help": "From scratch: change config values, e.g. 'num_hidden_layers=4,hidden_size=256,"
                  "num_attention_heads=4,intermediate_size=1024'."},
    )
    tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer dir (vocab.txt / tokenizer.json) if not the model's own."}
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version: branch, tag or commit id."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token for private models."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modeling code from the Hub/model dir to run."}
    )


@dataclass
class DataTrainingArguments:
    train_file: Optional[list[str]] = field(
        default=None, metadata={"help": "Corpus file(s): .txt, .tsv, .csv, .json/.jsonl (see the top of this file)."}
    )
    validation_file: Optional[list[str]] = field(
        default=None, metadata={"help": "Held-out text, same formats. Default: --validation_split_percentage."}
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Without --validation_file: hold out this %% of the training documents."}
    )
    document_format: str = field(
        default="auto",
        metadata={"help": ".txt files: 'line' (one document per line), 'blank_line' (documents separated by blank "
                  "lines, one sentence per line) or 'auto' (blank_line if the file has blank lines between text).",
                  "choices": ["auto", "line", "blank_line"]},
    )
    text_column_name: str = field(default="text", metadata={"help": "Text column of .csv/.json(l) files."})
    tsv_text_column: int = field(default=0, metadata={"help": "Text column (0-based) of tab-separated files."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Tokens per example including [CLS]/[SEP] (blocks, lines or pairs)."}
    )
    line_by_line: bool = field(
        default=False,
        metadata={"help": "One example per line (long lines cut into several) instead of fixed-length blocks."},
    )
    nsp: bool = field(
        default=False,
        metadata={"help": "Next-sentence prediction as well: sentence pairs, 50%% real next / 50%% random, trained "
                  "with BertForPreTraining (MLM + NSP loss)."},
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens chosen for prediction."})
    mask_replace_prob: float = field(default=0.8, metadata={"help": "Of the chosen tokens: share set to [MASK]."})
    random_replace_prob: float = field(
        default=0.1, metadata={"help": "Of the chosen tokens: share set to a random token (the rest stays as is)."}
    )
    whole_word_mask: bool = field(
        default=False,
        metadata={"help": "Choose whole jieba words: all characters of a chosen word are masked together."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the corpus lazily (larger than memory); needs --max_steps. The first "
                  "--max_eval_samples documents (default 1000) are the validation set unless --validation_file."},
    )
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N examples."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N validation examples."})
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the cache."})


@dataclass
class PretrainingArguments(RecipeTrainingArguments):
    """The recipe's TrainingArguments (script_utils) with what pretraining needs."""

    # The collator needs columns the model does not take (word_starts for whole-word masking).
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collator."})


# ----------------------------------------------------------------------------------------------------------------
# Reading the corpus: documents as lists of sentences, with clear errors
# ----------------------------------------------------------------------------------------------------------------

# A sentence: text up to a run of 。！？；!?… plus any closing quotes/brackets right after it (or the rest of the text).
SENTENCE = re.compile(r".*?[。！？；!?…]+[”’」』）)]*|.+")


def split_sentences(text):
    """Split Chinese text after 。！？；!?… (closing quotes and brackets stay with their sentence)."""
    return [s.strip() for s in SENTENCE.findall(text) if s.strip()]


def corpus_format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".json", ".jsonl"):
        return "json"
    if ext == ".csv":
        return "csv"
    if ext == ".tsv":
        return "tsv"
    if ext in (".txt", ""):
        with open(path, "rb") as f:
            first = f.readline()
        return "tsv" if b"\t" in first else "txt"
    raise DataError(f"{path}: unknown extension '{ext}'; use .txt, .tsv, .csv or .json/.jsonl.")


def has_blank_separators(path):
    seen_text = False
    for _, line in decoded_lines(path):
        if line.strip():
            seen_text = True
        elif seen_text:
            return True
    return False


def read_documents(path, data_args, nsp=False):
    """Yield {"sentences": [...], "line": first line} per document of one corpus file.

    Line-per-document text is split into sentences only for NSP (which needs sentence boundaries); otherwise the
    line is one piece, so --line_by_line sees the file's own lines.
    """
    fmt = corpus_format(path)
    if fmt == "txt":
        layout = data_args.document_format
        if layout == "auto":
            layout = "blank_line" if has_blank_separators(path) else "line"
        if layout == "blank_line":
            sentences, start = [], None
            for line_no, line in decoded_lines(path):
                if line.strip():
                    start = start or line_no
                    sentences.append(line.strip())
                elif sentences:
                    yield {"sentences": sentences, "line": start}
                    sentences, start = [], None
            if sentences:
                yield {"sentences": sentences, "line": start}
            return
        rows = ((line_no, line) for line_no, line in decoded_lines(path))
    elif fmt == "tsv":
        column = data_args.tsv_text_column

        def tsv_rows():
            for line_no, line in decoded_lines(path):
                fields = line.split("\t")
                if not line.strip():
                    continue
                if column >= len(fields):
                    raise DataError(f"{path}:{line_no}: {len(fields)} tab-separated field(s), no column "
                                    f"{column}; set --tsv_text_column.")
                yield line_no, fields[column]

        rows = tsv_rows()
    elif fmt == "csv":
        def csv_rows():
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                if data_args.text_column_name not in (reader.fieldnames or []):
                    raise DataError(f"{path}:1: no column '{data_args.text_column_name}' (columns: "
                                    f"{reader.fieldnames}); set --text_column_name.")
                for row in reader:
                    yield reader.line_num, row[data_args.text_column_name] or ""

        rows = csv_rows()
    else:
        def json_rows():
            for line_no, line in decoded_lines(path):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg}); write one JSON object per line.")
                if not isinstance(row, dict) or data_args.text_column_name not in row:
                    raise DataError(f"{path}:{line_no}: no key '{data_args.text_column_name}'; set "
                                    f"--text_column_name.")
                yield line_no, str(row[data_args.text_column_name])

        rows = json_rows()
    for line_no, text in rows:
        text = text.strip()
        if text:
            yield {"sentences": split_sentences(text) if nsp else [text], "line": line_no}


def generate_documents(paths, data_args, nsp):
    for path in paths:
        for doc in read_documents(path, data_args, nsp):
            yield {"sentences": doc["sentences"], "source": f"{path}:{doc['line']}"}


def check_corpus(paths, data_args):
    """Read every file once before anything heavy: formats, encodings, columns; counts documents."""
    counts = {}
    for path in paths:
        n = sum(1 for _ in read_documents(path, data_args))
        if n == 0:
            raise DataError(f"{path}: no text (empty file?).")
        counts[path] = n
    return counts


# ----------------------------------------------------------------------------------------------------------------
# Examples: tokenized sentences -> blocks, lines or NSP pairs (with whole-word starts)
# ----------------------------------------------------------------------------------------------------------------


def word_starts_for(text, offsets, segment):
    """1 for a token that begins a jieba word, 0 for a token continuing one (a word's 2nd, 3rd ... character, or a
    WordPiece ## piece). `offsets`: the tokens' (start, end) character spans in `text`."""
    starts_of_words = set()
    position = 0
    for word in segment(text):
        starts_of_words.add(position)
        position += len(word)
    word_of_char = np.zeros(len(text) + 1, dtype=np.int64)
    for s in sorted(starts_of_words):
        word_of_char[s:] += 1
    flags, previous_word = [], None
    for start, _ in offsets:
        word = int(word_of_char[start]) if start < len(word_of_char) else -1
        flags.append(1 if word != previous_word else 0)
        previous_word = word
    return flags


def cut(ids, starts, size):
    """Pieces of at most `size` tokens; each piece starts a new word (whole-word masking stays inside a piece)."""
    for i in range(0, len(ids), size):
        piece_starts = list(starts[i:i + size])
        piece_starts[0] = 1
        yield list(ids[i:i + size]), piece_starts


def single_example(tokenizer, ids, starts):
    return {"input_ids": [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id],
            "word_starts": [1] + starts + [1]}


def build_blocks(docs, tokenizer, max_seq_length, line_by_line):
    """docs: [{"ids": [[sentence tokens]], "starts": [[...]]}] -> examples of at most max_seq_length tokens."""
    size = max_seq_length - 2
    examples = []
    if line_by_line:
        for doc in docs:
            for ids, starts in zip(doc["ids"], doc["starts"]):
                for piece, piece_starts in cut(ids, starts, size):
                    examples.append(single_example(tokenizer, piece, piece_starts))
        return examples
    stream_ids, stream_starts = [], []
    for doc in docs:
        if stream_ids:  # documents are separated by [SEP], as in BERT's input
            stream_ids.append(tokenizer.sep_token_id)
            stream_starts.append(1)
        for ids, starts in zip(doc["ids"], doc["starts"]):
            stream_ids.extend(ids)
            stream_starts.extend(starts)
    for piece, piece_starts in cut(stream_ids, stream_starts, size):
        if piece_starts and piece[0] == tokenizer.sep_token_id:  # a block never starts with the separator
            piece, piece_starts = piece[1:], piece_starts[1:]
        if piece:
            examples.append(single_example(tokenizer, piece, piece_starts))
    return examples


def truncate_pair(a, b, budget, rng):
    """Shorten the longer of the two token lists, from a random end, until both fit (as BERT's data builder)."""
    while len(a[0]) + len(b[0]) > budget:
        longer = a if len(a[0]) > len(b[0]) else b
        if rng.random() < 0.5:
            del longer[0][0], longer[1][0]
        else:
            longer[0].pop(), longer[1].pop()


def build_nsp_pairs(docs, tokenizer, max_seq_length, seed):
    """Sentence pairs for next-sentence prediction, exactly half of them with a random B.

    Each document is walked sentence by sentence; sentences are gathered until they fill the pair (max_seq_length - 3
    tokens). A = the first k of them (k random); B = the rest (label 0, IsNext) or, with probability 0.5, sentences
    from a random other document (label 1, NotNext). A single long sentence is cut at a random token, so its second
    half is its real continuation. Returns (examples, number of one-token documents that cannot form a pair).
    """
    rng = random.Random(seed)
    budget = max_seq_length - 3
    examples, too_short = [], 0
    if len(docs) < 2:
        raise DataError("--nsp needs at least two documents (random next sentences come from another document).")
    for d, doc in enumerate(docs):
        sentences = [(list(i), list(s)) for i, s in zip(doc["ids"], doc["starts"]) if i]
        i = 0
        while i < len(sentences):
            chunk, length = [], 0
            while i < len(sentences) and (not chunk or length + len(sentences[i][0]) <= budget):
                chunk.append(sentences[i])
                length += len(sentences[i][0])
                i += 1
            is_random = rng.random() < 0.5
            if len(chunk) >= 2:
                k = rng.randint(1, len(chunk) - 1)
                a = (sum((c[0] for c in chunk[:k]), []), sum((c[1] for c in chunk[:k]), []))
                b = (sum((c[0] for c in chunk[k:]), []), sum((c[1] for c in chunk[k:]), []))
            else:
                ids, starts = chunk[0]
                if len(ids) < 2:
                    too_short += 1
                    continue
                cut_at = rng.randint(1, len(ids) - 1)
                a, b = (ids[:cut_at], starts[:cut_at]), (ids[cut_at:], starts[cut_at:])
                b[1][0] = 1
            if is_random:
                other = rng.randrange(len(docs) - 1)
                other = other + 1 if other >= d else other  # any document but this one
                other_sentences = [(list(x), list(s)) for x, s in zip(docs[other]["ids"], docs[other]["starts"]) if x]
                start = rng.randrange(len(other_sentences)) if other_sentences else 0
                b_ids, b_starts = [], []
                for x, s in other_sentences[start:]:
                    if b_ids and len(a[0]) + len(b_ids) + len(x) > budget:
                        break
                    b_ids += x
                    b_starts += s
                if not b_ids:
                    too_short += 1
                    continue
                b = (b_ids, b_starts)
            a, b = (list(a[0]), list(a[1])), (list(b[0]), list(b[1]))
            truncate_pair(a, b, budget, rng)
            a[1][0], b[1][0] = 1, 1
            cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
            examples.append({
                "input_ids": [cls] + a[0] + [sep] + b[0] + [sep],
                "token_type_ids": [0] * (len(a[0]) + 2) + [1] * (len(b[0]) + 1),
                "word_starts": [1] + a[1] + [1] + b[1] + [1],
                "next_sentence_label": int(is_random),
            })
    return examples, too_short


# ----------------------------------------------------------------------------------------------------------------
# Masking: 15% of tokens (or of whole words), 80% [MASK] / 10% random / 10% unchanged
# ----------------------------------------------------------------------------------------------------------------


class MaskingCollator:
    """Pads a batch and masks it for MLM.

    Features: input_ids, optional token_type_ids / word_starts / next_sentence_label / labels. Features that already
    carry `labels` (the validation set, masked once) are only padded. Returns input_ids [batch, seq_len] with masks
    applied, attention_mask, token_type_ids, labels [batch, seq_len] (-100 where nothing is predicted) and
    next_sentence_label [batch] for NSP.
    """

    def __init__(self, tokenizer, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1,
                 whole_word_mask=False, generator=None):
        if not 0 < mlm_probability < 1:
            raise ValueError(f"--mlm_probability {mlm_probability}: must be between 0 and 1.")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
            raise ValueError(f"--mask_replace_prob {mask_replace_prob} + --random_replace_prob {random_replace_prob} "
                             f"must be within [0, 1] (the rest of the chosen tokens stays unchanged).")
        if tokenizer.mask_token_id is None:
            raise ValueError("The tokenizer has no [MASK] token; MLM needs one.")
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        # Random replacements come from the real vocabulary: no special tokens, no [unusedN] placeholders.
        vocab = tokenizer.get_vocab()
        unused = {i for t, i in vocab.items() if re.fullmatch(r"\[unused\d+\]", t)}
        self.random_ids = torch.tensor(sorted(set(vocab.values()) - set(tokenizer.all_special_ids) - unused))
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.whole_word_mask = whole_word_mask
        self.generator = generator

    def pad(self, features, key, value):
        width = max(len(f["input_ids"]) for f in features)
        return torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features], dtype=torch.long)

    def __call__(self, features):
        batch = {"input_ids": self.pad(features, "input_ids", self.pad_id)}
        batch["attention_mask"] = (batch["input_ids"] != self.pad_id).long()
        batch["token_type_ids"] = (self.pad(features, "token_type_ids", 0) if "token_type_ids" in features[0]
                                   else torch.zeros_like(batch["input_ids"]))
        if "next_sentence_label" in features[0]:
            batch["next_sentence_label"] = torch.tensor([f["next_sentence_label"] for f in features])
        if "labels" in features[0]:  # already masked (the fixed validation masks)
            batch["labels"] = self.pad(features, "labels", -100)
            return batch
        word_starts = self.pad(features, "word_starts", 1) if "word_starts" in features[0] else None
        batch["input_ids"], batch["labels"] = self.mask(batch["input_ids"], word_starts)
        return batch

    def mask(self, input_ids, word_starts=None):
        """input_ids [batch, seq_len] -> (masked input_ids, labels); word_starts [batch, seq_len] for whole words."""
        input_ids = input_ids.clone()
        g = self.generator
        maskable = ~torch.isin(input_ids, self.special_ids)  # [CLS], [SEP], [PAD], [UNK], [MASK] never predicted
        if self.whole_word_mask and word_starts is not None:
            # word_index [batch, seq_len]: which word each token belongs to; one coin per word, shared by its tokens.
            # Each token is still chosen with probability mlm_probability, so the masked share stays 15%.
            word_index = torch.cumsum(word_starts, dim=1) - 1
            word_chosen = torch.rand(input_ids.shape, generator=g) < self.mlm_probability
            chosen = torch.gather(word_chosen, 1, word_index.clamp(min=0)) & maskable
        else:
            chosen = (torch.rand(input_ids.shape, generator=g) < self.mlm_probability) & maskable
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        action = torch.rand(input_ids.shape, generator=g)
        to_mask = chosen & (action < self.mask_replace_prob)
        to_random = chosen & (action >= self.mask_replace_prob) & (
            action < self.mask_replace_prob + self.random_replace_prob)
        input_ids[to_mask] = self.mask_id
        picks = torch.randint(len(self.random_ids), (int(to_random.sum()),), generator=g)
        input_ids[to_random] = self.random_ids[picks]
        return input_ids, labels


# ----------------------------------------------------------------------------------------------------------------
# Models: BERT's own, with the vocabulary projection computed only where a prediction is scored (training speed)
# ----------------------------------------------------------------------------------------------------------------


def masked_positions_loss(prediction_head, hidden, labels):
    """MLM loss from the chosen positions only. hidden [batch, seq_len, hidden], labels [batch, seq_len] (-100 = not
    chosen) -> (loss, scores [n_chosen, vocab]). The other ~85% of positions have no loss, so projecting them onto the
    vocabulary (for a small Chinese BERT the largest matmul there is, plus a softmax over 8k+ words) is wasted work."""
    chosen = labels != -100
    scores = prediction_head(hidden[chosen])  # [n_chosen, vocab]
    if scores.shape[0] == 0:
        return scores.sum() * 0.0, scores
    return nn.functional.cross_entropy(scores.float(), labels[chosen]), scores


class SparseBertForMaskedLM(BertForMaskedLM):
    """BertForMaskedLM (same weights, same checkpoint) whose training forward scores only the masked positions;
    evaluation uses BERT's own forward (full logits, for the metrics)."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if not self.training or labels is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   labels=labels, **kwargs)
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        loss, scores = masked_positions_loss(self.cls, hidden, labels)
        return MaskedLMOutput(loss=loss, logits=scores)


class SparseBertForPreTraining(BertForPreTraining):
    """BertForPreTraining (MLM + NSP) with the same training-time saving as SparseBertForMaskedLM."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                next_sentence_label=None, **kwargs):
        if not self.training or labels is None or next_sentence_label is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   labels=labels, next_sentence_label=next_sentence_label, **kwargs)
        hidden, pooled = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[:2]
        mlm_loss, scores = masked_positions_loss(self.cls.predictions, hidden, labels)
        nsp_logits = self.cls.seq_relationship(pooled)  # [batch, 2]: 0 = B follows A, 1 = B is random
        nsp_loss = nn.functional.cross_entropy(nsp_logits.float(), next_sentence_label)
        return BertForPreTrainingOutput(loss=mlm_loss + nsp_loss, prediction_logits=scores,
                                        seq_relationship_logits=nsp_logits)


# ----------------------------------------------------------------------------------------------------------------
# Metrics: perplexity and masked-token accuracy (and NSP accuracy), without keeping [batch, seq, vocab] logits
# ----------------------------------------------------------------------------------------------------------------


def reduce_logits(logits, labels):
    """Per batch, keep only what the metrics need: predicted token ids, each example's summed MLM loss, NSP guess."""
    mlm_logits, nsp_logits = (logits[0], logits[1]) if isinstance(logits, (tuple, list)) else (logits, None)
    mlm_labels = labels[0] if isinstance(labels, (tuple, list)) else labels
    token_loss = torch.nn.functional.cross_entropy(mlm_logits.float().transpose(1, 2), mlm_labels,
                                                   ignore_index=-100, reduction="none")  # [batch, seq_len]
    out = (mlm_logits.argmax(-1), token_loss.sum(1))
    return out + (nsp_logits.argmax(-1),) if nsp_logits is not None else out


def compute_metrics(eval_pred):
    predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
    mlm_labels = label_ids[0] if isinstance(label_ids, (tuple, list)) else label_ids
    predicted, loss_sums = predictions[0], predictions[1]
    chosen = mlm_labels != -100
    n = max(int(chosen.sum()), 1)
    mlm_loss = float(loss_sums.sum()) / n
    metrics = {"mlm_loss": mlm_loss, "perplexity": math.exp(min(mlm_loss, 50.0)),
               "masked_accuracy": float((predicted[:, :chosen.shape[1]][chosen] == mlm_labels[chosen]).sum()) / n,
               "masked_tokens": int(chosen.sum())}
    if len(predictions) > 2:
        nsp_labels = label_ids[1]
        metrics["nsp_accuracy"] = float((predictions[2] == nsp_labels).mean())
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def main(args=None):
    model_args, data_args, training_args = parse_args((ModelArguments, DataTrainingArguments, PretrainingArguments),
                                                      args)
    setup_logging(logger, training_args)
    resume = checkpoint_to_resume(training_args)  # never overwrites results unless asked
    set_seed(training_args.seed)
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision,
                  "token": model_args.token, "trust_remote_code": model_args.trust_remote_code}
    # [CLS] text [SEP], or [CLS] A [SEP] B [SEP] with --nsp; checked now, not after the model has loaded
    check_max_seq_length(data_args.max_seq_length, model_args.config_name or model_args.model_name_or_path,
                         minimum=5 if data_args.nsp else 3, hub_kwargs=hub_kwargs)

    # ---- Corpus: check every file before anything heavy ---------------------------------------------------------
    if not training_args.do_train and not training_args.eval_requested:
        raise ValueError("Nothing to do: pass --do_train and/or --do_eval.")
    if not data_args.train_file and not data_args.validation_file:
        raise ValueError("Pass --train_file (the corpus) and/or --validation_file.")
    if training_args.do_train and not data_args.train_file:
        raise ValueError("--do_train needs --train_file.")
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming reads the corpus lazily, so its length is unknown: set --max_steps.")
    if data_args.streaming and data_args.nsp:
        raise ValueError("--nsp draws random sentences from the whole corpus; it does not work with --streaming.")
    if data_args.nsp and data_args.line_by_line:
        raise ValueError("--nsp builds sentence pairs; it cannot be combined with --line_by_line.")
    train_files = list(data_args.train_file or [])
    validation_files = list(data_args.validation_file or [])
    if not data_args.streaming:
        for split, paths in (("train", train_files), ("validation", validation_files)):
            for path, n in check_corpus(paths, data_args).items():
                logger.info(f"{split}: {path}: {n:,} documents")

    # ---- Tokenizer and model ------------------------------------------------------------------------------------
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    config_source = model_args.config_name or model_args.model_name_or_path
    if not tokenizer_source or not config_source:
        raise ValueError("Pass --model_name_or_path to continue pretraining a checkpoint, or --config_name and "
                         "--tokenizer_name to pretrain from scratch (data_scripts/train_tokenizer.py --write_config "
                         "writes both).")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **hub_kwargs)
    if not tokenizer.is_fast:
        raise ValueError(f"{tokenizer_source}: a fast tokenizer (tokenizer.json) is needed for character offsets.")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.mask_token_id is None:
        raise ValueError(f"Tokenizer {tokenizer_source} lacks [CLS]/[SEP]/[MASK]; this script pretrains BERT.")
    config = AutoConfig.from_pretrained(config_source, **hub_kwargs)
    if model_args.config_overrides:
        if model_args.model_name_or_path:
            raise ValueError("--config_overrides changes a config for training from scratch; with "
                             "--model_name_or_path the checkpoint's shapes are fixed.")
        config.update_from_string(model_args.config_overrides)
    if config.model_type == "bert":  # BERT's own classes, scoring only the masked positions while training
        model_class = SparseBertForPreTraining if data_args.nsp else SparseBertForMaskedLM
    else:  # other architectures (e.g. ERNIE, RoBERTa-style checkpoints of another type): their own heads
        model_class = AutoModelForPreTraining if data_args.nsp else AutoModelForMaskedLM
    if model_args.model_name_or_path:
        model = model_class.from_pretrained(model_args.model_name_or_path, config=config, **hub_kwargs)
    else:
        if config.vocab_size != len(tokenizer):
            logger.info(f"vocab_size {config.vocab_size} -> {len(tokenizer)} (the tokenizer's)")
            config.vocab_size = len(tokenizer)
        model = (model_class(config) if model_class in (SparseBertForMaskedLM, SparseBertForPreTraining)
                 else model_class.from_config(config, trust_remote_code=model_args.trust_remote_code))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        logger.warning(f"Tokenizer has {len(tokenizer)} tokens, the model's embeddings "
                       f"{model.get_input_embeddings().weight.shape[0]}: resizing (new rows are random).")
        model.resize_token_embeddings(len(tokenizer))
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions and data_args.max_seq_length > max_positions:
        raise ValueError(f"--max_seq_length {data_args.max_seq_length} > the model's max_position_embeddings "
                         f"{max_positions}.")
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Model: {type(model).__name__} ({'from ' + model_args.model_name_or_path if model_args.model_name_or_path else 'from scratch'}), "
                f"{n_params:,} parameters, vocab {len(tokenizer)}, {config.num_hidden_layers} layers x "
                f"{config.hidden_size}")

    # ---- Tokenize documents (cached), then build examples -------------------------------------------------------
    segment = None
    if data_args.whole_word_mask:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        segment = jieba.lcut

    def tokenize(batch):
        flat = [s for sentences in batch["sentences"] for s in sentences]
        encoded = tokenizer(flat, add_special_tokens=False, return_offsets_mapping=segment is not None,
                            return_attention_mask=False, return_token_type_ids=False)
        if segment is not None:
            starts = [word_starts_for(text, offsets, segment)
                      for text, offsets in zip(flat, encoded["offset_mapping"])]
        else:
            starts = [[1] * len(ids) for ids in encoded["input_ids"]]  # every token its own word
        ids_per_doc, starts_per_doc, i = [], [], 0
        for sentences in batch["sentences"]:
            ids_per_doc.append(encoded["input_ids"][i:i + len(sentences)])
            starts_per_doc.append(starts[i:i + len(sentences)])
            i += len(sentences)
        return {"ids": ids_per_doc, "starts": starts_per_doc}

    def to_examples(batch):
        docs = [{"ids": i, "starts": s} for i, s in zip(batch["ids"], batch["starts"])]
        examples = build_blocks(docs, tokenizer, data_args.max_seq_length, data_args.line_by_line)
        return {"input_ids": [e["input_ids"] for e in examples], "word_starts": [e["word_starts"] for e in examples],
                "length": [len(e["input_ids"]) for e in examples]}

    map_kwargs = {} if data_args.streaming else {"num_proc": data_args.preprocessing_num_workers,
                                                 "load_from_cache_file": not data_args.overwrite_cache}

    def load_split(paths, streaming, split):
        kwargs = {"gen_kwargs": {"paths": tuple(paths), "data_args": data_args, "nsp": data_args.nsp}}
        if streaming:
            return datasets.IterableDataset.from_generator(generate_documents, **kwargs)
        stats = [(os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in paths]
        fingerprint = hashlib.sha256(json.dumps([stats, data_args.nsp, data_args.document_format,
                                                 data_args.text_column_name, data_args.tsv_text_column]).encode()
                                     ).hexdigest()[:16]  # the same in every process (DDP) and every run
        with training_args.main_process_first(desc=f"reading {split}"):
            return datasets.Dataset.from_generator(generate_documents, fingerprint=fingerprint, **kwargs)

    def tokenize_docs(raw, split):
        kwargs = dict(map_kwargs)
        if not data_args.streaming:
            kwargs["desc"] = f"tokenizing {split}" + (" + jieba words" if segment else "")
        with training_args.main_process_first(desc=f"tokenizing {split}"):
            return raw.map(tokenize, batched=True, remove_columns=["sentences", "source"], **kwargs)

    def examples_from(docs, split):
        if data_args.nsp:
            pairs, too_short = build_nsp_pairs(docs, tokenizer, data_args.max_seq_length,
                                               training_args.seed + (0 if split == "train" else 1))
            if too_short:
                logger.info(f"{split}: {too_short} document(s) of a single token cannot form a sentence pair; skipped")
            for p in pairs:
                p["length"] = len(p["input_ids"])
            return datasets.Dataset.from_list(pairs)
        kwargs = dict(map_kwargs)
        if not data_args.streaming:
            kwargs["desc"] = f"{'lines' if data_args.line_by_line else 'blocks'} of {data_args.max_seq_length} ({split})"
            with training_args.main_process_first(desc=f"examples {split}"):
                return docs.map(to_examples, batched=True, remove_columns=docs.column_names, **kwargs)
        return docs.map(to_examples, batched=True, remove_columns=["ids", "starts"])

    eval_docs = None
    if data_args.streaming:
        train_docs = tokenize_docs(load_split(train_files, True, "train"), "train") if train_files else None
        if validation_files:
            eval_docs = tokenize_docs(load_split(validation_files, False, "validation"), "validation")
        elif train_docs is not None:
            n_held_out = data_args.max_eval_samples or 1000
            eval_docs = datasets.Dataset.from_list(list(train_docs.take(n_held_out)))
            train_docs = train_docs.skip(n_held_out)
            logger.info(f"--streaming: the first {len(eval_docs)} documents are the validation set")
    else:
        train_docs = tokenize_docs(load_split(train_files, False, "train"), "train") if train_files else None
        if validation_files:
            eval_docs = tokenize_docs(load_split(validation_files, False, "validation"), "validation")
        elif train_docs is not None and data_args.validation_split_percentage > 0 and (
                training_args.eval_requested or training_args.eval_strategy != "no"):
            share = data_args.validation_split_percentage / 100
            if not 0 < share < 1:
                raise DataError(f"--validation_split_percentage {data_args.validation_split_percentage}: hold out "
                                f"between 0 and 100 (exclusive) percent of the documents, pass --validation_file, or "
                                f"train without evaluation: --validation_split_percentage 0 --eval_strategy no.")
            if len(train_docs) < 2 and training_args.eval_requested:
                raise DataError(f"{', '.join(train_files)}: {len(train_docs)} document, nothing to hold out for "
                                f"--do_eval; pass --validation_file, or drop --do_eval.")
            if len(train_docs) < 2:
                # The evaluation is only the default schedule (--eval_strategy epoch), not asked for: train anyway.
                logger.warning(f"{', '.join(train_files)}: {len(train_docs)} document, nothing to hold out for "
                               f"validation: training without evaluation (pass --validation_file to evaluate, or "
                               f"--validation_split_percentage 0 --eval_strategy no to silence this).")
            else:
                split = train_docs.train_test_split(test_size=share, seed=training_args.seed)
                train_docs, eval_docs = split["train"], split["test"]
                logger.info(f"Held out {len(eval_docs):,} of {len(eval_docs) + len(train_docs):,} documents "
                            f"({data_args.validation_split_percentage}%) for validation")

    if data_args.nsp:
        train_docs = list(train_docs) if train_docs is not None else None
        eval_docs = list(eval_docs) if eval_docs is not None else None
    train_dataset = examples_from(train_docs, "train") if train_docs is not None and training_args.do_train else None
    eval_dataset = examples_from(eval_docs, "validation") if eval_docs is not None else None
    if train_dataset is not None and data_args.max_train_samples and not data_args.streaming:
        train_dataset = train_dataset.select(range(min(data_args.max_train_samples, len(train_dataset))))
    if eval_dataset is not None and data_args.max_eval_samples and not data_args.streaming:
        eval_dataset = eval_dataset.select(range(min(data_args.max_eval_samples, len(eval_dataset))))
    if data_args.streaming and train_dataset is not None:
        train_dataset = train_dataset.shuffle(seed=training_args.seed, buffer_size=10_000)

    collator = MaskingCollator(tokenizer, data_args.mlm_probability, data_args.mask_replace_prob,
                               data_args.random_replace_prob, data_args.whole_word_mask)
    if eval_dataset is not None:
        # Mask the validation set once, with a fixed seed: every evaluation then scores the same positions.
        fixed = MaskingCollator(tokenizer, data_args.mlm_probability, data_args.mask_replace_prob,
                                data_args.random_replace_prob, data_args.whole_word_mask,
                                generator=torch.Generator().manual_seed(training_args.seed))

        def mask_once(batch):
            features = [dict(zip(batch, values)) for values in zip(*batch.values())]
            masked = fixed(features)
            lengths = [len(f["input_ids"]) for f in features]
            return {"input_ids": [row[:n].tolist() for row, n in zip(masked["input_ids"], lengths)],
                    "labels": [row[:n].tolist() for row, n in zip(masked["labels"], lengths)]}

        eval_dataset = eval_dataset.map(mask_once, batched=True, batch_size=256, desc="masking validation once")
        eval_dataset = eval_dataset.remove_columns([c for c in ("word_starts",) if c in eval_dataset.column_names])
    for split, ds in (("train", train_dataset), ("validation", eval_dataset)):
        if ds is not None and not data_args.streaming:
            n_tokens = int(np.sum(ds["length"]))
            logger.info(f"{split}: {len(ds):,} examples, {n_tokens:,} tokens"
                        + (f", {np.mean(ds['next_sentence_label']):.1%} with a random next sentence"
                           if data_args.nsp else ""))
    if training_args.do_train and train_dataset is not None and not data_args.streaming and len(train_dataset) == 0:
        raise DataError(f"{train_files}: no training examples after tokenization.")

    # ---- Train ---------------------------------------------------------------------------------------------------
    if data_args.streaming and training_args.eval_strategy == "epoch":
        # A stream has no epochs to end: evaluate and save every tenth of the run instead.
        every = max(training_args.max_steps // 10, 1)
        training_args.eval_strategy = training_args.save_strategy = "steps"
        training_args.eval_steps = training_args.save_steps = every
        logger.info(f"--streaming: evaluating and saving every {every} steps")
    if eval_dataset is None:
        if training_args.eval_requested:
            raise ValueError("--do_eval needs --validation_file or --validation_split_percentage > 0.")
        training_args.eval_strategy = "no"
    trainer = RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics if eval_dataset is not None else None,
        preprocess_logits_for_metrics=reduce_logits if eval_dataset is not None else None,
    )
    output_dir = training_args.output_dir
    is_main = trainer.is_world_process_zero()
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # model + tokenizer: a checkpoint the fine-tuning scripts load directly
        if is_main and isinstance(model, (SparseBertForMaskedLM, SparseBertForPreTraining)):
            # the weights are BERT's own: record the standard class, which is what loads them elsewhere
            model.config.architectures = [type(model).__mro__[1].__name__]
            model.config.save_pretrained(output_dir)
        metrics = train_result.metrics
        if not data_args.streaming:
            metrics["train_samples"] = len(train_dataset)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        if is_main and plot_training_curves(trainer.state.log_history, os.path.join(output_dir, "training_curves.png"),
                                            metrics=("eval_perplexity",)):
            logger.info(f"Training curves: {os.path.join(output_dir, 'training_curves.png')}")

    # ---- Evaluate ------------------------------------------------------------------------------------------------
    if eval_dataset is not None and training_args.eval_requested:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(eval_dataset)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if is_main and training_args.do_train:
        summary = {"masking": {"mlm_probability": data_args.mlm_probability,
                               "mask_replace_prob": data_args.mask_replace_prob,
                               "random_replace_prob": data_args.random_replace_prob,
                               "whole_word_mask": data_args.whole_word_mask},
                   "nsp": data_args.nsp, "line_by_line": data_args.line_by_line,
                   "max_seq_length": data_args.max_seq_length, "train_files": train_files}
        with open(os.path.join(output_dir, "pretraining_args.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, ensure_ascii=False, indent=2)
        logger.info(f"Checkpoint in {output_dir}: fine-tune it with run_classification.py / run_ner.py / run_qa.py "
                    f"--model_name_or_path {output_dir}")
    if training_args.do_train:  # model card (README.md), then --push_to_hub
        finish_output_dir(trainer, "fill-mask", logger=logger,
                          data_files={"train": train_files, "validation": validation_files},
                          example=None if data_args.streaming else fill_mask_example(tokenizer, train_dataset),
                          base_model=model_args.model_name_or_path)
    return trainer


if __name__ == "__main__":
    run_main(main)
