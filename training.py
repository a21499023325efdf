"""How the scripts train: the recipe's TrainingArguments and Trainer, training batches, the fine-tuning optimizer
groups (head learning rate, layer-wise decay, no decay on bias/LayerNorm), freezing, and the pieces of set-up every
main() shares (Hub keyword arguments, evaluation and early stopping, the end of training).
"""

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Sampler, SequentialSampler
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import IntervalStrategy

from plotting import plot_training_curves

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------


def cpu_bf16_is_fast():
    """Whether bf16 matrix products beat fp32 on this CPU. With AVX512-BF16 or AMX they run ~2x faster; without them
    (e.g. AVX2-only CPUs) PyTorch falls back to code 10-100x slower than fp32. Measured, not guessed from CPU flags:
    best of 3 products of two 256 x 256 matrices in each dtype (a few milliseconds where bf16 is fast).
    RECIPES_CPU_BF16=1 in the environment skips the measurement and keeps bf16 (to exercise the bf16 code paths on
    any CPU, as tests and bench/gpu_check.py --smoke do)."""
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


# ----------------------------------------------------------------------------------------------------------------
# Set-up every main() shares
# ----------------------------------------------------------------------------------------------------------------


def from_pretrained_kwargs(model_args):
    """The keyword arguments of every from_pretrained call: cache, revision, token, remote code."""
    return {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token,
            "trust_remote_code": model_args.trust_remote_code}


def evaluation_callbacks(training_args, has_validation, early_stopping_patience=None, default_metric="loss"):
    """Evaluation during training: switched off without validation data; with --early_stopping_patience, the early
    stopping callback, and the best checkpoint (by --metric_for_best_model, default `default_metric`) reloaded at the
    end. Returns the Trainer callbacks."""
    if not has_validation and training_args.eval_strategy != "no":
        training_args.eval_strategy = IntervalStrategy.NO
    if early_stopping_patience is None:
        return []
    if not has_validation:
        raise ValueError("--early_stopping_patience needs --validation_file.")
    if training_args.save_strategy != training_args.eval_strategy:
        raise ValueError("--early_stopping_patience reloads the best checkpoint at the end: --save_strategy must "
                         f"equal --eval_strategy (got {training_args.save_strategy} and "
                         f"{training_args.eval_strategy}).")
    training_args.load_best_model_at_end = True
    training_args.metric_for_best_model = training_args.metric_for_best_model or default_metric
    training_args.greater_is_better = not training_args.metric_for_best_model.endswith("loss")
    return [EarlyStoppingCallback(early_stopping_patience=early_stopping_patience)]


def save_training(trainer, train_result, curves=("eval_accuracy", "eval_macro_f1"), **metrics):
    """After trainer.train() and save_model(): train_results.json (the Trainer's metrics and `metrics`), the trainer
    state, and training_curves.png with the eval metrics `curves` (none: no plot)."""
    metrics = dict(train_result.metrics, **metrics)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    path = os.path.join(trainer.args.output_dir, "training_curves.png")
    if curves and trainer.is_world_process_zero() and plot_training_curves(trainer.state.log_history, path, curves):
        logger.info(f"Training curves: {path}")
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning strategies: freezing, per-group learning rates
# ----------------------------------------------------------------------------------------------------------------


def freeze_parameters(model, freeze="none", freeze_layers=None):
    """--freeze / --freeze_layers: turn off gradients for (parts of) the BERT body, and log what is left to train.
    Returns the number of frozen parameters."""
    if freeze == "none" and not freeze_layers:
        return 0
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
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"Frozen (--freeze {freeze}, --freeze_layers {freeze_layers}): {frozen:,} parameters; trainable "
                f"{n_params - frozen:,} of {n_params:,} ({(n_params - frozen) / n_params:.1%})")
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
