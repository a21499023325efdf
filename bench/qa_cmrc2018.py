#!/usr/bin/env python
"""CMRC2018 extractive QA with run_qa.py over seeds: EM/F1 and training windows/s of a small BERT, from random
weights and from a run_mlm.py checkpoint.

Each (run, seed) is a fresh `python run_qa.py ...` process with the same data, budget and settings; all runs of one
seed go back to back. Tabulated as mean ± std over seeds (bench/results/qa_cmrc2018.json and .md):

    from_scratch     random weights: --config_name/--tokenizer_name if given, else the checkpoint's own config and
                     tokenizer (same shape and vocab as from_checkpoint: only the initial weights differ), else a
                     vocab trained on the training contexts + a small BertConfig (data_scripts/train_tokenizer.py)
    from_checkpoint  --model_name_or_path, e.g. a run_mlm.py output dir (its encoder is kept, the MLM head dropped)

from_checkpoint is compared with from_scratch paired over seeds (bench/common.PAIRED_RULE) for EM and F1, and by the
per-seed ratio of training windows/s.

Data: ../shared/data/cmrc2018 (SQuAD-style JSON). Train on cmrc2018_dev.json (3,219 questions, up to 3 answers each;
the first answer found in the context is trained on) and evaluate on cmrc2018_trial.json (1,002 questions), or the
reverse with --reverse. Contexts are long: at max_seq_length 128 / doc_stride 48 a question gives ~7.7 windows.

Default scale (a 2-core AVX2 CPU at OMP_NUM_THREADS=1): the first 1,000 training
questions, the first 500 evaluation questions, 1 epoch, max_seq_length 128, doc_stride 48, max_answer_length 60,
seeds 1,2,3.

    OMP_NUM_THREADS=1 python bench/qa_cmrc2018.py --model_name_or_path outputs/news_bert/mlm    # both runs
    python bench/qa_cmrc2018.py --smoke --seeds 1,2 --work_dir /tmp/qa_smoke --output /tmp/qa_smoke/qa.json  # smoke
"""

import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PAIRED_RULE,
    REPO,
    SMALL,
    TINY_SHAPE,
    add_seed_argument,
    add_smoke_argument,
    apply_smoke,
    bench_env,
    build_vocab,
    busy_mark,
    fmt_comparison,
    fmt_mean_std,
    fmt_ratio,
    machine_line,
    new_report,
    read_json,
    resolve_data_dir,
    resolve_path,
    run_over_seeds,
    summarise,
    write_report,
)

RUN_SCRIPT = os.path.join(REPO, "run_qa.py")
RUNS = ("from_scratch", "from_checkpoint")
BASELINE = "from_scratch"
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "qa_cmrc2018.json")


SMOKE = dict(max_train_questions=40, max_eval_questions=20, epochs=0.2, **TINY_SHAPE)  # --smoke


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    add_seed_argument(p)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--max_train_questions", type=int, default=1000,
                   help="Train on the first N questions (0: all 3,219 of cmrc2018_dev.json).")
    p.add_argument("--max_eval_questions", type=int, default=500,
                   help="Evaluate on the first N questions (0: all 1,002 of cmrc2018_trial.json).")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=3e-4,
                   help="Peak learning rate, the same for every run (small models take larger rates than BERT-base's "
                        "3e-5).")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--doc_stride", type=int, default=48)
    p.add_argument("--max_answer_length", type=int, default=60)
    p.add_argument("--script_args", default="", help="Extra run_qa.py arguments for every run.")
    # The encoder built when neither --config_name nor --model_name_or_path is given.
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--num_hidden_layers", type=int, default=SMALL["num_hidden_layers"])
    p.add_argument("--hidden_size", type=int, default=SMALL["hidden_size"])
    p.add_argument("--num_attention_heads", type=int, default=SMALL["num_attention_heads"])
    p.add_argument("--intermediate_size", type=int, default=SMALL["intermediate_size"])
    p.add_argument("--work_dir", default="/tmp/qa_cmrc2018", help="Encoder, run outputs, logs, datasets cache.")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON file to write (a .md table goes next to it).")
    p.add_argument("--reuse_runs", action="store_true", help="Keep a run whose identical command already finished.")
    add_smoke_argument(p, SMOKE)
    args = apply_smoke(p.parse_args(argv), SMOKE)

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
        if getattr(args, name):
            setattr(args, name, resolve_path(getattr(args, name)))
    args.output = os.path.abspath(args.output)
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def squad_questions(path):
    """[(context, question, [answer texts])] of a SQuAD-style file."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"]
    return [(p["context"], q["question"], [a["text"] for a in q.get("answers", [])])
            for article in data for p in article["paragraphs"] for q in p["qas"]]


def training_corpus(args, train_file):
    """Unique training contexts + questions, one per line, for the vocab trainer (rewritten only when changed)."""
    questions = squad_questions(train_file)
    texts = list(dict.fromkeys(c for c, _, _ in questions)) + [q for _, q, _ in questions]
    content = "".join(" ".join(t.split()) + "\n" for t in texts)
    path = os.path.join(args.work_dir, "train_corpus.txt")
    if not os.path.isfile(path) or open(path, encoding="utf-8").read() != content:
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    return path


def model_facts(source):
    """Shape and parameter count of the QA model built from a config/checkpoint dir (meta device: no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = AutoModelForQuestionAnswering.from_config(config)
    return {"num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size, "parameters": sum(p.numel() for p in model.parameters())}


def markdown(report):
    summary, b, d = report["summary"], report["settings"], report["data"]
    m = report["model"]
    lines = ["# CMRC2018 QA: mean ± std over seeds", "", machine_line(report), "",
             f"Train {os.path.basename(d['train'])} ({report.get('train_questions', '-')} questions, "
             f"{report.get('train_windows', '-')} windows), evaluate {os.path.basename(d['eval'])} "
             f"({report.get('eval_questions', '-')} questions); CMRC2018 EM/F1 of run_qa.py --metric cmrc2018. Model: "
             f"{m['num_hidden_layers']} layers, {m['hidden_size']} wide, vocab {m['vocab_size']}, "
             f"{m['parameters'] / 1e6:.1f}M parameters. Budget: {b['epochs']:g} epochs, batch {b['batch_size']}, lr "
             f"{b['learning_rate']:g}, max_seq_length {b['max_seq_length']}, doc_stride {b['doc_stride']}, "
             f"max_answer_length {b['max_answer_length']} ({d['eval_questions_with_only_longer_answers']} evaluation "
             f"questions have only longer answers, in characters). vs {BASELINE}: {PAIRED_RULE}.", "",
             "| run | init | EM | F1 | F1 vs from_scratch | train windows/s | x from_scratch | eval windows/s | "
             "peak RSS (MB) | failed |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        versus = "baseline" if name == BASELINE else fmt_comparison(s.get("difference", {}).get("eval_f1"), 1)
        lines.append(f"| {name} | {report['inits'][name][1]} | {fmt_mean_std(s['eval_exact_match'], 1)} | "
                     f"{fmt_mean_std(s['eval_f1'], 1)} | {versus} | "
                     f"{fmt_mean_std(s['train_samples_per_second'], 1, 1)}{busy_mark(s)} | "
                     f"{fmt_ratio(s.get('ratio', {}).get('train_samples_per_second'))} | "
                     f"{fmt_mean_std(s['eval_samples_per_second'], 1, 1)} | {fmt_mean_std(s['peak_rss_mb'], 1, 0)} | "
                     f"{s['failed_runs']}/{s['runs']} |")
    lines += ["", "Windows: a question's context is cut into windows of max_seq_length tokens; train windows/s is "
                  "Trainer's train_samples_per_second. (busy): other processes used more than 5% of the CPUs during a "
                  "run of that row. Commands: `command` and `commands` in the JSON."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    train_file = os.path.join(args.data_dir, args.train_name)
    eval_file = os.path.join(args.data_dir, args.eval_name)
    env = bench_env(args.work_dir)
    eval_questions = squad_questions(eval_file)[:args.max_eval_questions or None]
    too_long = sum(1 for _, _, answers in eval_questions if answers and min(len(a) for a in answers)
                   > args.max_answer_length)
    report = new_report(__file__, argv, args, seeds=args.seeds,
                        data={"train": train_file, "eval": eval_file,
                              "eval_questions_with_only_longer_answers": too_long})

    inits = {}
    if args.config_name:
        scratch = (args.config_name, args.tokenizer_name)
    elif args.model_name_or_path:
        scratch = (args.model_name_or_path, args.model_name_or_path)  # same shape and vocab, random weights
    else:
        shape = {k: getattr(args, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                               "intermediate_size")}
        encoder = build_vocab(os.path.join(args.work_dir, "encoder"), [training_corpus(args, train_file)], env,
                              report["commands"], shape, vocab_size=args.vocab_size)
        scratch = (encoder, encoder)
    inits["from_scratch"] = (["--config_name", scratch[0], "--tokenizer_name", scratch[1]],
                             f"random weights, config {scratch[0]}")
    if args.model_name_or_path:
        inits["from_checkpoint"] = (["--model_name_or_path", args.model_name_or_path],
                                    f"checkpoint {args.model_name_or_path}")
    report["inits"] = {name: inits[name] for name in args.runs}
    report["model"] = model_facts(scratch[0])

    common = ["--train_file", train_file, "--validation_file", eval_file, "--do_train", "--do_eval",
              "--max_seq_length", str(args.max_seq_length), "--doc_stride", str(args.doc_stride),
              "--max_answer_length", str(args.max_answer_length), "--num_train_epochs", f"{args.epochs:g}",
              "--per_device_train_batch_size", str(args.batch_size),
              "--per_device_eval_batch_size", str(args.eval_batch_size), "--learning_rate", f"{args.learning_rate:g}",
              "--weight_decay", str(args.weight_decay), "--eval_strategy", "no", "--save_strategy", "no",
              "--report_to", "none", "--disable_tqdm", "true", "--overwrite_output_dir"]
    if args.max_train_questions:
        common += ["--max_train_samples", str(args.max_train_questions)]  # run_qa.py counts questions here
    if args.max_eval_questions:
        common += ["--max_eval_samples", str(args.max_eval_questions)]
    common += shlex.split(args.script_args)

    def make_command(name, seed, out_dir):
        return [sys.executable, RUN_SCRIPT, *common, *inits[name][0], "--seed", str(seed), "--output_dir", out_dir]

    def collect(name, seed, out_dir):
        results = read_json(os.path.join(out_dir, "all_results.json"))
        report.update(train_questions=results.get("train_questions"), train_windows=results.get("train_samples"),
                      eval_questions=results.get("eval_questions"))
        row = {k: results.get(k) for k in (
            "eval_exact_match", "eval_f1", "eval_loss", "train_loss", "train_runtime", "train_samples_per_second",
            "eval_samples_per_second", "eval_runtime", "train_samples", "train_questions", "eval_samples",
            "eval_questions", "train_tokens_per_epoch")}
        row["train_tokens_per_second"] = results["train_tokens_per_epoch"] * args.epochs / results["train_runtime"]
        return row

    def save():
        metrics = ["eval_exact_match", "eval_f1", "train_samples_per_second", "eval_samples_per_second",
                   "train_tokens_per_second", "train_runtime", "peak_rss_mb"]
        report["summary"] = summarise(report["runs"], metrics, baseline=BASELINE if BASELINE in args.runs else None,
                                      ratio_metrics=["train_samples_per_second"],
                                      difference_metrics=["eval_exact_match", "eval_f1"])
        write_report(report, args.output, markdown(report))

    run_over_seeds(report, args.seeds, args.runs, make_command, collect, args.work_dir, env, args.reuse_runs, save)
    save()
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md")
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
