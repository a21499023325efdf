"""bench/gpu_check.py: the GPU check cannot rot while no GPU is around.

`--smoke` runs the whole check on the CPU (tiny BERT, fixtures it writes itself, one `accelerate launch --cpu`
process): every step must pass its checks and report finite numbers. The GPU-only logic is tested without a GPU:
the GPU plan's arguments parse with each script's own parser and name configs that exist, the peak-FLOPs table
matches real device names, and the checks accept a CUDA run's results and reject broken ones.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402,F401  (puts the repo root on sys.path and switches the Hub offline)

from helpers import REPO_ROOT  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "bench"))
import gpu_check  # noqa: E402

STEPS = ["build", "thucnews_bf16", "thucnews_fp16", "thucnews_fp32", "plain_trainer", "predict_fp32", "predict_bf16",
         "predict_fp16", "mfu_seq128", "ner_crf", "qa", "cnn_512", "windows_512"]
TRAINING_METRICS = ("train_samples_per_second", "train_tokens_per_second", "train_peak_memory_gib", "mfu",
                    "train_tflops_per_second", "loss_first", "loss_last")


def finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_check")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--work_dir", str(work / "work"),
                             "--output", str(work / "report")], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    return result, work


def test_smoke_run_passes_every_step_with_finite_numbers(smoke):
    result, work = smoke
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    assert report["ok"] and report["finished"] and report["smoke"]
    assert list(report["steps"]) == STEPS
    for name, step in report["steps"].items():
        assert step["ok"], (name, [c for c in step["checks"] if not c["ok"]])
        assert all(c["ok"] for c in step["checks"] if c["hard"]), name

    for key in ("command", "git_commit", "date"):
        assert report[key]
    env = report["environment"]
    assert env["torch"] and env["device_name"] == "cpu" and "cuda_runtime" in env
    assert env["vocab_size"] == env["data_tokens"] + 104 and env["unk_rate"] < 0.01  # 104 special tokens

    steps = report["steps"]
    for name in STEPS[1:]:
        metrics = steps[name]["metrics"]
        wanted = ("texts_per_second", "peak_memory_gib", "mfu") if name.startswith("predict") else \
            TRAINING_METRICS if name != "plain_trainer" else TRAINING_METRICS[:4]
        for key in wanted:
            assert finite_positive(metrics.get(key)), (name, key, metrics.get(key))
    # the precision each run really trained in: bf16 autocast; fp16 on a CPU runs without autocast (accelerate)
    assert steps["thucnews_bf16"]["metrics"]["autocast"] == ["bfloat16"]
    assert steps["thucnews_fp16"]["metrics"]["autocast"] == ["off (fp32)"]
    assert steps["thucnews_fp32"]["metrics"]["autocast"] == ["off (fp32)"]
    assert steps["ner_crf"]["metrics"]["autocast"] == ["bfloat16"]  # the CRF's fp32 inside bf16 autocast ran
    # the THUCNews fixture is learnable in 10 steps: the loss falls and accuracy is above chance (4 classes)
    for precision in ("bf16", "fp16", "fp32"):
        metrics = steps[f"thucnews_{precision}"]["metrics"]
        assert metrics["loss_last"] < metrics["loss_first"] and metrics["eval_accuracy"] > 0.5
    assert steps["predict_fp16"]["metrics"]["run_as"] == "bf16"  # predict.py refuses fp16 on a CPU
    assert 0 <= steps["predict_bf16"]["agreement_with_fp32"] <= 1
    for name in ("ner_crf", "qa", "cnn_512", "windows_512", "mfu_seq128"):
        assert "accelerate launch --cpu" in steps[name]["command"] and "--bf16" in steps[name]["command"]
    assert all(row["value"] != "unknown" and row["met"] is not None for row in report["targets"])

    markdown = (work / "report.md").read_text(encoding="utf-8")
    assert "all steps passed" in markdown
    for name in STEPS:
        assert f"| {name} |" in markdown


def test_an_existing_report_is_not_overwritten(smoke):
    _, work = smoke
    before = (work / "report.json").read_bytes()
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--work_dir", str(work / "work"),
                             "--output", str(work / "report")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "--overwrite" in result.stderr
    assert (work / "report.json").read_bytes() == before


def test_help_works():
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "--data_dir" in result.stdout and "--smoke" in result.stdout


# ------------------------------------------------------------------------------------------------------------------
# The GPU path, without a GPU
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_plan(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_plan")
    data = gpu_check.data_layout(gpu_check.write_fixtures(work / "data"))
    args = SimpleNamespace(smoke=False, work_dir=work, max_steps=None, step_timeout=120)
    return gpu_check.plan_steps(args, data, "bf16"), work


def test_gpu_plan_arguments_parse_with_each_scripts_parser(gpu_plan):
    import predict
    import run_classification
    import run_ner
    import run_qa
    from transformers import HfArgumentParser

    steps, _ = gpu_plan
    assert [s["name"] for s in steps] == STEPS[1:]
    dataclasses = {
        "run_classification.py": (run_classification.ModelArguments, run_classification.DataTrainingArguments,
                                  run_classification.FineTuningTrainingArguments),
        "run_ner.py": (run_ner.ModelArguments, run_ner.DataTrainingArguments, run_ner.FineTuningTrainingArguments),
        "run_qa.py": (run_qa.ModelArguments, run_qa.DataTrainingArguments, run_qa.FineTuningTrainingArguments),
    }
    for step in steps:
        if step["kind"] == "script":
            # every argument is one the script knows (a typo would only show on the GPU)
            HfArgumentParser(dataclasses[step["script"]]).parse_args_into_dataclasses(
                args=step["args"], return_remaining_strings=False)
            # mixed precision comes from the accelerate config alone: no --bf16/--fp16 next to it
            assert "--bf16" not in step["args"] and "--fp16" not in step["args"]
        elif step["kind"] == "predict":
            parsed = predict.parse_args(step["args"])
            assert (parsed.bf16, parsed.fp16) == (step["precision"] == "bf16", step["precision"] == "fp16")
        if step["launch"] != "python":
            assert (REPO_ROOT / step["launch"]).is_file()
        assert step.get("steps") is None or step["window_start"] >= 1
    launches = {s["name"]: s["launch"] for s in steps}
    assert launches["thucnews_bf16"] == "accelerate_configs/single_gpu_bf16.yaml"
    assert launches["thucnews_fp16"] == "accelerate_configs/single_gpu_fp16.yaml"
    assert launches["thucnews_fp32"] == "python"
    for name in ("ner_crf", "qa", "cnn_512", "windows_512", "mfu_seq128"):
        assert launches[name] == "accelerate_configs/single_gpu_bf16.yaml"
    # processes: one per THUCNews run and for the baseline, one for predict.py, one for the other five runs
    groups = [s["group"] for s in steps]
    assert [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g] == [
        "thucnews_bf16", "thucnews_fp16", "thucnews_fp32", "plain_trainer", "predict", "bf16_runs"]
    command = gpu_check.launcher(launches["thucnews_bf16"], "plan.json")
    assert command[1:] == ["-m", "accelerate.commands.launch", "--config_file",
                           "accelerate_configs/single_gpu_bf16.yaml", gpu_check.CHILD, "plan.json"]


def test_gpu_plan_without_bf16_uses_fp16_and_skips_the_bf16_run(gpu_plan):
    _, work = gpu_plan
    data = gpu_check.data_layout(work / "data")
    steps = gpu_check.plan_steps(SimpleNamespace(smoke=False, work_dir=work, max_steps=None, step_timeout=120),
                                 data, "fp16")
    by_name = {s["name"]: s for s in steps}
    assert by_name["thucnews_bf16"]["not_run"] and by_name["thucnews_bf16"]["skip_is_fine"]
    assert by_name["ner_crf"]["launch"] == "accelerate_configs/single_gpu_fp16.yaml"
    assert by_name["predict_bf16"]["needs"] == "thucnews_fp16"


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA H100 NVL", 835), ("NVIDIA H200", 989),
    ("NVIDIA A100-SXM4-80GB", 312), ("NVIDIA A100-PCIE-40GB", 312), ("NVIDIA L4", 121), ("NVIDIA L40S", 362),
    ("NVIDIA A10G", 70), ("NVIDIA A10", 125), ("NVIDIA GeForce RTX 4090", 165), ("Tesla V100-SXM2-32GB", 125),
    ("Tesla T4", 65), ("Some Future GPU", None),
])
def test_peak_flops_from_the_device_name(name, tflops):
    args = SimpleNamespace(peak_tflops=None)
    peak, source = gpu_check.peak_tflops({"cuda_available": True, "device_name": name}, args)
    assert peak == (tflops * 1e12 if tflops else None)
    assert (str(tflops) in source) if tflops else "--peak_tflops" in source
    assert gpu_check.peak_tflops({"cuda_available": True, "device_name": name},
                                 SimpleNamespace(peak_tflops=500))[0] == 500e12


def cuda_result(precision, losses, tmp_path, scaler=True):
    """What gpu_check_child.py records for a training run on a GPU, and the run's output files."""
    out = tmp_path / precision
    out.mkdir(parents=True)
    (out / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": x, "step": i}
                                                                        for i, x in enumerate(losses)]}))
    (out / "train_results.json").write_text(json.dumps({"train_loss": losses[-1]}))
    (out / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.6}))
    for name in gpu_check.OUTPUT_FILES:
        if not (out / name).exists():
            (out / name).write_text("{}")
    step = {"name": f"thucnews_{precision}", "kind": "script", "precision": precision, "output_dir": str(out),
            "metric": "eval_accuracy", "loss_must_fall": True}
    result = {"ok": True, "device": "cuda:0", "args_bf16": precision == "bf16", "args_fp16": precision == "fp16",
              "autocast": [{"bf16": "bfloat16", "fp16": "float16", "fp32": "off (fp32)"}[precision]],
              "grad_scaler": {"scale": 65536.0, "skipped_steps": 2} if precision == "fp16" and scaler else None,
              "encoder_parameters": 85054464, "num_hidden_layers": 12, "hidden_size": 768,
              "window": {"seconds": 2.0, "step": 240, "samples": 7680, "tokens": 160000, "tokens_squared": 4000000,
                         "sequences": 7680, "computed_tokens": 170000},
              "train_peak_memory": {"kind": "cuda", "allocated_mb": 3000.0, "reserved_mb": 3500.0}}
    return step, result


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_checks_pass_a_good_cuda_run(precision, tmp_path):
    step, result = cuda_result(precision, [2.3, 2.2, 2.0, 1.8], tmp_path)
    checks, metrics = gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)
    assert all(c["ok"] for c in checks), checks
    flops = 6 * 85054464 * 160000 + 12 * 12 * 768 * 4000000
    assert metrics["mfu"] == pytest.approx(flops / 2.0 / 989e12)
    assert metrics["train_samples_per_second"] == 3840 and metrics["padding_share"] == pytest.approx(1 / 17)


def failed(checks):
    return {c["check"] for c in checks if not c["ok"] and c["hard"]}


def test_checks_catch_what_only_a_gpu_would_show(tmp_path):
    step, result = cuda_result("fp16", [2.3, 2.2, 2.0, 1.8], tmp_path / "a", scaler=False)
    assert failed(gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)[0]) == {"loss scaling"}
    step, result = cuda_result("bf16", [2.3, 2.2, 2.0, 1.8], tmp_path / "b")
    result["autocast"] = ["off (fp32)"]  # the accelerate config's mixed precision did not reach the model
    assert failed(gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)[0]) == {"precision"}
    step, result = cuda_result("bf16", [2.3, 2.2, 2.0, 1.8], tmp_path / "c")
    result["device"] = "cpu"
    assert failed(gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)[0]) == {"device"}
    step, result = cuda_result("fp16", [2.3, float("nan"), 2.0, 1.8], tmp_path / "d")
    assert "loss finite" in failed(gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)[0])
    step, result = cuda_result("bf16", [2.3, 2.3, 2.31, 2.32], tmp_path / "e")
    assert failed(gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)[0]) == {"loss falling"}
    step, result = cuda_result("bf16", [2.3, 2.2, 2.0, 1.8], tmp_path / "f")
    (Path(step["output_dir"]) / "model.safetensors").unlink()
    assert failed(gpu_check.evaluate_training(step, result, {}, 989e12, on_gpu=True)[0]) == {"outputs written"}
