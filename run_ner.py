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


import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    set_seed,
)

import heads  # registers the token-classification heads (lstm, crf, lstm_crf) with the Auto classes
from checkpoints import checkpoint_to_resume
from model_card import finish_output_dir
from script_utils import DataError, check_max_seq_length, data_files, parse_args, run_main, setup_logging, write_json
from training import (
    FineTuningTrainer,
    FineTuningTrainingArguments,
    evaluation_callbacks,
    freeze_parameters,
    from_pretrained_kwargs,
    save_training,
)
from utils_ner import (
    CharTokenizer,
    FileReader,
    NERSettings,
    decode_sentences,
    encode_split,
    entity_metrics,
    label_names,
    merge_chunks,
    model_labels,
    no_entity_collapse,
    report_reading,
    spans_to_tags,
    split_summary,
    write_predictions,
    write_reports,
)

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
        report_reading(reader, split, sentences[split])

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
    logger.info(f"Model: {type(model).__name__}, {model.num_parameters():,} parameters, vocab {len(tokenizer)}")
    freeze_parameters(model, model_args.freeze, model_args.freeze_layers)

    # ---- Preprocessing: characters -> tokens -> overlapping chunks with labels ---------------------------------
    # Flags given win; without training, the trained model's settings (config.json "token_classification"), then
    # the recipe's defaults.
    settings = NERSettings.resolve(data_args, saved, logger)
    settings.label_scheme = scheme
    model_limit = getattr(config, "max_position_embeddings", 512)
    if settings.max_seq_length > model_limit:
        raise ValueError(f"--max_seq_length {settings.max_seq_length} exceeds the model's {model_limit} positions.")
    budget = settings.max_seq_length - 2  # [CLS] chunk [SEP]
    if budget < 1:
        raise ValueError(f"--max_seq_length {settings.max_seq_length} leaves no room for text.")
    settings.chunk_stride = settings.chunk_stride or max(budget // 2, 1)
    if not 0 < settings.chunk_stride <= budget:
        raise ValueError(f"--chunk_stride {settings.chunk_stride} must be in 1..{budget} (the text tokens per chunk).")
    settings.save_to(model.config)  # so evaluation/prediction with this model later encodes the same way
    label_all_tokens = settings.label_all_tokens
    logger.info(f"Chunks of at most {settings.max_seq_length} tokens ({budget} of text), a new one every "
                f"{settings.chunk_stride} tokens in longer sentences; labels on "
                f"{'every sub-token' if label_all_tokens else 'the first sub-token'} of each character")

    char_tokenizer = CharTokenizer(tokenizer, budget)
    encoded, metas, offsets_of = {}, {}, {}
    data_summary = {"max_seq_length": settings.max_seq_length, "chunk_stride": settings.chunk_stride,
                    "label_scheme": scheme, "label_all_tokens": label_all_tokens, "labels": label_list, "head": head,
                    "splits": {}}
    for split, split_sentences in sentences.items():
        columns, metas[split], offsets_of[split], stats = encode_split(
            split_sentences, char_tokenizer, tokenizer, label2id, scheme, budget, settings.chunk_stride,
            label_all_tokens)
        encoded[split] = datasets.Dataset.from_dict(columns)
        data_summary["splits"][split] = split_summary(readers[split], split, split_sentences, columns, stats, budget)

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
        max_length=settings.max_seq_length if data_args.pad_to_max_length else None,
        pad_to_multiple_of=8 if training_args.fp16 else None)
    callbacks = evaluation_callbacks(training_args, "validation" in encoded, data_args.early_stopping_patience, "f1")

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
        write_json(os.path.join(output_dir, "data_summary.json"), data_summary)

    # ---- Train ----------------------------------------------------------------------------------------------------
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()  # weights, config with id2label and token_classification, tokenizer, head code
        save_training(trainer, train_result, curves=("eval_f1", "eval_macro_f1") if data_args.training_curves else (),
                      train_samples=len(sentences["train"]), train_chunks=len(encoded["train"]),
                      max_seq_length=settings.max_seq_length,
                      train_tokens_per_epoch=int(np.sum(encoded["train"]["length"])))

    # ---- Evaluate and predict: chunks -> sentences -> entities, seqeval where the file has tags -------------------
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
