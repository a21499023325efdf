"""--bf16 on a CPU: kept where the CPU has fast bf16 matrix products, dropped (with a warning) where it has not."""

import logging

import pytest

import helpers  # noqa: F401  (repo root on sys.path)
import training
from training import RecipeTrainingArguments


@pytest.mark.parametrize("fast, expected", [(True, True), (False, False)])
def test_bf16_follows_what_the_cpu_can_do(fast, expected, monkeypatch, tmp_path, caplog):
    if training.torch.cuda.is_available():
        pytest.skip("on a GPU machine --bf16 goes to the GPU")
    monkeypatch.setattr(training, "cpu_bf16_is_fast", lambda: fast)
    with caplog.at_level(logging.WARNING):
        args = RecipeTrainingArguments(output_dir=str(tmp_path), bf16=True)
    assert args.bf16 is expected
    assert ("--bf16 ignored" in caplog.text) is not expected


def test_cpu_bf16_check_answers(monkeypatch):
    monkeypatch.delenv("RECIPES_CPU_BF16", raising=False)
    assert training.cpu_bf16_is_fast() in (True, False)
    monkeypatch.setenv("RECIPES_CPU_BF16", "1")
    assert training.cpu_bf16_is_fast() is True
