"""Output directories and checkpoints: results are never overwritten unless asked, and `--resume_from_checkpoint last`
resumes from the newest complete checkpoint (one a killed run left half-written is set aside)."""

import json
import logging
import os
import struct

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from script_utils import DataError


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