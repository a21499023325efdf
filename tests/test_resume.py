"""Reliability: a training run killed with SIGKILL mid-epoch resumes from its last complete checkpoint and ends with
the metrics of an uninterrupted run (same seed); a checkpoint folder left half-written (no trainer_state.json, a
truncated weights file, no optimizer state) is never what `--resume_from_checkpoint last` picks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

from helpers import REPO_ROOT  # noqa: E402

import run_classification as rc  # noqa: E402
from checkpoints import checkpoint_problem, last_complete_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

STEPS_PER_EPOCH = 60  # 240 rows / batch 4
EPOCHS = 2
SAVE_STEPS = 7  # never an epoch boundary before the end: the kill lands mid-epoch


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def training_args(model_dir, data, out):
    return [str(a) for a in h.tiny_train_args(
        model_dir, out, "--train_file", data / "train.tsv", "--validation_file", data / "dev.tsv", "--do_train",
        "--do_eval", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", SAVE_STEPS,
        "--logging_steps", 10, epochs=EPOCHS, batch_size=4, learning_rate="3e-3", save="steps")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_data")
    rows = h.keyword_rows(300, n_classes=3, seed=13, min_len=3, max_len=25)
    h.write_tsv(d / "train.tsv", rows[:240])
    h.write_tsv(d / "dev.tsv", rows[240:])
    return d


def wait_for_complete_checkpoint(proc, out, timeout=300):
    """Poll until the run has a complete checkpoint; None if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return None
        if out.is_dir():
            found = last_complete_checkpoint(str(out))
            if found:
                return found
        time.sleep(0.02)
    raise TimeoutError("no checkpoint within the timeout")


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(model_dir, data, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "cache"),
               TOKENIZERS_PARALLELISM="false")
    args = training_args(model_dir, data, out)
    proc = subprocess.Popen([sys.executable, "run_classification.py", *args], cwd=str(REPO_ROOT), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        caught = wait_for_complete_checkpoint(proc, out)
        proc.send_signal(signal.SIGKILL)  # no cleanup, no final save: like a lost machine or the OOM killer
    finally:
        proc.kill()
        proc.wait()
    assert caught is not None, "the run finished before a checkpoint could be caught: make it longer"
    assert proc.returncode == -signal.SIGKILL
    checkpoint = last_complete_checkpoint(str(out))  # the run may have saved (and rotated) once more meanwhile
    assert not (out / "train_results.json").exists() and not (out / "model.safetensors").exists()
    state = load_json(Path(checkpoint) / "trainer_state.json")
    assert 0 < state["global_step"] < EPOCHS * STEPS_PER_EPOCH and state["global_step"] % STEPS_PER_EPOCH != 0

    # What a kill during a save leaves behind, newer than every complete checkpoint: never trusted.
    last_step = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    half = out / f"checkpoint-{last_step + 1000}"  # weights written, trainer_state.json not yet
    shutil.copytree(checkpoint, half)
    (half / "trainer_state.json").unlink()
    truncated = out / f"checkpoint-{last_step + 2000}"  # a weights file cut short
    shutil.copytree(checkpoint, truncated)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    resume_point = last_complete_checkpoint(str(out))
    assert resume_point == checkpoint
    resumed_step = load_json(Path(resume_point) / "trainer_state.json")["global_step"]

    steps, resumed_from = [], []
    original_step, original_train = transformers.Trainer.training_step, transformers.Trainer.train

    def counting_step(self, *a, **k):
        steps.append(1)
        return original_step(self, *a, **k)

    def recording_train(self, resume_from_checkpoint=None, **k):
        resumed_from.append(resume_from_checkpoint)
        return original_train(self, resume_from_checkpoint=resume_from_checkpoint, **k)

    monkeypatch.setattr(transformers.Trainer, "training_step", counting_step)
    monkeypatch.setattr(transformers.Trainer, "train", recording_train)
    resumed = rc.main(args + ["--resume_from_checkpoint", "last"])
    assert resumed_from == [resume_point]
    # the leftovers were moved aside before training: the Trainer's checkpoint rotation kept the new, good ones
    assert (out / f"incomplete-{half.name}").is_dir() and (out / f"incomplete-{truncated.name}").is_dir()
    assert last_complete_checkpoint(str(out)) == str(out / f"checkpoint-{EPOCHS * STEPS_PER_EPOCH}")  # the final save
    assert len(steps) == EPOCHS * STEPS_PER_EPOCH - resumed_step  # only what was left
    assert resumed.state.global_step == EPOCHS * STEPS_PER_EPOCH
    monkeypatch.undo()

    reference = rc.main(training_args(model_dir, data, tmp_path / "uninterrupted"))
    assert reference.state.global_step == EPOCHS * STEPS_PER_EPOCH
    got = load_json(out / "eval_results.json")
    expected = load_json(tmp_path / "uninterrupted" / "eval_results.json")
    for key in ("eval_loss", "eval_accuracy", "eval_macro_f1", "eval_weighted_f1"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
    assert expected["eval_accuracy"] > 0.5  # it learned something: the comparison is not between two random models


# ------------------------------------------------------------------------------------------------------------------
# What counts as a complete checkpoint
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(model_dir, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_checkpoint") / "out"
    rc.main([str(a) for a in h.tiny_train_args(
        model_dir, out, "--train_file", data / "train.tsv", "--do_train", "--max_steps", 2, "--save_strategy",
        "steps", "--save_steps", 2, batch_size=4, save="steps")])
    return out / "checkpoint-2"


def broken_copy(checkpoint, tmp_path, how):
    path = tmp_path / "out" / "checkpoint-50"
    shutil.copytree(checkpoint, path)
    if how == "no_state":
        (path / "trainer_state.json").unlink()
    elif how == "truncated_state":
        text = (path / "trainer_state.json").read_text()
        (path / "trainer_state.json").write_text(text[:len(text) // 2])
    elif how == "truncated_weights":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[:-100])
    elif how == "no_weights":
        (path / "model.safetensors").unlink()
    elif how == "no_optimizer":
        (path / "optimizer.pt").unlink()
    return path


@pytest.mark.parametrize("how, problem", [
    ("no_state", "no trainer_state.json"),
    ("truncated_state", "unreadable trainer_state.json"),
    ("truncated_weights", "truncated model.safetensors"),
    ("no_weights", "no model weights"),
    ("no_optimizer", "no optimizer.pt"),
])
def test_incomplete_checkpoints_are_recognised(checkpoint, tmp_path, how, problem):
    assert checkpoint_problem(str(checkpoint)) is None
    path = broken_copy(checkpoint, tmp_path, how)
    assert problem in checkpoint_problem(str(path))
    if how == "no_optimizer":  # --save_only_model checkpoints have no optimizer by design
        assert checkpoint_problem(str(path), require_optimizer=False) is None
    shutil.copytree(checkpoint, tmp_path / "out" / "checkpoint-2")
    assert last_complete_checkpoint(str(tmp_path / "out")) == str(tmp_path / "out" / "checkpoint-2")


def test_resume_refuses_an_incomplete_checkpoint(checkpoint, model_dir, data, tmp_path):
    path = broken_copy(checkpoint, tmp_path, "truncated_weights")
    args = [str(a) for a in h.tiny_train_args(model_dir, tmp_path / "out", "--train_file", data / "train.tsv",
                                              "--do_train", "--max_steps", 4)]
    with pytest.raises(ValueError, match=r"checkpoint-50: incomplete checkpoint \(truncated model.safetensors\)"):
        rc.main(args + ["--resume_from_checkpoint", str(path)])
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint last: no complete checkpoint-\* folder"):
        rc.main(args + ["--resume_from_checkpoint", "last"])
