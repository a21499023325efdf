"""A Hub-ready output directory: the model card (README.md with metrics, training settings and usage snippets that
run with transformers alone), and the push to the Hub at the end of a run."""

import json
import os
import re

import datasets
import torch
import transformers

MODEL_CARD_TASKS = {
    "text-classification": ("text-classification", "AutoModelForSequenceClassification", "text_classification"),
    "token-classification": ("token-classification", "AutoModelForTokenClassification", "token_classification"),
    "question-answering": ("question-answering", "AutoModelForQuestionAnswering", "question_answering"),
    "fill-mask": ("fill-mask", "AutoModelForMaskedLM", None),
    "feature-extraction": ("feature-extraction", "AutoModel", None),  # run_mlm.py --objective rtd: an encoder
}
_GENERIC_SPLIT_NAMES = {"train", "training", "dev", "valid", "validation", "val", "test", "eval", "corpus", "data",
                        "predict", "all"}
_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second", "tokens_per_second")


def dataset_name_from_files(paths):
    """A dataset name from data file paths: the folder of generic split files (data/thucnews/train.txt -> thucnews),
    else the training file's name without its split suffix (afqmc_train.jsonl -> afqmc). None without files."""
    paths = [p for p in (paths or []) if p]
    if not paths:
        return None
    if getattr(paths[0], "dataset_name", None):  # a split of --dataset_name (data_sources.DatasetSplit)
        return paths[0].dataset_name
    paths = [str(p) for p in paths]
    path = os.path.abspath(paths[0])
    stem = os.path.splitext(os.path.basename(path))[0]
    core = re.sub(r"([._-](train|training|dev|valid|validation|val|test|eval))+$", "", stem, flags=re.I)
    if core.lower() in _GENERIC_SPLIT_NAMES or core == stem and stem.lower() in _GENERIC_SPLIT_NAMES or not core:
        return os.path.basename(os.path.dirname(path)) or stem
    return core


def _is_hub_id(name):
    return bool(name) and not os.path.exists(name) and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) is not None \
        and not name.startswith((".", "-")) and ".." not in name


def _fmt(value, metric=False):
    """Metrics with 4 decimals (0.9312), other numbers as short as they are exact (5e-05, 2, 0.1)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if not metric:
            return f"{value:g}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    return str(value)


def _q(text):
    """A Python string literal that shows Chinese as Chinese."""
    return json.dumps(text, ensure_ascii=False)


def _read_results(output_dir, split):
    path = os.path.join(output_dir, f"{split}_results.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _metric_rows(results_by_split):
    """[(metric, {split: value})] over the quality metrics (no timings, sample counts or epoch)."""
    rows = {}
    for split, results in results_by_split.items():
        prefix = f"{split}_"
        for key, value in results.items():
            name = key[len(prefix):] if key.startswith(prefix) else key
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or name in ("epoch", "samples", "questions", "masked_tokens") or name.endswith(_SPEED_KEYS)):
                continue
            rows.setdefault(name, {})[split] = value
    order = ["accuracy", "f1", "macro_f1", "weighted_f1", "precision", "recall", "exact_match", "perplexity",
             "masked_accuracy", "nsp_accuracy", "loss"]
    return sorted(rows.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def usage_snippets(task, model_id, config, example=None):
    """Python code blocks that use the saved model with transformers alone: pipeline() and the Auto class."""
    pipeline_tag, auto_class, settings_key = MODEL_CARD_TASKS[task]
    if isinstance(example, str):
        example = example[:120]  # a snippet, not a document
    elif isinstance(example, dict):
        example = {k: v[:300] if isinstance(v, str) else v for k, v in example.items()}
    custom = bool(getattr(config, "auto_map", None))
    remote = ", trust_remote_code=True" if custom else ""
    settings = (getattr(config, settings_key, None) or {}) if settings_key else {}
    max_length = int(settings.get("max_seq_length") or 0) or min(getattr(config, "max_position_embeddings", 512), 512)
    mid = _q(model_id)
    if task == "text-classification":
        pair = isinstance(example, dict)
        text = example if example is not None else "今天的比赛非常精彩。"
        call_arg = f'{{"text": {_q(text["text"])}, "text_pair": {_q(text["text_pair"])}}}' if pair else _q(text)
        tok_args = f'[{_q(text["text"])}], [{_q(text["text_pair"])}]' if pair else f"[{_q(text)}]"
        return [
            f"from transformers import pipeline\n\n"
            f"classifier = pipeline(\"text-classification\", model={mid}{remote})\n"
            f"# top_k=None: every label with its probability; truncation as in training ({max_length} tokens)\n"
            f"print(classifier({call_arg}, top_k=None, truncation=True, max_length={max_length}))\n",
            f"import torch\nfrom transformers import {auto_class}, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained({mid})\n"
            f"model = {auto_class}.from_pretrained({mid}{remote}).eval()\n"
            f"inputs = tokenizer({tok_args}, truncation=True, max_length={max_length}, padding=True, "
            f"return_tensors=\"pt\")\n"
            f"with torch.no_grad():\n"
            f"    probs = model(**inputs).logits.softmax(-1)\n"
            f"print([(model.config.id2label[int(i)], float(p)) for p, i in zip(*probs.max(-1))])\n",
        ]
    if task == "token-classification":
        text = example if example is not None else "李华在北京大学读书。"
        return [
            f"from transformers import pipeline\n\n"
            f"ner = pipeline(\"token-classification\", model={mid}{remote}, aggregation_strategy=\"simple\")\n"
            f"print(ner({_q(text)}))\n"]
    if task == "question-answering":
        ex = example if isinstance(example, dict) else {"question": "北京大学在哪里？",
                                                        "context": "北京大学在北京市海淀区。"}
        # transformers 5 has no question-answering pipeline: the span is read off the start/end logits.
        return [
            f"import torch\n"
            f"from transformers import AutoModelForQuestionAnswering, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained({mid})\n"
            f"model = AutoModelForQuestionAnswering.from_pretrained({mid}{remote}).eval()\n"
            f"question, context = {_q(ex['question'])}, {_q(ex['context'])}\n"
            f"inputs = tokenizer(question, context, truncation=\"only_second\", max_length=384,\n"
            f"                   return_offsets_mapping=True, return_tensors=\"pt\")\n"
            f"offsets = inputs.pop(\"offset_mapping\")[0]\n"
            f"in_context = torch.tensor([s == 1 for s in inputs.sequence_ids(0)])\n"
            f"with torch.no_grad():\n"
            f"    out = model(**inputs)\n"
            f"start = int(out.start_logits[0].masked_fill(~in_context, -1e4).argmax())\n"
            f"end = start + int(out.end_logits[0].masked_fill(~in_context, -1e4)[start:start + 30].argmax())\n"
            f"print(context[offsets[start][0]:offsets[end][1]])\n"]
    if task == "feature-extraction":
        text = example if example is not None else "今天的比赛非常精彩。"
        return [
            f"import torch\nfrom transformers import AutoModel, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained({mid})\n"
            f"model = AutoModel.from_pretrained({mid}{remote}).eval()\n"
            f"with torch.no_grad():\n"
            f"    states = model(**tokenizer([{_q(text)}], return_tensors=\"pt\")).last_hidden_state\n"
            f"print(states.shape)  # [texts, tokens, hidden]: fine-tune it, or pool it into features\n"]
    text = example if example is not None else "今天天气很[MASK]。"
    return [
        f"from transformers import pipeline\n\n"
        f"fill = pipeline(\"fill-mask\", model={mid}{remote})\n"
        f"print(fill({_q(text)}))\n"]


def write_model_card(trainer, task, dataset_name=None, data_files=None, example=None, base_model=None,
                     settings=None, extra=None):
    """README.md in the output directory: what a Hub repository shows. Main process only; returns its path.

    task: a key of MODEL_CARD_TASKS. dataset_name: default --model_card_dataset_name, else the --dataset_name of a
    dataset split or from `data_files` (a dict split -> path or a list of paths). example: a text for the usage
    snippets (classification pairs: {"text", "text_pair"}; QA: {"question", "context"}; fill-mask: a text with [MASK]).
    base_model: the checkpoint fine-tuned (None: trained from scratch). settings: the task's encoding settings
    (default: the ones the script saved in config.json). extra: more markdown, appended as is. The metrics come from
    {eval,predict,test}_results.json in the output dir.
    """
    if not trainer.is_world_process_zero():
        return None
    if task not in MODEL_CARD_TASKS:
        raise ValueError(f"task {task!r}: choose one of {sorted(MODEL_CARD_TASKS)}")
    args, model = trainer.args, trainer.accelerator.unwrap_model(trainer.model)
    config = model.config
    output_dir = args.output_dir
    if task == "feature-extraction":  # the output directory holds the encoder alone, not the pretraining heads
        model, config = model.base_model, transformers.AutoConfig.from_pretrained(output_dir)
    pipeline_tag, auto_class, settings_key = MODEL_CARD_TASKS[task]
    if not isinstance(data_files, dict):
        data_files = {f"file {i + 1}": p for i, p in enumerate(data_files or [])}
    files = {k: v for k, v in data_files.items() if v}
    first_files = [v[0] if isinstance(v, (list, tuple)) else v for v in
                   [files[k] for k in ("train", "validation", "test") if k in files] + list(files.values()) if v]
    dataset_name = dataset_name or getattr(args, "model_card_dataset_name", None) or dataset_name_from_files(
        first_files)
    if isinstance(next(iter(files.values()), None), (list, tuple)):
        files = {k: ", ".join(map(str, v)) for k, v in files.items()}
    if settings is None and settings_key:
        settings = getattr(config, settings_key, None)
    model_id = getattr(trainer, "hub_model_id", None) or (args.hub_model_id if args.push_to_hub else None) \
        or os.path.abspath(output_dir)
    custom = bool(getattr(config, "auto_map", None))
    architecture = (getattr(config, "architectures", None) or [type(model).__name__])[0]
    n_params = sum(p.numel() for p in model.parameters())

    # ---- metadata (YAML front matter) ----
    meta = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "language:", "- zh", "tags:",
            "- bert", "- chinese", f"- {pipeline_tag}"] + (["- custom_code"] if custom else [])
    if base_model and _is_hub_id(base_model):
        meta.append(f"base_model: {base_model}")
    if dataset_name and _is_hub_id(dataset_name):
        meta += ["datasets:", f"- {dataset_name}"]
    meta.append("---")

    # ---- body ----
    title = model_id.rstrip("/").split("/")[-1]
    origin = (f"a fine-tuned version of [{base_model}](https://huggingface.co/{base_model})" if base_model
              and _is_hub_id(base_model) else f"fine-tuned from `{base_model}`" if base_model
              else "trained from scratch")
    task_words = {"text-classification": "text classification", "token-classification": "named-entity recognition",
                  "question-answering": "extractive question answering", "fill-mask": "masked language modelling",
                  "feature-extraction": "text encoding (replaced-token detection pretraining)"}
    lines = meta + ["", f"# {title}", "",
                    f"A {config.model_type} model ({architecture}, {n_params / 1e6:.3g}M parameters, "
                    f"{getattr(config, 'num_hidden_layers', '?')} layers x {getattr(config, 'hidden_size', '?')}) for "
                    f"Chinese {task_words[task]}: {origin}"
                    + (f" on **{dataset_name}**" if dataset_name else "") + "."]
    if custom:
        code = sorted({v.split(".")[0] + ".py" for v in config.auto_map.values()})
        lines += ["", f"The head is custom code saved next to the weights ({', '.join(code)}); load it with "
                  "`trust_remote_code=True`."]
    if files:
        lines += ["", "Data files: " + "; ".join(f"{k}: `{os.path.basename(str(v))}`" for k, v in files.items()) + "."]
    id2label = getattr(config, "id2label", None) or {}
    if task in ("text-classification", "token-classification") and id2label:
        labels = [str(id2label[i]) for i in sorted(id2label)]
        lines += ["", f"Labels ({len(labels)}): " + ", ".join(f"`{l}`" for l in labels[:60])
                  + (" ..." if len(labels) > 60 else "")]

    results = {split: _read_results(output_dir, split) for split in ("eval", "predict", "test")}
    results = {k: v for k, v in results.items() if v}
    rows = _metric_rows(results)
    names = {"eval": "validation", "predict": "test", "test": "test"}
    if rows:
        splits = list(results)
        lines += ["", "## Results", "", "| metric | " + " | ".join(names[s] for s in splits) + " |",
                  "|---|" + "---:|" * len(splits)]
        lines += [f"| {name} | " + " | ".join(_fmt(values[s], metric=True) if s in values else "" for s in splits)
                  + " |" for name, values in rows]
        # QA counts questions (its "samples" are windows); the other tasks count examples
        counts = [f"{names[s]}: {results[s][s + '_questions']} questions" if f"{s}_questions" in results[s]
                  else f"{names[s]}: {results[s][s + '_samples']} examples" for s in splits
                  if f"{s}_questions" in results[s] or f"{s}_samples" in results[s]]
        if counts:
            lines += ["", "Evaluated on " + ", ".join(counts) + "."]

    # ---- training ----
    world = max(args.world_size, 1)
    mixed = "fp16" if args.fp16 else "bf16" if args.bf16 else "no (fp32)"
    warmup = args.warmup_steps
    warmup = f"{warmup:.0%} of the steps" if 0 < warmup < 1 else f"{int(warmup)} steps"
    hyper = [("learning rate", args.learning_rate)]
    for name in ("head_learning_rate", "layerwise_lr_decay"):
        if getattr(args, name, None) is not None:
            hyper.append((name.replace("_", " "), getattr(args, name)))
    hyper += [("per-device train batch size", args.per_device_train_batch_size), ("processes", world),
              ("gradient accumulation steps", args.gradient_accumulation_steps),
              ("total train batch size", args.per_device_train_batch_size * world * args.gradient_accumulation_steps),
              ("epochs" if args.max_steps <= 0 else "max steps",
               args.num_train_epochs if args.max_steps <= 0 else args.max_steps),
              ("optimizer steps done", trainer.state.global_step),
              ("optimizer", f"{getattr(args.optim, 'value', args.optim)} (betas {args.adam_beta1}, {args.adam_beta2}, "
                            f"eps {args.adam_epsilon}), weight decay {args.weight_decay}"),
              ("learning-rate schedule",
               f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)}, warmup {warmup}"),
              ("mixed precision", mixed), ("seed", args.seed)]
    lines += ["", "## Training", "", "| hyperparameter | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in hyper]
    for key, value in (settings or {}).items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else _fmt(value)
        lines.append(f"| {key.replace('_', ' ')} | {shown} |")

    evals = list({h["step"]: h for h in trainer.state.log_history if "eval_loss" in h}.values())  # one per step
    if evals:
        keys = [k for k in evals[-1] if k.startswith("eval_") and k != "eval_loss" and not k.endswith(_SPEED_KEYS)
                and isinstance(evals[-1][k], float)][:4]
        lines += ["", "Evaluations during training:", "",
                  "| epoch | step | training loss | validation loss | " + " | ".join(k[5:] for k in keys) + " |",
                  "|---:|---:|---:|---:|" + "---:|" * len(keys)]
        for h in evals:
            train_losses = [x["loss"] for x in trainer.state.log_history
                            if "loss" in x and x.get("step", 0) <= h["step"]]
            lines.append(f"| {_fmt(round(h.get('epoch', 0), 2))} | {h['step']} | "
                         f"{_fmt(train_losses[-1], True) if train_losses else '-'} | {_fmt(h['eval_loss'], True)} | "
                         + " | ".join(_fmt(h.get(k, ''), True) for k in keys) + " |")

    # ---- usage ----
    lines += ["", "## Usage", ""]
    for snippet in usage_snippets(task, model_id, config, example):
        lines += ["```python", snippet.rstrip("\n"), "```", ""]
    recipe = {"text-classification": "run_classification.py", "token-classification": "run_ner.py",
              "question-answering": "run_qa.py", "fill-mask": "run_mlm.py", "feature-extraction": "run_mlm.py"}[task]
    if task not in ("fill-mask", "feature-extraction"):
        lines += ["With the recipe repository, `python predict.py --model DIR` encodes long texts exactly as in "
                  "training (saved in config.json) and batches with dynamic padding; `python export_onnx.py --model "
                  "DIR` exports to ONNX.", ""]
    else:
        lines += [f"Fine-tune it with the recipe's scripts: `--model_name_or_path {model_id}`.", ""]
    lines += ["## Framework versions", "",
              f"- transformers {transformers.__version__}", f"- torch {torch.__version__}",
              f"- datasets {datasets.__version__}", "",
              f"Trained with `{recipe}` from the Chinese BERT recipes."]
    if extra:
        lines += ["", extra.rstrip("\n")]
    path = os.path.join(output_dir, "README.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def fill_mask_example(tokenizer, dataset, max_tokens=24):
    """A fill-mask example from the first example of `dataset` (input_ids): its first `max_tokens` text tokens with
    the middle one replaced by [MASK], word pieces joined back. None when there is nothing to show."""
    try:
        ids = next(iter(dataset))["input_ids"]
    except (StopIteration, TypeError, KeyError, IndexError):
        return None
    special = set(tokenizer.all_special_tokens)
    tokens = [t for t in tokenizer.convert_ids_to_tokens(ids) if t not in special][:max_tokens]
    if len(tokens) < 2 or tokenizer.mask_token is None:
        return None
    tokens[len(tokens) // 2] = tokenizer.mask_token
    text = ""
    for token in tokens:
        if token.startswith("##"):
            text += token[2:]
        elif text and text[-1].isascii() and text[-1].isalnum() and token[0].isascii() and token[0].isalnum():
            text += " " + token
        else:
            text += token
    return text


def finish_output_dir(trainer, task, logger=None, **card_kwargs):
    """The end of a training run: the model card (main process), then `--push_to_hub`: the whole output directory
    (weights, config with labels and auto_map, head code, tokenizer, card, results, reports) goes to the Hub repo
    --hub_model_id (private with --hub_private_repo). Call it on every process (the push synchronises)."""
    path = write_model_card(trainer, task, **card_kwargs)
    if path and logger is not None:
        logger.info(f"Model card: {path}")
    if trainer.args.push_to_hub:
        push_output_dir(trainer, logger=logger)
    return path


def push_output_dir(trainer, commit_message="End of training", logger=None):
    """trainer.push_to_hub without its auto-generated model card: Trainer.push_to_hub would overwrite README.md with
    one; ours (write_model_card) has the metrics, settings and a usage snippet that works."""
    trainer.create_model_card = lambda *args, **kwargs: None  # this instance only
    result = trainer.push_to_hub(commit_message=commit_message)
    if logger is not None and trainer.is_world_process_zero():
        logger.info(f"Pushed {trainer.args.output_dir} to the Hub: {trainer.hub_model_id}")
    return result
