"""The few pieces every run_*.py script shares: argument files, logging, output-directory safety, CPU-only defaults,
and the fine-tuning optimizer groups (head learning rate, layer-wise decay, no decay on bias/LayerNorm, freezing).

Each script reads top to bottom on its own; this module only holds what two or more of them would otherwise repeat.
"""

import codecs
import contextlib
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import torch
import transformers
from torch.utils.data import Sampler, SequentialSampler
from transformers import HfArgumentParser, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import get_last_checkpoint


class DataError(ValueError):
    """Bad input (data files or arguments); the message names the file and line (or the flag) and the fix. The scripts
    print it as one line, before any training starts (see run_main)."""


def decoded_lines(path, stream=None):
    """Yield (line_number, text) with line endings removed. Decoding line by line finds the exact bad line.

    stream: a binary stream to read instead of the file (e.g. sys.stdin.buffer); `path` then only names it in errors.
    """
    if stream is None and not os.path.isfile(path):
        raise DataError(f"{path}: file not found.")
    with open(path, "rb") if stream is None else contextlib.nullcontext(stream) as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                encoding = guess_encoding(path if stream is None else raw)
                fix = (f"iconv -f {encoding} -t UTF-8 {path} > utf8_{os.path.basename(path)}" if stream is None
                       else f"pipe it through iconv -f {encoding} -t UTF-8")
                raise DataError(f"{path}:{line_no}: not UTF-8 (looks like {encoding}); convert it first, e.g. {fix}")
            if line_no == 1:
                text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark from Windows editors
            yield line_no, text.rstrip("\r\n")


def guess_encoding(path_or_bytes):
    """The likely encoding of a file (its first MiB) or of some bytes that are not UTF-8."""
    if isinstance(path_or_bytes, bytes):
        raw = path_or_bytes
    else:
        with open(path_or_bytes, "rb") as f:
            raw = f.read(1 << 20)
    for encoding in ("gb18030", "big5", "utf-16"):
        try:
            # incremental: the 1 MiB cut may split a multi-byte character
            codecs.getincrementaldecoder(encoding)().decode(raw, final=False)
            return encoding.upper()
        except UnicodeDecodeError:
            continue
    return "an unknown encoding"


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


def cpu_bf16_is_fast():
    """Whether bf16 matrix products beat fp32 on this CPU. With AVX512-BF16 or AMX they run ~2x faster; without them
    (e.g. AVX2-only CPUs) PyTorch falls back to code 10-100x slower than fp32. Measured, not guessed from CPU flags:
    best of 3 products of two 256 x 256 matrices in each dtype (a few milliseconds where bf16 is fast).
    RECIPES_CPU_BF16=1 in the environment skips the measurement and keeps bf16 (to exercise the bf16 code paths on
    any CPU, as tests and bench/gpu_check.py --smoke do)."""
    import time

    if os.environ.get("RECIPES_CPU_BF16") == "1":
        return True

    def best_time(dtype):
        a = torch.ones(256, 256, dtype=dtype)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            torch.matmul(a, a)
            times.append(time.perf_counter() - start)
        return min(times)

    return best_time(torch.bfloat16) < 1.5 * best_time(torch.float32)


@dataclass
class RecipeTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults these recipes recommend (everything else as in transformers)."""

    warmup_steps: float = field(
        default=0.1,
        metadata={"help": "Linear warmup: a fraction of all steps if < 1 (default 0.1 = 10%%), else a step count. "
                  "The learning rate then decays linearly to 0."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint: no, steps or epoch."})
    save_total_limit: Optional[int] = field(default=2, metadata={"help": "Keep at most N checkpoints (best kept)."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds results."}
    )
    train_sampling_strategy: str = field(
        default="length_pools",
        metadata={"help": "How training batches are drawn. length_pools (default): random batches with little "
                  "padding: a pool of --length_pool_batches batches of random examples is sorted by length and cut "
                  "into batches, and all batches of the epoch are shuffled. random: plain random batches. "
                  "group_by_length: transformers' grouping (pools of 50 batches, each swept from long to short): "
                  "least padding, but where length predicts the label a run of similar batches can make the model "
                  "predict one class (bench/batching.py). sequential: file order.",
                  "choices": ["length_pools", "random", "group_by_length", "sequential"]},
    )
    length_pool_batches: int = field(
        default=4,
        metadata={"help": "length_pools: batches per pool. 1 is plain random batches; larger means less padding and "
                  "batches that are less random (bench/batching.py)."},
    )
    dataset_name: Optional[str] = field(
        default=None,
        metadata={"help": "The dataset's name for the model card (README.md in the output dir) and its Hub metadata, "
                  "e.g. thucnews. Default: from the data file names (the folder of train.txt/dev.txt, or the file "
                  "name)."},
    )

    def __post_init__(self):
        # transformers turns do_eval on whenever eval_strategy != "no" (our default "epoch"); remember what the user
        # asked so that --do_eval without validation data is still an error.
        self.eval_requested = self.do_eval
        self._mixed_precision_from_accelerate()
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        if not torch.cuda.is_available() and not mps:
            # A CPU-only machine: say so, or transformers runs torchrun/accelerate processes each on its own
            # (world size 1) instead of as one DDP job (gloo), and refuses --bf16 (CPU autocast, ~1.5x faster here).
            self.use_cpu = True
            self.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per dataloader
            if self.bf16 and not cpu_bf16_is_fast():
                logging.getLogger(__name__).warning(
                    "--bf16 ignored, training in fp32: this CPU has no bf16 matrix instructions (AVX512-BF16/AMX), so "
                    "bf16 autocast runs 10-100x slower than fp32 here. On CPUs that have them it is ~1.5x faster.")
                self.bf16 = False
        super().__post_init__()

    def _mixed_precision_from_accelerate(self):
        """Mixed precision is set in one place: `accelerate launch` with a config's mixed_precision (it exports
        ACCELERATE_MIXED_PRECISION), or --fp16/--bf16. The config's choice turns the matching flag on (so logs, saved
        arguments and the fp16-only code paths agree); a flag that contradicts it is an error, not a silent override."""
        from_accelerate = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
        if from_accelerate not in ("fp16", "bf16"):
            return
        flags = [name for name in ("fp16", "bf16") if getattr(self, name)]
        if flags and flags != [from_accelerate]:
            raise ValueError(f"accelerate's config says mixed_precision {from_accelerate}, the script's arguments say "
                             f"--{' --'.join(flags)}: set mixed precision in one place (drop the flag, or set "
                             f"mixed_precision in the accelerate config to the same value or 'no').")
        setattr(self, from_accelerate, True)


@dataclass
class FineTuningTrainingArguments(RecipeTrainingArguments):
    """Adds the fine-tuning learning-rate options: a larger rate for the task head, layer-wise decay."""

    head_learning_rate: Optional[float] = field(
        default=None,
        metadata={"help": "Learning rate for everything outside the BERT body (classifier, CNN/LSTM/CRF/attention "
                  "head), e.g. 1e-4 with --learning_rate 2e-5 for the body. Default: --learning_rate."},
    )
    layerwise_lr_decay: Optional[float] = field(
        default=None,
        metadata={"help": "E.g. 0.9: the top encoder layer (and pooler) gets --learning_rate, each layer below 0.9x "
                  "the one above, the embeddings 0.9^num_layers x."},
    )


def parse_args(dataclass_types, args=None):
    """Command-line flags, or one .json/.yaml file holding them: `python run_x.py args.yaml`."""
    parser = HfArgumentParser(dataclass_types)
    args = sys.argv[1:] if args is None else list(args)
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(args[0]))
    if len(args) == 1 and args[0].endswith((".yaml", ".yml")):
        import yaml

        with open(args[0], encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        # PyYAML reads `1e-3` (no dot) as a string: turn such values into numbers for float fields.
        float_fields = {f.name for dc in parser.dataclass_types for f in dataclasses.fields(dc) if "float" in str(f.type)}
        values = {k: float(v) if k in float_fields and isinstance(v, str) else v for k, v in values.items()}
        return parser.parse_dict(values)
    return parser.parse_args_into_dataclasses(args=args)


def setup_logging(logger, training_args):
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)], force=True)
    # The script's own messages at INFO on the main process; transformers/datasets at --log_level (default warning).
    log_level = training_args.get_process_log_level()
    logger.setLevel(logging.INFO if training_args.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"Process rank {training_args.process_index}, device {training_args.device}, world size "
                f"{training_args.world_size}, bf16 {training_args.bf16}, fp16 {training_args.fp16}")
    if training_args.fp16 and not torch.cuda.is_available():
        logger.warning("--fp16 on a CPU is about 100x slower than fp32; on a CPU use fp32, or --bf16 where it is fast.")


def data_files(data_args, training_args):
    """The files this run reads ({split: path} for train/validation/test, as --do_* ask) and the --max_*_samples
    limits per split; a --do_* without its file is an error before anything heavy happens."""
    if training_args.eval_requested and not data_args.validation_file:
        raise DataError("--do_eval needs --validation_file.")
    files = {"train": data_args.train_file if training_args.do_train else None,
             "validation": data_args.validation_file if training_args.do_eval else None,
             "test": data_args.test_file if training_args.do_predict else None}
    for split, flag in (("train", "--do_train"), ("test", "--do_predict")):
        if files[split] is None and (training_args.do_train if split == "train" else training_args.do_predict):
            raise DataError(f"{flag} needs --{split}_file.")
    files = {k: v for k, v in files.items() if v}
    if not files:
        raise DataError("Nothing to do: pass --do_train/--do_eval/--do_predict with the matching data files.")
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_predict_samples}
    return files, limits


def check_max_seq_length(value, model_source, minimum, hub_kwargs=None, allow_auto=False):
    """--max_seq_length, checked when the arguments are read (before any data is read or a model loaded): a whole
    number (or 'auto' where the script takes it) from `minimum` (room for the special tokens and some text) to the
    model's max_position_embeddings (from its config). Returns the number ('auto', or None when not given)."""
    if value is None or (allow_auto and str(value) == "auto"):
        return value
    try:
        length = int(value)
    except (TypeError, ValueError):
        raise DataError(f"--max_seq_length {value}: not a whole number; pass e.g. 128"
                        + (" or auto (from the training lengths)." if allow_auto else "."))
    if length < minimum:
        raise DataError(f"--max_seq_length {length} leaves no room for text: [CLS], [SEP] and some text need at "
                        f"least {minimum} tokens; pass e.g. 128.")
    limit = None
    if model_source:
        try:
            from transformers import AutoConfig

            limit = getattr(AutoConfig.from_pretrained(model_source, **(hub_kwargs or {})), "max_position_embeddings",
                            None)
        except (OSError, ValueError):
            limit = None  # the model itself is checked (and its error reported) when the script loads it
    if limit and length > limit:
        raise DataError(f"--max_seq_length {length} exceeds the model's {limit} positions (max_position_embeddings "
                        f"of {model_source}); pass at most {limit}.")
    return length


def checkpoint_to_resume(training_args):
    """Never overwrite results unless asked; `--resume_from_checkpoint last` -> the newest COMPLETE checkpoint-* folder
    (a run killed while writing a checkpoint leaves an incomplete folder behind: skipped, with a warning)."""
    resume = training_args.resume_from_checkpoint
    evaluating_only = not training_args.do_train and not training_args.overwrite_output_dir
    if evaluating_only and os.path.isdir(training_args.output_dir):
        # Evaluating or predicting only: the results, reports and data summary it writes would replace the ones there
        # (and the model card there would no longer match them).
        held = sorted(os.listdir(training_args.output_dir))
        if held:
            raise DataError(
                f"Output directory {training_args.output_dir} already holds results ({', '.join(held[:4])}"
                + (", ..." if len(held) > 4 else "") + "); evaluating or predicting into it would overwrite them. "
                "Choose another --output_dir, or pass --overwrite_output_dir to replace them.")
    if training_args.do_train and os.path.isdir(training_args.output_dir):
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
        if resume in ("last", "true", "True"):
            complete = last_complete_checkpoint(training_args.output_dir,
                                                require_optimizer=not training_args.save_only_model,
                                                set_aside=training_args.should_save)  # one process renames
            if complete is None:
                raise ValueError(f"--resume_from_checkpoint {resume}: no "
                                 + ("complete " if last_checkpoint else "")
                                 + f"checkpoint-* folder in {training_args.output_dir}.")
            return complete
        if resume is None and os.listdir(training_args.output_dir) and not training_args.overwrite_output_dir:
            raise DataError(
                f"Output directory {training_args.output_dir} already holds results"
                + (f" and checkpoint {last_checkpoint}" if last_checkpoint else "")
                + ". Pass --resume_from_checkpoint last to continue, --overwrite_output_dir to replace them, or "
                  "choose another --output_dir.")
    elif resume in ("last", "true", "True"):
        raise ValueError(f"--resume_from_checkpoint {resume}: {training_args.output_dir} does not exist.")
    if resume is not None and training_args.do_train and os.path.isdir(resume):
        problem = checkpoint_problem(resume, require_optimizer=not training_args.save_only_model)
        if problem:
            raise ValueError(f"--resume_from_checkpoint {resume}: incomplete checkpoint ({problem}); the run that "
                             f"wrote it was probably killed while saving. Resume from an earlier one "
                             f"(--resume_from_checkpoint last picks the newest complete one).")
    return resume


# What Trainer._save_checkpoint writes, in this order: the model (weights, config, tokenizer), optimizer.pt,
# scheduler.pt, rng_state*.pth, and trainer_state.json LAST. A complete trainer_state.json is the commit marker.
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors")


def checkpoint_problem(path, require_optimizer=True):
    """Why the checkpoint folder `path` cannot be resumed from, or None when it is complete.

    Complete = trainer_state.json parses (it is written last), the weights are there and every safetensors file is as
    long as its header says (a truncated copy is caught), and optimizer/scheduler states exist unless the run saved
    the model only (require_optimizer False: --save_only_model). FSDP (pytorch_model_fsdp_*) and DeepSpeed
    (global_step*) checkpoints count their own folders as weights.
    """
    import json

    state_path = os.path.join(path, "trainer_state.json")
    if not os.path.isfile(state_path):
        return "no trainer_state.json"
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        int(state["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable trainer_state.json ({type(e).__name__})"
    try:
        files = set(os.listdir(path))
    except OSError as e:  # moved aside or deleted meanwhile (another process of the same run)
        return f"unreadable folder ({type(e).__name__})"
    sharded = [f for f in files if f.startswith(("pytorch_model_fsdp", "global_step"))]
    if not files & set(_WEIGHTS) and not sharded:
        return "no model weights"
    for name in sorted(files):
        if name.endswith(".safetensors") and not _safetensors_intact(os.path.join(path, name)):
            return f"truncated {name}"
    name_index = next((n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json") if n in files),
                      None)
    if name_index:
        try:
            with open(os.path.join(path, name_index), encoding="utf-8") as f:
                shards = set(json.load(f)["weight_map"].values())
        except (ValueError, KeyError) as e:
            return f"unreadable {name_index} ({type(e).__name__})"
        if shards - files:
            return f"missing weight shards {sorted(shards - files)[:3]}"
    if require_optimizer and not sharded and not any(f.startswith("optimizer") for f in files):
        return "no optimizer.pt (saved with --save_only_model? then resume with --save_only_model too)"
    return None


def _safetensors_intact(path):
    """The file holds all the bytes its header promises (8-byte header length, JSON header, then the tensors)."""
    import json
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                return False
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, struct.error):
        return False
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return size >= 8 + header_len + end


def last_complete_checkpoint(output_dir, require_optimizer=True, set_aside=False):
    """The newest checkpoint-N folder of `output_dir` that is complete (see checkpoint_problem), or None; incomplete
    ones are named in a warning. set_aside=True (the main process, before resuming) also renames every incomplete
    one to incomplete-checkpoint-N: the Trainer then neither resumes from it nor counts it when it rotates
    checkpoints (a leftover with a higher step number would otherwise make it delete the new, good ones)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    steps = []
    for name in os.listdir(output_dir):
        step = name[len(PREFIX_CHECKPOINT_DIR) + 1:]
        if name.startswith(PREFIX_CHECKPOINT_DIR + "-") and step.isdigit() and os.path.isdir(
                os.path.join(output_dir, name)):
            steps.append((int(step), name))
    chosen = None
    for _, name in sorted(steps, reverse=True):
        path = os.path.join(output_dir, name)
        problem = checkpoint_problem(path, require_optimizer)
        if problem is None:
            chosen = chosen or path
            if not set_aside:
                break
            continue
        message = f"Not resuming from {path}: incomplete checkpoint ({problem})"
        if set_aside:
            target = os.path.join(output_dir, f"incomplete-{name}")
            suffix = 1
            while os.path.exists(target):
                target = os.path.join(output_dir, f"incomplete-{name}.{suffix}")
                suffix += 1
            try:
                os.rename(path, target)
                message += f"; moved to {target}"
            except OSError as e:
                message += f"; could not move it aside ({e})"
        logging.getLogger(__name__).warning(message + ".")
    return chosen


def run_main(main):
    """`python run_x.py`: bad input is the user's to fix, so it ends in one clear line, no traceback."""
    try:
        main()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def plot_training_curves(log_history, path, metrics=("eval_accuracy", "eval_macro_f1")):
    """training_curves.png: loss (train and eval) and the eval metrics per epoch, from trainer.state.log_history."""
    from plotting import pyplot

    plt = pyplot()
    train = [(h["epoch"], h["loss"]) for h in log_history if "loss" in h and "epoch" in h]
    evals = [h for h in log_history if "eval_loss" in h]
    if not train and not evals:
        return False
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot(*zip(*train), label="train loss", alpha=0.8)
    if evals:
        ax_loss.plot([h["epoch"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="eval loss")
        for key in metrics:
            points = [(h["epoch"], h[key]) for h in evals if key in h]
            if points:
                ax_metric.plot(*zip(*points), "o-", label=key)
        ax_metric.legend()
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_metric.set_xlabel("epoch")
    ax_metric.set_title("evaluation")
    ax_loss.set_title("loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------------------------
# Hub-ready output directory: a model card (README.md), and the push at the end of the run
# ----------------------------------------------------------------------------------------------------------------

# task -> (pipeline tag, Auto class, config attribute holding the encoding settings the script saved)
MODEL_CARD_TASKS = {
    "text-classification": ("text-classification", "AutoModelForSequenceClassification", "text_classification"),
    "token-classification": ("token-classification", "AutoModelForTokenClassification", "token_classification"),
    "question-answering": ("question-answering", "AutoModelForQuestionAnswering", "question_answering"),
    "fill-mask": ("fill-mask", "AutoModelForMaskedLM", None),
}
_GENERIC_SPLIT_NAMES = {"train", "training", "dev", "valid", "validation", "val", "test", "eval", "corpus", "data",
                        "predict", "all"}
_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second", "tokens_per_second")


def dataset_name_from_files(paths):
    """A dataset name from data file paths: the folder of generic split files (data/thucnews/train.txt -> thucnews),
    else the training file's name without its split suffix (afqmc_train.jsonl -> afqmc). None without files."""
    import re

    paths = [str(p) for p in (paths or []) if p]
    if not paths:
        return None
    path = os.path.abspath(paths[0])
    stem = os.path.splitext(os.path.basename(path))[0]
    core = re.sub(r"([._-](train|training|dev|valid|validation|val|test|eval))+$", "", stem, flags=re.I)
    if core.lower() in _GENERIC_SPLIT_NAMES or core == stem and stem.lower() in _GENERIC_SPLIT_NAMES or not core:
        return os.path.basename(os.path.dirname(path)) or stem
    return core


def _is_hub_id(name):
    import re

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
    import json

    return json.dumps(text, ensure_ascii=False)


def _read_results(output_dir, split):
    import json

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
    text = example if example is not None else "今天天气很[MASK]。"
    return [
        f"from transformers import pipeline\n\n"
        f"fill = pipeline(\"fill-mask\", model={mid}{remote})\n"
        f"print(fill({_q(text)}))\n"]


def write_model_card(trainer, task, dataset_name=None, data_files=None, example=None, base_model=None,
                     settings=None, extra=None):
    """README.md in the output directory: what a Hub repository shows. Main process only; returns its path.

    task: a key of MODEL_CARD_TASKS. dataset_name: default --dataset_name, else from `data_files` (a dict split ->
    path or a list of paths). example: a text for the usage snippets (classification pairs: {"text", "text_pair"};
    QA: {"question", "context"}; fill-mask: a text with [MASK]). base_model: the checkpoint fine-tuned (None: trained
    from scratch). settings: the task's encoding settings (default: the ones the script saved in config.json).
    extra: more markdown, appended as is. The metrics come from {eval,predict,test}_results.json in the output dir.
    """
    import json

    if not trainer.is_world_process_zero():
        return None
    if task not in MODEL_CARD_TASKS:
        raise ValueError(f"task {task!r}: choose one of {sorted(MODEL_CARD_TASKS)}")
    args, model = trainer.args, trainer.accelerator.unwrap_model(trainer.model)
    config = model.config
    output_dir = args.output_dir
    pipeline_tag, auto_class, settings_key = MODEL_CARD_TASKS[task]
    files = data_files if isinstance(data_files, dict) else {f"file {i + 1}": p for i, p in enumerate(data_files or [])}
    files = {k: v for k, v in files.items() if v}
    if isinstance(next(iter(files.values()), None), (list, tuple)):
        files = {k: ", ".join(map(str, v)) for k, v in files.items()}
    dataset_name = dataset_name or getattr(args, "dataset_name", None) or dataset_name_from_files(
        [files[k] for k in ("train", "validation", "test") if k in files] + list(files.values()))
    if settings is None and settings_key:
        settings = getattr(config, settings_key, None)
    pretraining_args = os.path.join(output_dir, "pretraining_args.json")  # run_mlm.py's masking settings
    if settings is None and task == "fill-mask" and os.path.isfile(pretraining_args):
        with open(pretraining_args, encoding="utf-8") as f:
            saved = json.load(f)
        settings = {**saved.pop("masking", {}), **{k: v for k, v in saved.items() if k != "train_files"}}
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
                  "question-answering": "extractive question answering", "fill-mask": "masked language modelling"}
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
              "question-answering": "run_qa.py", "fill-mask": "run_mlm.py"}[task]
    if task != "fill-mask":
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


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning strategies: freezing, per-group learning rates
# ----------------------------------------------------------------------------------------------------------------


def freeze_parameters(model, freeze, freeze_layers):
    """Turn off gradients for (parts of) the BERT body; returns the number of frozen parameters."""
    body = model.base_model_prefix + "."
    layers = {int(i) for i in freeze_layers.split(",") if i.strip()} if freeze_layers else set()
    n_layers = model.config.num_hidden_layers
    if any(i < 0 or i >= n_layers for i in layers):
        raise ValueError(f"--freeze_layers {freeze_layers}: the model has layers 0..{n_layers - 1}.")
    frozen = 0
    for name, param in model.named_parameters():
        if not name.startswith(body):
            continue
        layer = encoder_layer_index(name)
        if (freeze == "all" or (freeze == "embeddings" and ".embeddings." in name)
                or (layer is not None and layer in layers)):
            param.requires_grad = False
            frozen += param.numel()
    return frozen


def encoder_layer_index(name):
    """`bert.encoder.layer.3.attention...` -> 3; None for embeddings, pooler and head parameters."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i] == "layer" and parts[i + 1].isdigit() and i > 0 and parts[i - 1] == "encoder":
            return int(parts[i + 1])
    return None


def parameter_groups(model, learning_rate, weight_decay, decay_names, head_learning_rate=None,
                     layerwise_lr_decay=None):
    """Optimizer groups: (learning rate, weight decay) per parameter.

    * the BERT body (`model.base_model_prefix`) gets `learning_rate`, or with layer-wise decay
      lr x decay^(num_layers - depth): embeddings depth 0, encoder layer i depth i+1, pooler depth num_layers;
    * everything else (the task head) gets `head_learning_rate` (default `learning_rate`);
    * weight decay only where `decay_names` says (never biases and LayerNorm weights);
    * frozen parameters are left out.
    Returns torch param groups [{"params", "lr", "weight_decay", "names"}].
    """
    body = model.base_model_prefix + "."
    n_layers = model.config.num_hidden_layers
    groups = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(body):
            lr = learning_rate
            if layerwise_lr_decay is not None:
                layer = encoder_layer_index(name)
                depth = 0 if ".embeddings." in name else (layer + 1 if layer is not None else n_layers)
                lr = learning_rate * layerwise_lr_decay ** (n_layers - min(depth, n_layers))
        else:
            lr = head_learning_rate if head_learning_rate is not None else learning_rate
        decay = weight_decay if name in decay_names else 0.0
        group = groups.setdefault((lr, decay), {"params": [], "lr": lr, "weight_decay": decay, "names": []})
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def create_grouped_optimizer(trainer, model, logger):
    """The body of `Trainer.create_optimizer` for FineTuningTrainingArguments: `parameter_groups` + the chosen
    optimizer class (AdamW by default)."""
    groups = parameter_groups(model, trainer.args.learning_rate, trainer.args.weight_decay,
                              set(trainer.get_decay_parameter_names(model)), trainer.args.head_learning_rate,
                              trainer.args.layerwise_lr_decay)
    for group in groups:
        logger.info(f"optimizer group: lr {group['lr']:.3g}, weight decay {group['weight_decay']}, "
                    f"{sum(p.numel() for p in group['params']):,} parameters, e.g. {group['names'][0]}")
    optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    return optimizer_cls([{k: v for k, v in g.items() if k != "names"} for g in groups], **optimizer_kwargs)


def collapse_warning(predicted, gold, name_of=lambda value: f"class {value}"):
    """A warning text when one prediction covers >= 95% of an evaluation set whose gold labels give that value to
    under 90% of it: the model has collapsed to one answer (e.g. one class for every text). None otherwise.
    predicted, gold: one value per example (a class id; for NER whether the sentence has an entity)."""
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    if len(predicted) == 0:
        return None
    values, counts = np.unique(predicted, return_counts=True)
    top = values[np.argmax(counts)]
    predicted_share, gold_share = counts.max() / len(predicted), float(np.mean(gold == top))
    if predicted_share < 0.95 or gold_share >= 0.9:
        return None
    return (f"the model predicts {name_of(top)} for {predicted_share:.1%} of the evaluation set, whose labels "
            f"give it to {gold_share:.1%}: training has collapsed to one answer. Likely causes: a learning rate too "
            "high for this model (--learning_rate: 2e-5..5e-5 for a pretrained BERT, <= 5e-4 from scratch), batches "
            "drawn by length where length predicts the label (--train_sampling_strategy group_by_length: use "
            "length_pools or random), a frozen encoder (--freeze all: raise --head_learning_rate or train longer), "
            "or too few steps (--num_train_epochs, --warmup_steps).")


class LengthPoolSampler(Sampler):
    """Random batches with little padding. Each pool holds `pool_batches` batches' worth of random examples; a pool is
    sorted by length and cut into batches, then all batches of the epoch are shuffled. A batch's texts have similar
    lengths (padding shrinks), yet consecutive batches come from unrelated pools. transformers' LengthGroupedSampler
    sweeps pools of 50 batches from long to short instead: where length predicts the label (news titles), dozens of
    consecutive batches lean towards the same classes, and at a high learning rate the model can collapse to one class.

    The order depends only on `seed` and the epoch (`set_epoch`), so every DDP process draws the same batches."""

    def __init__(self, lengths, batch_size, pool_batches, seed):
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.pool_batches, self.seed, self.epoch = batch_size, pool_batches, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        pool_size = self.batch_size * self.pool_batches
        batches = []
        for pool in order.split(pool_size):
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches.extend(pool.split(self.batch_size))
        # A short last pool gives the only short batch; it goes last so it cannot turn up mid-epoch under DDP, where
        # accelerate splits each global batch between the processes.
        full = [b for b in batches if len(b) == self.batch_size]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator)]
        return iter(torch.cat(shuffled + [b for b in batches if len(b) < self.batch_size]).tolist())


def length_aware_sampler(args, dataset):
    """The training sampler for --train_sampling_strategy length_pools / group_by_length, from the dataset's
    precomputed "length" column; None where transformers' own choice applies (random, sequential, no lengths)."""
    if dataset is None or "length" not in getattr(dataset, "column_names", ()):
        return None
    # The global batch: N processes together train what one process would, and all draw the same order.
    batch_size = args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    if args.train_sampling_strategy == "length_pools":
        return LengthPoolSampler(dataset["length"], batch_size, args.length_pool_batches, args.seed)
    if args.train_sampling_strategy == "group_by_length":
        # transformers drops the "length" column before its own LengthGroupedSampler and re-measures every row
        return LengthGroupedSampler(batch_size, lengths=dataset["length"])
    return None


class RecipeTrainer(Trainer):
    """Trainer with the recipe's training batches (--train_sampling_strategy length_pools by default, from the
    precomputed "length" column) and the loss scaled right under gradient accumulation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.compute_loss_func is None:
            # transformers takes a forward(**kwargs) as "normalises the loss over the accumulated batch itself" and
            # then skips dividing by gradient_accumulation_steps; these models return a plain mean.
            self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset=None):
        return length_aware_sampler(self.args, self.train_dataset) or super()._get_train_sampler(train_dataset)


class FineTuningTrainer(RecipeTrainer):
    """Trainer for the fine-tuning scripts: the recipe's batches, optimizer groups (head learning rate, layer-wise
    decay, no decay on bias/LayerNorm), evaluation in dataset order (predictions map back to rows, chunks and windows
    by position)."""

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = create_grouped_optimizer(self, self.model if model is None else model,
                                                      logging.getLogger(type(self).__module__))
        return self.optimizer

    def _get_eval_sampler(self, eval_dataset):
        # transformers would shuffle evaluation batches by length too; the scripts sort evaluation sets themselves
        # and keep that order so predictions map back by position.
        if self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return None  # distributed: accelerate shards in order and gathers back in order
