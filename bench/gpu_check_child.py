#!/usr/bin/env python
"""The child side of bench/gpu_check.py: run the steps of one plan file in this process and write what happened.

    python bench/gpu_check_child.py PLAN.json
    accelerate launch --config_file accelerate_configs/single_gpu_bf16.yaml bench/gpu_check_child.py PLAN.json

gpu_check.py writes the plan (a JSON list of steps) and starts this file the way the step should be launched (plain
python, or `accelerate launch` with one of accelerate_configs/*.yaml). Kinds of step:

  build          environment facts (device name, torch/CUDA versions, bf16 support) and the random-weight checkpoint:
                 a character vocab from the data files, a BertConfig, BertForMaskedLM weights, saved with safetensors
  script         run_classification.py / run_ner.py / run_qa.py: the script's own main(args), with GpuProbe added
                 to every Trainer (peak memory, a timed window of steps, tokens, autocast dtype, GradScaler)
  plain_trainer  the baseline: BertForSequenceClassification + a plain transformers Trainer, the same probe
  predict        predict.py's main(args); its throughput is the figure predict.py logs itself

Each step's result goes to the JSON file named in the step ("result"); a step that raises is recorded as failed and
the next step still runs. This file never decides pass or fail: gpu_check.py reads the results and the run's outputs.
"""

import argparse
import gc
import importlib
import json
import logging
import os
import re
import resource
import signal
import sys
import time
import traceback
import unicodedata
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import transformers  # noqa: E402
import transformers.trainer as hf_trainer  # noqa: E402
from transformers import TrainerCallback  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# Memory and synchronisation, on a GPU or (smoke runs) the CPU
# ----------------------------------------------------------------------------------------------------------------


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device):
    """{kind, allocated_mb, reserved_mb}: CUDA's peaks since the last reset; on a CPU the process' peak RSS so far
    (ru_maxrss, KiB on Linux; it cannot be reset, so it only says the smoke run measured something)."""
    if device.type == "cuda":
        return {"kind": "cuda max_memory_allocated since the reset",
                "allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": "cpu process peak RSS (ru_maxrss)", "allocated_mb": rss_mb, "reserved_mb": rss_mb}


def parameter_counts(model):
    """Parameters by role, for the FLOP count: the encoder layers process every token; embeddings are lookups."""
    body = getattr(model, model.base_model_prefix, model)
    encoder = sum(p.numel() for p in body.encoder.parameters())
    embeddings = sum(p.numel() for p in body.embeddings.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"parameters": total, "encoder_parameters": encoder, "embedding_parameters": embeddings,
            "other_parameters": total - encoder - embeddings, "num_hidden_layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size}


# ----------------------------------------------------------------------------------------------------------------
# The probe: one TrainerCallback in every Trainer of the step
# ----------------------------------------------------------------------------------------------------------------


class GpuProbe(TrainerCallback):
    """Measures one training run from inside the Trainer, at the cost of two device synchronisations:

    * peak memory from the start of training (model and batch-independent state already on the device) to its end;
    * a timed window from the end of optimizer step `window_start` (the first steps pay for cuBLAS set-up, the
      allocator growing and the optimizer state being created) to the end of the last step;
    * tokens: a forward pre-hook on the model adds up attention_mask per sequence on the device (no sync) during
      training forwards: non-padding tokens, their squares (attention FLOPs), sequences, and the tokens computed
      (sequences x padded length) for the padding share; windows models count each real window as a sequence;
    * the autocast state the encoder actually ran under, and the GradScaler (fp16) with the steps it skipped.
    """

    def __init__(self, window_start):
        self.window_start = window_start
        self.record = {}
        self.hooks = []
        self.counts = None  # device tensor [tokens, sum of squared lengths, sequences, computed tokens]
        self.samples = 0
        self.autocast = set()
        self.skipped_steps = 0
        self.window = {}

    def count_tokens(self, module, args, kwargs):
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        if mask is None:  # every collator of the recipe sends one; count all positions otherwise
            ids = kwargs.get("input_ids")
            if ids is None:
                return
            mask = torch.ones_like(ids)
            self.record["tokens_counted_without_attention_mask"] = True
        lengths = mask.sum(-1)  # [B] or [B, W] (windows)
        real = (lengths > 0).sum()
        counts = torch.stack([lengths.sum(), (lengths * lengths).sum(), real, real * mask.shape[-1]])
        self.counts = counts if self.counts is None else self.counts + counts
        self.samples += mask.shape[0]

    def record_autocast(self, module, args, kwargs):
        if module.training:
            kind = self.device.type
            self.autocast.add(str(torch.get_autocast_dtype(kind)).replace("torch.", "")
                              if torch.is_autocast_enabled(kind) else "off (fp32)")

    def snapshot(self, state):
        synchronize(self.device)
        counts = self.counts.tolist() if self.counts is not None else [0, 0, 0, 0]
        return {"time": time.perf_counter(), "step": state.global_step, "samples": self.samples,
                "tokens": counts[0], "tokens_squared": counts[1], "sequences": counts[2],
                "computed_tokens": counts[3]}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.device = next(model.parameters()).device
        # The encoder's own pre-hook sees the autocast state: accelerate may put autocast around model.forward,
        # which the top-level pre-hook runs before.
        body = getattr(model, model.base_model_prefix, model)
        self.hooks = [model.register_forward_pre_hook(self.count_tokens, with_kwargs=True),
                      body.register_forward_pre_hook(self.record_autocast, with_kwargs=True)]
        self.record.update(parameter_counts(model), device=str(self.device),
                           parameter_dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
                           args_bf16=bool(args.bf16), args_fp16=bool(args.fp16), world_size=args.world_size,
                           per_device_train_batch_size=args.per_device_train_batch_size, max_steps=args.max_steps)
        if self.device.type == "cuda":
            self.record["memory_allocated_at_start_mb"] = torch.cuda.memory_allocated(self.device) / 2**20
        reset_peak_memory(self.device)
        self.window["begin"] = self.snapshot(state)

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if getattr(optimizer, "step_was_skipped", False):  # accelerate's optimizer: the GradScaler found inf/NaN
            self.skipped_steps += 1
        if state.global_step == self.window_start:
            self.window["start"] = self.snapshot(state)
        if state.global_step == state.max_steps:
            self.window["end"] = self.snapshot(state)

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        if "end" not in self.window:
            self.window["end"] = self.snapshot(state)
        start = self.window.get("start", self.window["begin"])
        end = self.window["end"]
        self.record["window"] = {k: end[k] - start[k] for k in ("step", "samples", "tokens", "tokens_squared",
                                                                 "sequences", "computed_tokens")}
        self.record["window"]["seconds"] = end["time"] - start["time"]
        self.record["window"]["first_step"] = start["step"] + 1
        self.record["all_steps"] = {k: end[k] - self.window["begin"][k] for k in ("step", "samples", "tokens",
                                                                                   "computed_tokens")}
        self.record["all_steps"]["seconds"] = end["time"] - self.window["begin"]["time"]
        self.record["train_peak_memory"] = peak_memory(self.device)
        self.record["autocast"] = sorted(self.autocast)
        scaler = getattr(optimizer, "scaler", None)
        self.record["grad_scaler"] = None if scaler is None else {"scale": float(scaler.get_scale()),
                                                                  "skipped_steps": self.skipped_steps}
        for hook in self.hooks:
            hook.remove()


def with_probe(step, run):
    """Call run() with a fresh GpuProbe in every Trainer it creates: transformers builds each Trainer's callbacks from
    the list transformers.trainer.DEFAULT_CALLBACKS, the one place to add a callback without editing the script."""
    probe = GpuProbe(step["window_start"])
    hf_trainer.DEFAULT_CALLBACKS.append(probe)
    try:
        run()
    finally:
        hf_trainer.DEFAULT_CALLBACKS.remove(probe)
    if "window" not in probe.record:
        raise RuntimeError("the probe saw no finished training run (Trainer.train never ended)")
    return probe.record


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------


def environment():
    facts = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             "transformers": transformers.__version__, "cuda_available": torch.cuda.is_available(),
             "cpu_count": os.cpu_count(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    for name in ("accelerate", "datasets"):
        facts[name] = importlib.import_module(name).__version__
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(device_name=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
                     capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                     total_memory_gb=round(props.total_memory / 2**30, 1),
                     bf16_supported=bool(torch.cuda.is_bf16_supported()))
    else:
        facts.update(device_name="cpu", bf16_supported=True, cpu_matmul_flops=cpu_matmul_flops())
    return facts


def cpu_matmul_flops(n=512, repeats=5):
    """Smoke runs only: the best fp32 or bf16 matmul rate of this CPU, so the MFU column has a denominator."""
    best = float("inf")
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.matmul(a, b)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def texts_of(path, fmt):
    """The texts of one data file, for the vocab: formats as in ../shared/data (see gpu_check.py's data layout)."""
    with open(path, encoding="utf-8") as f:
        if fmt == "squad":
            texts = []
            for article in json.load(f)["data"]:
                for paragraph in article["paragraphs"]:
                    texts.append(paragraph["context"])
                    for qa in paragraph["qas"]:
                        texts.append(qa["question"])
                        texts += [a["text"] for a in qa.get("answers", [])]
            return texts
        lines = f.read().splitlines()
    if fmt == "tsv_first_column":  # THUCNews: title<TAB>label
        return [line.split("\t")[0] for line in lines if line.strip()]
    if fmt == "tsv_text_a":  # ChnSentiCorp: header label<TAB>text_a
        column = lines[0].split("\t").index("text_a")
        return [line.split("\t")[column] for line in lines[1:] if line.strip()]
    if fmt == "jsonl_text":  # CLUENER
        return [json.loads(line)["text"] for line in lines if line.strip()]
    raise ValueError(f"unknown text format {fmt}")


def is_cjk(char):
    """A CJK ideograph: BERT's tokenizer makes each one a token of its own (the ranges of its _is_chinese_char)."""
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
                                             (0x2A700, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def build(step):
    """Environment facts, then the checkpoint: a bert-base-chinese-shaped BERT (or a tiny one) with random weights."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    o = step["options"]
    facts = environment()
    start = time.perf_counter()
    # BERT's special tokens at bert-base-chinese's ids: [PAD] 0, [unused1..99], [UNK] 100, [CLS] 101, [SEP] 102,
    # [MASK] 103; then every character of the data (and ## pieces for characters inside non-CJK words, so English
    # words and numbers tokenize without [UNK]) by frequency; then [unusedN] placeholders up to the vocab size.
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    texts = []
    for path, fmt in o["text_files"]:
        texts += texts_of(path, fmt)
    counts = Counter()
    for char, n in Counter("\n".join(texts).lower()).items():  # the tokenizer lowercases too
        if char.isspace() or unicodedata.category(char)[0] in "CM":  # removed or split off by the tokenizer
            continue
        counts[char] += n
        if not is_cjk(char):  # may sit inside a word (English, numbers): WordPiece needs its ## form
            counts["##" + char] += n
    tokens = [t for t, _ in counts.most_common()]
    size = o.get("vocab_size") or len(specials) + len(tokens)
    kept = tokens[:size - len(specials)]
    vocab = specials + kept + [f"[unused{i}]" for i in range(100, 100 + size - len(specials) - len(kept))]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    sample = texts[::max(1, len(texts) // 2000)]
    ids = [i for row in tokenizer(sample, add_special_tokens=False)["input_ids"] for i in row]
    unk_rate = sum(i == tokenizer.unk_token_id for i in ids) / max(len(ids), 1)

    config = BertConfig(vocab_size=size, **o["shape"])
    config.architectures = ["BertForMaskedLM"]
    torch.manual_seed(0)
    model = BertForMaskedLM(config)  # random weights, initialised as BERT initialises them (normal, std 0.02)
    out = o["checkpoint"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    facts.update(checkpoint=out, vocab_size=size, data_tokens=len(tokens), placeholder_tokens=size - len(specials)
                 - len(kept), tokens_left_out=len(tokens) - len(kept), unk_rate=unk_rate,
                 **parameter_counts(model), config=o["shape"],
                 build_seconds=time.perf_counter() - start,
                 weights=[f for f in sorted(os.listdir(out)) if f.endswith(".safetensors")])
    return facts


def script(step):
    module = importlib.import_module(step["script"][:-len(".py")])
    return with_probe(step, lambda: module.main(step["args"]))


def plain_trainer(step):
    """The memory baseline: what a plain Trainer (all defaults: random batches, dynamic padding) needs for
    BertForSequenceClassification on the same rows, batch, maximum length and precision."""
    from datasets import Dataset
    from transformers import (AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    o = step["options"]
    texts, labels = [], []
    with open(o["train_file"], encoding="utf-8") as f:
        for line in f:
            if len(texts) == o["max_train_samples"]:
                break
            text, label = line.rstrip("\n").split("\t")
            texts.append(text)
            labels.append(int(label))
    tokenizer = AutoTokenizer.from_pretrained(o["model"])
    dataset = Dataset.from_dict({"text": texts, "label": labels}).map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=o["max_seq_length"]),
        batched=True, remove_columns=["text"])
    model = BertForSequenceClassification.from_pretrained(o["model"], num_labels=o["num_labels"])
    args = TrainingArguments(
        output_dir=o["output_dir"], per_device_train_batch_size=o["batch_size"], max_steps=o["max_steps"],
        learning_rate=o["learning_rate"], logging_steps=o["logging_steps"], bf16=step["precision"] == "bf16",
        fp16=step["precision"] == "fp16", save_strategy="no",
        report_to="none", disable_tqdm=True, seed=42, use_cpu=not torch.cuda.is_available())
    trainers = []

    def train():  # the Trainer is created inside with_probe, which is when it picks up the probe
        trainers.append(Trainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                data_collator=DataCollatorWithPadding(tokenizer)))
        trainers[0].train()

    record = with_probe(step, train)
    record["losses"] = [h["loss"] for h in trainers[0].state.log_history if "loss" in h]
    return record


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def predict(step):
    """predict.py's main(); texts/s is the figure it logs ("N predictions in S s (R texts/s, ...)"): encoding,
    batching, the forward passes and the softmax, without model loading and file reading. A short untimed run with
    the same flags goes first, so CUDA's and cuBLAS' set-up is not charged to whichever precision runs first."""
    import predict as predict_script
    from transformers import AutoConfig, AutoTokenizer

    o = step["options"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with open(o["input"], encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    warmup = Path(o["output"]).with_suffix(".warmup")
    warmup.with_suffix(".txt").write_text("\n".join(lines[:o["warmup_texts"]]) + "\n", encoding="utf-8")
    swap = {o["input"]: str(warmup.with_suffix(".txt")), o["output"]: str(warmup.with_suffix(".jsonl"))}
    predict_script.main([swap.get(a, a) for a in step["args"]])
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    logger = logging.getLogger("predict")
    logger.setLevel(logging.INFO)  # the log line is the measurement, whatever an earlier step configured
    capture = LogCapture()
    logger.addHandler(capture)
    reset_peak_memory(device)
    try:
        results = predict_script.main(step["args"])
    finally:
        logger.removeHandler(capture)
    memory = peak_memory(device)
    found = [re.match(r"(\d+) predictions in ([\d.]+) s \(([\d.]+) texts/s, (.*)\)", m) for m in capture.messages]
    found = [m for m in found if m]
    if not found:
        raise RuntimeError(f"predict.py logged no 'N predictions in S s (R texts/s, ...)' line: {capture.messages}")
    n, seconds, rate, backend = found[-1].groups()

    # the tokens the model saw, encoded as predict.py encodes a classification model's texts (head truncation)
    config = AutoConfig.from_pretrained(o["model"])
    max_len = int((getattr(config, "text_classification", None) or {}).get("max_seq_length") or 512)
    tokenizer = AutoTokenizer.from_pretrained(o["model"])
    texts = [line.split("\t")[0] for line in lines]
    lengths = [min(len(ids), max_len - 2) + 2 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    n, rate = int(n), float(rate)  # the time from the rate: the logged seconds are rounded to 0.01
    return {"texts": n, "seconds": n / rate if rate > 0 else float(seconds), "texts_per_second": rate,
            "backend": backend,
            "outputs": len(results), "peak_memory": memory, "device": str(device), "max_seq_length": max_len,
            "tokens": sum(lengths), "tokens_squared": sum(x * x for x in lengths), "sequences": len(lengths)}


class StepTimeout(Exception):
    pass


def step_timed_out(signum, frame):
    raise StepTimeout("the step ran past its timeout (--step_timeout); the next step still runs")


KINDS = {"build": build, "script": script, "plain_trainer": plain_trainer, "predict": predict}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", help="The plan file gpu_check.py wrote: a JSON list of steps.")
    plan = json.loads(Path(parser.parse_args(argv).plan).read_text(encoding="utf-8"))
    for name in {step["script"][:-len(".py")] for step in plan if step["kind"] == "script"}:
        importlib.import_module(name)
    # The imports leave millions of long-lived objects; freezing them keeps every gc.collect() (accelerate runs one
    # per Trainer) from walking them again: seconds per step on a small CPU.
    gc.freeze()
    signal.signal(signal.SIGALRM, step_timed_out)
    for step in plan:
        print(f"\n=== gpu_check step {step['name']} ({step['kind']}) ===", flush=True)
        start = time.perf_counter()
        signal.alarm(max(1, int(step["timeout"])))
        try:
            result = {"ok": True, **KINDS[step["kind"]](step)}
        except BaseException as e:  # noqa: B036  SystemExit from argument parsing too; Ctrl-C still stops the run
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc()
            result = {"ok": False, "error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc().splitlines()[-25:]}
        finally:
            signal.alarm(0)
        result["seconds"] = time.perf_counter() - start
        Path(step["result"]).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        if torch.cuda.is_available():  # the next step in this process measures its own peak from a clean device
            gc.collect()
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
