#!/usr/bin/env python
"""Prediction throughput (texts/s) of a trained classifier on THUCNews titles dev, repeated: predict.py's batched
path with PyTorch fp32 and ONNX Runtime, batched pipeline(), against the naive loop of one pipeline() call per text.

Every configuration predicts the same texts end to end (tokenization, truncation as in training, batching with
dynamic padding, softmax, label names) in this process, with the same number of threads. --repeats rounds (default
3), each round every configuration back to back, so a drift of the machine hits them alike:

    torch_fp32       predict.ClassificationPredictor, batches of --batch_size sorted by length, fp32
    onnxruntime      the same pre/post-processing, logits from ONNX Runtime (the model exported by export_onnx.py's
                     command line into --work_dir)
    pipeline_batched transformers.pipeline("text-classification")(texts, batch_size=--batch_size): the library's
                     batching
    pipeline_loop    the naive baseline: `for text in texts: classifier(text)` (on --naive_samples texts; it is slow)
  optional (--configs):
    torch_bf16       torch_fp32 under torch.autocast(bfloat16); skipped with a note where the CPU has no fast bf16
                     (AVX2-only CPUs: 10-100x slower than fp32)

Per configuration: texts/s and ms per text (mean ± std over rounds), speedup over pipeline_loop (the ratio within each
round, then mean ± std), dev accuracy, agreement with torch_fp32's labels (deterministic: from the first round), and
the share of the machine's CPUs other processes used meanwhile. Target (issue #7): the best batched configuration
>= 2x pipeline_loop.

Default scale (a 2-core AVX2 CPU at OMP_NUM_THREADS=1; wall time in bench/README.md): all 10,000 dev titles, 1,000 for
the loop, 3 rounds.

    OMP_NUM_THREADS=1 python bench/predict_throughput.py --model outputs/bench_pretrain/runs/finetune/seed1
    python bench/predict_throughput.py --model MODEL --max_samples 300 --naive_samples 50 --repeats 2 \\
        --output /tmp/predict_smoke/pt.json --work_dir /tmp/predict_smoke                     # smoke run

The model: any run_classification.py output directory trained on THUCNews titles (e.g. a fine-tuning run of
bench/pretrain_finetune.py, or `bash scripts/thucnews_from_scratch.sh ../shared/data/thucnews_titles`). Writes
bench/results/predict_throughput.json and .md; the ONNX export goes to --work_dir, never into the model directory.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
from common import (  # noqa: E402
    cpu_jiffies,
    fmt_mean_std,
    fmt_ratio,
    machine_line,
    mean_std,
    new_report,
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A run_classification.py output directory.")
    parser.add_argument("--data", default=DEFAULT_DATA, help="text<TAB>label lines (default: THUCNews titles dev).")
    parser.add_argument("--max_samples", type=int, default=None, help="Use the first N texts (default all).")
    parser.add_argument("--naive_samples", type=int, default=1000,
                        help="Texts for pipeline_loop (its texts/s is measured on these; default 1000).")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds of every configuration (mean ± std).")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads (default torch's).")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"Subset of {','.join(ALL)}.")
    parser.add_argument("--warmup", type=int, default=64, help="Texts predicted before timing each configuration.")
    parser.add_argument("--work_dir", default="/tmp/predict_throughput", help="For the ONNX export.")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON report; the .md table goes next to it.")
    args = parser.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(ALL)
    if unknown:
        parser.error(f"--configs: unknown {sorted(unknown)}; choose from {ALL}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.model, args.output = os.path.abspath(args.model), os.path.abspath(args.output)
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


def export_onnx(args, report):
    """The model exported by export_onnx.py's command line (it checks parity with PyTorch) into --work_dir."""
    path = os.path.join(args.work_dir, "model.onnx")
    cmd = [sys.executable, os.path.join(REPO, "export_onnx.py"), "--model", args.model, "--output", path,
           "--no_timing"] + (["--threads", str(args.threads)] if args.threads else [])
    report["commands"].append(shlex.join(cmd))
    os.makedirs(args.work_dir, exist_ok=True)
    log_path = os.path.join(args.work_dir, "export_onnx.log")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        returncode = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if returncode != 0:
        sys.exit(f"error: export_onnx.py failed (exit {returncode}); see {log_path}:\n{tail(log_path)}")
    report["setup"]["onnx_export_seconds"] = round(time.perf_counter() - start, 1)
    return path


def summarise(report):
    runs, summary = report["runs"], {}
    for name in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == name]
        shares = [r["other_processes_cpu_share"] for r in mine if r["other_processes_cpu_share"] is not None]
        base = {r["repeat"]: r["texts_per_s"] for r in runs if r["config"] == BASELINE}
        summary[name] = {
            "texts": mine[0]["texts"],
            "texts_per_s": mean_std([r["texts_per_s"] for r in mine]),
            "ms_per_text": mean_std([r["ms_per_text"] for r in mine]),
            # the ratio within each round (runs back to back), then mean +- std
            "speedup": mean_std([r["texts_per_s"] / base[r["repeat"]] for r in mine if base.get(r["repeat"])]),
            "accuracy": mine[0].get("accuracy"), "agreement": mine[0].get("agreement"),
            "max_other_processes_cpu_share": max(shares) if shares else None,
        }
    return summary


def markdown(report):
    lines = ["# Prediction throughput: mean ± std over rounds", "", machine_line(report), "",
             "| configuration | texts | texts/s | ms/text | speedup vs pipeline_loop | dev accuracy | "
             "same label as torch_fp32 | others' CPU (max) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda x, spec: "–" if x is None else format(x, spec)  # noqa: E731
    for name, s in report["summary"].items():
        lines.append(f"| {name} | {s['texts']} | {fmt_mean_std(s['texts_per_s'], 1, 1)} | "
                     f"{fmt_mean_std(s['ms_per_text'], 1, 2)} | {fmt_ratio(s['speedup'])} | "
                     f"{fmt(s['accuracy'], '.4f')} | {fmt(s['agreement'], '.2%')} | "
                     f"{fmt(s['max_other_processes_cpu_share'], '.0%')} |")
    for name, note in report.get("skipped", {}).items():
        lines += ["", f"Skipped `{name}`: {note}"]
    m = report["setup"]
    lines += ["", f"{m['model_architecture']} ({m['model_parameters'] / 1e6:.3g}M parameters, max_seq_length "
                  f"{m['max_seq_length']}), {m['data']} ({m['texts']} texts, pipeline_loop on {m['naive_texts']}); "
                  f"batch {m['batch_size']}, {m['threads']} threads, {report['repeats']} rounds; onnxruntime "
                  f"{report['machine'].get('onnxruntime')}."]
    if report.get("target"):
        t = report["target"]
        lines += ["", "| target | value | met |", "|---|---|:---:|",
                  f"| best batched configuration >= {TARGET_SPEEDUP:g}x the pipeline() loop (mean of per-round "
                  f"ratios) | {t['best']}: {t['speedup']} | {'yes' if t['met'] else '**no**'} |"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import onnxruntime
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    # predict.py's Python API (the batched path this benchmark measures)
    from predict import ClassificationPredictor, predictable, read_records

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    report = new_report(__file__, argv, args, repeats=args.repeats, seeds=None, setup={}, skipped={})
    report["machine"]["onnxruntime"] = onnxruntime.__version__
    report["machine"]["torch_threads"] = threads
    configs = [c for c in ALL if c in args.configs]
    if "torch_bf16" in configs and not report["machine"]["cpu_bf16_fast"]:
        configs.remove("torch_bf16")
        report["skipped"]["torch_bf16"] = ("this CPU has no fast bf16 matmuls (no AVX512-BF16/AMX): bf16 autocast "
                                           "would run 10-100x slower than fp32 here (predict.py falls back to fp32).")
        print(f"Skipping torch_bf16: {report['skipped']['torch_bf16']}", flush=True)

    reference = ClassificationPredictor(args.model, device="cpu")
    records = predictable(read_records(args.data, reference.fields, reference.aliases))[:args.max_samples]
    texts = [r["text"] for r in records]
    naive = records[:args.naive_samples]
    label2id = {v: k for k, v in reference.id2label.items()}
    gold = np.array([label_index(r.get("true_label", ""), label2id) for r in records])
    report["setup"].update(model=args.model, model_architecture=type(reference.model).__name__,
                           model_parameters=sum(p.numel() for p in reference.model.parameters()),
                           max_seq_length=reference.max_seq_length, truncation_strategy=reference.truncation_strategy,
                           data=args.data, texts=len(records), naive_texts=len(naive), batch_size=args.batch_size,
                           threads=threads)
    print(f"{len(records)} texts from {args.data}; model {args.model} ({type(reference.model).__name__}, "
          f"max_seq_length {reference.max_seq_length}); {threads} threads", flush=True)

    predictors = {"torch_fp32": reference}
    if "torch_bf16" in configs:
        predictors["torch_bf16"] = ClassificationPredictor(args.model, config=reference.config,
                                                           tokenizer=reference.tokenizer, device="cpu",
                                                           precision="bf16")
    if "onnxruntime" in configs:
        predictors["onnxruntime"] = ClassificationPredictor(args.model, config=reference.config,
                                                            tokenizer=reference.tokenizer,
                                                            onnx_path=export_onnx(args, report), threads=threads)
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

    labels_fp32 = None
    for repeat in range(1, args.repeats + 1):
        for name in configs:
            predicted, stats = predict(name)
            stats.update(config=name, repeat=repeat)
            if repeat == 1:  # predictions are deterministic: accuracy and agreement once
                n = len(predicted)
                stats["accuracy"] = round(float((predicted == gold[:n]).mean()), 4) if (gold[:n] >= 0).all() else None
                if name == "torch_fp32":
                    labels_fp32 = predicted
                stats["agreement"] = (round(float((predicted == labels_fp32[:n]).mean()), 4)
                                      if labels_fp32 is not None else None)
            report["runs"].append(stats)
            print(f"[round {repeat}] {name:>17}: {stats['texts_per_s']:>9.1f} texts/s ({stats['texts']} texts, "
                  f"{stats['seconds']:.2f} s, others' CPU {stats['other_processes_cpu_share']})", flush=True)
        report["summary"] = summarise(report)
        write_report(report, args.output, markdown(report))

    batched = {k: v for k, v in report["summary"].items() if k in BATCHED and k != "pipeline_batched"}
    if BASELINE in report["summary"] and batched:
        best = max(batched, key=lambda k: batched[k]["speedup"]["mean"] or 0)
        speedup = batched[best]["speedup"]
        report["target"] = {"best": best, "speedup": fmt_ratio(speedup), "speedup_mean": speedup["mean"],
                            "met": speedup["mean"] is not None and speedup["mean"] >= TARGET_SPEEDUP,
                            "threshold": TARGET_SPEEDUP}
    write_report(report, args.output, markdown(report))
    print("\n" + report["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
