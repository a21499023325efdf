"""Shared pytest fixtures: every test module runs offline, in its own datasets cache, on one torch thread."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import datasets  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _isolated_fast_environment(tmp_path_factory):
    """Datasets cache in a tmp dir (not ~/.cache), no progress bars, one torch thread.

    One thread: for a 32-wide model the OpenMP threads only wait on each other, and on a shared 2-core machine
    two threads made a training step ~50x slower.
    """
    mp = pytest.MonkeyPatch()
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets_cache")))
    mp.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()
    torch.set_num_threads(threads)
    mp.undo()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny BERT dir (32 wide, 2 layers): config + tokenizer, for --config_name/--tokenizer_name (from scratch)."""
    return h.build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
