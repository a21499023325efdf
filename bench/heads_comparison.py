#!/usr/bin/env python
"""What does a head buy? Every head x {trained, frozen encoder}, and long-text strategies, same encoder and budget.

Two suites, each a list of run_classification.py runs (fresh process each, same model, seed, epochs, batch size and
learning rate), tabulated as JSON + Markdown:

  --suite heads      THUCNews titles (../shared/data/thucnews_titles): linear head with each pooling, cnn, lstm, gru,
                     attention; each with the encoder trained, and frozen (--freeze all: only the head learns).
  --suite long_text  ChnSentiCorp reviews (../shared/data/chnsenticorp, median 76 characters, p95 246) with a short
                     window (--max_seq_length 64) so most reviews are "long": head-only, tail-only, head+tail
                     truncation vs sliding windows fused by max, mean, attention, transformer (--head windows).

The encoder is a small BERT trained from scratch (vocab from the training texts): there is no pretrained Chinese
BERT on this machine. A frozen from-scratch encoder is a random feature extractor, so the frozen column shows what
each head extracts from random features, not what it extracts from bert-base-chinese.

    python bench/heads_comparison.py --suite heads
    python bench/heads_comparison.py --suite long_text
"""

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classification_throughput import RUN_SCRIPT, TOKENIZER_SCRIPT  # noqa: E402
from common import REPO, machine_facts, run_config, tail  # noqa: E402

HEAD_CONFIGS = {  # name -> run_classification.py arguments
    "linear_pooler": ["--head", "linear", "--pooling", "pooler"],
    "linear_cls": ["--head", "linear", "--pooling", "cls"],
    "linear_mean": ["--head", "linear", "--pooling", "mean"],
    "linear_max": ["--head", "linear", "--pooling", "max"],
    "linear_attention": ["--head", "linear", "--pooling", "attention"],
    "linear_concat_last_4": ["--head", "linear", "--pooling", "concat_last_k", "--pooling_last_k", "4"],
    "cnn": ["--head", "cnn"],
    "lstm": ["--head", "lstm"],
    "gru": ["--head", "gru"],
    "attention": ["--head", "attention"],
}
LONG_TEXT_CONFIGS = {
    "truncate_head": ["--pooling", "mean", "--truncation_strategy", "head"],
    "truncate_tail": ["--pooling", "mean", "--truncation_strategy", "tail"],
    "truncate_head+tail": ["--pooling", "mean", "--truncation_strategy", "head+tail"],
    "windows_max": ["--head", "windows", "--window_fusion", "max"],
    "windows_mean": ["--head", "windows", "--window_fusion", "mean"],
    "windows_attention": ["--head", "windows", "--window_fusion", "attention"],
    "windows_transformer": ["--head", "windows", "--window_fusion", "transformer"],
}
SUITES = {
    "heads": {"data_dir": "../shared/data/thucnews_titles", "train": "train.txt", "dev": "dev.txt",
              "label_file": "class.txt", "max_seq_length": "auto", "max_train_samples": 20000,
              "max_eval_samples": 5000, "epochs": 2, "learning_rate": 5e-4},
    "long_text": {"data_dir": "../shared/data/chnsenticorp", "train": "train.tsv", "dev": "dev.tsv",
                  "label_file": None, "max_seq_length": "64", "max_train_samples": None, "max_eval_samples": None,
                  "epochs": 3, "learning_rate": 5e-4},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=list(SUITES), required=True)
    p.add_argument("--data_dir", default=None, help="Default: the suite's folder under ../shared/data.")
    p.add_argument("--configs", default=None, help="Comma-separated subset of the suite's configurations.")
    p.add_argument("--frozen", default="both", choices=["both", "trained", "frozen"],
                   help="heads suite: encoder trained, frozen (--freeze all), or both.")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--max_train_samples", type=int, default=None)
    p.add_argument("--max_eval_samples", type=int, default=None)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--window_stride", type=int, default=32, help="long_text: tokens between window starts.")
    p.add_argument("--max_windows", type=int, default=8, help="long_text: windows per document at most.")
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work_dir", default=None, help="Default: /tmp/heads_comparison_<suite>.")
    p.add_argument("--output", default=None, help="Default: bench/results/<suite>.json (+ .md).")
    p.add_argument("--reuse_runs", action="store_true", help="Skip configurations whose run already finished.")
    args = p.parse_args(argv)
    suite = SUITES[args.suite]
    for key in ("data_dir", "epochs", "max_train_samples", "max_eval_samples", "learning_rate"):
        if getattr(args, key) is None:
            setattr(args, key, suite[key])
    args.work_dir = args.work_dir or f"/tmp/heads_comparison_{args.suite}"
    args.output = args.output or os.path.join(REPO, "bench", "results", f"{args.suite}_comparison.json")
    return args


def build_encoder(args, train_file, env, commands):
    """A WordPiece vocab from the training texts and a small BertConfig (random weights come from it)."""
    model_dir = os.path.join(args.work_dir, "encoder")
    if os.path.isfile(os.path.join(model_dir, "config.json")):
        return model_dir
    os.makedirs(args.work_dir, exist_ok=True)
    column = "1" if train_file.endswith(".tsv") else "0"  # ChnSentiCorp: label<TAB>text_a
    cmd = [sys.executable, TOKENIZER_SCRIPT, "--train_files", train_file, "--output_dir", model_dir,
           "--text_column_index", column, "--vocab_size", "8000", "--min_frequency", "2", "--write_config",
           "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers),
           "--num_attention_heads", str(args.num_attention_heads),
           "--intermediate_size", str(args.intermediate_size), "--max_position_embeddings", "512"]
    commands.append(shlex.join(cmd))
    log_path = os.path.join(args.work_dir, "train_tokenizer.log")
    with open(log_path, "w") as log:
        if subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT) != 0:
            sys.exit(f"error: train_tokenizer.py failed; see {log_path}:\n{tail(log_path)}")
    return model_dir


def plan_runs(args):
    """(name, extra arguments) for every run of the suite."""
    if args.suite == "long_text":
        configs = LONG_TEXT_CONFIGS
    else:
        configs = {}
        for name, extra in HEAD_CONFIGS.items():
            if args.frozen in ("both", "trained"):
                configs[name] = extra
            if args.frozen in ("both", "frozen"):
                configs[f"{name}_frozen"] = extra + ["--freeze", "all"]
    if args.configs:
        wanted = args.configs.split(",")
        unknown = [w for w in wanted if w not in configs]
        if unknown:
            sys.exit(f"error: unknown configurations {unknown}; choose from {list(configs)}")
        configs = {k: v for k, v in configs.items() if k in wanted}
    return configs


def main(argv=None):
    args = parse_args(argv)
    suite = SUITES[args.suite]
    data_dir = os.path.abspath(args.data_dir if os.path.isabs(args.data_dir) else os.path.join(REPO, args.data_dir))
    train_file, dev_file = os.path.join(data_dir, suite["train"]), os.path.join(data_dir, suite["dev"])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               HF_DATASETS_CACHE=os.path.join(args.work_dir, "datasets_cache"))
    commands, started = [], time.perf_counter()
    encoder = build_encoder(args, train_file, env, commands)

    common = ["--config_name", encoder, "--tokenizer_name", encoder, "--train_file", train_file,
              "--validation_file", dev_file, "--do_train", "--do_eval",
              "--max_seq_length", suite["max_seq_length"], "--num_train_epochs", f"{args.epochs:g}",
              "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "128",
              "--learning_rate", f"{args.learning_rate:g}", "--weight_decay", "0.01", "--bf16",
              "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
              "--seed", str(args.seed), "--overwrite_output_dir"]
    if suite["label_file"]:
        common += ["--label_file", os.path.join(data_dir, suite["label_file"])]
    if args.max_train_samples:
        common += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        common += ["--max_eval_samples", str(args.max_eval_samples)]
    if args.suite == "long_text":
        common += ["--window_stride", str(args.window_stride), "--max_windows", str(args.max_windows)]

    rows = {}
    for name, extra in plan_runs(args).items():
        out_dir = os.path.join(args.work_dir, name)
        cmd = [sys.executable, RUN_SCRIPT] + common + extra + ["--output_dir", out_dir]
        record = run_config(name, cmd, out_dir, env, args.reuse_runs)
        commands.append(record["command"])
        row = {"arguments": " ".join(extra), "returncode": record["returncode"], "wall_s": record["wall_s"],
               "peak_rss_mb": record["peak_rss_mb"],
               "other_processes_cpu_share": record["other_processes_cpu_share"]}
        results_path = os.path.join(out_dir, "all_results.json")
        if record["returncode"] == 0 and os.path.isfile(results_path):
            with open(results_path) as f:
                results = json.load(f)
            with open(os.path.join(out_dir, "data_summary.json")) as f:
                summary = json.load(f)
            row.update({k: results.get(k) for k in ("eval_accuracy", "eval_macro_f1", "train_samples_per_second",
                                                    "train_runtime")})
            epochs = max(float(args.epochs), 1e-9)
            row["train_seconds_per_epoch"] = round(results["train_runtime"] / epochs, 1)
            row["truncated_train_texts"] = summary["splits"]["train"]["truncated"]
            row["train_examples"] = summary["splits"]["train"]["examples"]
        rows[name] = row
        print(f"[{name}] accuracy {row.get('eval_accuracy')}, {row.get('train_samples_per_second')} samples/s",
              flush=True)

    report = {
        "suite": args.suite,
        "data": {"train": train_file, "dev": dev_file},
        "encoder": {"dir": encoder, "num_hidden_layers": args.num_hidden_layers, "hidden_size": args.hidden_size,
                    "from_scratch": True},
        "budget": {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                   "max_seq_length": suite["max_seq_length"], "max_train_samples": args.max_train_samples,
                   "max_eval_samples": args.max_eval_samples, "bf16": True},
        "runs": rows,
        "machine": machine_facts(),
        "commands": commands,
        "total_wall_s": round(time.perf_counter() - started, 1),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    table = markdown_table(report)
    with open(os.path.splitext(args.output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    print(f"Wrote {args.output}")


def markdown_table(report):
    lines = ["| configuration | arguments | dev accuracy | macro-F1 | train samples/s | s/epoch "
             "| truncated train texts |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in report["runs"].items():
        if r.get("eval_accuracy") is None:
            lines.append(f"| {name} | `{r['arguments']}` | failed (exit {r['returncode']}) | | | | |")
            continue
        busy = " (busy)" if (r["other_processes_cpu_share"] or 0) > 0.05 else ""
        lines.append(f"| {name} | `{r['arguments']}` | {r['eval_accuracy']:.4f} | {r['eval_macro_f1']:.4f} | "
                     f"{r['train_samples_per_second']:.1f}{busy} | {r['train_seconds_per_epoch']} | "
                     f"{r['truncated_train_texts']} of {r['train_examples']} |")
    b = report["budget"]
    lines.append("")
    encoder = report["encoder"]
    lines.append(f"{report['suite']}: {encoder['num_hidden_layers']}-layer, {encoder['hidden_size']}-wide BERT from "
                 f"scratch, {b['epochs']:g} epochs, batch {b['batch_size']}, lr {b['learning_rate']:g}, "
                 f"max_seq_length {b['max_seq_length']}, bf16; {report['date']}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
