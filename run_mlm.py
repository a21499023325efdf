#!/usr/bin/env python
"""Pretrain a Chinese BERT from scratch, or continue pretraining one on your own text: masked language modelling
(MLM), optionally with whole-word masking (jieba words, like Chinese-BERT-wwm) and next-sentence prediction (NSP), or
ELECTRA's replaced-token detection (--objective rtd, pretraining_electra.py).

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
  * a dataset (`--dataset_name`, `--dataset_config_name`: a Hub id from the local cache, a folder of data files, a
    save_to_disk folder): the column `--text_column_name`, one document per row. From scratch without a config:
    `--model_type bert --tokenizer_name DIR [--config_overrides ...]`.

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
--random_replace_prob). In the validation set every chosen token is [MASK]: eval_masked_accuracy is the share of
hidden tokens recovered from their context, to read against eval_most_frequent_token_accuracy (always answering the
commonest word; a model below or at it has learnt no context). Special tokens ([CLS], [SEP], [PAD], [UNK], ...)
are never chosen. With --whole_word_mask the choice is made per jieba word: every character of a chosen word is
masked together (the vocab stays character-level).

Defaults that differ from the Hugging Face example, and why:
  flag                      HF example           here                  why
  --max_seq_length          the model's (<=1024) the model's (<=512)   BERT-style checkpoints stop at 512 positions
  masking                   per batch            per batch; validation masked once with a fixed seed, so
                                                 perplexities compare across evaluations
  training (all scripts: the full table is training.RecipeTrainingArguments' docstring): 10% warmup (HF 0),
  evaluation and a checkpoint per epoch, 2 kept (HF none / every 500 steps), logging every 50 steps (HF 500),
  length-pooled random batches (HF random: more padding)

--init_embeddings cooccurrence (from scratch): before the first step, the word embeddings are set to the SVD of the
training corpus' positive PMI co-occurrence matrix (tokens within 5 of each other in a sentence; Levy & Goldberg 2014,
the statistics word2vec learns). It costs about a minute for 5M characters and hands the model what MLM on two CPU
cores learns slowest: which words are alike (股票 ~ 证券, 基金; 篮球 ~ 足球). Tokens the corpus never shows keep
their random vectors. Measured here: README.md, "Pretraining a Chinese BERT".

--spell_out_share 0.5 (word vocabularies): half the training sentences are read one character per token (股票 ->
股 票), the way run_ner.py encodes text for labels per character; the rest keep their words. Without it, an encoder
pretrained on words meets character sequences for the first time in NER fine-tuning. Measured here at 0.5 (README.md,
"Half the pretraining sentences spelt out"): no gain on CLUENER, half a point lost on ChnSentiCorp; default 0.

--objective rtd (ELECTRA, Clark et al. 2020): a generator --generator_size_divisor (4) times narrower than the
encoder fills the masks (all [MASK] by default) with samples from its softmax, and the encoder learns, at every token,
whether it was replaced: a training signal from every token instead of 15%. Whole-word masking works with it; NSP
does not. The output directory holds the encoder as a plain BERT checkpoint (BertModel, model_type bert) for the
fine-tuning scripts and AutoModel, and the generator in generator/ (ElectraForMaskedLM, a fill-mask model).

Arguments can also come from one .json or .yaml file: `python run_mlm.py args.yaml`.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForPreTraining, set_seed

import pretraining_electra as rtd
from checkpoints import checkpoint_to_resume
from data_sources import DatasetArguments, load_dataset_splits, source_fingerprint
from model_card import fill_mask_example, finish_output_dir
from script_utils import DataError, check_max_seq_length, parse_args, run_main, setup_logging
from training import (
    RecipeTrainer,
    RecipeTrainingArguments,
    evaluation_callbacks,
    from_pretrained_kwargs,
    load_fast_tokenizer,
    save_training,
)
from utils_mlm import (
    MaskingCollator,
    PretrainingSettings,
    SparseBertForMaskedLM,
    SparseBertForPreTraining,
    build_nsp_pairs,
    character_ids,
    check_corpus,
    compute_metrics,
    cooccurrence_embeddings,
    examples_from_documents,
    generate_documents,
    mask_once,
    reduce_logits,
    spell_out_documents,
    tokenize_documents,
)

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
    model_type: Optional[str] = field(
        default=None,
        metadata={"help": "From scratch without --config_name: a config of this type with its defaults (e.g. bert), "
                  "changed by --config_overrides; needs --tokenizer_name (its vocab size is used)."},
    )
    tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer dir (vocab.txt / tokenizer.json) if not the model's own."}
    )
    init_embeddings: str = field(
        default="random",
        metadata={"help": "From scratch: random (BERT's initialisation), or cooccurrence: the word embeddings start "
                  "as the SVD of the training corpus' PPMI co-occurrence matrix (word2vec's statistics, counted "
                  "in about a minute for 5M characters), so pretraining starts from vectors that already put "
                  "related words together.", "choices": ["random", "cooccurrence"]},
    )
    dtype: Optional[str] = field(
        default=None,
        metadata={"help": "The dtype to load --model_name_or_path in (as in the Hugging Face example): auto (the "
                  "checkpoint's), float32, bfloat16 or float16. Default: float32. Mixed-precision training is "
                  "--bf16/--fp16.", "choices": ["auto", "float32", "bfloat16", "float16"]},
    )
    use_fast_tokenizer: bool = field(
        default=True,
        metadata={"help": "Use a fast (Rust) tokenizer: this script needs one (offsets); false is an error."},
    )
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version: branch, tag or commit id."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token for private models."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modeling code from the Hub/model dir to run."}
    )


@dataclass
class DataTrainingArguments(DatasetArguments):
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
    max_seq_length: Optional[int] = field(
        default=None,
        metadata={"help": "Tokens per example including [CLS]/[SEP] (blocks, lines or pairs). Default, as in the "
                  "Hugging Face example: the model's maximum (the tokenizer's model_max_length, else the config's "
                  "max_position_embeddings), at most 512."},
    )
    line_by_line: bool = field(
        default=False,
        metadata={"help": "One example per line (long lines cut into several) instead of fixed-length blocks."},
    )
    spell_out_share: float = field(
        default=0.0,
        metadata={"help": "Word vocabularies: this share of the training sentences (picked by a hash, the same in "
                  "every run) has its multi-character tokens spelt one character per token (股票 -> 股 票), as "
                  "run_ner.py reads text, so the encoder learns character sequences too. 0 (default): none."},
    )
    nsp: bool = field(
        default=False,
        metadata={"help": "Next-sentence prediction as well: sentence pairs, 50%% real next / 50%% random, trained "
                  "with BertForPreTraining (MLM + NSP loss)."},
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens chosen for prediction."})
    mask_replace_prob: Optional[float] = field(
        default=None, metadata={"help": "Of the chosen tokens: share set to [MASK] (mlm: 0.8, rtd: 1.0)."})
    random_replace_prob: Optional[float] = field(
        default=None, metadata={"help": "Of the chosen tokens: share set to a random token, the rest stays as is "
                                        "(mlm: 0.1, rtd: 0)."})
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
    max_eval_samples: Optional[int] = field(
        default=None, metadata={"help": "Use only the first N validation examples."}
    )
    preprocessing_num_workers: Optional[int] = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Re-tokenize instead of using the cache."})


@dataclass
class PretrainingArguments(RecipeTrainingArguments):
    """The recipe's TrainingArguments (training.py) with what pretraining needs."""

    # The collator needs columns the model does not take (word_starts for whole-word masking).
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collator."})


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def main(args=None):
    model_args, data_args, training_args, objective_args = parse_args(
        (ModelArguments, DataTrainingArguments, PretrainingArguments, rtd.ObjectiveArguments), args)
    rtd.check_objective(objective_args, data_args)  # --objective mlm|rtd against the other flags
    setup_logging(logger, training_args)
    resume = checkpoint_to_resume(training_args)  # never overwrites results unless asked
    set_seed(training_args.seed)
    hub_kwargs = from_pretrained_kwargs(model_args)
    # [CLS] text [SEP], or [CLS] A [SEP] B [SEP] with --nsp; checked now, not after the model has loaded
    check_max_seq_length(data_args.max_seq_length, model_args.config_name or model_args.model_name_or_path,
                         minimum=5 if data_args.nsp else 3, hub_kwargs=hub_kwargs)

    # ---- Corpus: check every file before anything heavy ---------------------------------------------------------
    if not training_args.do_train and not training_args.eval_requested:
        raise ValueError("Nothing to do: pass --do_train and/or --do_eval.")
    if data_args.dataset_name and (data_args.train_file or data_args.validation_file):
        raise DataError(f"--dataset_name {data_args.dataset_name} and --train_file/--validation_file: pass a dataset "
                        f"or corpus files, not both.")
    if not data_args.train_file and not data_args.validation_file and not data_args.dataset_name:
        raise ValueError("Pass --train_file (the corpus) and/or --validation_file, or --dataset_name.")
    if training_args.do_train and not data_args.train_file and not data_args.dataset_name:
        raise ValueError("--do_train needs --train_file or --dataset_name.")
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming reads the corpus lazily, so its length is unknown: set --max_steps.")
    if data_args.streaming and data_args.nsp:
        raise ValueError("--nsp draws random sentences from the whole corpus; it does not work with --streaming.")
    if data_args.nsp and data_args.line_by_line:
        raise ValueError("--nsp builds sentence pairs; it cannot be combined with --line_by_line.")
    if model_args.init_embeddings == "cooccurrence" and (model_args.model_name_or_path or data_args.streaming
                                                          or not training_args.do_train):
        raise ValueError("--init_embeddings cooccurrence sets the embeddings of a model trained from scratch from the "
                         "training corpus: it needs --do_train and --config_name (or --model_type), not "
                         "--model_name_or_path (whose embeddings are already trained) or --streaming (it counts the "
                         "whole corpus first).")
    if not 0 <= data_args.spell_out_share <= 1:
        raise ValueError(f"--spell_out_share {data_args.spell_out_share}: a share of the sentences, from 0 to 1.")
    train_files = list(data_args.train_file or [])
    validation_files = list(data_args.validation_file or [])
    if data_args.dataset_name:  # without a validation split, --validation_split_percentage holds documents out
        splits = load_dataset_splits(data_args, {"train": training_args.do_train, "validation": False}, hub_kwargs)
        train_files = [splits["train"]] if "train" in splits else []
        validation_files = [splits["validation"]] if "validation" in splits else []
    if not data_args.streaming:
        for split, paths in (("train", train_files), ("validation", validation_files)):
            for path, n in check_corpus(paths, data_args).items():
                logger.info(f"{split}: {path}: {n:,} documents")

    # ---- Tokenizer and config -----------------------------------------------------------------------------------
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    config_source = model_args.config_name or model_args.model_name_or_path
    if not tokenizer_source or not (config_source or model_args.model_type):
        raise ValueError("Pass --model_name_or_path to continue pretraining a checkpoint, or --config_name (or "
                         "--model_type) and --tokenizer_name to pretrain from scratch "
                         "(data_scripts/train_tokenizer.py --write_config writes both).")
    tokenizer = load_fast_tokenizer(tokenizer_source, model_args.use_fast_tokenizer, hub_kwargs,
                                    "whole-word masking maps jieba words onto tokens by character offsets")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.mask_token_id is None:
        raise ValueError(f"Tokenizer {tokenizer_source} lacks [CLS]/[SEP]/[MASK]; this script pretrains BERT.")
    if config_source:
        config = AutoConfig.from_pretrained(config_source, **hub_kwargs)
    else:
        config = AutoConfig.for_model(model_args.model_type)
        logger.warning(f"A new {model_args.model_type} config with its defaults (--model_type): "
                       f"{config.num_hidden_layers} layers x {config.hidden_size}; --config_overrides changes it.")
    if model_args.config_overrides:
        if model_args.model_name_or_path:
            raise ValueError("--config_overrides changes a config for training from scratch; with "
                             "--model_name_or_path the checkpoint's shapes are fixed.")
        config.update_from_string(model_args.config_overrides)
    max_positions = getattr(config, "max_position_embeddings", None)
    if data_args.max_seq_length is None:  # the model's maximum, at most 512 (the Hugging Face example's default)
        model_max = tokenizer.model_max_length if tokenizer.model_max_length < 1e6 else max_positions
        data_args.max_seq_length = min(model_max or 512, max_positions or 512, 512)
        logger.info(f"max_seq_length {data_args.max_seq_length} (the model's maximum, at most 512; --max_seq_length "
                    f"sets it)")
    if max_positions and data_args.max_seq_length > max_positions:
        raise ValueError(f"--max_seq_length {data_args.max_seq_length} > the model's max_position_embeddings "
                         f"{max_positions}.")

    # ---- Tokenize documents (cached), then build examples -------------------------------------------------------
    segment = None
    if data_args.whole_word_mask:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        segment = jieba.lcut
    map_kwargs = {} if data_args.streaming else {"num_proc": data_args.preprocessing_num_workers,
                                                 "load_from_cache_file": not data_args.overwrite_cache}

    def load_split(paths, streaming, split):
        kwargs = {"gen_kwargs": {"paths": tuple(paths), "data_args": data_args, "nsp": data_args.nsp}}
        if streaming:
            return datasets.IterableDataset.from_generator(generate_documents, **kwargs)
        stats = [source_fingerprint(p) for p in paths]
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
            return raw.map(tokenize_documents, batched=True, remove_columns=["sentences", "source"],
                           fn_kwargs={"tokenizer": tokenizer, "segment": segment}, **kwargs)

    def examples_from(docs, split):
        if data_args.nsp:
            pairs, too_short = build_nsp_pairs(docs, tokenizer, data_args.max_seq_length,
                                               training_args.seed + (0 if split == "train" else 1))
            if too_short:
                logger.info(f"{split}: {too_short} document(s) of a single token cannot form a sentence pair; skipped")
            for p in pairs:
                p["length"] = len(p["input_ids"])
            return datasets.Dataset.from_list(pairs)
        kwargs = dict(map_kwargs, fn_kwargs={"tokenizer": tokenizer, "max_seq_length": data_args.max_seq_length,
                                             "line_by_line": data_args.line_by_line})
        if not data_args.streaming:
            shape = "lines" if data_args.line_by_line else "blocks"
            kwargs["desc"] = f"{shape} of {data_args.max_seq_length} ({split})"
            with training_args.main_process_first(desc=f"examples {split}"):
                return docs.map(examples_from_documents, batched=True, remove_columns=docs.column_names, **kwargs)
        return docs.map(examples_from_documents, batched=True, remove_columns=["ids", "starts"], **kwargs)

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

    if data_args.spell_out_share > 0 and train_docs is not None:
        chars_of = character_ids(tokenizer)
        if not chars_of:
            raise DataError(f"--spell_out_share {data_args.spell_out_share}: the tokenizer has no multi-character "
                            f"tokens to spell out; it needs a word vocabulary (data_scripts/train_tokenizer.py "
                            f"--level word), or drop the flag.")
        kwargs = {"fn_kwargs": {"chars_of": chars_of, "share": data_args.spell_out_share,
                                "whole_words": segment is not None}}
        if not data_args.streaming:
            kwargs.update(map_kwargs, desc=f"spelling out {data_args.spell_out_share:.0%} of the sentences")
        train_docs = train_docs.map(spell_out_documents, batched=True, **kwargs)
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

    masking = {"mlm_probability": data_args.mlm_probability, "mask_replace_prob": data_args.mask_replace_prob,
               "random_replace_prob": data_args.random_replace_prob, "whole_word_mask": data_args.whole_word_mask}
    collator = MaskingCollator(tokenizer, **masking)
    if eval_dataset is not None:
        # Mask the validation set once, with a fixed seed: every evaluation then scores the same positions. Every
        # chosen token becomes [MASK] there, whatever the training split: under 80/10/10 a tenth of the scored tokens
        # would stay visible, and copying them scores ~10 points of "masked accuracy" without any use of context.
        eval_masking = masking | {"mask_replace_prob": 1.0, "random_replace_prob": 0.0}
        eval_dataset = mask_once(eval_dataset, MaskingCollator(tokenizer, **eval_masking, seed=training_args.seed))
    for split, ds in (("train", train_dataset), ("validation", eval_dataset)):
        if ds is not None and not data_args.streaming:
            n_tokens = int(np.sum(ds["length"]))
            logger.info(f"{split}: {len(ds):,} examples, {n_tokens:,} tokens"
                        + (f", {np.mean(ds['next_sentence_label']):.1%} with a random next sentence"
                           if data_args.nsp else ""))
    if training_args.do_train and train_dataset is not None and not data_args.streaming and len(train_dataset) == 0:
        raise DataError(f"{train_files}: no training examples after tokenization.")

    # ---- Model ---------------------------------------------------------------------------------------------------
    if objective_args.objective == "rtd":  # ELECTRA: a generator + the encoder, sharing BERT's embeddings
        config = rtd.model_config(config, objective_args, config_source)
        model_class = rtd.BertForReplacedTokenDetection
    elif config.model_type == "bert":  # BERT's own classes, scoring only the masked positions while training
        model_class = SparseBertForPreTraining if data_args.nsp else SparseBertForMaskedLM
    else:  # other architectures (e.g. ERNIE, RoBERTa-style checkpoints of another type): their own heads
        model_class = AutoModelForPreTraining if data_args.nsp else AutoModelForMaskedLM
    if model_args.model_name_or_path:
        model = model_class.from_pretrained(model_args.model_name_or_path, config=config, dtype=model_args.dtype,
                                            **hub_kwargs)
    else:
        if config.vocab_size != len(tokenizer):
            logger.info(f"vocab_size {config.vocab_size} -> {len(tokenizer)} (the tokenizer's)")
            config.vocab_size = len(tokenizer)
        model = (model_class(config) if model_class in (SparseBertForMaskedLM, SparseBertForPreTraining,
                                                        rtd.BertForReplacedTokenDetection)
                 else model_class.from_config(config, trust_remote_code=model_args.trust_remote_code))
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        logger.warning(f"Tokenizer has {len(tokenizer)} tokens, the model's embeddings "
                       f"{model.get_input_embeddings().weight.shape[0]}: resizing (new rows are random).")
        model.resize_token_embeddings(len(tokenizer))
    if model_args.init_embeddings == "cooccurrence":
        start = time.time()
        docs = train_docs if data_args.nsp else train_docs["ids"]
        sentences = [ids for doc in docs for ids in (doc["ids"] if data_args.nsp else doc)]
        embeddings = model.get_input_embeddings().weight
        vectors, counted = cooccurrence_embeddings(sentences, tokenizer, embeddings.shape[1], seed=training_args.seed)
        counted, scale = torch.from_numpy(counted), 2 * config.initializer_range
        with torch.no_grad():  # twice BERT's init scale: words outweigh the (random) position embeddings at first
            embeddings[counted] = torch.from_numpy(vectors)[counted].to(embeddings.dtype) * scale
        logger.info(f"--init_embeddings cooccurrence: {int(counted.sum()):,} of {len(counted):,} token embeddings "
                    f"from the co-occurrences in {len(sentences):,} training sentences ({time.time() - start:.0f} s); "
                    f"tokens never seen keep their random initialisation")
    origin = f"from {model_args.model_name_or_path}" if model_args.model_name_or_path else "from scratch"
    logger.info(f"Model: {type(model).__name__} ({origin}), {model.num_parameters():,} parameters, vocab "
                f"{len(tokenizer)}, {config.num_hidden_layers} layers x {config.hidden_size}")

    # ---- Train ---------------------------------------------------------------------------------------------------
    if data_args.streaming and training_args.eval_strategy == "epoch":
        # A stream has no epochs to end: evaluate and save every tenth of the run instead.
        every = max(training_args.max_steps // 10, 1)
        training_args.eval_strategy = training_args.save_strategy = "steps"
        training_args.eval_steps = training_args.save_steps = every
        logger.info(f"--streaming: evaluating and saving every {every} steps")
    if eval_dataset is None and training_args.eval_requested:
        raise ValueError("--do_eval needs --validation_file or --validation_split_percentage > 0.")
    evaluation_callbacks(training_args, has_validation=eval_dataset is not None)
    rtd_objective = objective_args.objective == "rtd"
    metric_functions = (rtd.compute_metrics, rtd.reduce_outputs) if rtd_objective else (compute_metrics, reduce_logits)
    trainer = RecipeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=metric_functions[0] if eval_dataset is not None else None,
        preprocess_logits_for_metrics=metric_functions[1] if eval_dataset is not None else None,
    )
    output_dir = training_args.output_dir
    is_main = trainer.is_world_process_zero()
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        if rtd_objective:  # the encoder alone as a BERT checkpoint (+ the generator in generator/)
            rtd.save_output(trainer)
        else:
            trainer.save_model()  # model + tokenizer: a checkpoint the fine-tuning scripts load directly
        if is_main and isinstance(model, (SparseBertForMaskedLM, SparseBertForPreTraining)):
            # the weights are BERT's own: record the standard class, which is what loads them elsewhere
            model.config.architectures = [type(model).__mro__[1].__name__]
            model.config.save_pretrained(output_dir)
        save_training(trainer, train_result, curves=rtd.PLOT_METRICS if rtd_objective else ("eval_perplexity",),
                      **({} if data_args.streaming else {"train_samples": len(train_dataset)}))

    # ---- Evaluate: perplexity and masked-token accuracy (NSP accuracy) on the fixed validation masks ------------
    if eval_dataset is not None and training_args.eval_requested:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(eval_dataset)
        if not rtd_objective:
            metrics["perplexity"] = metrics["eval_perplexity"]  # where Hugging Face's run_mlm.py writes it
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        if rtd_objective and (warning := rtd.untrained_discriminator_warning(metrics)):
            logger.warning(warning)

    # ---- Save: the settings next to the checkpoint, the model card (README.md), then --push_to_hub --------------
    settings = PretrainingSettings(masking=masking, nsp=data_args.nsp, line_by_line=data_args.line_by_line,
                                   init_embeddings=model_args.init_embeddings,
                                   spell_out_share=data_args.spell_out_share,
                                   max_seq_length=data_args.max_seq_length, train_files=train_files,
                                   objective=rtd.objective_settings(model, objective_args))
    if is_main and training_args.do_train:
        settings.save(output_dir)
        logger.info(f"Checkpoint in {output_dir}: fine-tune it with run_classification.py / run_ner.py / run_qa.py "
                    f"--model_name_or_path {output_dir}")
    if training_args.do_train:
        finish_output_dir(trainer, "feature-extraction" if rtd_objective else "fill-mask", logger=logger,
                          data_files={"train": train_files, "validation": validation_files},
                          example=None if data_args.streaming or rtd_objective else fill_mask_example(tokenizer,
                                                                                                   train_dataset),
                          base_model=model_args.model_name_or_path, settings=settings.card_settings())
    return trainer


if __name__ == "__main__":
    run_main(main)

