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

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, set_seed

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
from utils_qa import (
    EXAMPLE_FEATURES,
    READER_VERSION,
    WINDOW_FACTS,
    QASettings,
    QATrainer,
    encode_windows,
    generate_examples,
    read_qa_file,
    report_reading,
    window_summary,
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
    saved = QASettings.saved_in(config) if "train" not in files else {}
    settings = QASettings.resolve(data_args, saved, logger)
    settings.check(model_limit=getattr(config, "max_position_embeddings", 512))
    if data_args.n_best_size < 1 or settings.max_answer_length < 1:
        raise ValueError("--n_best_size and --max_answer_length must be at least 1.")
    version_2 = settings.version_2_with_negative

    # ---- Data: validate every file before anything heavy happens -------------------------------------------------
    reads = {}
    for split, path in files.items():
        _, stats, fmt = read_qa_file(path, split, version_2, limits[split])
        reads[split] = (stats, fmt)
        report_reading(path, split, stats, fmt, version_2)
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
    logger.info(f"Model: {type(model).__name__}, {model.num_parameters():,} parameters, vocab {len(tokenizer)}")
    freeze_parameters(model, model_args.freeze, model_args.freeze_layers)
    settings.save_to(model.config)  # so evaluation/prediction with this model later encodes questions the same way

    # ---- Preprocessing: [CLS] question [SEP] context window [SEP], character offsets of every context token ------
    context_type = 1 if getattr(config, "type_vocab_size", 2) > 1 else 0  # models without segment embeddings: all 0
    encoded, data_summary = {}, {"settings": dict(settings.to_dict(), n_best_size=data_args.n_best_size,
                                                 null_score_diff_threshold=data_args.null_score_diff_threshold,
                                                 metric=data_args.metric), "splits": {}}
    for split, ds in raw.items():
        with training_args.main_process_first(desc=f"encoding {split}"):
            features = ds.map(encode_windows, batched=True, with_indices=True, remove_columns=ds.column_names,
                              fn_kwargs={"tokenizer": tokenizer, "settings": settings, "context_type": context_type,
                                         "with_labels": split != "test"},
                              num_proc=data_args.preprocessing_num_workers,
                              load_from_cache_file=not data_args.overwrite_cache, desc=f"Encoding {split}")
        summary = {"file": files[split], "format": reads[split][1], **reads[split][0],
                   **window_summary(features, ds, labelled=split != "test")}
        data_summary["splits"][split] = summary
        logger.info(f"{split}: {len(ds)} questions -> {summary['windows']} windows of at most "
                    f"{settings.max_seq_length} tokens ({summary['windows_per_question']} per question, context "
                    f"{summary['context_tokens_mean']} tokens on average); questions cut to "
                    f"{settings.max_query_length} tokens: {summary['questions_truncated']}"
                    + (f"; answers not on token boundaries (the model can only predict whole tokens): "
                       f"{summary['answers_not_on_token_boundaries']}; answers longer than a window: "
                       f"{summary['answers_longer_than_a_window']}" if split != "test" else ""))
        features = features.remove_columns([c for c in WINDOW_FACTS if c in features.column_names])
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
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=settings.max_seq_length)
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if training_args.fp16 else None)
    callbacks = evaluation_callbacks(training_args, "validation" in encoded, data_args.early_stopping_patience, "f1")
    answer_settings = {"n_best_size": data_args.n_best_size, "max_answer_length": settings.max_answer_length,
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

    # ---- Train ----------------------------------------------------------------------------------------------------
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # safetensors weights, config with the question_answering settings, tokenizer files
        save_training(trainer, train_result, curves=("eval_exact_match", "eval_f1"),
                      train_samples=len(encoded["train"]), train_questions=len(raw["train"]),
                      max_seq_length=settings.max_seq_length, doc_stride=settings.doc_stride,
                      train_tokens_per_epoch=int(np.sum(encoded["train"]["length"])))  # non-padding tokens

    # ---- Evaluate and predict: answers per question, EM/F1 where the file has gold answers ------------------------
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
