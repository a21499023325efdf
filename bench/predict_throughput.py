#!/usr/bin/env python
"""Prediction throughput (texts/s) of a trained classifier on THUCNews titles dev, repeated: predict.py's batched
path with PyTorch fp32 and ONNX Runtime, batched pipeline(), against the naive loop of one pipeline() call per text.

Every configuration predicts the same texts end to end (tokenization, truncation as in training, batching with
dynamic padding, softmax, label names) with the same number of threads. --seeds (default 1,2,3): one round per seed,
each in a fresh process (the model loaded anew), every configuration of the round back to back, their order rotated
from seed to seed so that neither a drift of the machine nor a warm cache favours one; the seed also seeds torch:

    torch_fp32       predict.ClassificationPredictor, batches of --batch_size sorted by length, fp32
    onnxruntime      the same pre/post-processing, logits from ONNX Runtime (the model exported by export_onnx.py's
                     command line into --work_dir)
    pipeline_batched transformers.pipeline("text-classification")(texts, batch_size=--batch_size): the library's
                     batching
    pipeline_loop    the naive baseline: `for text in texts: classifier(text)` (on --naive_samples texts; it is slow)
  optional (--configs):
    torch_bf16       torch_fp32 under torch.autocast(bfloat16); skipped with a note where the CPU has no fast bf16
                     (AVX2-only CPUs: 10-100x slower than fp32)

Per configuration: texts/s and ms per text (mean ± std over seeds), speedup over pipeline_loop (the ratio within
each round, then mean ± std), dev accuracy, agreement with torch_fp32's labels (deterministic: from the first seed),
and the share of the machine's CPUs other processes used meanwhile. Target (issue #7): the best batched configuration
>= 2x pipeline_loop.

Default scale (a 2-core AVX2 CPU at OMP_NUM_THREADS=1): all 10,000 dev titles, 1,000 for
the loop, seeds 1,2,3.

    OMP_NUM_THREADS=1 python bench/predict_throughput.py --model outputs/bench_pretrain/runs/finetune/seed1
    python bench/predict_throughput.py --model MODEL --smoke --seeds 1,2 \\
        --output /tmp/predict_smoke/pt.json --work_dir /tmp/predict_smoke                     # smoke run

The model: any run_classification.py output directory trained on THUCNews titles (e.g. a fine-tuning run of
bench/pretrain_finetune.py, or `bash scripts/thucnews_from_scratch.sh ../shared/data/thucnews_titles`). Writes
bench/results/predict_throughput.json and .md; the ONNX export goes to --work_dir, never into the model directory.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
from common import (  # noqa: E402
    add_seed_argument,
    bench_env,
    cpu_jiffies,
    fmt_mean_std,
    fmt_ratio,
    machine_line,
    new_report,
    read_json,
    run_config,
    summarise,
    tail,
    write_report,
)

DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "predict_throughput.json")
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "thucnews_titles", "dev.txt")
BATCHED = ("torch_fp32", "torch_bf16", "onnxruntime", "pipeline_batched")
ALL = BATCHED + ("pipeline_loop",)
DEFAULT_CONFIGS = "torch_fp32,onnxruntime,pipeline_batched,pipeline_loop"
BASELINE = "pipeline_loop"
TARGET_SPEEDUP = 2.0
SMOKE = {"max_samples": 200, "naive_samples": 20, "warmup": 8}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A run_classification.py output directory.")
    parser.add_argument("--data", default=DEFAULT_DATA, help="text<TAB>label lines (default: THUCNews titles dev).")
    parser.add_argument("--max_samples", type=int, default=None, help="Use the first N texts (default all).")
    parser.add_argument("--naive_samples", type=int, default=1000,
                        help="Texts for pipeline_loop (its texts/s is measured on these; default 1000).")
    add_seed_argument(parser)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads (default torch's).")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"Subset of {','.join(ALL)}.")
    parser.add_argument("--warmup", type=int, default=64, help="Texts predicted before timing each configuration.")
    parser.add_argument("--smoke", action="store_true",
                        help=f"Tiny caps to check the code path ({SMOKE['max_samples']} texts, "
                             f"{SMOKE['naive_samples']} for the loop, {SMOKE['warmup']} warm-up); numbers mean "
                             "nothing.")
    parser.add_argument("--work_dir", default="/tmp/predict_throughput",
                        help="The ONNX export and each seed's round (log, numbers).")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON report; the .md table goes next to it.")
    # the child side: one round in a fresh process (the parent passes these; not for users)
    parser.add_argument("--round_output", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--onnx_path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_samples = min(args.max_samples or SMOKE["max_samples"], SMOKE["max_samples"])
        args.naive_samples = min(args.naive_samples, SMOKE["naive_samples"])
        args.warmup = min(args.warmup, SMOKE["warmup"])
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(ALL)
    if unknown:
        parser.error(f"--configs: unknown {sorted(unknown)}; choose from {ALL}")
    args.model, args.output = os.path.abspath(args.model), os.path.abspath(args.output)
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def timed(fn, n_texts):
    """Run fn(); wall seconds, texts/s, and the share of the machine's CPUs used by other processes meanwhile."""
    before, own_before, start = cpu_jiffies(), time.process_time(), time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    after, own_after = cpu_jiffies(), time.process_time()
    others = None
    if before and after:
        others = max(0.0, (after[0] - before[0]) - (own_after - own_before)) / (seconds * (os.cpu_count() or 1))
    return result, {"texts": n_texts, "seconds": round(seconds, 3), "texts_per_s": n_texts / seconds,
                    "ms_per_text": 1000 * seconds / n_texts,
                    "other_processes_cpu_share": None if others is None else round(others, 3)}


def label_index(label, label2id):
    """A dev label (an id like '8', or a name) -> the model's label id."""
    if label in label2id:
        return label2id[label]
    return int(label) if str(label).isdigit() else -1


def export_onnx(args, report, env):
    """The model exported by export_onnx.py's command line (it checks parity with PyTorch) into --work_dir."""
    path = os.path.join(args.work_dir, "model.onnx")
    cmd = [sys.executable, os.path.join(REPO, "export_onnx.py"), "--model", args.model, "--output", path,
           "--no_timing"] + (["--threads", str(args.threads)] if args.threads else [])
    report["commands"].append(shlex.join(cmd))
    os.makedirs(args.work_dir, exist_ok=True)
    log_path = os.path.join(args.work_dir, "export_onnx.log")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        returncode = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if returncode != 0:
        sys.exit(f"error: export_onnx.py failed (exit {returncode}); see {log_path}:\n{tail(log_path)}")
    report["setup"]["onnx_export_seconds"] = round(time.perf_counter() - start, 1)
    return path


def rotated(configs, seed_index):
    """The configurations in the order of round seed_index: rotated by one per round, so that over as many seeds as
    configurations each one runs first once (the first of a round meets a colder machine)."""
    k = seed_index % len(configs)
    return configs[k:] + configs[:k]


def measure_round(args):
    """The child side: one round, every configuration of --configs in the given order, in this fresh process; writes
    {"setup", "runs"} to --round_output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    # predict.py's Python API (the batched path this benchmark measures)
    from predict import ClassificationPredictor, predictable, read_records

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seeds[0])
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    configs = args.configs
    reference = ClassificationPredictor(args.model, device="cpu")
    records = predictable(read_records(args.data, reference.fields, reference.aliases))[:args.max_samples]
    texts = [r["text"] for r in records]
    naive = records[:args.naive_samples]
    label2id = {v: k for k, v in reference.id2label.items()}
    gold = np.array([label_index(r.get("true_label", ""), label2id) for r in records])
    setup = dict(model=args.model, model_architecture=type(reference.model).__name__,
                 model_parameters=sum(p.numel() for p in reference.model.parameters()),
                 max_seq_length=reference.max_seq_length, truncation_strategy=reference.truncation_strategy,
                 data=args.data, texts=len(records), naive_texts=len(naive), batch_size=args.batch_size,
                 threads=threads)
    print(f"{len(records)} texts from {args.data}; model {args.model} ({type(reference.model).__name__}, "
          f"max_seq_length {reference.max_seq_length}); {threads} threads; order {configs}", flush=True)

    predictors = {"torch_fp32": reference}
    if "torch_bf16" in configs:
        predictors["torch_bf16"] = ClassificationPredictor(args.model, config=reference.config,
                                                           tokenizer=reference.tokenizer, device="cpu",
                                                           precision="bf16")
    if "onnxruntime" in configs:
        predictors["onnxruntime"] = ClassificationPredictor(args.model, config=reference.config,
                                                            tokenizer=reference.tokenizer,
                                                            onnx_path=args.onnx_path, threads=threads)
    classifier = None
    if {"pipeline_batched", "pipeline_loop"} & set(configs):
        import heads  # noqa: F401  the custom heads load without trust_remote_code

        classifier = pipeline("text-classification", model=args.model, device="cpu")
    tokenizer_kwargs = {"truncation": True, "max_length": reference.max_seq_length}

    def predict(name):
        if name in predictors:
            results, stats = timed(lambda: predictors[name].predict(records, batch_size=args.batch_size), len(records))
        elif name == "pipeline_batched":
            results, stats = timed(lambda: classifier(texts, batch_size=args.batch_size, **tokenizer_kwargs),
                                   len(texts))
        else:  # pipeline_loop: one call per text, the way a naive service does it
            results, stats = timed(lambda: [classifier(r["text"], **tokenizer_kwargs)[0] for r in naive], len(naive))
        return np.array([label2id[r["label"]] for r in results]), stats

    for name in configs:  # warm-up, not timed
        if name in predictors:
            predictors[name].predict(records[:args.warmup], batch_size=args.batch_size)
        elif name == "pipeline_batched":
            classifier(texts[:args.warmup], batch_size=args.batch_size, **tokenizer_kwargs)
        else:
            for r in naive[:8]:
                classifier(r["text"], **tokenizer_kwargs)

    runs, predicted_by = [], {}
    for position, name in enumerate(configs):
        predicted, stats = predict(name)
        predicted_by[name] = predicted
        n = len(predicted)
        stats.update(config=name, position=position,
                     accuracy=round(float((predicted == gold[:n]).mean()), 4) if (gold[:n] >= 0).all() else None)
        runs.append(stats)
        print(f"{name:>17}: {stats['texts_per_s']:>9.1f} texts/s ({stats['texts']} texts, {stats['seconds']:.2f} s, "
              f"others' CPU {stats['other_processes_cpu_share']})", flush=True)
    if "torch_fp32" in predicted_by:  # agreement with fp32's labels, whatever order the round ran in
        for stats in runs:
            mine = predicted_by[stats["config"]]
            stats["agreement"] = round(float((mine == predicted_by["torch_fp32"][:len(mine)]).mean()), 4)
    with open(args.round_output, "w") as f:
        json.dump({"setup": setup, "runs": runs}, f, indent=2)


def markdown(report):
    lines = ["# Prediction throughput: mean ± std over seeds", "", machine_line(report), "",
             "| configuration | texts | texts/s | ms/text | speedup vs pipeline_loop | dev accuracy | "
             "same label as torch_fp32 | others' CPU (max) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda x, spec: "–" if x is None else format(x, spec)  # noqa: E731
    for name, s in report["summary"].items():
        lines.append(f"| {name} | {s['texts']} | {fmt_mean_std(s['texts_per_s'], 1, 1)} | "
                     f"{fmt_mean_std(s['ms_per_text'], 1, 2)} | {fmt_ratio(s['ratio']['texts_per_s'])} | "
                     f"{fmt(s['accuracy'], '.4f')} | {fmt(s['agreement'], '.2%')} | "
                     f"{fmt(s['max_other_processes_cpu_share'], '.0%')} |")
    for name, note in report.get("skipped", {}).items():
        lines += ["", f"Skipped `{name}`: {note}"]
    m = report["setup"]
    if m:
        lines += ["", f"{m['model_architecture']} ({m['model_parameters'] / 1e6:.3g}M parameters, max_seq_length "
                      f"{m['max_seq_length']}), {m['data']} ({m['texts']} texts, "
                      f"pipeline_loop on {m['naive_texts']}); "
                      f"batch {m['batch_size']}, {m['threads']} threads; one round per seed in a fresh process, "
                      f"configurations back to back in an order rotated per seed; onnxruntime "
                      f"{report['machine'].get('onnxruntime')}."]
    if report.get("target"):
        t = report["target"]
        lines += ["", "| target | value | met |", "|---|---|:---:|",
                  f"| best batched configuration >= {TARGET_SPEEDUP:g}x the pipeline() loop (mean of per-seed "
                  f"ratios) | {t['best']}: {t['speedup']} | {'yes' if t['met'] else '**no**'} |"]
    lines += ["", "Commands: `command` and `commands` in the JSON."]
    return "\n".join(lines) + "\n"


def summarise_rounds(report):
    """mean ± std over seeds per configuration; speedup: per-seed ratio to pipeline_loop; accuracy and agreement
    (deterministic) from the first seed that has them."""
    summary = summarise(report["runs"], ["texts_per_s", "ms_per_text"], baseline=BASELINE,
                        ratio_metrics=["texts_per_s"])
    for name, entry in summary.items():
        mine = [r for r in report["runs"] if r["config"] == name and r.get("texts_per_s") is not None]
        first = mine[0] if mine else {}
        entry.update(texts=first.get("texts"), accuracy=first.get("accuracy"), agreement=first.get("agreement"))
    return summary


def main(argv=None):
    args = parse_args(argv)
    if args.round_output:  # the child: one round
        measure_round(args)
        return 0
    import onnxruntime

    os.makedirs(args.work_dir, exist_ok=True)
    env = bench_env(args.work_dir)
    report = new_report(__file__, argv, args, seeds=args.seeds, setup={}, skipped={})
    report["machine"]["onnxruntime"] = onnxruntime.__version__
    configs = [c for c in ALL if c in args.configs]
    if "torch_bf16" in configs and not report["machine"]["cpu_bf16_fast"]:
        configs.remove("torch_bf16")
        report["skipped"]["torch_bf16"] = ("this CPU has no fast bf16 matmuls (no AVX512-BF16/AMX): bf16 autocast "
                                           "would run 10-100x slower than fp32 here (predict.py falls back to fp32).")
        print(f"Skipping torch_bf16: {report['skipped']['torch_bf16']}", flush=True)
    onnx_path = export_onnx(args, report, env) if "onnxruntime" in configs else None

    for index, seed in enumerate(args.seeds):
        out_dir = os.path.join(args.work_dir, "rounds", f"seed{seed}")
        round_path = os.path.join(out_dir, "round.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--data", args.data,
               "--naive_samples", str(args.naive_samples), "--seeds", str(seed), "--batch_size", str(args.batch_size),
               "--configs", ",".join(rotated(configs, index)), "--warmup", str(args.warmup),
               "--round_output", round_path]
        cmd += ["--max_samples", str(args.max_samples)] if args.max_samples else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--onnx_path", onnx_path] if onnx_path else []
        record = run_config(f"seed{seed}", cmd, out_dir, env, reuse=False)
        report["commands"].append(record["command"])
        result = read_json(round_path) if record["returncode"] == 0 else None
        if result is None:
            report["runs"] += [dict(config=name, seed=seed, returncode=record["returncode"] or 1, log=record["log"])
                               for name in configs]
            continue
        report["setup"].update(result["setup"])
        for stats in result["runs"]:
            report["runs"].append(dict(stats, seed=seed, returncode=0, process_wall_s=record["wall_s"],
                                       process_peak_rss_mb=record["peak_rss_mb"], log=record["log"]))
        report["summary"] = summarise_rounds(report)
        write_report(report, args.output, markdown(report))

    report["summary"] = summarise_rounds(report)
    batched = {k: v for k, v in report["summary"].items() if k in BATCHED and k != "pipeline_batched"}
    if BASELINE in report["summary"] and batched:
        best = max(batched, key=lambda k: batched[k]["ratio"]["texts_per_s"]["mean"] or 0)
        speedup = batched[best]["ratio"]["texts_per_s"]
        report["target"] = {"best": best, "speedup": fmt_ratio(speedup), "speedup_mean": speedup["mean"],
                            "met": speedup["mean"] is not None and speedup["mean"] >= TARGET_SPEEDUP,
                            "threshold": TARGET_SPEEDUP}
    write_report(report, args.output, markdown(report))
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md")
    return 1 if any(r.get("returncode") for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
