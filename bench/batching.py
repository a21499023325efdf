#!/usr/bin/env python
"""Which training batches should be the default? Random vs length-grouped vs length pools, over seeds.

Each cell trains run_classification.py once per (sampler, seed), in a fresh process, with everything else equal,
and records dev accuracy, the share of dev texts given the most predicted class (1.0 = collapsed to one class) and
training samples/s (evaluation runs once after training, so train_runtime holds training only). Runs go seed by
seed, all samplers of one seed back to back, so slow drifts of the machine hit every sampler alike; speed is also
reported as a ratio to random batches of the same seed.

Samplers (--train_sampling_strategy):
  random           plain random batches (transformers' default)
  group_by_length  transformers' LengthGroupedSampler: pools of 50 batches sorted long -> short, in that order
  pools4, pools16  length_pools with --length_pool_batches 4 / 16: pools of k random batches sorted by length, all
                   batches of the epoch shuffled

Cells (--cells):
  titles_tiny        THUCNews titles (first 12,000 train lines, first 2,000 dev lines), 2-layer 128-wide BERT from
                     scratch, lr 1e-3, the script's defaults otherwise (head: [CLS] through the pooler): the run where
                     transformers' grouping was seen to collapse to one class. The other cells use --pooling mean.
  titles_4l          the same data, 4-layer 256-wide BERT from scratch, lr 5e-4
  titles_pretrained  the same data, fine-tuning a run_mlm.py checkpoint (--pretrained DIR), lr 2e-4
  reviews            ChnSentiCorp (9,600 train / 1,200 dev; long, varied lengths: where padding costs most),
                     2-layer 128-wide BERT from scratch, lr 5e-4, max_seq_length 256

    python bench/batching.py --data_dir ../shared/data --pretrained outputs/news_bert/mlm

Writes bench/results/batching.json (every run, the commands, commit, machine, seeds) and batching.md (the table and
the rule's verdict: the default is the fastest sampler whose accuracy is within one standard deviation of random
batches in every cell).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, fmt_mean_std, machine_facts, mean_std, run_config, tail  # noqa: E402

SAMPLERS = {
    "random": ["--train_sampling_strategy", "random"],
    "group_by_length": ["--train_sampling_strategy", "group_by_length"],
    "pools4": ["--train_sampling_strategy", "length_pools", "--length_pool_batches", "4"],
    "pools16": ["--train_sampling_strategy", "length_pools", "--length_pool_batches", "16"],
}
TINY = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
SMALL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}
CELLS = {
    # the reproduction: everything else default (BERT's own head, [CLS] through the tanh pooler; 128 tokens)
    "titles_tiny": {"data": "thucnews", "model": TINY, "learning_rate": 1e-3, "max_seq_length": None, "pooling": None},
    "titles_4l": {"data": "thucnews", "model": SMALL, "learning_rate": 5e-4, "max_seq_length": "auto",
                  "pooling": "mean"},
    "titles_pretrained": {"data": "thucnews", "model": "pretrained", "learning_rate": 2e-4, "max_seq_length": "auto",
                          "pooling": "mean"},
    "reviews": {"data": "chnsenticorp", "model": TINY, "learning_rate": 5e-4, "max_seq_length": "256",
                "pooling": "mean"},
}
DATA = {
    "thucnews": {"train": "thucnews_titles/train.txt", "dev": "thucnews_titles/dev.txt",
                 "extra": ["--label_file", "thucnews_titles/class.txt", "--max_train_samples", "12000",
                           "--max_eval_samples", "2000"]},
    "chnsenticorp": {"train": "chnsenticorp/train.tsv", "dev": "chnsenticorp/dev.tsv", "extra": []},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="../shared/data", help="Folder holding thucnews_titles/ and chnsenticorp/.")
    p.add_argument("--pretrained", default=None, help="A run_mlm.py checkpoint for the titles_pretrained cell.")
    p.add_argument("--cells", default=",".join(CELLS), help=f"Comma-separated, from {', '.join(CELLS)}.")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help=f"Comma-separated, from {', '.join(SAMPLERS)}.")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_train_samples", type=int, default=None, help="Cap every cell's training set (smoke runs).")
    p.add_argument("--max_eval_samples", type=int, default=None, help="Cap every cell's dev set (smoke runs).")
    p.add_argument("--output", default=os.path.join(REPO, "bench", "results", "batching.json"))
    p.add_argument("--work_dir", default="/tmp/bench_batching")
    p.add_argument("--reuse_runs", action="store_true", help="Keep finished runs of the identical command.")
    args = p.parse_args(argv)
    args.cells = [c for c in args.cells.split(",") if c]
    args.samplers = [s for s in args.samplers.split(",") if s]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    for name, known in (("cells", CELLS), ("samplers", SAMPLERS)):
        unknown = set(getattr(args, name)) - set(known)
        if unknown:
            p.error(f"unknown --{name} {sorted(unknown)}; choose from {list(known)}")
    if "titles_pretrained" in args.cells and not args.pretrained:
        p.error("the titles_pretrained cell needs --pretrained DIR (a run_mlm.py checkpoint)")
    args.data_dir = os.path.abspath(args.data_dir)
    return args


def build_model(args, cell, env, commands):
    """--model_name_or_path or --config_name/--tokenizer_name arguments for a cell's model."""
    spec = CELLS[cell]
    if spec["model"] == "pretrained":
        return ["--model_name_or_path", os.path.abspath(args.pretrained)]
    shape = spec["model"]
    name = f"{spec['data']}_{shape['num_hidden_layers']}L{shape['hidden_size']}"
    model_dir = os.path.join(args.work_dir, "models", name)
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        train = os.path.join(args.data_dir, DATA[spec["data"]]["train"])
        cmd = [sys.executable, os.path.join(REPO, "data_scripts", "train_tokenizer.py"), "--train_files", train,
               "--output_dir", model_dir, "--vocab_size", "8000", "--write_config",
               "--max_position_embeddings", "512"] + [x for k, v in shape.items() for x in (f"--{k}", str(v))]
        if train.endswith(".tsv"):
            cmd += ["--text_column_index", "1"]
        commands.append(shlex.join(cmd))
        subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return ["--config_name", model_dir, "--tokenizer_name", model_dir]


def run_cmd(args, cell, sampler, seed, model_flags, out_dir):
    spec, data = CELLS[cell], DATA[CELLS[cell]["data"]]
    extra = [os.path.join(args.data_dir, x) if x.startswith(("thucnews", "chnsenticorp")) else x
             for x in data["extra"]]
    cmd = [sys.executable, os.path.join(REPO, "run_classification.py"), *model_flags,
           "--train_file", os.path.join(args.data_dir, data["train"]),
           "--validation_file", os.path.join(args.data_dir, data["dev"]), *extra,
           "--do_train", "--do_eval", *(["--pooling", spec["pooling"]] if spec["pooling"] else []),
           *(["--max_seq_length", spec["max_seq_length"]] if spec["max_seq_length"] else []),
           "--num_train_epochs", str(args.epochs), "--learning_rate", str(spec["learning_rate"]),
           "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "128",
           "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "50", "--seed", str(seed),
           "--disable_tqdm", "true", "--output_dir", out_dir, "--overwrite_output_dir", *SAMPLERS[sampler]]
    # later flags win: the smoke caps override the cell's own --max_*_samples
    if args.max_train_samples:
        cmd += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        cmd += ["--max_eval_samples", str(args.max_eval_samples)]
    return cmd


def collect(record, out_dir):
    """Accuracy, samples/s and the most-predicted class's share of the dev set, from the run's output files."""
    if record["returncode"] != 0:
        return record
    with open(os.path.join(out_dir, "all_results.json")) as f:
        results = json.load(f)
    with open(os.path.join(out_dir, "eval_classification_report.json")) as f:
        report = json.load(f)
    matrix = report["confusion_matrix"]  # rows: true label, columns: predicted label
    predicted = [sum(row[j] for row in matrix) for j in range(len(matrix))]
    record.update(accuracy=results["eval_accuracy"], train_samples_per_second=results["train_samples_per_second"],
                  train_runtime=results["train_runtime"], max_predicted_share=max(predicted) / sum(predicted))
    return record


def summarise(report, samplers, cells):
    """Per cell and sampler: mean +- std of accuracy, samples/s, speed ratio to random (same seed); the verdict."""
    summary = {}
    for cell in cells:
        runs = [r for r in report["runs"] if r["cell"] == cell]
        random_speed = {r["seed"]: r.get("train_samples_per_second") for r in runs if r["sampler"] == "random"}
        summary[cell] = {}
        for sampler in samplers:
            mine = [r for r in runs if r["sampler"] == sampler]
            ratios = [r["train_samples_per_second"] / random_speed[r["seed"]] for r in mine
                      if r.get("train_samples_per_second") and random_speed.get(r["seed"])]
            summary[cell][sampler] = {
                "accuracy": mean_std([r.get("accuracy") for r in mine]),
                "train_samples_per_second": mean_std([r.get("train_samples_per_second") for r in mine]),
                "speed_vs_random": mean_std(ratios),
                "max_predicted_share": mean_std([r.get("max_predicted_share") for r in mine]),
                "failed_runs": sum(r["returncode"] != 0 for r in mine),
            }
    verdict = {}
    if "random" in samplers:
        for sampler in samplers:
            ok = all(
                summary[c][sampler]["accuracy"]["mean"] is not None
                and summary[c][sampler]["accuracy"]["mean"]
                >= summary[c]["random"]["accuracy"]["mean"] - summary[c]["random"]["accuracy"]["std"]
                for c in cells)
            speed = [summary[c][sampler]["speed_vs_random"]["mean"] for c in cells]
            verdict[sampler] = {"accuracy_within_one_std_of_random_everywhere": ok,
                                "mean_speed_vs_random": None if None in speed else sum(speed) / len(speed)}
        eligible = [s for s in samplers if verdict[s]["accuracy_within_one_std_of_random_everywhere"]
                    and verdict[s]["mean_speed_vs_random"] is not None]
        verdict["chosen"] = max(eligible, key=lambda s: verdict[s]["mean_speed_vs_random"]) if eligible else None
    return summary, verdict


def markdown(report):
    lines = ["# Training batches: random vs length-grouped vs length pools", "",
             f"Commit `{report['machine']['git_commit']}`, {report['machine']['cpu_count']} cores, torch "
             f"{report['machine']['torch']}, seeds {report['seeds']}, {report['epochs']} epochs, batch "
             f"{report['batch_size']}. Accuracy in % (mean ± std over seeds); speed = training samples/s; "
             "x random = the ratio to random batches of the same seed; collapse = share of dev texts given the "
             "most predicted class (1.00: one class for everything).", "",
             "| cell | sampler | dev accuracy | samples/s | x random | collapse |", "|---|---|---:|---:|---:|---:|"]
    for cell, by_sampler in report["summary"].items():
        for sampler, s in by_sampler.items():
            lines.append(f"| {cell} | {sampler} | {fmt_mean_std(s['accuracy'])} | "
                         f"{fmt_mean_std(s['train_samples_per_second'], 1, 0)} | "
                         f"{fmt_mean_std(s['speed_vs_random'], 1, 2)} | "
                         f"{fmt_mean_std(s['max_predicted_share'], 1, 2)} |")
    verdict = report.get("verdict", {})
    if verdict:
        lines += ["", "| sampler | accuracy within 1 std of random in every cell | mean speed x random |",
                  "|---|---|---:|"]
        for sampler in report["summary"][next(iter(report["summary"]))]:
            v = verdict[sampler]
            speed = "-" if v["mean_speed_vs_random"] is None else f"{v['mean_speed_vs_random']:.2f}"
            lines.append(f"| {sampler} | {'yes' if v['accuracy_within_one_std_of_random_everywhere'] else 'no'} "
                         f"| {speed} |")
        lines += ["", f"Rule: the default is the fastest sampler whose accuracy is within one standard deviation of "
                  f"random batches in every cell. Chosen: **{verdict.get('chosen')}**."]
    lines += ["", "Commands: see `commands` in batching.json."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_CACHE=os.path.join(args.work_dir, "datasets_cache"))
    os.makedirs(args.work_dir, exist_ok=True)
    report = {"benchmark": "batching", "command": shlex.join([sys.executable, *sys.argv]), "machine": machine_facts(),
              "seeds": args.seeds, "epochs": args.epochs, "batch_size": args.batch_size, "cells": args.cells,
              "samplers": args.samplers, "commands": [], "runs": []}

    def save():
        report["summary"], report["verdict"] = summarise(report, args.samplers, args.cells)
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        with open(os.path.splitext(args.output)[0] + ".md", "w") as f:
            f.write(markdown(report))

    for cell in args.cells:
        model_flags = build_model(args, cell, env, report["commands"])
        for seed in args.seeds:
            for sampler in args.samplers:
                name = f"{cell}/{sampler}/seed{seed}"
                out_dir = os.path.join(args.work_dir, "runs", cell, sampler, f"seed{seed}")
                cmd = run_cmd(args, cell, sampler, seed, model_flags, out_dir)
                report["commands"].append(shlex.join(cmd))
                record = collect(run_config(name, cmd, out_dir, env, args.reuse_runs), out_dir)
                record.update(cell=cell, sampler=sampler, seed=seed)
                report["runs"].append(record)
                if record["returncode"] != 0:
                    print(tail(record["log"]), flush=True)
                else:
                    print(f"[{name}] accuracy {record['accuracy']:.4f}, {record['train_samples_per_second']:.0f} "
                          f"samples/s, most predicted class {record['max_predicted_share']:.2f}", flush=True)
                save()
    save()
    print(markdown(report))
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
