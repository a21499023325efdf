#!/usr/bin/env python
"""MLM or replaced-token detection? Both pretrained for the same wall-clock minutes, then fine-tuned.

    nice -n 10 env OMP_NUM_THREADS=1 python bench/pretrain_objectives.py --minutes 12

1. setup      the tokenizer copied from --tokenizer_dir, a small BertConfig (2 layers x 128, 2 heads, FFN 512, 128
              positions), the first --train_lines / --dev_lines of THUCNews titles;
2. calibrate  bench/rtd_step_time.py at the same shapes (batch, block length, vocabulary, generator): training steps
              of the two objectives alternate in one process, so a change of load on this shared machine hits both,
              and the CPU time per step (one thread) is what counts: RTD does more per step (a generator pass,
              sampling, a second embedding pass);
3. pretrain   run_mlm.py --objective mlm and --objective rtd, each for --minutes of training on an idle core:
              --max_steps = minutes / its CPU seconds per step (the learning-rate schedule needs the step count up
              front, so a clock that stops training mid-schedule would not be a fair cut). The wall time each run
              really took (train_runtime, longer when other processes share the cores) and its CPU time are
              reported next to it;
4. finetune   run_classification.py from each checkpoint and from random weights, --seeds, --epochs, --learning_rate,
              mean pooling; dev accuracy mean +- std over seeds.

Single-threaded runs, each a fresh process (bench/common.run_config: wall, CPU time, the CPU other processes took).
Results: bench/results/<--results_name>.json (commands, commit, machine, seeds, every run) and .md.
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import REPO, fmt_mean_std, machine_facts, mean_std, read_json, run_config  # noqa: E402

RESULTS = os.path.join(REPO, "bench", "results")
OBJECTIVES = ("mlm", "rtd")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="../shared/data/thucnews_titles", help="train.txt, dev.txt, class.txt.")
    p.add_argument("--corpus", required=True, help="Pretraining text (data_scripts/build_corpus.py's output).")
    p.add_argument("--tokenizer_dir", required=True,
                   help="A fast BERT tokenizer (data_scripts/train_tokenizer.py's output).")
    p.add_argument("--output_dir", default="outputs/bench_pretrain_objectives")
    p.add_argument("--minutes", type=float, default=12.0, help="Pretraining time of each objective.")
    p.add_argument("--calibration_steps", type=int, default=6, help="Timed steps per objective.")
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--num_hidden_layers", type=int, default=2)
    p.add_argument("--num_attention_heads", type=int, default=2)
    p.add_argument("--intermediate_size", type=int, default=512)
    p.add_argument("--max_seq_length", type=int, default=128, help="Pretraining blocks (packed titles).")
    p.add_argument("--pretrain_batch_size", type=int, default=32)
    p.add_argument("--pretrain_learning_rate", type=float, default=1e-3)
    p.add_argument("--generator_size_divisor", type=int, default=4)
    p.add_argument("--train_lines", type=int, default=12000)
    p.add_argument("--dev_lines", type=int, default=2000)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--learning_rate", type=float, default=5e-4, help="Fine-tuning (every source).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--reuse", action="store_true", help="Skip runs that already finished with the same command.")
    p.add_argument("--results_name", default="pretrain_objectives")
    p.add_argument("--results_dir", default=RESULTS, help="Where the JSON and markdown go.")
    return p.parse_args(argv)


def first_lines(source, target, n):
    with open(source, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f)]
    with open(target, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return len(lines)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    os.makedirs(args.results_dir, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1")
    py = sys.executable
    report = {"benchmark": "pretrain_objectives", "machine": machine_facts(), "args": vars(args),
              "command": " ".join([os.path.basename(py), *sys.argv]), "runs": {}}
    json_path = os.path.join(args.results_dir, args.results_name + ".json")

    def save():
        report["summary"] = summarise(report)
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        with open(os.path.join(args.results_dir, args.results_name + ".md"), "w", encoding="utf-8") as f:
            f.write(markdown(report))

    def run(name, cmd, run_dir):
        record = run_config(name, cmd, run_dir, env, args.reuse)
        record["train"] = read_json(os.path.join(run_dir, "train_results.json"))
        record["eval"] = read_json(os.path.join(run_dir, "eval_results.json"))
        report["runs"][name] = record
        save()
        if record["returncode"] != 0:
            sys.exit(f"{name} failed; see {record['log']}")
        return record

    # ---- 1. setup: tokenizer + small config, data subsets -----------------------------------------------------------
    from transformers import AutoTokenizer, BertConfig

    model_dir = os.path.join(out, "tokenizer_and_config")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_dir)
    tokenizer.save_pretrained(model_dir)
    BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_hidden_layers=args.num_hidden_layers,
               num_attention_heads=args.num_attention_heads, intermediate_size=args.intermediate_size,
               max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id).save_pretrained(model_dir)
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    train, dev = os.path.join(data, "train.txt"), os.path.join(data, "dev.txt")
    report["data"] = {"train_lines": first_lines(os.path.join(args.data_dir, "train.txt"), train, args.train_lines),
                      "dev_lines": first_lines(os.path.join(args.data_dir, "dev.txt"), dev, args.dev_lines)}
    shutil.copy(os.path.join(args.data_dir, "class.txt"), os.path.join(data, "class.txt"))

    def pretrain_cmd(objective, run_dir, steps, evaluate):
        cmd = [py, "run_mlm.py", "--objective", objective, "--config_name", model_dir, "--tokenizer_name", model_dir,
               "--train_file", args.corpus, "--do_train", "--max_seq_length", str(args.max_seq_length),
               "--per_device_train_batch_size", str(args.pretrain_batch_size), "--per_device_eval_batch_size", "64",
               "--learning_rate", str(args.pretrain_learning_rate), "--warmup_steps", "0.06", "--weight_decay",
               "0.01", "--max_steps", str(steps), "--save_strategy", "no", "--eval_strategy", "no",
               "--logging_steps", "25", "--report_to", "none", "--output_dir", run_dir, "--overwrite_output_dir",
               "--disable_tqdm", "true", "--seed", "0", "--dataloader_num_workers", "0"]
        cmd += (["--do_eval", "--validation_split_percentage", "1", "--max_eval_samples", "1000"] if evaluate
                else ["--validation_split_percentage", "0"])
        if objective == "rtd":
            cmd += ["--generator_size_divisor", str(args.generator_size_divisor)]
        return cmd

    # ---- 2. calibrate: CPU seconds per step of each objective, measured side by side -----------------------------
    run_dir = os.path.join(out, "calibrate")
    record = run("calibrate", [
        py, "bench/rtd_step_time.py", "--num_hidden_layers", str(args.num_hidden_layers), "--hidden_size",
        str(args.hidden_size), "--num_attention_heads", str(args.num_attention_heads), "--intermediate_size",
        str(args.intermediate_size), "--vocab_size", str(len(tokenizer)), "--generator_size_divisor",
        str(args.generator_size_divisor), "--batch_size", str(args.pretrain_batch_size), "--seq_len",
        str(args.max_seq_length), "--steps", str(args.calibration_steps), "--output",
        os.path.join(run_dir, "step_time.json")], run_dir)
    record["step_time"] = read_json(os.path.join(run_dir, "step_time.json"))
    step_seconds = record["step_time"]["median_cpu_s"]
    report["step_seconds"] = step_seconds
    report["max_steps"] = {o: max(1, int(args.minutes * 60 / s)) for o, s in step_seconds.items()}
    save()

    # ---- 3. pretrain for the same minutes ---------------------------------------------------------------------
    for objective in OBJECTIVES:
        name = f"pretrain_{objective}"
        run_dir = os.path.join(out, name)
        run(name, pretrain_cmd(objective, run_dir, report["max_steps"][objective], evaluate=True), run_dir)

    # ---- 4. fine-tune each checkpoint and random weights --------------------------------------------------------
    sources = {"mlm": os.path.join(out, "pretrain_mlm"), "rtd": os.path.join(out, "pretrain_rtd"), "random": None}
    for source_name, source in sources.items():
        for seed in args.seeds:
            name = f"finetune_{source_name}_seed{seed}"
            run_dir = os.path.join(out, name)
            model = (["--model_name_or_path", source] if source else
                     ["--config_name", model_dir, "--tokenizer_name", model_dir])
            run(name, [py, "run_classification.py", *model, "--train_file", train, "--validation_file", dev,
                       "--label_file", os.path.join(data, "class.txt"), "--do_train", "--do_eval", "--pooling",
                       "mean", "--max_seq_length", "auto", "--num_train_epochs", str(args.epochs),
                       "--learning_rate", str(args.learning_rate), "--weight_decay", "0.01",
                       "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128",
                       "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "100", "--report_to",
                       "none", "--seed", str(seed), "--output_dir", run_dir, "--overwrite_output_dir",
                       "--disable_tqdm", "true", "--dataloader_num_workers", "0"], run_dir)
    save()
    print(markdown(report))


def summarise(report):
    runs = report["runs"]
    summary = {}
    for source in (*OBJECTIVES, "random"):
        accuracies = [(runs[n].get("eval") or {}).get("eval_accuracy") for n in runs
                      if n.startswith(f"finetune_{source}_seed")]
        pretrain = runs.get(f"pretrain_{source}", {})
        summary[source] = {
            "dev_accuracy": mean_std(accuracies),
            "pretrain_steps": (report.get("max_steps") or {}).get(source),
            "pretrain_train_runtime_min": round(pretrain["train"]["train_runtime"] / 60, 2)
            if pretrain.get("train") else None,
            "pretrain_eval": pretrain.get("eval"),
            "finetune_wall_min": [round(runs[n]["wall_s"] / 60, 2) for n in runs
                                  if n.startswith(f"finetune_{source}_seed")],
        }
    summary["cpu_minutes_all_runs"] = round(sum(r.get("cpu_s", 0) for r in runs.values()) / 60, 1)
    return summary


def markdown(report):
    s, args = report.get("summary", {}), report["args"]
    m = report["machine"]
    lines = [
        "# Pretraining objectives at equal training time: MLM vs replaced-token detection",
        "",
        f"{args['num_hidden_layers']} layers x {args['hidden_size']} (heads {args['num_attention_heads']}, FFN "
        f"{args['intermediate_size']}), vocab {args['tokenizer_dir']}, corpus {args['corpus']}, blocks of "
        f"{args['max_seq_length']}, batch {args['pretrain_batch_size']}, lr {args['pretrain_learning_rate']}; each "
        f"objective {args['minutes']} min of training at its calibrated CPU time per step. "
        f"RTD generator 1/{args['generator_size_divisor']} wide. "
        f"Fine-tuning: THUCNews titles, first {args['train_lines']} train / {args['dev_lines']} dev lines, "
        f"{args['epochs']} epochs, lr {args['learning_rate']}, mean pooling, seeds {args['seeds']}.",
        "",
        "| source | pretrain steps | CPU s/step (calibrated) | pretrain wall min (train_runtime) | pretrain process "
        "CPU min | pretraining eval | THUCNews dev accuracy (mean ± std) |",
        "|---|---|---|---|---|---|---|",
    ]
    for source in (*OBJECTIVES, "random"):
        row = s.get(source)
        if not row:
            continue
        ev = row.get("pretrain_eval") or {}
        if "eval_rtd_accuracy" in ev:
            pre = (f"RTD acc {ev['eval_rtd_accuracy']:.1%} (all-original {ev['eval_rtd_all_original_accuracy']:.1%}), "
                   f"generator masked acc {ev['eval_generator_masked_accuracy']:.1%}")
        elif "eval_masked_accuracy" in ev:
            pre = f"masked acc {ev['eval_masked_accuracy']:.1%}, perplexity {ev['eval_perplexity']:.1f}"
        else:
            pre = "-"
        step = (report.get("step_seconds") or {}).get(source)
        cpu = (report["runs"].get(f"pretrain_{source}") or {}).get("cpu_s")
        lines.append(f"| {source} | {row['pretrain_steps'] or '-'} | {f'{step:.2f}' if step else '-'} | "
                     f"{row['pretrain_train_runtime_min'] or '-'} | {f'{cpu / 60:.1f}' if cpu else '-'} | {pre} | "
                     f"{fmt_mean_std(row['dev_accuracy'])} |")
    lines += ["", f"Commit {m.get('git_commit')}, torch {m.get('torch')}, transformers {m.get('transformers')}, "
                  f"{m.get('cpus_usable')} usable cores (runs single-threaded), CPU {m.get('cpu_model')}; all runs "
                  f"together {s.get('cpu_minutes_all_runs')} CPU-minutes. Contention (share of the CPUs other "
                  f"processes used) per run is in the JSON (other_processes_cpu_share)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"benchmark took {(time.time() - start) / 60:.1f} min")
