"""The few pieces every run_*.py script shares: argument files, logging, output-directory safety, CPU-only defaults,
and the fine-tuning optimizer groups (head learning rate, layer-wise decay, no decay on bias/LayerNorm, freezing).

Each script reads top to bottom on its own; this module only holds what two or more of them would otherwise repeat.
"""

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import datasets
import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint


class DataError(ValueError):
    """Bad input data; the message names the file, the line and the fix."""


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RecipeTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults these recipes recommend (everything else as in transformers)."""

    warmup_steps: float = field(
        default=0.1,
        metadata={"help": "Linear warmup: a fraction of all steps if < 1 (default 0.1 = 10%), else a step count. "
                  "The learning rate then decays linearly to 0."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint: no, steps or epoch."})
    save_total_limit: Optional[int] = field(default=2, metadata={"help": "Keep at most N checkpoints (best kept)."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds results."}
    )

    def __post_init__(self):
        # transformers turns do_eval on whenever eval_strategy != "no" (our default "epoch"); remember what the user
        # asked so that --do_eval without validation data is still an error.
        self.eval_requested = self.do_eval
        mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        if not torch.cuda.is_available() and not mps:
            # A CPU-only machine: say so, or transformers runs torchrun/accelerate processes each on its own
            # (world size 1) instead of as one DDP job (gloo), and refuses --bf16 (CPU autocast, ~1.5x faster here).
            self.use_cpu = True
            self.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per dataloader
        super().__post_init__()


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
        logger.warning("--fp16 on a CPU is about 100x slower than fp32; use --bf16 on CPU.")


def checkpoint_to_resume(training_args):
    """Never overwrite results unless asked; `--resume_from_checkpoint last` -> the newest checkpoint-* folder."""
    resume = training_args.resume_from_checkpoint
    if training_args.do_train and os.path.isdir(training_args.output_dir):
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
        if resume in ("last", "true", "True"):
            if last_checkpoint is None:
                raise ValueError(f"--resume_from_checkpoint {resume}: no checkpoint-* folder in "
                                 f"{training_args.output_dir}.")
            return last_checkpoint
        if resume is None and os.listdir(training_args.output_dir) and not training_args.overwrite_output_dir:
            raise ValueError(
                f"Output directory {training_args.output_dir} already holds results"
                + (f" and checkpoint {last_checkpoint}" if last_checkpoint else "")
                + ". Pass --resume_from_checkpoint last to continue, --overwrite_output_dir to replace them, or "
                  "choose another --output_dir.")
    elif resume in ("last", "true", "True"):
        raise ValueError(f"--resume_from_checkpoint {resume}: {training_args.output_dir} does not exist.")
    return resume


def run_main(main):
    """`python run_x.py`: bad input is the user's to fix, so it ends in one clear line, no traceback."""
    try:
        main()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def plot_training_curves(log_history, path, metrics=("eval_accuracy", "eval_macro_f1")):
    """training_curves.png: loss (train and eval) and the eval metrics per epoch, from trainer.state.log_history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
