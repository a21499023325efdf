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
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    set_seed,
)

import heads  # registers the custom heads (CNN, LSTM, attention, windows, ...) with the Auto classes
from checkpoints import checkpoint_to_resume
from model_card import finish_output_dir
from script_utils import check_max_seq_length, data_files, parse_args, run_main, setup_logging, write_json
from training import (
    FineTuningTrainingArguments,
    evaluation_callbacks,
    freeze_parameters,
    from_pretrained_kwargs,
    save_training,
)
from utils_classification import (
    ClassificationEncoder,
    ClassificationSettings,
    ClassificationTrainer,
    WindowCollator,
    auto_max_seq_length,
    build_label_list,
    compute_metrics,
    count_tokens,
    default_head_tokens,
    generate_examples,
    label_ids,
    read_class_weights,
    read_files,
    show_examples,
    write_predictions,
    write_report,
)

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
# main
# ----------------------------------------------------------------------------------------------------------------


def main(args=None):
    model_args, data_args, training_args = parse_args(
        (ModelArguments, DataTrainingArguments, FineTuningTrainingArguments), args)
    setup_logging(logger, training_args)
    resume = checkpoint_to_resume(training_args)  # never overwrites results unless asked
    set_seed(training_args.seed)
    hub_kwargs = from_pretrained_kwargs(model_args)
    check_max_seq_length(data_args.max_seq_length, model_args.config_name or model_args.model_name_or_path,
                         minimum=4, hub_kwargs=hub_kwargs, allow_auto=True)  # now, not after the model has loaded

    # ---- Data: validate every file before anything heavy happens -------------------------------------------------
    files, limits = data_files(data_args, training_args)  # split -> path, split -> --max_*_samples
    text_columns, schemas, scans = read_files(files, data_args, limits)
    is_pair = len(text_columns) == 2

    # Labels: mapped once; the saved config keeps the names (id2label), so predictions come back as names.
    if "train" in scans:
        label_list = build_label_list(scans["train"][1], data_args.label_file)
    else:  # evaluating or predicting with a trained model: its config knows the labels
        config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path,
                                            trust_remote_code=model_args.trust_remote_code)
        label_list = [config.id2label[i] for i in range(config.num_labels)]
    label2id_in_data = label_ids(scans, files, label_list, data_args.label_file)

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
    if not tokenizer.is_fast:
        raise ValueError(f"Tokenizer {tokenizer_source} is not a fast (Rust) tokenizer: truncation counts the tokens "
                         f"it cuts. Use a model dir with tokenizer.json.")
    if model_args.model_name_or_path:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            **hub_kwargs)
    else:
        logger.info(f"Training a new model from scratch with config {config_source}")
        model = AutoModelForSequenceClassification.from_config(config,
                                                               trust_remote_code=model_args.trust_remote_code)
    logger.info(f"Model: {type(model).__name__}, {model.num_parameters():,} parameters, vocab {len(tokenizer)}")
    freeze_parameters(model, model_args.freeze, model_args.freeze_layers)

    # ---- Preprocessing: settings, then [CLS] text [SEP] (or a pair, or windows) per example (cached Arrow files) -
    # Flags given win; without training, a trained model's saved settings (config.json, "text_classification") come
    # next, so it sees texts encoded as in training; then the recipe's defaults.
    saved = ClassificationSettings.saved_in(config) if "train" not in raw else {}
    settings = ClassificationSettings.resolve(data_args, saved, logger)
    settings.text_columns = text_columns  # the data's
    if settings.max_seq_length == "auto" and saved.get("max_seq_length"):
        settings.max_seq_length = saved["max_seq_length"]
    if is_pair and settings.truncation_strategy == "head+tail":
        raise ValueError("--truncation_strategy head+tail is for single texts; sentence pairs are trimmed "
                         "longest-first (use head or tail).")
    special = 3 if is_pair else 2  # [CLS] a [SEP] (b [SEP])
    model_limit = getattr(config, "max_position_embeddings", 512)
    if settings.max_seq_length == "auto":
        source = raw["train"] if "train" in raw else next(iter(raw.values()))
        lengths = count_tokens(tokenizer, [source[c] for c in text_columns]) + special
        settings.max_seq_length = auto_max_seq_length(lengths, data_args.auto_length_percentile, model_limit)
    settings.max_seq_length = int(settings.max_seq_length)
    if settings.max_seq_length > model_limit:
        raise ValueError(f"--max_seq_length {settings.max_seq_length} exceeds the model's {model_limit} positions.")
    budget = settings.budget
    if budget < 2:
        raise ValueError(f"--max_seq_length {settings.max_seq_length} leaves no room for text.")
    if settings.head_tokens is None:
        settings.head_tokens = default_head_tokens(budget)
    if settings.truncation_strategy == "head+tail":
        head_tokens = min(settings.head_tokens, budget)
        logger.info(f"head+tail truncation: first {head_tokens} + last {budget - head_tokens} of {budget} text tokens")
    if not use_windows:
        settings.window_stride = settings.max_windows = None
    else:
        if is_pair:
            raise ValueError("--head windows is for long single texts, not sentence pairs.")
        settings.window_stride = settings.window_stride or budget // 2
        settings.max_windows = settings.max_windows or 8
        if not 0 < settings.window_stride <= budget:
            raise ValueError(f"--window_stride {settings.window_stride} must be in 1..{budget} (the text tokens per "
                             f"window).")
        logger.info(f"Sliding windows: {settings.max_seq_length} tokens each ({budget} of text), a new one every "
                    f"{settings.window_stride} tokens, at most {settings.max_windows} per document")
    settings.save_to(model.config)  # so evaluation/prediction with this model later encodes texts the same way

    encoder = ClassificationEncoder(tokenizer, settings, windows=use_windows)
    encoded = {}
    data_summary = {"max_seq_length": settings.max_seq_length, "truncation_strategy": settings.truncation_strategy,
                    "text_columns": text_columns, "labels": label_list, "splits": {}}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"encoding {split}"):
            ds = ds.map(encoder, batched=True, num_proc=data_args.preprocessing_num_workers,
                        load_from_cache_file=not data_args.overwrite_cache, desc=f"Tokenizing/truncating {split}")
        n_truncated = int(np.sum(ds["truncated"]))
        logger.info(f"{split}: {len(ds)} examples, {n_truncated} ({n_truncated / max(len(ds), 1):.1%}) longer than "
                    f"max_seq_length={settings.max_seq_length} truncated ({settings.truncation_strategy}); mean "
                    f"length {np.mean(ds['length']):.1f} tokens")
        n_rows, labels, _, skipped = scans[split]
        data_summary["splits"][split] = {
            "file": files[split], "examples": len(ds), "skipped_rows": dict(skipped), "truncated": n_truncated,
            "mean_tokens": round(float(np.mean(ds["length"])), 2),
            "label_counts": {label_list[label2id_in_data[l]]: c for l, c in labels.items()}}
        if split != "train":
            ds = ds.sort("length")  # evaluation in length order: less padding; "row" maps results back
        encoded[split] = ds
    if data_args.show_examples and "train" in encoded:
        show_examples(encoded["train"], tokenizer, text_columns, label_list, data_args.show_examples)

    # ---- Trainer --------------------------------------------------------------------------------------------------
    if use_windows:
        collator = WindowCollator(tokenizer.pad_token_id)
    elif data_args.pad_to_max_length:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=settings.max_seq_length)
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if training_args.fp16 else None)
    callbacks = evaluation_callbacks(training_args, "validation" in encoded, data_args.early_stopping_patience,
                                     "accuracy")
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
        write_json(os.path.join(output_dir, "data_summary.json"), data_summary)

    # ---- Train ----------------------------------------------------------------------------------------------------
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # safetensors weights, config with id2label/label2id, tokenizer files
        save_training(trainer, train_result, train_samples=len(encoded["train"]),
                      max_seq_length=settings.max_seq_length,
                      train_tokens_per_epoch=int(np.sum(encoded["train"]["length"])))  # non-padding tokens

    # ---- Evaluate -------------------------------------------------------------------------------------------------
    if "validation" in encoded:
        output = trainer.predict(encoded["validation"], metric_key_prefix="eval")
        metrics = dict(output.metrics, eval_samples=len(encoded["validation"]))
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        if is_main:
            preds = np.argmax(output.predictions, axis=-1)
            results["eval"] = write_report(output_dir, "eval", output.label_ids, preds, label_list)

    # ---- Predict --------------------------------------------------------------------------------------------------
    if training_args.do_predict:
        test = encoded["test"]
        has_labels = "label" in test.column_names
        output = trainer.predict(test, metric_key_prefix="predict")
        probs = torch.softmax(torch.tensor(output.predictions, dtype=torch.float32), dim=-1).numpy()
        if has_labels:
            metrics = dict(output.metrics, predict_samples=len(test))
            trainer.log_metrics("predict", metrics)
            trainer.save_metrics("predict", metrics)
        if is_main:
            path = os.path.join(output_dir, "predict_results.tsv")
            write_predictions(path, test, text_columns, label_list, probs)
            logger.info(f"Predictions for {len(test)} texts: {path}")
            if has_labels:
                results["predict"] = write_report(output_dir, "predict", np.array(test["label"]),
                                                  probs.argmax(axis=-1), label_list)

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
