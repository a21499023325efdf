"""Pretraining (masked language modelling), the pieces run_mlm.py uses: reading a corpus into documents of
sentences, tokenized documents -> blocks, lines or NSP sentence pairs (with jieba word starts), the masking collator
(transformers' DataCollatorForLanguageModeling with whole jieba words), BERT's MLM models with a training forward that
scores only the masked positions, the metrics, and the settings saved next to the checkpoint.
"""

import csv
import json
import math
import os
import random
import re
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from typing import Unpack

import numpy as np
import torch
from torch import nn
from transformers import BertForMaskedLM, BertForPreTraining, DataCollatorForLanguageModeling
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.bert.modeling_bert import BertForPreTrainingOutput
from transformers.utils import TransformersKwargs

from data_sources import DatasetSplit
from script_utils import DataError, decoded_lines, write_json


@dataclass
class PretrainingSettings:
    """How the corpus became examples and how they were masked: pretraining_args.json in the output directory (the
    model card's settings table shows it)."""

    FILE = "pretraining_args.json"

    masking: dict  # mlm_probability, mask_replace_prob, random_replace_prob, whole_word_mask
    nsp: bool
    line_by_line: bool
    max_seq_length: int
    train_files: list = field(default_factory=list)
    objective: dict = field(default_factory=lambda: {"objective": "mlm"})  # rtd: and the generator's shape
    init_embeddings: str = "random"  # or cooccurrence: started from corpus statistics (--init_embeddings)
    spell_out_share: float = 0.0  # share of training sentences read one character per token (--spell_out_share)

    def save(self, output_dir):
        write_json(os.path.join(output_dir, self.FILE), asdict(self))

    def card_settings(self):
        """The rows of the model card's settings table: masking, example shape (not the file paths)."""
        return {**self.objective, **self.masking, "nsp": self.nsp, "line_by_line": self.line_by_line,
                "max_seq_length": self.max_seq_length, "init_embeddings": self.init_embeddings,
                "spell_out_share": self.spell_out_share}


# ----------------------------------------------------------------------------------------------------------------
# Reading the corpus: documents as lists of sentences, with clear errors
# ----------------------------------------------------------------------------------------------------------------

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
    fmt = "dataset" if isinstance(path, DatasetSplit) else corpus_format(path)
    if fmt == "dataset":  # --dataset_name: one document per row of the text column
        column = data_args.text_column_name
        if column not in path.dataset.column_names:
            raise DataError(f"{path}: no column '{column}' (columns: {path.dataset.column_names}); set "
                            f"--text_column_name.")
        rows = ((row_no, "" if row[column] is None else str(row[column])) for row_no, row in path.objects())
    elif fmt == "txt":
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


def tokenize_documents(batch, tokenizer, segment=None):
    """Documents (lists of sentences) -> token ids per sentence ("ids") and word starts ("starts": 1 where a jieba
    word begins, with `segment` = jieba.lcut; else every token its own word), for Dataset.map(batched=True)."""
    flat = [s for sentences in batch["sentences"] for s in sentences]
    encoded = tokenizer(flat, add_special_tokens=False, return_offsets_mapping=segment is not None,
                        return_attention_mask=False, return_token_type_ids=False)
    if segment is not None:
        starts = [word_starts_for(text, offsets, segment) for text, offsets in zip(flat, encoded["offset_mapping"])]
    else:
        starts = [[1] * len(ids) for ids in encoded["input_ids"]]
    ids_per_doc, starts_per_doc, i = [], [], 0
    for sentences in batch["sentences"]:
        ids_per_doc.append(encoded["input_ids"][i:i + len(sentences)])
        starts_per_doc.append(starts[i:i + len(sentences)])
        i += len(sentences)
    return {"ids": ids_per_doc, "starts": starts_per_doc}


def spell_out_documents(batch, chars_of, share, whole_words):
    """--spell_out_share: `share` of the sentences of tokenized documents get their multi-character tokens replaced by
    their characters' ids ("股票" -> "股", "票"; chars_of = character_ids(tokenizer)), as run_ner.py encodes text, so
    the encoder also learns text read one character at a time. Picked by a hash of the sentence's ids: the same
    sentences in every run and every process. A spelt word stays one word for whole-word masking (whole_words); else
    each character is its own word, as every token is. For Dataset.map(batched=True)."""
    ids_per_doc, starts_per_doc = [], []
    for doc_ids, doc_starts in zip(batch["ids"], batch["starts"]):
        ids_per_doc.append([])
        starts_per_doc.append([])
        for ids, starts in zip(doc_ids, doc_starts):
            if zlib.crc32(np.asarray(ids, dtype=np.int64).tobytes()) % 10_000 < share * 10_000:
                spelt_ids, spelt_starts = [], []
                for token_id, start in zip(ids, starts):
                    chars = chars_of.get(token_id, [token_id])
                    spelt_ids.extend(chars)
                    spelt_starts.extend([start] + [0 if whole_words else 1] * (len(chars) - 1))
                ids, starts = spelt_ids, spelt_starts
            ids_per_doc[-1].append(ids)
            starts_per_doc[-1].append(starts)
    return {"ids": ids_per_doc, "starts": starts_per_doc}


def examples_from_documents(batch, tokenizer, max_seq_length, line_by_line):
    """Tokenized documents -> blocks (or lines) of at most max_seq_length tokens, for Dataset.map(batched=True)."""
    docs = [{"ids": i, "starts": s} for i, s in zip(batch["ids"], batch["starts"])]
    examples = build_blocks(docs, tokenizer, max_seq_length, line_by_line)
    return {"input_ids": [e["input_ids"] for e in examples], "word_starts": [e["word_starts"] for e in examples],
            "length": [len(e["input_ids"]) for e in examples]}


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
# Masking: transformers' collator (15% of the tokens, 80% [MASK] / 10% random / 10% unchanged), whole jieba words
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class MaskingCollator(DataCollatorForLanguageModeling):
    """transformers' DataCollatorForLanguageModeling (padding; each maskable token chosen with mlm_probability; of the
    chosen, mask_replace_prob become [MASK], random_replace_prob a random token, the rest stay; special tokens such as
    [CLS], [SEP], [PAD], [UNK] never chosen), with what the recipe adds:

      * whole_word_mask: the words are jieba's, from each example's "word_starts" (1 where a word begins): one coin
        per word, shared by its tokens, so mlm_probability of the tokens is still chosen, and 80/10/10 applies as to
        single tokens (transformers finds words by gaps between characters, which Chinese text does not have, and
        drops the random replacements);
      * random replacements are real tokens: a special token or [unusedN] drawn is drawn again among the others;
      * features that already carry labels (the validation set, masked once with a fixed seed) are only padded;
      * NSP: token_type_ids and next_sentence_label pass through.

    Returns input_ids [batch, seq_len] with the masks applied, attention_mask, token_type_ids (when the features have
    them), labels [batch, seq_len] (-100 where nothing is predicted) and next_sentence_label [batch] for NSP.
    """

    def __post_init__(self):
        replace = self.mask_replace_prob, self.random_replace_prob
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "random replacement is not supported with whole word masking": it is
            super().__post_init__()
        self.mask_replace_prob, self.random_replace_prob = replace
        self.special_ids = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))
        vocab = self.tokenizer.get_vocab()
        unused = {i for t, i in vocab.items() if re.fullmatch(r"\[unused\d+\]", t)}
        self.random_ids = torch.tensor(sorted(set(vocab.values()) - set(self.tokenizer.all_special_ids) - unused))

    def torch_call(self, features):
        def padded(key, value):
            width = max(len(f["input_ids"]) for f in features)
            return torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features], dtype=torch.long)

        model_inputs = [{k: f[k] for k in ("input_ids", "token_type_ids", "next_sentence_label") if k in f}
                        for f in features]
        batch = dict(self.tokenizer.pad(model_inputs, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of))
        if "labels" in features[0]:  # already masked (the fixed validation masks)
            batch["labels"] = padded("labels", -100)
            return batch
        word_starts = padded("word_starts", 1) if "word_starts" in features[0] else None
        batch["input_ids"], batch["labels"] = self.mask(batch["input_ids"], word_starts)
        return batch

    def mask(self, input_ids, word_starts=None):
        """input_ids [batch, seq_len] -> (masked input_ids, labels); word_starts [batch, seq_len] for whole words."""
        if self.seed is not None and (not isinstance(self.generator, torch.Generator)
                                      or self._generator_pid != os.getpid()):
            self.create_rng("pt")  # as transformers' own torch_call: a seeded generator per process
        if self.whole_word_mask and word_starts is None:
            word_starts = torch.ones_like(input_ids)  # no word boundaries given: every token its own word
        special = torch.isin(input_ids, self.special_ids)
        return self.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special, offset_mapping=word_starts)

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        original = inputs.clone()
        inputs, labels = super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)
        redraw = (labels != -100) & (inputs != original) & (inputs != self.tokenizer.mask_token_id) & ~torch.isin(
            inputs, self.random_ids)  # a random replacement that is a special token or [unusedN]
        picks = torch.randint(len(self.random_ids), (int(redraw.sum()),), generator=self.generator)
        inputs[redraw] = self.random_ids[picks]
        return inputs, labels

    @staticmethod
    def _calc_word_ids_and_prob_mask(word_starts, special_tokens_mask):
        """transformers' whole-word hook, given the jieba word starts where it expects character offsets: the word of
        every token (-1 for special tokens) and the tokens that get no coin of their own (all but a word's first)."""
        special = special_tokens_mask.astype(bool)
        word_ids = np.cumsum(word_starts, axis=1)
        word_ids[special] = -1
        return word_ids, special | (word_starts == 0)


def mask_once(dataset, collator):
    """The validation set masked once by `collator` (a MaskingCollator with a fixed seed): input_ids with the masks
    applied and labels (-100 where nothing is predicted), unpadded, so every evaluation scores the same positions."""

    def mask(batch):
        features = [dict(zip(batch, values)) for values in zip(*batch.values())]
        masked = collator(features)
        lengths = [len(f["input_ids"]) for f in features]
        return {"input_ids": [row[:n].tolist() for row, n in zip(masked["input_ids"], lengths)],
                "labels": [row[:n].tolist() for row, n in zip(masked["labels"], lengths)]}

    dataset = dataset.map(mask, batched=True, batch_size=256, desc="masking validation once")
    return dataset.remove_columns([c for c in ("word_starts",) if c in dataset.column_names])


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

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | MaskedLMOutput:
        if not self.training or labels is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   labels=labels, **kwargs)
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        loss, scores = masked_positions_loss(self.cls, hidden, labels)
        return MaskedLMOutput(loss=loss, logits=scores)


class SparseBertForPreTraining(BertForPreTraining):
    """BertForPreTraining (MLM + NSP) with the same training-time saving as SparseBertForMaskedLM."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | BertForPreTrainingOutput:
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
# Word embeddings from corpus statistics (--init_embeddings cooccurrence)
# ----------------------------------------------------------------------------------------------------------------


def character_ids(tokenizer):
    """token id -> the ids of its characters as tokens of their own, for tokens of several characters whose every
    character is in the vocab (a word vocabulary's "股票" -> "股", "票"; WordPiece's "##" dropped); else absent."""
    unk = tokenizer.unk_token_id
    by_id = {}
    for token, token_id in tokenizer.get_vocab().items():
        chars = token.removeprefix("##")
        if len(chars) > 1 and token_id not in tokenizer.all_special_ids:
            ids = tokenizer.convert_tokens_to_ids(list(chars))
            if unk not in ids:
                by_id[token_id] = ids
    return by_id


def cooccurrence_embeddings(sentences, tokenizer, dim, window=5, seed=0):
    """Word vectors from counting alone: the rank-`dim` SVD of the positive pointwise mutual information (PPMI)
    between tokens at most `window` apart in a sentence (Levy & Goldberg 2014: the matrix word2vec's skip-gram
    factorises), context counts smoothed with the exponent 0.75 as word2vec does.

    MLM needs many epochs before its embeddings group related words; these counts take a minute for 5M characters
    and put 股票 next to 证券 and 基金 from the start. Sentences are also counted spelt one character per token
    (when the vocab has multi-character tokens), since run_ner.py encodes text that way: characters then get vectors
    from character contexts too.

    sentences: token id lists (no special tokens). Returns (vectors [vocab, dim] float32 with unit elementwise std,
    counted [vocab] bool): tokens never seen keep whatever initialisation the caller gave them.
    """
    import scipy.sparse as sparse
    from scipy.sparse.linalg import svds

    vocab_size = len(tokenizer)
    spelled = character_ids(tokenizer)
    views = []
    for ids in sentences:
        views.append(np.asarray(ids, dtype=np.int64))
        if spelled and any(i in spelled for i in ids):
            views.append(np.asarray([c for i in ids for c in spelled.get(i, (i,))], dtype=np.int64))
    stream = np.concatenate(views) if views else np.zeros(0, dtype=np.int64)
    sentence_of = np.repeat(np.arange(len(views)), [len(v) for v in views])
    counts = sparse.csr_matrix((vocab_size, vocab_size))
    for distance in range(1, window + 1):  # both directions: the matrix is symmetric
        same = sentence_of[:-distance] == sentence_of[distance:]
        left, right = stream[:-distance][same], stream[distance:][same]
        counts += sparse.coo_matrix((np.ones(2 * len(left)), (np.concatenate([left, right]),
                                                              np.concatenate([right, left]))),
                                    shape=(vocab_size, vocab_size)).tocsr()
    if counts.nnz == 0:
        raise DataError("--init_embeddings cooccurrence: no two tokens of the training corpus share a sentence.")
    counts = counts.tocoo()
    total = counts.data.sum()
    word_p = np.asarray(counts.sum(axis=1)).ravel() / total
    context_p = np.asarray(counts.sum(axis=0)).ravel() ** 0.75
    context_p /= context_p.sum()
    pmi = np.log(counts.data / total / word_p[counts.row] / context_p[counts.col])
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=(vocab_size, vocab_size))
    rank = min(dim, vocab_size - 2)  # svds needs k < the matrix size; a tiny vocab leaves columns at 0
    vectors = np.zeros((vocab_size, dim))
    if rank >= 1:  # the symmetric split of the singular values, sqrt(S) on each side, as in Levy et al. 2015
        u, s, _ = svds(ppmi, k=rank, random_state=seed)
        vectors[:, :rank] = u * np.sqrt(s)
    counted = word_p > 0
    vectors /= max(vectors[counted].std(), 1e-12)
    return vectors.astype(np.float32), counted


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
    commonest = float(np.bincount(mlm_labels[chosen]).max()) / n if chosen.any() else 0.0
    metrics = {"mlm_loss": mlm_loss, "perplexity": math.exp(min(mlm_loss, 50.0)),
               "masked_accuracy": float((predicted[:, :chosen.shape[1]][chosen] == mlm_labels[chosen]).sum()) / n,
               "masked_tokens": int(chosen.sum()),
               # the baseline masked_accuracy has to beat: always the commonest hidden token (word frequencies only)
               "most_frequent_token_accuracy": commonest}
    if len(predictions) > 2:
        nsp_labels = label_ids[1]
        metrics["nsp_accuracy"] = float((predictions[2] == nsp_labels).mean())
    return metrics
