#!/usr/bin/env python
"""Prediction throughput (texts/s) of a trained classifier on THUCNews titles dev: predict.py's batched path with
PyTorch fp32, PyTorch bf16 autocast and ONNX Runtime, against the naive loop of one pipeline() call per text.

Every configuration predicts the same texts end to end (tokenization, truncation as in training, batching with
dynamic padding, softmax, label names) in this process, one after the other, with the same number of threads:

    torch_fp32       predict.ClassificationPredictor, batches of --batch_size sorted by length, fp32
    torch_bf16       the same under torch.autocast(bfloat16)
    onnxruntime      the same pre/post-processing, logits from ONNX Runtime (export_onnx.py's export of the model)
    pipeline_batched transformers.pipeline("text-classification")(texts, batch_size=--batch_size): the library's
                     batching
    pipeline_loop    the naive baseline: `for text in texts: classifier(text)` (on --naive_samples texts; it is slow)

Per configuration: texts/s, ms per text, speedup over pipeline_loop, dev accuracy, agreement with torch_fp32's labels,
and the share of the machine's CPUs other processes used meanwhile. Target (issue #7): the best batched configuration
>= 2x pipeline_loop.

    python bench/predict_throughput.py --model outputs/thucnews            # full run (10,000 dev titles)
    python bench/predict_throughput.py --model outputs/thucnews --max_samples 500 --naive_samples 200 \\
        --output /tmp/predict_throughput_smoke.json                        # smoke run

The model: any run_classification.py output directory trained on THUCNews titles (e.g. `bash
scripts/thucnews_from_scratch.sh ../shared/data/thucnews_titles`). Writes bench/results/predict_throughput.json and
.md (the table); the ONNX export goes to --work_dir, never into the model directory. Run it on a quiet machine.
"""

import argparse
import datetime
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "predict_throughput.json")
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "thucnews_titles", "dev.txt")
BATCHED = ("torch_fp32", "torch_bf16", "onnxruntime", "pipeline_batched")
ALL = BATCHED + ("pipeline_loop",)
TARGET_SPEEDUP = 2.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A run_classification.py output directory.")
    parser.add_argument("--data", default=DEFAULT_DATA, help="text<TAB>label lines (default: THUCNews titles dev).")
    parser.add_argument("--max_samples", type=int, default=None, help="Use the first N texts (default all).")
    parser.add_argument("--naive_samples", type=int, default=1000,
                        help="Texts for pipeline_loop (its texts/s is measured on these; default 1000).")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads (default torch's).")
    parser.add_argument("--configs", default=",".join(ALL), help=f"Subset of {','.join(ALL)}.")
    parser.add_argument("--warmup", type=int, default=64, help="Texts predicted before timing each configuration.")
    parser.add_argument("--work_dir", default="/tmp/predict_throughput", help="For the ONNX export.")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON report; the .md table goes next to it.")
    args = parser.parse_args(argv)
    unknown = set(args.configs.split(",")) - set(ALL)
    if unknown:
        parser.error(f"--configs: unknown {sorted(unknown)}; choose from {ALL}")
    return args


def cpu_busy_seconds():
    """CPU seconds the whole machine spent busy so far (/proc/stat); None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq = (fields + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed(fn, n_texts):
    """Run fn(); wall seconds, texts/s, and the share of the machine's CPUs used by other processes meanwhile."""
    busy0, own0, start = cpu_busy_seconds(), time.process_time(), time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    busy1, own1 = cpu_busy_seconds(), time.process_time()
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (seconds * (os.cpu_count() or 1))
    return result, {"texts": n_texts, "seconds": round(seconds, 3), "texts_per_s": round(n_texts / seconds, 1),
                    "ms_per_text": round(1000 * seconds / n_texts, 3),
                    "others_cpu": None if others is None else round(others, 3)}


def label_index(label, label2id):
    """A dev label (an id like '8', or a name) -> the model's label id."""
    if label in label2id:
        return label2id[label]
    return int(label) if str(label).isdigit() else -1


def markdown(report):
    rows = report["runs"]
    lines = ["| configuration | texts | texts/s | ms/text | speedup vs pipeline_loop | dev accuracy | "
             "same label as torch_fp32 | others' CPU |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        fmt = lambda x, spec: "–" if x is None else format(x, spec)  # noqa: E731
        lines.append(f"| {name} | {r['texts']} | {r['texts_per_s']:.1f} | {r['ms_per_text']:.2f} | "
                     f"{fmt(r.get('speedup'), '.2f')}x | {fmt(r.get('accuracy'), '.4f')} | "
                     f"{fmt(r.get('agreement'), '.2%')} | {fmt(r.get('others_cpu'), '.0%')} |")
    m = report["setup"]
    lines += ["", f"{m['model_architecture']} ({m['model_parameters'] / 1e6:.3g}M parameters, max_seq_length "
                  f"{m['max_seq_length']}), {m['data']} ({m['texts']} texts, pipeline_loop on {m['naive_texts']}); "
                  f"batch {m['batch_size']}, {m['threads']} threads; {report['machine']['cpu_model']}, "
                  f"{report['machine']['cpu_count']} CPUs; torch {report['machine']['torch']}, onnxruntime "
                  f"{report['machine']['onnxruntime']}; {report['machine']['date'][:10]}."]
    if report.get("target"):
        t = report["target"]
        lines += ["", "| target | value | met |", "|---|---|:---:|",
                  f"| best batched configuration >= {TARGET_SPEEDUP:g}x the pipeline() loop | {t['best']}: "
                  f"{t['speedup']:.2f}x | {'yes' if t['met'] else '**no**'} |"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import onnxruntime
    import torch
    import transformers
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    import export_onnx
    from classification_throughput import machine_facts
    from predict import ClassificationPredictor, predictable, read_records

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    configs = [c for c in ALL if c in args.configs.split(",")]

    reference = ClassificationPredictor(args.model, device="cpu")
    records = predictable(read_records(args.data, reference.fields, reference.aliases))[:args.max_samples]
    texts = [r["text"] for r in records]
    naive = records[:args.naive_samples]
    label2id = {v: k for k, v in reference.id2label.items()}
    gold = np.array([label_index(r.get("true_label", ""), label2id) for r in records])
    print(f"{len(records)} texts from {args.data}; model {args.model} "
          f"({type(reference.model).__name__}, max_seq_length {reference.max_seq_length}); {threads} threads",
          flush=True)

    predictors = {"torch_fp32": reference}
    setup_notes = {}
    if "torch_bf16" in configs:
        predictors["torch_bf16"] = ClassificationPredictor(args.model, config=reference.config,
                                                           tokenizer=reference.tokenizer, device="cpu",
                                                           precision="bf16")
    if "onnxruntime" in configs:
        os.makedirs(args.work_dir, exist_ok=True)
        path = os.path.join(args.work_dir, "model.onnx")
        start = time.perf_counter()
        export_onnx.export(reference, path)
        setup_notes["onnx_export_seconds"] = round(time.perf_counter() - start, 1)
        predictors["onnxruntime"] = ClassificationPredictor(args.model, config=reference.config,
                                                            tokenizer=reference.tokenizer, onnx_path=path,
                                                            threads=threads)
    classifier = None
    if {"pipeline_batched", "pipeline_loop"} & set(configs):
        import heads  # noqa: F401  the custom heads load without trust_remote_code

        classifier = pipeline("text-classification", model=args.model, device="cpu")
    tokenizer_kwargs = {"truncation": True, "max_length": reference.max_seq_length}

    runs, labels_fp32 = {}, None
    for name in configs:
        if name in predictors:
            predictor = predictors[name]
            predictor.predict(records[:args.warmup], batch_size=args.batch_size)
            results, stats = timed(lambda: predictor.predict(records, batch_size=args.batch_size), len(records))
            predicted = np.array([label2id[r["label"]] for r in results])
        elif name == "pipeline_batched":
            classifier(texts[:args.warmup], batch_size=args.batch_size, **tokenizer_kwargs)
            results, stats = timed(lambda: classifier(texts, batch_size=args.batch_size, **tokenizer_kwargs),
                                   len(texts))
            predicted = np.array([label2id[r["label"]] for r in results])
        else:  # pipeline_loop: one call per text, the way a naive service does it
            for r in naive[:8]:
                classifier(r["text"], **tokenizer_kwargs)
            results, stats = timed(lambda: [classifier(r["text"], **tokenizer_kwargs)[0] for r in naive], len(naive))
            predicted = np.array([label2id[r["label"]] for r in results])
        n = len(predicted)
        stats["accuracy"] = round(float((predicted == gold[:n]).mean()), 4) if (gold[:n] >= 0).all() else None
        if name == "torch_fp32":
            labels_fp32 = predicted
        stats["agreement"] = (round(float((predicted == labels_fp32[:n]).mean()), 4)
                              if labels_fp32 is not None else None)
        runs[name] = stats
        print(f"{name:>17}: {stats['texts_per_s']:>9.1f} texts/s  ({stats['texts']} texts, {stats['seconds']:.2f} s, "
              f"accuracy {stats['accuracy']}, others' CPU {stats['others_cpu']})", flush=True)

    if "pipeline_loop" in runs:
        base = runs["pipeline_loop"]["texts_per_s"]
        for stats in runs.values():
            stats["speedup"] = round(stats["texts_per_s"] / base, 2)
    machine = machine_facts()
    machine["onnxruntime"] = onnxruntime.__version__
    machine["torch_threads"] = threads
    report = {
        "benchmark": "predict_throughput",
        "command": " ".join([os.path.basename(sys.executable), "bench/predict_throughput.py"]
                            + (argv or sys.argv[1:])),
        "setup": {"model": os.path.abspath(args.model), "model_architecture": type(reference.model).__name__,
                  "model_parameters": sum(p.numel() for p in reference.model.parameters()),
                  "max_seq_length": reference.max_seq_length, "truncation_strategy": reference.truncation_strategy,
                  "data": args.data, "texts": len(records), "naive_texts": len(naive), "batch_size": args.batch_size,
                  "threads": threads, "transformers": transformers.__version__, **setup_notes},
        "machine": machine,
        "runs": runs,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    batched = {k: v for k, v in runs.items() if k in BATCHED and k != "pipeline_batched"}
    if "pipeline_loop" in runs and batched:
        best = max(batched, key=lambda k: batched[k]["texts_per_s"])
        report["target"] = {"best": best, "speedup": batched[best]["speedup"],
                            "met": batched[best]["speedup"] >= TARGET_SPEEDUP, "threshold": TARGET_SPEEDUP}
    table = markdown(report)
    report["markdown"] = table
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    with open(os.path.splitext(args.output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    print("\n" + table)
    return report


if __name__ == "__main__":
    main()
