#!/usr/bin/env python
"""CMRC2018 extractive QA with run_qa.py: EM/F1 and windows (features) per second of a small BERT, from scratch and
from a run_mlm.py checkpoint.

Each run is a fresh `python run_qa.py ...` process with the same data, budget, seed and settings, tabulated as JSON
+ Markdown (bench/results/qa_cmrc2018.json and .md):

    from_scratch     random weights: --config_name/--tokenizer_name if given, else the checkpoint's own config and
                     tokenizer (same shape and vocab as from_checkpoint: only the initial weights differ), else a
                     vocab trained on the training contexts + a small BertConfig (data_scripts/train_tokenizer.py)
    from_checkpoint  --model_name_or_path, e.g. a run_mlm.py output dir (its encoder is kept, the MLM head dropped)

Data: ../shared/data/cmrc2018 (SQuAD-style JSON). Train on cmrc2018_dev.json (3,219 questions, up to 3 answers each;
the first answer found in the context is trained on) and evaluate on cmrc2018_trial.json (1,002 questions), or the
reverse with --reverse. Trial answers are long (median 19 characters, 36% longer than 30): --max_answer_length
defaults to 100 tokens here (run_qa.py's own default is 30).

    python bench/qa_cmrc2018.py                                                     # from scratch only
    python bench/qa_cmrc2018.py --model_name_or_path outputs/mlm                    # both runs
    python bench/qa_cmrc2018.py --model_name_or_path outputs/mlm --runs from_checkpoint   # add a row later

Results of earlier invocations stay in the JSON/table (a run of the same name is replaced), unless --fresh.
Smoke run (a minute or two; the numbers mean nothing):

    python bench/qa_cmrc2018.py --max_train_samples 64 --max_eval_samples 32 --epochs 1 --max_seq_length 128 \\
        --hidden_size 64 --num_hidden_layers 2 --num_attention_heads 2 --intermediate_size 128 \\
        --work_dir /tmp/qa_cmrc2018_smoke --output /tmp/qa_cmrc2018_smoke/qa_cmrc2018.json
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
from classification_throughput import TOKENIZER_SCRIPT  # noqa: E402
from common import REPO, machine_facts, run_config, tail  # noqa: E402

RUN_SCRIPT = os.path.join(REPO, "run_qa.py")
RUNS = ("from_scratch", "from_checkpoint")
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "qa_cmrc2018.json")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default="../shared/data/cmrc2018",
                   help="Folder with cmrc2018_dev.json and cmrc2018_trial.json. Relative paths: to the current "
                        "directory, else to the repository root.")
    p.add_argument("--train_name", default="cmrc2018_dev.json")
    p.add_argument("--eval_name", default="cmrc2018_trial.json")
    p.add_argument("--reverse", action="store_true", help="Swap --train_name and --eval_name.")
    p.add_argument("--model_name_or_path", default=None,
                   help="A checkpoint to fine-tune (e.g. a run_mlm.py output dir): adds the from_checkpoint run.")
    p.add_argument("--config_name", default=None, help="from_scratch: config dir (with --tokenizer_name).")
    p.add_argument("--tokenizer_name", default=None, help="from_scratch: tokenizer dir (with --config_name).")
    p.add_argument("--runs", default=None,
                   help=f"Comma-separated subset of {', '.join(RUNS)} (default: from_scratch, plus from_checkpoint "
                        f"when --model_name_or_path is given).")
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=3e-4,
                   help="Peak learning rate, the same for every run (small models take larger rates than BERT-base's "
                        "3e-5).")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--max_seq_length", type=int, default=384)
    p.add_argument("--doc_stride", type=int, default=128)
    p.add_argument("--max_answer_length", type=int, default=100)
    p.add_argument("--max_train_samples", type=int, default=None, help="Use only the first N training questions.")
    p.add_argument("--max_eval_samples", type=int, default=None, help="Use only the first N evaluation questions.")
    p.add_argument("--no_bf16", action="store_true", help="Train in fp32 (default: --bf16, CPU autocast).")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--script_args", default="", help="Extra run_qa.py arguments for every run.")
    # The encoder built when neither --config_name nor --model_name_or_path is given.
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--work_dir", default="/tmp/qa_cmrc2018", help="Encoder, run outputs, logs, datasets cache.")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON file to write (a .md table goes next to it).")
    p.add_argument("--fresh", action="store_true", help="Drop the runs of earlier invocations from the output.")
    p.add_argument("--reuse_runs", action="store_true", help="Skip a run whose identical command already finished.")
    args = p.parse_args(argv)

    if bool(args.config_name) != bool(args.tokenizer_name):
        p.error("give --config_name and --tokenizer_name together")
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else (
        list(RUNS) if args.model_name_or_path else ["from_scratch"])
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        p.error(f"unknown --runs {unknown}; choose from {list(RUNS)}")
    if "from_checkpoint" in args.runs and not args.model_name_or_path:
        p.error("from_checkpoint needs --model_name_or_path")
    if args.reverse:
        args.train_name, args.eval_name = args.eval_name, args.train_name
    args.data_dir = resolve_data_dir(args.data_dir, (args.train_name, args.eval_name))
    if args.data_dir is None:
        p.error(f"--data_dir: no {args.train_name} and {args.eval_name} there (relative paths are tried against "
                f"the current directory and the repository root)")
    for name in ("model_name_or_path", "config_name", "tokenizer_name"):
        value = getattr(args, name)
        if value and os.path.exists(value):
            setattr(args, name, os.path.abspath(value))
    args.output = os.path.abspath(args.output)
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def resolve_data_dir(path, names):
    candidates = [path] if os.path.isabs(path) else [os.path.abspath(path), os.path.join(REPO, path)]
    for c in candidates:
        if all(os.path.isfile(os.path.join(c, n)) for n in names):
            return os.path.normpath(c)
    return None


def squad_questions(path):
    """[(context, question, [answer texts])] of a SQuAD-style file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"]
    return [(p["context"], q["question"], [a["text"] for a in q.get("answers", [])])
            for article in data for p in article["paragraphs"] for q in p["qas"]]


def build_encoder(args, train_file, env, commands):
    """A WordPiece vocab trained on the training contexts and questions + a small BertConfig (reused if unchanged)."""
    model_dir = os.path.join(args.work_dir, "encoder")
    st = os.stat(train_file)
    stamp = {"train_file": train_file, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "vocab_size": args.vocab_size,
             "num_hidden_layers": args.num_hidden_layers, "hidden_size": args.hidden_size,
             "num_attention_heads": args.num_attention_heads, "intermediate_size": args.intermediate_size}
    stamp_path = os.path.join(model_dir, "bench_model_stamp.json")
    if os.path.isfile(stamp_path) and os.path.isfile(os.path.join(model_dir, "config.json")):
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                print(f"Reusing vocab + config in {model_dir}", flush=True)
                return model_dir
    os.makedirs(args.work_dir, exist_ok=True)
    corpus = os.path.join(args.work_dir, "train_corpus.txt")
    contexts = dict.fromkeys(c for c, _, _ in squad_questions(train_file))  # unique, in order
    with open(corpus, "w", encoding="utf-8") as f:
        for text in list(contexts) + [q for _, q, _ in squad_questions(train_file)]:
            f.write(" ".join(text.split()) + "\n")
    cmd = [sys.executable, TOKENIZER_SCRIPT, "--train_files", corpus, "--output_dir", model_dir,
           "--vocab_size", str(args.vocab_size), "--min_frequency", "2", "--write_config",
           "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers),
           "--num_attention_heads", str(args.num_attention_heads), "--intermediate_size", str(args.intermediate_size),
           "--max_position_embeddings", "512"]
    commands.append(shlex.join(cmd))
    print(f"Building vocab + config: {shlex.join(cmd)}", flush=True)
    log_path = os.path.join(args.work_dir, "train_tokenizer.log")
    with open(log_path, "w") as log:
        if subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT) != 0:
            sys.exit(f"error: train_tokenizer.py failed; see {log_path}:\n{tail(log_path)}")
    with open(stamp_path, "w") as f:
        json.dump(stamp, f, indent=2)
    return model_dir


def model_facts(source):
    """Shape and parameter count of the QA model built from a config/checkpoint dir."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.from_pretrained(source)
    model = AutoModelForQuestionAnswering.from_config(config)
    return {"num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size, "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None):
    args = parse_args(argv)
    train_file = os.path.join(args.data_dir, args.train_name)
    eval_file = os.path.join(args.data_dir, args.eval_name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               HF_DATASETS_CACHE=os.path.join(args.work_dir, "datasets_cache"))
    commands, started = [], time.perf_counter()

    init = {}
    if "from_scratch" in args.runs:
        if args.config_name:
            scratch = (args.config_name, args.tokenizer_name)
        elif args.model_name_or_path:
            scratch = (args.model_name_or_path, args.model_name_or_path)  # same shape and vocab, random weights
        else:
            encoder = build_encoder(args, train_file, env, commands)
            scratch = (encoder, encoder)
        init["from_scratch"] = (["--config_name", scratch[0], "--tokenizer_name", scratch[1]],
                                f"random weights, config {scratch[0]}")
    if "from_checkpoint" in args.runs:
        init["from_checkpoint"] = (["--model_name_or_path", args.model_name_or_path],
                                   f"checkpoint {args.model_name_or_path}")

    common = ["--train_file", train_file, "--validation_file", eval_file, "--do_train", "--do_eval",
              "--max_seq_length", str(args.max_seq_length), "--doc_stride", str(args.doc_stride),
              "--max_answer_length", str(args.max_answer_length), "--num_train_epochs", f"{args.epochs:g}",
              "--per_device_train_batch_size", str(args.batch_size),
              "--per_device_eval_batch_size", str(args.eval_batch_size), "--learning_rate", f"{args.learning_rate:g}",
              "--weight_decay", str(args.weight_decay), "--eval_strategy", "no", "--save_strategy", "no",
              "--report_to", "none", "--disable_tqdm", "true", "--seed", str(args.seed), "--overwrite_output_dir"]
    if not args.no_bf16:
        common.append("--bf16")
    if args.max_train_samples:
        common += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        common += ["--max_eval_samples", str(args.max_eval_samples)]
    common += shlex.split(args.script_args)

    rows = {}
    for name in args.runs:
        extra, description = init[name]
        out_dir = os.path.join(args.work_dir, name)
        cmd = [sys.executable, RUN_SCRIPT] + common + extra + ["--output_dir", out_dir]
        record = run_config(name, cmd, out_dir, env, args.reuse_runs)
        commands.append(record["command"])
        row = {"init": description, "returncode": record["returncode"], "wall_s": record["wall_s"],
               "peak_rss_mb": record["peak_rss_mb"], "other_processes_cpu_share": record["other_processes_cpu_share"],
               "log": record["log"]}
        results_path = os.path.join(out_dir, "all_results.json")
        if record["returncode"] == 0 and os.path.isfile(results_path):
            with open(results_path) as f:
                results = json.load(f)
            with open(os.path.join(out_dir, "data_summary.json")) as f:
                summary = json.load(f)
            row.update({k: results.get(k) for k in (
                "eval_exact_match", "eval_f1", "eval_loss", "train_loss", "train_runtime", "train_samples_per_second",
                "eval_samples_per_second", "eval_runtime", "train_samples", "train_questions", "eval_samples",
                "eval_questions", "train_tokens_per_epoch")})
            row["train_tokens_per_second"] = round(results["train_tokens_per_epoch"] * args.epochs
                                                   / results["train_runtime"], 1)
            row["data"] = {split: {k: v for k, v in s.items() if k != "file"}
                           for split, s in summary["splits"].items()}
            row["model"] = model_facts(extra[1])
        rows[name] = row
        print(f"[{name}] EM {row.get('eval_exact_match')}, F1 {row.get('eval_f1')}, "
              f"{row.get('train_samples_per_second')} train windows/s", flush=True)

    eval_questions = squad_questions(eval_file)[:args.max_eval_samples or None]
    too_long = sum(1 for _, _, answers in eval_questions if answers and min(len(a) for a in answers)
                   > args.max_answer_length)
    budget = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
              "weight_decay": args.weight_decay, "max_seq_length": args.max_seq_length,
              "doc_stride": args.doc_stride, "max_answer_length": args.max_answer_length,
              "max_train_samples": args.max_train_samples, "max_eval_samples": args.max_eval_samples,
              "bf16": not args.no_bf16, "seed": args.seed, "script_args": args.script_args}
    report = {"data": {"train": train_file, "eval": eval_file,
                       "eval_questions_whose_shortest_answer_exceeds_max_answer_length_chars": too_long},
              "budget": budget, "runs": {}, "machine": machine_facts(), "commands": [],
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if os.path.isfile(args.output) and not args.fresh:
        with open(args.output, encoding="utf-8") as f:
            previous = json.load(f)
        report["runs"].update(previous.get("runs", {}))  # each row keeps its own budget, data and date
        report["commands"] = previous.get("commands", [])
    for name, row in rows.items():
        report["runs"][name] = dict(row, budget=budget, train_file=train_file, eval_file=eval_file,
                                    date=report["date"])
    report["commands"] += commands
    report["total_wall_s"] = round(time.perf_counter() - started, 1)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    table = markdown_table(report)
    with open(os.path.splitext(args.output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    print(f"Wrote {args.output}")


def markdown_table(report):
    marked = False
    lines = ["| run | init | train questions (windows) | epochs | EM | F1 | train windows/s | eval windows/s | "
             "train time (s) | peak RSS (MB) | others' CPU |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["runs"].items():
        if r.get("eval_f1") is None:
            lines.append(f"| {name} | {r['init']} | failed (exit {r['returncode']}, log {r.get('log')}) "
                         f"| | | | | | | | |")
            continue
        busy = " (busy)" if (r["other_processes_cpu_share"] or 0) > 0.05 else ""
        other = "" if (r["budget"], r["train_file"], r["eval_file"]) == (report["budget"], report["data"]["train"],
                                                                       report["data"]["eval"]) else " †"
        marked = marked or bool(other)
        lines.append(f"| {name}{other} | {r['init']} | {r['train_questions']} ({r['train_samples']}) | "
                     f"{r['budget']['epochs']:g} | {r['eval_exact_match']:.2f} | {r['eval_f1']:.2f} | "
                     f"{r['train_samples_per_second']:.1f}{busy} | {r['eval_samples_per_second']:.1f} | "
                     f"{r['train_runtime']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{(r['other_processes_cpu_share'] or 0):.0%} |")
    b, d = report["budget"], report["data"]
    models = {r["model"]["parameters"]: r["model"] for r in report["runs"].values() if r.get("model")}
    shape = "; ".join(f"{m['num_hidden_layers']} layers, {m['hidden_size']} wide, vocab {m['vocab_size']}, "
                      f"{m['parameters'] / 1e6:.1f}M parameters" for m in models.values())
    lines += ["", f"Train {os.path.basename(d['train'])}, evaluate {os.path.basename(d['eval'])} (CMRC2018 EM/F1 of "
              f"run_qa.py --metric cmrc2018). Model: {shape}. Budget: {b['epochs']:g} epochs, batch "
              f"{b['batch_size']}, lr {b['learning_rate']:g}, max_seq_length {b['max_seq_length']}, doc_stride "
              f"{b['doc_stride']}, max_answer_length {b['max_answer_length']} "
              f"({d['eval_questions_whose_shortest_answer_exceeds_max_answer_length_chars']} evaluation questions "
              f"have only longer answers, in characters)" + (", bf16" if b["bf16"] else "") + f"; {report['date']}.",
              ("† an earlier run with another budget or data (see its entry in the JSON). " if marked else "") +
              "Windows: a question's context is cut into windows of max_seq_length tokens; train windows/s is "
              "Trainer's train_samples_per_second. others' CPU: share of the machine's CPUs used by other "
              "processes during the run (\"busy\" above 5%)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
