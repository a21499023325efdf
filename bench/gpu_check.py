#!/usr/bin/env python
"""The GPU path in one run: bert-base-chinese-shaped training and prediction with fp16/bf16/fp32 through the repo's
own scripts and accelerate configs, with throughput, peak GPU memory, MFU and a pass/fail per step.

    python bench/gpu_check.py --data_dir ../shared/data        # one GPU, under 5 minutes on an H100/H200
    python bench/gpu_check.py --smoke                          # CPU, tiny model and data it writes itself (~1 min)

Nothing is downloaded. A `build` step writes a BERT with bert-base-chinese's shape (12 layers x 768, 12 heads,
intermediate 3072, 512 positions, vocab 21,128: the characters of the data files, then placeholder tokens) and random
weights (BertForMaskedLM, safetensors) to WORK_DIR/checkpoint. Then the scripts run on one GPU, launched the way a
user launches them (single_gpu_*: `accelerate launch --config_file accelerate_configs/single_gpu_*.yaml`):

  step            what                                                          launch           steps x batch
  thucnews_bf16   run_classification.py, THUCNews titles, max length 128       single_gpu_bf16  300 x 32
  thucnews_fp16   the same                                                      single_gpu_fp16  300 x 32
  thucnews_fp32   the same                                                      python (fp32)    300 x 32
  plain_trainer   BertForSequenceClassification + a plain Trainer, same rows    python, bf16      50 x 32
  predict_*       predict.py (fp32, --bf16, --fp16), the 10,000 dev titles     python           batch 128
  mfu_seq128      run_classification.py, ChnSentiCorp, max length 128          single_gpu_bf16  100 x 128
  ner_crf         run_ner.py --head crf, CLUENER                                single_gpu_bf16   60 x 32
  qa              run_qa.py, CMRC2018 (train: dev file, eval: trial), 384/128   single_gpu_bf16   60 x 32
  cnn_512         run_classification.py --head cnn, ChnSentiCorp, length 512  single_gpu_bf16   40 x 32
  windows_512     run_classification.py --head windows, 512-token windows     single_gpu_bf16   40 x 32

The THUCNews runs and the baseline each get a process of their own, predict.py's three runs share one, and the last
five runs share one accelerate-launched process (start-up is most of a step's cost; a step that fails does not stop
the next). Learning rate 2e-5 for BERT and 1e-4 for the head (--head_learning_rate), the README's pairing: on the CPU
with this checkpoint, 1e-4 throughout made the random 12-layer model's loss jump well above chance within 10 steps,
2e-5/1e-4 brought it down (2.37 -> 2.22 in 30 steps). The THUCNews runs use mean pooling and random batches (see
plan_steps). Every step is checked: it finished, ran on the GPU under the precision planned (the autocast dtype the
encoder actually saw; fp16 with a GradScaler), its losses are finite (and falling, for the three THUCNews runs),
evaluation ran, the outputs were written. Any failed check makes the exit status 1. The issue's targets are reported
as met / not met:

  * bf16 MFU >= 40% at sequence length 128 with dynamic padding (mfu_seq128);
  * fp16 and bf16 dev accuracy within 0.3 points of fp32 after the same steps (thucnews_*);
  * peak memory <= 2x that of the plain Trainer run at the same batch (thucnews_bf16 vs plain_trainer).

Measurements (gpu_check_child.py adds a callback to every Trainer): peak memory is torch.cuda.max_memory_allocated
from the start of training to its end (reset per run); speed is a window from the end of step steps/5 to the end of
the last step, timed between two torch.cuda.synchronize() calls; tokens are counted from the attention masks the
model received. MFU = useful FLOPs per second / the GPU's dense bf16 peak (table PEAK_TFLOPS, looked up from
torch.cuda.get_device_name(); --peak_tflops to override; the report says which number it used), with

  training FLOPs  = 6 * P * sum(l) + 12 * L * H * sum(l^2)
  inference FLOPs = 2 * P * sum(l) +  4 * L * H * sum(l^2)

l = non-padding tokens of a sequence (a window, for --head windows), P = encoder-layer parameters (85.0M for
bert-base: every token goes through them), L = layers, H = hidden size; the l^2 terms are attention's QK^T and
probabilities x V. Embedding lookups, heads, softmax, layer norm and the optimizer are not counted; padding never
counts. Inference time is predict.py's own figure (encoding, batching, forward, softmax), after a short untimed
run with the same flags (CUDA and cuBLAS set-up).

Time budget on one H100/H200 (estimates: no GPU run has been done with this script yet). A process costs ~10 s to
start (Python, torch, transformers, CUDA, accelerate's launcher) and a run ~8 s beyond its steps (reading and
tokenizing the data, loading the 410 MB checkpoint, evaluation, saving the model, plots). Steps: ~25 ms each for
batches of 32 titles (launch-bound), 30-60 ms for the 128-512-token batches. So: build ~10 s, thucnews_* 3 x ~25 s,
plain_trainer ~15 s, predict ~25 s, the five other runs ~60 s in one process: about 3.5 minutes. Each step has a
timeout (--step_timeout, 120 s) and the whole run a budget (--time_budget, 290 s): a step that would start after the
budget is spent is reported as not run (and fails), so the run ends within 5 minutes; the report is rewritten after
every process, so a run cut short still says what it did.

Outputs: OUTPUT.json (every number, the commands, git commit, device, torch and CUDA versions) and OUTPUT.md (the
tables); logs and run directories stay in --work_dir, which the script owns (its runs/, logs/, plans/, results/
and checkpoint/ are replaced on each run). --smoke runs everything on the CPU with a tiny BERT (hidden 64, 2
layers), 10 steps, data it writes itself (or --data_dir's files), in one `accelerate launch --cpu` process; fp16
there runs without autocast (accelerate has no fp16 on a CPU) and predict.py's fp16 becomes bf16.
"""

import argparse
import datetime
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "bench" / "results" / "gpu_check"
CHILD = "bench/gpu_check_child.py"  # relative to the repo root, where every process runs

# Dense (no sparsity) tensor-core peak in TFLOPS for bf16 (fp16 where the GPU has no bf16), from NVIDIA's datasheets.
# First match of the upper-cased device name wins: longer names first.
PEAK_TFLOPS = [
    ("H100 PCIE", 756, "H100 PCIe bf16 dense"),
    ("H100 NVL", 835, "H100 NVL bf16 dense"),
    ("H200 NVL", 835, "H200 NVL bf16 dense"),
    ("GH200", 989, "GH200 (H100 SXM-class) bf16 dense"),
    ("H200", 989, "H200 SXM bf16 dense"),
    ("H100", 989, "H100 SXM bf16 dense"),
    ("H800", 989, "H800 SXM bf16 dense"),
    ("A100", 312, "A100 bf16 dense"),
    ("A800", 312, "A800 bf16 dense"),
    ("L40S", 362, "L40S bf16 dense"),
    ("L40", 181, "L40 bf16 dense"),
    ("L4", 121, "L4 bf16 dense"),
    ("A10G", 70, "A10G bf16 dense (approximate: AWS publishes no datasheet figure)"),
    ("A10", 125, "A10 bf16 dense"),
    ("RTX 4090", 165, "RTX 4090 bf16 dense, fp16-accumulate figure (82.6 with fp32 accumulate)"),
    ("V100", 125, "V100 fp16 dense (no bf16)"),
    ("T4", 65, "T4 fp16 dense (no bf16)"),
]
TARGET_MFU = 0.40
TARGET_ACCURACY_POINTS = 0.3
TARGET_MEMORY_RATIO = 2.0
LEARNING_RATES = ("2e-5", "1e-4")  # BERT, head (--head_learning_rate): see the docstring
OUTPUT_FILES = ("model.safetensors", "config.json", "tokenizer.json", "train_results.json", "eval_results.json",
                "trainer_state.json", "README.md")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (or README.md, 'Running on a GPU') for the "
                                            "steps, checks, targets and time budget.")
    parser.add_argument("--data_dir", help="The data folder (../shared/data layout): thucnews_titles/{train,dev}.txt "
                        "+ class.txt, chnsenticorp/{train,dev}.tsv, cluener/{train,dev}.json, "
                        "cmrc2018/cmrc2018_{dev,trial}.json. Required unless --smoke.")
    parser.add_argument("--smoke", action="store_true", help="CPU run: tiny BERT, 10 steps per run, fixtures written "
                        "to WORK_DIR/data (or --data_dir's files), everything in one accelerate --cpu process.")
    parser.add_argument("--output", default=None, help="Report path without extension: writes .json and .md "
                        f"(default {DEFAULT_OUTPUT.relative_to(REPO)}; with --smoke WORK_DIR/gpu_check_smoke).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing report.")
    parser.add_argument("--work_dir", default=None, help="Checkpoint, run outputs, logs (default /tmp/gpu_check, "
                        "/tmp/gpu_check_smoke with --smoke).")
    parser.add_argument("--max_steps", type=int, default=None, help="Optimizer steps of the three THUCNews runs "
                        "(default 300; 10 with --smoke).")
    parser.add_argument("--step_timeout", type=float, default=120, help="Seconds one step's process may take.")
    parser.add_argument("--time_budget", type=float, default=290, help="Seconds for the whole run: steps that "
                        "would start later are not run (and reported as failed).")
    parser.add_argument("--peak_tflops", type=float, default=None, help="The GPU's dense bf16 peak in TFLOPS, for "
                        "a GPU missing from the table (or to override it).")
    args = parser.parse_args(argv)
    if not args.smoke and not args.data_dir:
        parser.error("--data_dir is required (e.g. ../shared/data), or --smoke for the CPU run.")
    if args.max_steps is not None and args.max_steps < 5:
        parser.error("--max_steps must be >= 5 (the first fifth of the steps is not timed).")
    args.work_dir = Path(args.work_dir or ("/tmp/gpu_check_smoke" if args.smoke else "/tmp/gpu_check")).resolve()
    args.output = Path(args.output).resolve() if args.output else (
        args.work_dir / "gpu_check_smoke" if args.smoke else DEFAULT_OUTPUT)
    return args


# ----------------------------------------------------------------------------------------------------------------
# Data: ../shared/data, or (smoke) small fixtures in the same layout
# ----------------------------------------------------------------------------------------------------------------


def data_layout(data_dir):
    d = Path(data_dir).resolve()
    paths = {"thucnews_train": d / "thucnews_titles" / "train.txt", "thucnews_dev": d / "thucnews_titles" / "dev.txt",
             "thucnews_classes": d / "thucnews_titles" / "class.txt",
             "chnsenticorp_train": d / "chnsenticorp" / "train.tsv", "chnsenticorp_dev": d / "chnsenticorp" / "dev.tsv",
             "cluener_train": d / "cluener" / "train.json", "cluener_dev": d / "cluener" / "dev.json",
             "cmrc_train": d / "cmrc2018" / "cmrc2018_dev.json", "cmrc_dev": d / "cmrc2018" / "cmrc2018_trial.json"}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"error: {data_dir}: missing {', '.join(missing)}; --data_dir must hold the ../shared/data "
                         f"layout (see --help).")
    return paths


def write_fixtures(d, seed=0):
    """Miniatures of the four datasets in their formats: titles drawn from a character pool per class (learnable in
    10 steps), reviews with a sentiment word somewhere in 20-150 characters, one entity per sentence, one answer per
    context."""
    rng = random.Random(seed)
    filler = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面")

    def text(n_min, n_max):
        return "".join(rng.choice(filler) for _ in range(rng.randint(n_min, n_max)))

    def write(path, lines):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    classes = ["体育", "财经", "科技", "娱乐"]
    pools = ["球赛队冠军", "股市银行基金", "网络手机芯片", "电影明星演唱"]  # titles learnable within 10 steps
    rows = []
    for i in range(208):
        label = i % len(classes)
        rows.append("".join(rng.choice(pools[label]) for _ in range(rng.randint(4, 14))) + f"\t{label}")
    write(d / "thucnews_titles" / "train.txt", rows[:160])
    write(d / "thucnews_titles" / "dev.txt", rows[160:])
    (d / "thucnews_titles" / "class.txt").write_text("\n".join(classes), encoding="utf-8")

    rows = []
    for i in range(208):
        label = i % 2
        review = text(20, 150)
        at = rng.randint(0, len(review))
        rows.append(f"{label}\t{review[:at]}{'好差'[1 - label] * 2}{review[at:]}")
    write(d / "chnsenticorp" / "train.tsv", ["label\ttext_a"] + rows[:160])
    write(d / "chnsenticorp" / "dev.tsv", ["label\ttext_a"] + rows[160:])

    rows = []
    for i in range(208):
        entity, kind = rng.choice([("张伟", "name"), ("李娜", "name"), ("北京", "address"), ("上海", "address")])
        before, after = text(3, 20), text(3, 20)
        rows.append(json.dumps({"text": before + entity + after, "label": {kind: {entity: [
            [len(before), len(before) + len(entity) - 1]]}}}, ensure_ascii=False))
    write(d / "cluener" / "train.json", rows[:160])
    write(d / "cluener" / "dev.json", rows[160:])

    paragraphs = []
    for i in range(104):
        context = text(30, 90)
        start = rng.randint(0, len(context) - 3)
        context = context[:start] + "答案" + context[start:]
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": "什么是答案？",
                                                        "answers": [{"text": "答案", "answer_start": start}]}]})
    for name, part in (("cmrc2018_dev.json", paragraphs[:80]), ("cmrc2018_trial.json", paragraphs[80:])):
        path = d / "cmrc2018" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": "v1.0", "data": [{"title": "t", "paragraphs": part}]},
                                   ensure_ascii=False), encoding="utf-8")
    return d


# ----------------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------------


def build_step(args, data):
    shape = (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
             if args.smoke else dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072))
    shape["max_position_embeddings"] = 512
    text_files = [(data["thucnews_train"], "tsv_first_column"), (data["thucnews_dev"], "tsv_first_column"),
                  (data["chnsenticorp_train"], "tsv_text_a"), (data["chnsenticorp_dev"], "tsv_text_a"),
                  (data["cluener_train"], "jsonl_text"), (data["cluener_dev"], "jsonl_text"),
                  (data["cmrc_train"], "squad"), (data["cmrc_dev"], "squad")]
    return {"name": "build", "kind": "build", "launch": "python", "precision": "fp32",
            "options": {"text_files": [(str(p), f) for p, f in text_files], "shape": shape,
                        "vocab_size": None if args.smoke else 21128, "checkpoint": str(args.work_dir / "checkpoint")}}


def plan_steps(args, data, mixed):
    """Every step after `build`, in the order they run. `mixed`: bf16, or fp16 on a GPU without bf16."""
    smoke = args.smoke
    checkpoint = str(args.work_dir / "checkpoint")
    steps_main = args.max_steps or (10 if smoke else 300)
    batch = 8 if smoke else 32
    long_length = 64 if smoke else 512  # smoke: short windows, so documents still span several
    learning_rate, head_learning_rate = ("5e-3", None) if smoke else LEARNING_RATES

    def few(gpu_steps):
        return 10 if smoke else gpu_steps

    def launch(precision):
        if smoke:
            return "accelerate --cpu"
        return {"bf16": "accelerate_configs/single_gpu_bf16.yaml", "fp16": "accelerate_configs/single_gpu_fp16.yaml",
                "fp32": "python"}[precision]

    def train(name, script, precision, steps, batch_size, data_args, metric, loss_must_fall=False,
              eval_batch_size=16 if smoke else 256):
        out = args.work_dir / "runs" / name
        run_args = [*data_args, "--model_name_or_path", checkpoint, "--do_train", "--do_eval",
                    "--max_steps", steps, "--per_device_train_batch_size", batch_size,
                    "--per_device_eval_batch_size", eval_batch_size, "--learning_rate", learning_rate,
                    *(["--head_learning_rate", head_learning_rate] if head_learning_rate else []),
                    "--logging_steps", max(1, steps // 30), "--eval_strategy", "no", "--save_strategy", "no",
                    "--report_to", "none", "--disable_tqdm", "true", "--seed", "42", "--output_dir", out]
        if smoke and precision != "fp32":  # on the GPU the accelerate config sets it (one place)
            run_args.append(f"--{precision}")
        return {"name": name, "kind": "script", "script": script, "precision": precision, "launch": launch(precision),
                "group": name,
                "args": [str(a) for a in run_args], "output_dir": str(out), "metric": metric, "steps": steps,
                "batch_size": batch_size, "window_start": max(1, steps // 5), "loss_must_fall": loss_must_fall}

    # These three runs must show a falling loss from random weights. Mean pooling: [CLS] through the tanh pooler (the
    # default head) barely learns in a few hundred steps from scratch (README, heads comparison). Random batches:
    # a title's length depends on its class (class 7 averages 24 characters, class 0 17), so length-grouped batches
    # hold one or two classes each and the loss swings with them.
    thucnews = ["--train_file", data["thucnews_train"], "--validation_file", data["thucnews_dev"],
                "--label_file", data["thucnews_classes"], "--max_seq_length", "128", "--pooling", "mean",
                "--train_sampling_strategy", "random", "--max_train_samples", steps_main * batch]
    steps = [train(f"thucnews_{p}", "run_classification.py", p, steps_main, batch, thucnews, "eval_accuracy",
                   loss_must_fall=True) for p in ("bf16", "fp16", "fp32")]
    if mixed != "bf16":
        steps[0].update(not_run="this GPU has no bf16 (the other mixed-precision steps run in fp16)",
                        skip_is_fine=True)

    n_classes = len([line for line in Path(data["thucnews_classes"]).read_text(encoding="utf-8").splitlines()
                     if line.strip()])
    plain_steps = few(50)
    steps.append({"name": "plain_trainer", "kind": "plain_trainer", "precision": mixed, "launch": "python",
                  "group": "plain_trainer",
                  "window_start": max(1, plain_steps // 5), "steps": plain_steps, "batch_size": batch,
                  "options": {"model": checkpoint, "train_file": str(data["thucnews_train"]),
                              "max_train_samples": steps_main * batch, "max_seq_length": 128,
                              "num_labels": n_classes, "batch_size": batch, "max_steps": plain_steps,
                              "learning_rate": float(learning_rate), "logging_steps": max(1, plain_steps // 10),
                              "output_dir": str(args.work_dir / "runs" / "plain_trainer")}})

    model = args.work_dir / "runs" / f"thucnews_{mixed}"
    for precision in ("fp32", "bf16", "fp16"):
        run_as = "bf16" if smoke and precision == "fp16" else precision  # predict.py refuses fp16 on a CPU
        output = args.work_dir / "runs" / f"predict_{precision}.jsonl"
        predict_args = ["--model", model, "--input", data["thucnews_dev"], "--batch_size", 16 if smoke else 128,
                        "--output", output] + ([f"--{run_as}"] if run_as != "fp32" else [])
        steps.append({"name": f"predict_{precision}", "kind": "predict", "precision": precision, "run_as": run_as,
                      "group": "predict",
                      "launch": "python", "args": [str(a) for a in predict_args], "needs": f"thucnews_{mixed}",
                      "options": {"model": str(model), "input": str(data["thucnews_dev"]), "output": str(output),
                                  "warmup_texts": 16 if smoke else 512}})

    senti = ["--train_file", data["chnsenticorp_train"], "--validation_file", data["chnsenticorp_dev"],
             "--max_eval_samples", 48 if smoke else 400]
    steps.append(train("mfu_seq128", "run_classification.py", mixed, few(100), batch if smoke else 128,
                       senti + ["--max_seq_length", "128"], "eval_accuracy"))
    ner_steps, qa_steps, long_steps = few(60), few(60), few(40)
    steps.append(train("ner_crf", "run_ner.py", mixed, ner_steps, batch,
                       ["--train_file", data["cluener_train"], "--validation_file", data["cluener_dev"],
                        "--head", "crf", "--max_seq_length", "128", "--max_train_samples", ner_steps * batch,
                        "--max_eval_samples", 48 if smoke else 500], "eval_f1"))
    steps.append(train("qa", "run_qa.py", mixed, qa_steps, batch,
                       ["--train_file", data["cmrc_train"], "--validation_file", data["cmrc_dev"],
                        "--max_seq_length", 64 if smoke else 384, "--doc_stride", 16 if smoke else 128,
                        "--max_query_length", 16 if smoke else 64, "--max_train_samples", 80 if smoke else 1200,
                        "--max_eval_samples", 24 if smoke else 200], "eval_f1"))
    for head in ("cnn", "windows"):
        steps.append(train(f"{head}_512", "run_classification.py", mixed, long_steps, batch,
                           senti + ["--head", head, "--max_seq_length", long_length,
                                    "--max_train_samples", long_steps * batch], "eval_accuracy"))
    # The THUCNews runs, the baseline and predict.py get processes of their own (the comparisons and the memory
    # figures stay clean); the five other runs share one accelerate-launched process, which saves ~40 s of start-up
    # on the GPU. A step that raises does not stop the next one; each has its own timeout inside the process.
    for step in steps:
        if step["name"] in ("mfu_seq128", "ner_crf", "qa", "cnn_512", "windows_512"):
            step["group"] = f"{mixed}_runs"
        step["timeout"] = args.step_timeout
    return steps


def user_command(step):
    """What a user types to run the same thing (the check runs the script's main() inside gpu_check_child.py)."""
    if step["kind"] == "script":
        target = [step["script"], *step["args"]]
    elif step["kind"] == "predict":
        target = ["predict.py", *step["args"]]
    else:
        return None
    if step["launch"].endswith(".yaml"):
        return " ".join(["accelerate", "launch", "--config_file", step["launch"], *target])
    if step["launch"] == "accelerate --cpu":
        return " ".join(["accelerate", "launch", "--cpu", "--num_processes", "1", *target])
    return " ".join(["python", *target])


def launcher(launch, plan_path):
    child = [CHILD, str(plan_path)]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch == "accelerate --cpu":
        return accelerate + ["--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                             "--dynamo_backend", "no"] + child
    if launch.endswith(".yaml"):
        return accelerate + ["--config_file", launch] + child
    return [sys.executable] + child


# ----------------------------------------------------------------------------------------------------------------
# Running: one child process per group of steps
# ----------------------------------------------------------------------------------------------------------------


def child_env(args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_CACHE=str(args.work_dir / "datasets_cache"), PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    if args.smoke:
        env["OMP_NUM_THREADS"] = "1"  # tiny models: more threads only wait on each other on a shared CPU
        # the smoke run checks the bf16 code paths; a CPU without bf16 matrix instructions would drop --bf16
        env["RECIPES_CPU_BF16"] = "1"
    return env


def tail(path, n=40):
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


def run_group(name, steps, launch, timeout, args):
    """Run `steps` in one child process started by `launch`; returns {step name: child result} (a step without a
    result file gets an error naming the process' exit status and its log)."""
    work = args.work_dir
    plan_path = work / "plans" / f"{name}.json"
    for step in steps:
        step["result"] = str(work / "results" / f"{step['name']}.json")
    plan_path.write_text(json.dumps(steps, indent=2, ensure_ascii=False), encoding="utf-8")
    log_path = work / "logs" / f"{name}.log"
    command = launcher(launch, plan_path)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        # a session of its own: a timeout kills accelerate's launcher and the process it started together
        proc = subprocess.Popen(command, cwd=REPO, env=child_env(args), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = f"killed after the {timeout:.0f} s timeout"
        except BaseException:  # Ctrl-C: do not leave the child holding the GPU
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    seconds = time.perf_counter() - start
    results = {}
    for step in steps:
        path = Path(step["result"])
        if path.is_file():
            results[step["name"]] = json.loads(path.read_text(encoding="utf-8"))
        else:
            results[step["name"]] = {"ok": False, "error": f"no result: the process ended ({returncode}) before "
                                                           f"this step finished"}
        results[step["name"]].update(launcher_command=" ".join(command), log=str(log_path), group=name,
                                     group_seconds=seconds, returncode=returncode)
        if not results[step["name"]]["ok"]:
            results[step["name"]]["log_tail"] = tail(log_path)
    return results


# ----------------------------------------------------------------------------------------------------------------
# Evaluating: the checks of each step, the targets
# ----------------------------------------------------------------------------------------------------------------


def read_json(path):
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def peak_tflops(env, args):
    if args.peak_tflops:
        return args.peak_tflops * 1e12, f"--peak_tflops {args.peak_tflops:g}"
    if not env.get("cuda_available"):
        return env.get("cpu_matmul_flops"), "the best fp32/bf16 matmul rate measured on this CPU (smoke run only)"
    name = env.get("device_name", "").upper()
    for key, tflops, source in PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12, f"{tflops} TFLOPS: {source} (matched '{key}' in '{env['device_name']}')"
    return None, f"unknown GPU '{env.get('device_name')}': no MFU (pass --peak_tflops)"


def expected_autocast(precision, on_gpu):
    if precision == "bf16":
        return "bfloat16"
    if precision == "fp16" and on_gpu:
        return "float16"
    return "off (fp32)"  # fp32; and fp16 on a CPU, where accelerate turns autocast off


def mean(xs):
    return sum(xs) / len(xs)


def evaluate_training(step, result, env, peak, on_gpu):
    checks, metrics = [], {}

    def check(name, ok, detail="", hard=True):
        checks.append({"check": name, "ok": bool(ok), "detail": detail, "hard": hard})

    if step.get("not_run"):
        check("ran", False, f"not run: {step['not_run']}", hard=not step.get("skip_is_fine"))
        return checks, metrics
    check("finished", result.get("ok"), result.get("error", ""))
    if not result.get("ok"):
        return checks, metrics
    device = result.get("device", "")
    check("device", device.startswith("cuda") if on_gpu else device == "cpu", device)
    autocast = result.get("autocast", [])
    want = expected_autocast(step["precision"], on_gpu)
    flags_ok = (result.get("args_bf16"), result.get("args_fp16")) == (step["precision"] == "bf16",
                                                                      step["precision"] == "fp16")
    check("precision", flags_ok and autocast == [want],
          f"planned {step['precision']}: TrainingArguments bf16={result.get('args_bf16')} "
          f"fp16={result.get('args_fp16')}, encoder autocast {autocast} (expected [{want}])")
    scaler = result.get("grad_scaler")
    want_scaler = step["precision"] == "fp16" and on_gpu
    check("loss scaling", (scaler is not None) == want_scaler and (scaler is None or finite(scaler["scale"])),
          f"GradScaler {scaler}" + (" (expected for fp16 on a GPU)" if want_scaler else " (expected none)"))

    if step["kind"] == "plain_trainer":
        losses, train_results, eval_results = result.get("losses", []), {}, None
    else:
        out = Path(step["output_dir"])
        state = read_json(out / "trainer_state.json") or {}
        losses = [h["loss"] for h in state.get("log_history", []) if "loss" in h]
        train_results = read_json(out / "train_results.json") or {}
        eval_results = read_json(out / "eval_results.json")
    check("loss finite", losses and all(finite(x) for x in losses) and finite(train_results.get("train_loss", 0.0)),
          f"{len(losses)} logged losses" + (f", {sum(not finite(x) for x in losses)} not finite" if losses else ""))
    if losses and all(finite(x) for x in losses):
        k = max(1, len(losses) // 4)
        first, last = mean(losses[:k]), mean(losses[-k:])
        metrics.update(loss_first=first, loss_last=last)
        check("loss falling", last < first, f"mean of the first {k} logged losses {first:.4f}, of the last {k} "
              f"{last:.4f}", hard=step.get("loss_must_fall", False))
    if step["kind"] != "plain_trainer":
        value = (eval_results or {}).get(step["metric"])
        check("eval ran", finite(value), f"{step['metric']} = {value}" if eval_results else "no eval_results.json")
        metrics[step["metric"]] = value
        missing = [f for f in OUTPUT_FILES if not (Path(step["output_dir"]) / f).is_file()]
        check("outputs written", not missing, f"missing {missing}" if missing else "")
        metrics["trainer_train_samples_per_second"] = train_results.get("train_samples_per_second")

    window, memory = result.get("window", {}), result.get("train_peak_memory", {})
    seconds = window.get("seconds", 0)
    check("measured", seconds > 0 and window.get("tokens", 0) > 0 and memory.get("allocated_mb", 0) > 0,
          f"{window.get('step')} timed steps in {seconds:.3f} s, {window.get('tokens')} tokens")
    if seconds > 0 and window.get("tokens", 0) > 0:
        P, L, H = result["encoder_parameters"], result["num_hidden_layers"], result["hidden_size"]
        flops = 6 * P * window["tokens"] + 12 * L * H * window["tokens_squared"]
        metrics.update(
            timed_steps=window["step"], timed_seconds=seconds, train_samples_per_second=window["samples"] / seconds,
            train_tokens_per_second=window["tokens"] / seconds,
            mean_tokens_per_sequence=window["tokens"] / max(window["sequences"], 1),
            padding_share=1 - window["tokens"] / max(window["computed_tokens"], 1),
            train_tflops_per_second=flops / seconds / 1e12, mfu=flops / seconds / peak if peak else None,
            train_peak_memory_gib=memory["allocated_mb"] / 1024, train_peak_reserved_gib=memory["reserved_mb"] / 1024,
            memory_kind=memory["kind"], autocast=autocast, grad_scaler=scaler)
    return checks, metrics


def evaluate_predict(step, result, env, peak, on_gpu, encoder):
    checks, metrics = [], {}

    def check(name, ok, detail="", hard=True):
        checks.append({"check": name, "ok": bool(ok), "detail": detail, "hard": hard})

    if step.get("not_run"):
        check("ran", False, f"not run: {step['not_run']}")
        return checks, metrics
    check("finished", result.get("ok"), result.get("error", ""))
    if not result.get("ok"):
        return checks, metrics
    device = result.get("device", "")
    check("device", device.startswith("cuda") if on_gpu else device == "cpu", device)
    check("precision", f"PyTorch {step['run_as']} on" in result.get("backend", ""),
          f"predict.py ran '{result.get('backend')}' for {step['run_as']}")
    output = Path(step["options"]["output"])
    lines = output.read_text(encoding="utf-8").splitlines() if output.is_file() else []
    check("outputs written", len(lines) == result["texts"] == result["sequences"],
          f"{len(lines)} JSON lines for {result['sequences']} input texts")
    rate = result.get("texts_per_second", 0)
    check("measured", rate > 0 and result.get("seconds", 0) > 0, f"{rate} texts/s")
    labels = [json.loads(line).get("label") for line in lines]
    metrics.update(texts=result["texts"], seconds=result["seconds"], texts_per_second=rate,
                   run_as=step["run_as"], peak_memory_gib=result["peak_memory"]["allocated_mb"] / 1024,
                   memory_kind=result["peak_memory"]["kind"], labels=labels)
    if encoder and result.get("seconds", 0) > 0:
        flops = 2 * encoder["encoder_parameters"] * result["tokens"] + \
            4 * encoder["num_hidden_layers"] * encoder["hidden_size"] * result["tokens_squared"]
        metrics.update(tokens=result["tokens"], inference_tflops_per_second=flops / result["seconds"] / 1e12,
                       mfu=flops / result["seconds"] / peak if peak else None)
    return checks, metrics


def evaluate_build(result):
    checks = []
    checks.append({"check": "finished", "ok": bool(result.get("ok")), "detail": result.get("error", ""), "hard": True})
    if result.get("ok"):
        checks.append({"check": "checkpoint", "ok": bool(result.get("weights")),
                       "detail": f"{result.get('parameters', 0) / 1e6:.1f}M parameters, vocab "
                                 f"{result.get('vocab_size')} ({result.get('data_tokens')} from the data), "
                                 f"{result.get('weights')}",
                       "hard": True})
        checks.append({"check": "vocab covers the data", "ok": result.get("unk_rate", 1) < 0.01,
                       "detail": f"[UNK] share {result.get('unk_rate', 1):.4%} of the tokens of a sample",
                       "hard": True})
    return checks


def target_rows(steps, mixed, smoke):
    def metric(name, key):
        return steps.get(name, {}).get("metrics", {}).get(key)

    rows = []
    mfu = metric("mfu_seq128", "mfu")
    rows.append({"target": f"{mixed} MFU >= {TARGET_MFU:.0%} at sequence length 128 with dynamic padding "
                           f"(mfu_seq128: ChnSentiCorp, batch {steps['mfu_seq128']['batch_size']})",
                 "value": f"{mfu:.1%}" if finite(mfu) else "unknown", "met": None if not finite(mfu) else
                 mfu >= TARGET_MFU})
    fp32 = metric("thucnews_fp32", "eval_accuracy")
    for precision in ("bf16", "fp16"):
        acc = metric(f"thucnews_{precision}", "eval_accuracy")
        ok = finite(acc) and finite(fp32)
        diff = 100 * (acc - fp32) if ok else None
        rows.append({"target": f"{precision} dev accuracy within {TARGET_ACCURACY_POINTS} points of fp32 after the "
                               f"same {steps['thucnews_fp32'].get('steps')} steps (THUCNews titles)",
                     "value": f"{100 * acc:.2f} vs {100 * fp32:.2f} ({diff:+.2f} points)" if ok else "unknown",
                     "met": abs(diff) <= TARGET_ACCURACY_POINTS if ok else None})
    ours, plain = metric(f"thucnews_{mixed}", "train_peak_memory_gib"), metric("plain_trainer", "train_peak_memory_gib")
    ok = finite(ours) and finite(plain) and plain > 0
    rows.append({"target": f"peak memory <= {TARGET_MEMORY_RATIO:g}x a plain Trainer's BertForSequenceClassification "
                           f"at the same batch (thucnews_{mixed} vs plain_trainer, {mixed})",
                 "value": f"{ours:.2f} vs {plain:.2f} GiB ({ours / plain:.2f}x)" if ok else "unknown",
                 "met": ours / plain <= TARGET_MEMORY_RATIO if ok else None})
    if smoke:
        for row in rows:
            row["target"] += " [smoke: the numbers mean nothing]"
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------


def fmt(x, spec=".1f", scale=1.0):
    return format(x * scale, spec) if finite(x) else "–"


def markdown(report):
    env, steps = report["environment"], report["steps"]
    verdict = ("all steps passed" if report["ok"] else "FAILED") if report["finished"] else \
        "PARTIAL: written after each step; the run did not finish (yet)"
    lines = [f"# GPU check: {'SMOKE RUN (CPU, tiny model) ' if report['smoke'] else ''}{verdict}", "",
             f"{env.get('device_name', '?')} ({env.get('total_memory_gb', '–')} GB); torch {env.get('torch')}, "
             f"CUDA {env.get('cuda_runtime')}, transformers {env.get('transformers')}, accelerate "
             f"{env.get('accelerate')}; commit {report['git_commit']}; {report['date']}; "
             f"{report['wall_seconds']:.0f} s in all.", "",
             f"MFU peak: {report['peak']['source']}.", "",
             "| step | launch | precision | steps × batch | samples/s | tokens/s | padding | peak memory (GiB) | MFU "
             "| loss first → last | eval | checks | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|"]
    for name, s in steps.items():
        m = s.get("metrics", {})
        failed = [c["check"] for c in s["checks"] if not c["ok"] and c["hard"]]
        soft = [c["check"] for c in s["checks"] if not c["ok"] and not c["hard"]]
        status = "ok" if not failed else "**FAILED: " + ", ".join(failed) + "**"
        if soft:
            status += " (" + ", ".join(f"not {c}" for c in soft) + ")"
        if s["kind"] == "predict":
            rate, memory = m.get("texts_per_second"), m.get("peak_memory_gib")
            shape, tokens = f"{m.get('texts', '–')} texts", "–"
            agreement = s.get("agreement_with_fp32")
            evaluation = f"{agreement:.2%} same labels as fp32" if finite(agreement) else "–"
            precision = s["precision"] + (f" (as {s['run_as']})" if s.get("run_as") != s["precision"] else "")
            loss = "–"
            padding = "–"
        else:
            rate, memory = m.get("train_samples_per_second"), m.get("train_peak_memory_gib")
            shape = f"{s.get('steps', '–')} × {s.get('batch_size', '–')}" if s["kind"] != "build" else "–"
            tokens = fmt(m.get("train_tokens_per_second"), ".0f")
            metric = s.get("metric")
            evaluation = f"{metric[5:]} {fmt(m.get(metric), '.4f')}" if metric else "–"
            precision = s.get("precision", "–")
            loss = f"{fmt(m.get('loss_first'), '.3f')} → {fmt(m.get('loss_last'), '.3f')}" if "loss_first" in m \
                else "–"
            padding = fmt(m.get("padding_share"), ".1%") if "padding_share" in m else "–"
        launch = s.get("launch", "–").replace("accelerate_configs/", "").replace(".yaml", "")
        lines.append(f"| {name} | {launch} | {precision} | {shape} | {fmt(rate, '.1f')} | {tokens} | {padding} | "
                     f"{fmt(memory, '.2f')} | {fmt(m.get('mfu'), '.1%')} | {loss} | {evaluation} | {status} | "
                     f"{fmt(s.get('seconds'), '.0f')} |")
    lines += ["", "samples/s, tokens/s (non-padding), MFU: the timed window of each training run (from the end of "
              "step steps/5 to the end); predict: texts/s as predict.py reports it (after an untimed warm-up). "
              "Peak memory: "
              + next((s["metrics"]["memory_kind"] for s in steps.values() if "memory_kind" in s.get("metrics", {})),
                     "–") + ". s: seconds the step took inside its process (start-up not included; the "
              "header has the total).", "",
              "| target | value | met |", "|---|---|:---:|"]
    for row in report["targets"]:
        met = {True: "yes", False: "**no**", None: "unknown"}[row["met"]]
        lines.append(f"| {row['target']} | {row['value']} | {met} |")
    failures = [(name, c) for name, s in steps.items() for c in s["checks"] if not c["ok"] and c["hard"]]
    if failures:
        lines += ["", "Failed checks:", ""]
        lines += [f"- {name}: {c['check']}: {c['detail']}" for name, c in failures]
    lines += ["", f"FLOPs: {report['flops_formula']}", "", f"Command: `{report['command']}`"]
    return "\n".join(lines) + "\n"


def git_commit():
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def nvidia_smi():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def make_report(args, steps, results, started, command, finished):
    """Every check and target from the child results and the run directories; callable after any group, so a run
    cut short still leaves a report of what it did."""
    env = results.get("build", {})
    on_gpu = bool(env.get("cuda_available")) and not args.smoke
    peak, peak_source = peak_tflops(env, args)
    mixed = "bf16" if args.smoke or env.get("bf16_supported", True) else "fp16"
    build_checks = evaluate_build(env) if env else [{"check": "finished", "ok": False, "hard": True,
                                                     "detail": "not run yet"}]
    if env.get("ok") and not args.smoke and not env.get("cuda_available"):
        build_checks.append({"check": "GPU", "ok": False, "hard": True, "detail": "torch.cuda.is_available() is "
                             "False: run with --smoke on a machine without a GPU"})
    report_steps = {"build": {"kind": "build", "launch": "python", "precision": "fp32", "result": env,
                              "checks": build_checks, "metrics": {}, "seconds": env.get("seconds")}}
    for s in steps:
        result = results.get(s["name"], {"ok": False, "error": "not run yet" if not finished else "no result"})
        try:
            if s["kind"] == "predict":
                checks, metrics = evaluate_predict(s, result, env, peak, on_gpu, env if env.get("ok") else None)
            else:
                checks, metrics = evaluate_training(s, result, env, peak, on_gpu)
        except Exception as e:  # a report must come out of any result; the failure is the check
            checks, metrics = [{"check": "evaluated", "ok": False, "hard": True,
                                "detail": f"{type(e).__name__}: {e}"}], {}
        entry = {k: v for k, v in s.items() if k != "result"}
        entry.update(command=user_command(s), checks=checks, metrics=metrics, seconds=result.get("seconds"),
                     result=result)
        report_steps[s["name"]] = entry
    fp32_labels = report_steps.get("predict_fp32", {}).get("metrics", {}).get("labels")
    for precision in ("bf16", "fp16"):
        entry = report_steps.get(f"predict_{precision}", {})
        labels = entry.get("metrics", {}).get("labels")
        if fp32_labels and labels and len(labels) == len(fp32_labels):
            entry["agreement_with_fp32"] = sum(a == b for a, b in zip(labels, fp32_labels)) / len(labels)
    for entry in report_steps.values():
        entry.get("metrics", {}).pop("labels", None)
        entry["ok"] = all(c["ok"] for c in entry["checks"] if c["hard"])
    return {
        "ok": finished and all(s["ok"] for s in report_steps.values()),
        "finished": finished,
        "smoke": args.smoke,
        "command": command,
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - started,
        "environment": {**{k: v for k, v in env.items() if k not in ("log_tail", "traceback")},
                        "nvidia_smi": nvidia_smi() if on_gpu else None},
        "peak": {"flops_per_second": peak, "source": peak_source},
        "flops_formula": "training = 6 * P * sum(l) + 12 * L * H * sum(l^2); inference = 2 * P * sum(l) + 4 * L * H "
                         "* sum(l^2); l = non-padding tokens of a sequence (a window for --head windows), P = "
                         "encoder-layer parameters, L = layers, H = hidden size; embeddings, heads, softmax, layer "
                         "norm and the optimizer not counted; MFU = FLOPs per second / the peak above",
        "time_budget_seconds": args.time_budget,
        "work_dir": str(args.work_dir),
        "steps": report_steps,
        "targets": target_rows(report_steps, mixed, args.smoke),
    }


def write_report(report, output):
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str),
                                           encoding="utf-8")
    output.with_suffix(".md").write_text(markdown(report), encoding="utf-8")


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    command = " ".join(["python", "bench/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    for suffix in (".json", ".md"):
        if args.output.with_suffix(suffix).exists() and not args.overwrite:
            raise SystemExit(f"error: {args.output.with_suffix(suffix)} exists; pass --overwrite to replace it, or "
                             f"choose another --output.")
    work = args.work_dir
    for sub in ("runs", "logs", "plans", "results", "checkpoint") + (("data",) if args.smoke else ()):
        shutil.rmtree(work / sub, ignore_errors=True)
    for sub in ("runs", "logs", "plans", "results"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    data = data_layout(args.data_dir or write_fixtures(work / "data"))

    def remaining():
        return args.time_budget - (time.perf_counter() - started)

    build = dict(build_step(args, data), timeout=args.step_timeout)
    if args.smoke:  # everything in one accelerate-launched process: the launch path, within a test's time
        steps = plan_steps(args, data, "bf16")
        results = run_group("smoke", [build] + steps, "accelerate --cpu", max(remaining(), 1), args)
    else:
        results = run_group("build", [build], "python", min(args.step_timeout, max(remaining(), 1)), args)
        env = results["build"]
        steps = plan_steps(args, data, "bf16" if env.get("bf16_supported", True) else "fp16")
        if not env.get("ok") or not env.get("cuda_available"):
            for s in steps:
                s["not_run"] = "no CUDA GPU visible to torch" if env.get("ok") else "the build step failed"
        groups = []  # consecutive steps of the same group share a process
        for s in steps:
            if groups and groups[-1][0] == s["group"]:
                groups[-1][1].append(s)
            else:
                groups.append((s["group"], [s], s["launch"]))
        for name, group, launch in groups:
            for s in group:
                needed = results.get(s.get("needs"))
                if s.get("needs") and not s.get("not_run") and not (needed and needed.get("ok")):
                    s["not_run"] = f"needs {s['needs']}'s model, and that step failed"
            group = [s for s in group if not s.get("not_run")]
            left = remaining()
            if group and left < 15:
                for s in group:
                    s["not_run"] = f"the time budget (--time_budget {args.time_budget:g} s) was spent"
            elif group:
                print(f"[gpu_check] {name}: {', '.join(s['name'] for s in group)} ({left:.0f} s of the budget left)",
                      flush=True)
                results.update(run_group(name, group, launch, min(args.step_timeout * len(group) + 30, left), args))
                write_report(make_report(args, steps, results, started, command, finished=False), args.output)

    report = make_report(args, steps, results, started, command, finished=True)
    write_report(report, args.output)
    print(markdown(report))
    print(f"[gpu_check] wrote {args.output.with_suffix('.json')} and .md; logs in {work / 'logs'}", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
