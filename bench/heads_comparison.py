#!/usr/bin/env python
"""What does a head buy, over seeds? Every head of heads/ against mean pooling, and long-text strategies.

Two suites, each a list of run_classification.py configurations; every configuration runs once per seed, each in a
fresh process, all configurations of one seed back to back; tabulated as mean ± std over seeds (JSON + Markdown):

  --suite heads      THUCNews titles: a linear head on each pooling (pooler, cls, mean, max, attention,
                     concat_last_4), and the cnn, lstm, gru and attention heads, fine-tuning --model_name_or_path (a
                     run_mlm.py checkpoint: the benchmark; without it the encoder is trained from scratch). Each
                     configuration has its own head learning rate (table HEAD_CONFIGS; --head_learning_rate overrides):
                     randomly initialised multi-layer heads (cnn, lstm, gru, attention) and the classifier on the
                     pooler get 1e-3, the linear heads on a pooling train at the encoder's rate. The verdict per head
                     is paired over seeds against linear_mean (bench/common.PAIRED_RULE): "better" only when
                     mean - std of the per-seed accuracy differences is above 0. --frozen frozen/both adds the
                     --freeze all variants (only the head learns; compared with linear_mean_frozen).
  --suite long_text  ChnSentiCorp reviews (median 76 characters, p95 246) with 64-token windows (--max_seq_length
                     64), so most reviews are "long": head-only, tail-only, head+tail truncation vs sliding windows
                     fused by max, mean, attention, transformer (--head windows); compared with truncate_head.
                     From scratch by default, --model_name_or_path optional.

Default scale (a 2-core AVX2 CPU at OMP_NUM_THREADS=1):
  heads      the first 4,000 training titles, the first 2,000 dev titles, 2 epochs, seeds 1,2,3, 10 configurations
             (from scratch without a checkpoint: 4 layers, 256 wide)
  long_text  the first 6,000 training reviews, all 1,200 dev reviews, 1 epoch, seeds 1,2,3, 7 configurations, a
             2-layer 128-wide encoder from scratch (a --model_name_or_path checkpoint of 4 layers x 256 costs more:
             lower --max_train_samples with it)

    OMP_NUM_THREADS=1 python bench/heads_comparison.py --suite heads --model_name_or_path outputs/news_bert/mlm
    OMP_NUM_THREADS=1 python bench/heads_comparison.py --suite long_text

Writes bench/results/heads_comparison.{json,md} or long_text_comparison.{json,md}.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PAIRED_RULE,
    REPO,
    SMALL,
    TINY,
    TINY_SHAPE,
    add_seed_argument,
    add_smoke_argument,
    apply_smoke,
    bench_env,
    build_vocab,
    busy_mark,
    collapse_note,
    collapse_warning,
    combined_comparison,
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

RUN_SCRIPT = os.path.join(REPO, "run_classification.py")
MULTI_LAYER_HEAD_LR = 1e-3  # randomly initialised heads with several layers learn too slowly at the encoder's rate
FROZEN_HEAD_LR = 1e-3  # --freeze all: only the head learns
# name -> (run_classification.py arguments, head learning rate; None: the encoder's --learning_rate)
HEAD_CONFIGS = {
    "linear_pooler": (["--head", "linear", "--pooling", "pooler"], MULTI_LAYER_HEAD_LR),
    "linear_cls": (["--head", "linear", "--pooling", "cls"], None),
    "linear_mean": (["--head", "linear", "--pooling", "mean"], None),
    "linear_max": (["--head", "linear", "--pooling", "max"], None),
    "linear_attention": (["--head", "linear", "--pooling", "attention"], None),
    "linear_concat_last_4": (["--head", "linear", "--pooling", "concat_last_k", "--pooling_last_k", "4"], None),
    "cnn": (["--head", "cnn"], MULTI_LAYER_HEAD_LR),
    "lstm": (["--head", "lstm"], MULTI_LAYER_HEAD_LR),
    "gru": (["--head", "gru"], MULTI_LAYER_HEAD_LR),
    "attention": (["--head", "attention"], MULTI_LAYER_HEAD_LR),
}
LONG_TEXT_CONFIGS = {
    "truncate_head": (["--pooling", "mean", "--truncation_strategy", "head"], None),
    "truncate_tail": (["--pooling", "mean", "--truncation_strategy", "tail"], None),
    "truncate_head+tail": (["--pooling", "mean", "--truncation_strategy", "head+tail"], None),
    "windows_max": (["--head", "windows", "--window_fusion", "max"], None),
    "windows_mean": (["--head", "windows", "--window_fusion", "mean"], None),
    "windows_attention": (["--head", "windows", "--window_fusion", "attention"], None),
    "windows_transformer": (["--head", "windows", "--window_fusion", "transformer"], MULTI_LAYER_HEAD_LR),
}
SUITES = {
    "heads": {"data_dir": "../shared/data/thucnews_titles", "train": "train.txt", "dev": "dev.txt",
              "label_file": "class.txt", "max_seq_length": "auto", "max_train_samples": 4000,
              "max_eval_samples": 2000, "epochs": 2, "baseline": "linear_mean", "configs": HEAD_CONFIGS,
              "output": "heads_comparison", "shape": SMALL},
    "long_text": {"data_dir": "../shared/data/chnsenticorp", "train": "train.tsv", "dev": "dev.tsv",
                  "label_file": None, "max_seq_length": "64", "max_train_samples": 6000, "max_eval_samples": 0,
                  "epochs": 1, "baseline": "truncate_head", "configs": LONG_TEXT_CONFIGS,
                  "output": "long_text_comparison", "shape": TINY},
}
PRETRAINED_LR, SCRATCH_LR = 2e-4, 5e-4
VERDICT_WORDS = {"better": "yes", "worse": "no (worse)", "within noise": "no (within noise)",
                 "too few seeds": "undecided (fewer than 2 seeds)"}


def parse_head_learning_rates(text):
    """'1e-3' (every configuration), 'cnn=2e-3,lstm=5e-4', or a grid 'cnn=5e-4:1e-3:2e-3' -> {name or '*': [rates]}."""
    rates = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, _, values = item.rpartition("=")
        try:
            rates[name or "*"] = [float(v) for v in values.split(":") if v.strip()]
        except ValueError:
            rates[name or "*"] = []
        if not rates[name or "*"]:
            raise argparse.ArgumentTypeError(f"--head_lr: {item!r} is not RATE, NAME=RATE or NAME=RATE:RATE:...")
    return rates


SMOKE = dict(max_train_samples=200, max_eval_samples=100, epochs=0.2, **TINY_SHAPE)  # --smoke


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=list(SUITES), required=True)
    p.add_argument("--model_name_or_path", "--pretrained", dest="model_name_or_path", default=None,
                   help="A run_mlm.py checkpoint to fine-tune (its tokenizer too): what the heads suite is for. "
                        "Without it a vocab is trained on the training texts and the encoder (--num_hidden_layers "
                        "...) starts from random weights.")
    p.add_argument("--data_dir", default=None, help="Default: the suite's folder under ../shared/data.")
    p.add_argument("--configs", default=None, help="Comma-separated subset of the suite's configurations.")
    p.add_argument("--frozen", default="trained", choices=["trained", "frozen", "both"],
                   help="heads suite: encoder trained (default), frozen (--freeze all), or both.")
    add_seed_argument(p)
    p.add_argument("--epochs", type=float, default=None, help="Default: the suite's (heads 2, long_text 1).")
    p.add_argument("--max_train_samples", type=int, default=None,
                   help="Train on the first N texts (0: all). Default: the suite's (heads 4000, long_text 6000).")
    p.add_argument("--max_eval_samples", type=int, default=None,
                   help="Evaluate on the first N dev texts (0: all). Default: heads 2000, long_text all 1,200.")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=None,
                   help=f"The encoder's learning rate for every configuration (default {PRETRAINED_LR:g} with "
                        f"--model_name_or_path, {SCRATCH_LR:g} from scratch).")
    p.add_argument("--head_lr", "--head_learning_rate", dest="head_learning_rate", type=parse_head_learning_rates,
                   default={},
                   help="Head learning rates instead of the table's: RATE for every configuration, NAME=RATE,... "
                        "(e.g. cnn=1e-3,lstm=1e-3), or a grid NAME=RATE:RATE:... (e.g. cnn=5e-4:1e-3:2e-3): one "
                        "configuration per rate, named NAME@lrRATE, each compared with the baseline.")
    p.add_argument("--window_stride", type=int, default=32, help="long_text: tokens between window starts.")
    p.add_argument("--max_windows", type=int, default=8, help="long_text: windows per document at most.")
    p.add_argument("--num_hidden_layers", type=int, default=None,
                   help="From scratch only: the encoder's shape (default: heads 4 layers 256 wide, 4 attention heads, "
                        "intermediate 1024; long_text 2 layers 128 wide, 2 heads, intermediate 512).")
    p.add_argument("--hidden_size", type=int, default=None)
    p.add_argument("--num_attention_heads", type=int, default=None)
    p.add_argument("--intermediate_size", type=int, default=None)
    p.add_argument("--work_dir", default=None, help="Default: /tmp/heads_comparison_<suite>.")
    p.add_argument("--output", default=None, help="Default: bench/results/<heads|long_text>_comparison.json (+ .md).")
    p.add_argument("--reuse_runs", action="store_true", help="Keep runs that already finished with the same command.")
    add_smoke_argument(p, SMOKE)
    args = apply_smoke(p.parse_args(argv), SMOKE)
    suite = SUITES[args.suite]
    for key in ("epochs", "max_train_samples", "max_eval_samples"):
        if getattr(args, key) is None:
            setattr(args, key, suite[key])
    for key, value in suite["shape"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    names = [suite["train"], suite["dev"]] + ([suite["label_file"]] if suite["label_file"] else [])
    args.data_dir = resolve_data_dir(args.data_dir or suite["data_dir"], names)
    if args.data_dir is None:
        p.error(f"--data_dir: no {', '.join(names)} there")
    if args.model_name_or_path:
        args.model_name_or_path = resolve_path(args.model_name_or_path)
        if not os.path.isfile(os.path.join(args.model_name_or_path, "config.json")):
            p.error(f"--model_name_or_path {args.model_name_or_path}: no config.json there (a run_mlm.py output dir)")
    if args.learning_rate is None:
        args.learning_rate = PRETRAINED_LR if args.model_name_or_path else SCRATCH_LR
    args.configs = plan_configs(args, p)
    args.work_dir = os.path.abspath(args.work_dir or f"/tmp/heads_comparison_{args.suite}")
    args.output = os.path.abspath(args.output or os.path.join(REPO, "bench", "results", suite["output"] + ".json"))
    return args


def plan_configs(args, parser):
    """{name: (arguments, head learning rate or None: the encoder's)} of the suite, with the frozen variants asked
    for, --configs' subset, and --head_lr's rates (a grid gives one configuration per rate: NAME@lrRATE)."""
    suite = SUITES[args.suite]
    configs = {}
    for name, (extra, head_lr) in suite["configs"].items():
        if args.suite == "long_text" or args.frozen in ("trained", "both"):
            configs[name] = (extra, head_lr)
        if args.suite == "heads" and args.frozen in ("frozen", "both"):
            configs[f"{name}_frozen"] = (extra + ["--freeze", "all"], FROZEN_HEAD_LR)
    if args.configs:
        wanted = [c for c in args.configs.split(",") if c]
        unknown = [c for c in wanted if c not in configs]
        if unknown:
            parser.error(f"unknown --configs {unknown}; choose from {list(configs)}")
        configs = {k: v for k, v in configs.items() if k in wanted}
    rates = args.head_learning_rate
    unknown = set(rates) - set(configs) - {"*"}
    if unknown:
        parser.error(f"--head_lr: unknown configurations {sorted(unknown)}; choose from {list(configs)}")
    planned = {}
    for name, (extra, head_lr) in configs.items():
        grid = rates.get(name, rates.get("*", [head_lr]))
        if len(grid) > 1 and name == baseline_of(name, args.suite):
            parser.error(f"--head_lr: {name} is the baseline, it runs at one head learning rate")
        for lr in grid:
            planned[f"{name}@lr{lr:g}" if len(grid) > 1 else name] = (extra, lr)
    return planned


def head_lr(args, name):
    """The head learning rate of a configuration (None: the encoder's)."""
    return args.configs[name][1]


def baseline_of(name, suite):
    base = SUITES[suite]["baseline"]
    return f"{base}_frozen" if name.split("@")[0].endswith("_frozen") else base


def summarise_heads(runs, suite):
    """mean ± std over seeds per configuration, and per configuration against its baseline (linear_mean, or
    linear_mean_frozen; truncate_head for long texts): the speed ratio per seed, the paired comparison of accuracy
    and macro-F1, and the verdict: {name: {"baseline", "combined" (common.COMBINED_RULE), "paired"}}."""
    metrics = ["eval_accuracy", "eval_macro_f1", "train_samples_per_second", "train_seconds_per_epoch", "peak_rss_mb"]
    summary, verdicts = summarise(runs, metrics), {}
    for name, entry in summary.items():
        done = [r for r in runs if r["config"] == name and "truncated_train_texts" in r]
        if done:
            entry["truncated"] = f"{done[0]['truncated_train_texts']} of {done[0]['train_examples']}"
        base = baseline_of(name, suite)
        if name != base and base in summary:
            compared = summarise([r for r in runs if r["config"] in (name, base)], [], baseline=base,
                                 ratio_metrics=["train_samples_per_second"],
                                 difference_metrics=["eval_accuracy", "eval_macro_f1"])[name]
            entry["difference_to"], entry["ratio_to"] = compared["difference"], compared["ratio"]
            entry["combined_to"] = combined_comparison(entry["eval_accuracy"], summary[base]["eval_accuracy"])
            verdicts[name] = {"baseline": base, "combined": entry["combined_to"],
                              "paired": entry["difference_to"]["eval_accuracy"]}
    return summary, verdicts


def markdown(report):
    s_all, settings = report["summary"], report["settings"]
    suite = settings["suite"]
    encoder = report["encoder"]
    lines = [f"# {'Heads' if suite == 'heads' else 'Long texts'}: mean ± std over seeds", "", machine_line(report), "",
             f"{report['data']['train']} (first {report['train_limit'] or 'all'}), dev {report['data']['dev']} "
             f"(first {report['eval_limit'] or 'all'}); encoder: {encoder['description']}; {settings['epochs']:g} "
             f"epochs, batch {settings['batch_size']}, encoder lr {settings['learning_rate']:g}, max_seq_length "
             f"{SUITES[suite]['max_seq_length']}. Accuracy and macro-F1 in %; \"vs baseline\": accuracy difference in "
             f"points, {PAIRED_RULE}; k/n: seeds on which the configuration beat its baseline; x baseline: mean ± "
             "std of per-seed ratios of train samples/s.", "",
             "| configuration | arguments | head lr | dev accuracy | vs baseline (points) | macro-F1 "
             "| train samples/s | x baseline | s/epoch | truncated train texts | failed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in s_all.items():
        extra, _ = report["configs"][name]
        lr = report["head_learning_rates"][name]
        base = baseline_of(name, suite)
        versus = "baseline" if name == base else (
            fmt_comparison(s["difference_to"].get("eval_accuracy")) + f" vs {base}" if s.get("difference_to") else "-")
        lines.append(f"| {name} | `{' '.join(extra)}` | {'encoder lr' if lr is None else f'{lr:g}'} | "
                     f"{fmt_mean_std(s['eval_accuracy'])} | {versus} | {fmt_mean_std(s['eval_macro_f1'])} | "
                     f"{fmt_mean_std(s['train_samples_per_second'], 1, 1)}{busy_mark(s)} | "
                     f"{fmt_ratio(s.get('ratio_to', {}).get('train_samples_per_second'))} | "
                     f"{fmt_mean_std(s['train_seconds_per_epoch'], 1, 0)} | {s.get('truncated') or '-'} | "
                     f"{s['failed_runs']}/{s['runs']} |")
    verdicts = report.get("verdicts")
    if verdicts:
        what = "mean pooling" if suite == "heads" else "head-only truncation"
        lines += ["", f"Does it beat {what} over the seeds? Yes when the difference of the mean dev accuracies is "
                      "larger than their combined std, sqrt(std_config^2 + std_baseline^2); the paired comparison "
                      "(per-seed differences) next to it.", "",
                  "| configuration | head lr | baseline | mean difference (points) | combined std (points) | "
                  f"beats {what}? | paired over seeds |", "|---|---:|---|---:|---:|---|---|"]
        if suite == "heads" and not encoder["pretrained"]:
            lines[-3:-3] = ["**Encoder trained from scratch**: the heads' verdict is meant for a pretrained "
                            "checkpoint (--pretrained DIR, a run_mlm.py output).", ""]
        for name, v in verdicts.items():
            c, lr = v["combined"], report["head_learning_rates"][name]
            answer = {True: "**yes**", False: "no", None: "undecided (fewer than 2 seeds)"}[c["exceeds"]]
            difference = "-" if c["difference"] is None else f"{c['difference'] * 100:+.2f}"
            combined_std = "-" if c["combined_std"] is None else f"{c['combined_std'] * 100:.2f}"
            lines.append(f"| {name} | {'encoder lr' if lr is None else f'{lr:g}'} | {v['baseline']} | {difference} | "
                         f"{combined_std} | "
                         f"{answer} | {VERDICT_WORDS[v['paired']['verdict']]}: {fmt_comparison(v['paired'])} |")
    lines.append(collapse_note(s_all))
    lines += ["", "Head lr: the learning rate of everything outside the BERT body (run_classification.py "
                  "--head_learning_rate; the pooler is part of the body). (busy): other processes used more than 5% "
                  "of the CPUs during a run of that row. Commands: `command` and `commands` in the JSON."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    suite = SUITES[args.suite]
    os.makedirs(args.work_dir, exist_ok=True)
    env = bench_env(args.work_dir)
    train_file, dev_file = os.path.join(args.data_dir, suite["train"]), os.path.join(args.data_dir, suite["dev"])
    report = new_report(__file__, argv, args, seeds=args.seeds, data={"train": train_file, "dev": dev_file},
                        train_limit=args.max_train_samples, eval_limit=args.max_eval_samples,
                        configs=args.configs, head_learning_rates={n: head_lr(args, n) for n in args.configs})
    if args.model_name_or_path:
        model_args = ["--model_name_or_path", args.model_name_or_path]
        report["encoder"] = {"description": f"pretrained checkpoint {args.model_name_or_path}",
                             "source": args.model_name_or_path, "pretrained": True}
    else:
        shape = {k: getattr(args, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                               "intermediate_size")}
        column = 1 if train_file.endswith(".tsv") else None  # ChnSentiCorp: label<TAB>text_a
        encoder = build_vocab(os.path.join(args.work_dir, "encoder"), [train_file], env, report["commands"], shape,
                              text_column_index=column)
        model_args = ["--config_name", encoder, "--tokenizer_name", encoder]
        report["encoder"] = {"description": f"{args.num_hidden_layers}-layer {args.hidden_size}-wide BERT from "
                                            "scratch (vocab from the training texts)", "source": encoder,
                             "pretrained": False, **shape}

    common = model_args + [
        "--train_file", train_file, "--validation_file", dev_file, "--do_train", "--do_eval",
        "--max_seq_length", suite["max_seq_length"], "--num_train_epochs", f"{args.epochs:g}",
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "128",
        "--learning_rate", f"{args.learning_rate:g}", "--weight_decay", "0.01",
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--overwrite_output_dir"]
    if suite["label_file"]:
        common += ["--label_file", os.path.join(args.data_dir, suite["label_file"])]
    if args.max_train_samples:
        common += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        common += ["--max_eval_samples", str(args.max_eval_samples)]
    if args.suite == "long_text":
        common += ["--window_stride", str(args.window_stride), "--max_windows", str(args.max_windows)]

    def make_command(name, seed, out_dir):
        extra, _ = args.configs[name]
        lr = head_lr(args, name)
        return ([sys.executable, RUN_SCRIPT, *common, *extra, "--seed", str(seed), "--output_dir", out_dir]
                + ([] if lr is None else ["--head_learning_rate", f"{lr:g}"]))

    def collect(name, seed, out_dir):
        results = read_json(os.path.join(out_dir, "all_results.json"))
        summary = read_json(os.path.join(out_dir, "data_summary.json"))
        return {"eval_accuracy": results.get("eval_accuracy"), "eval_macro_f1": results.get("eval_macro_f1"),
                "train_samples_per_second": results["train_samples_per_second"],
                "train_runtime": results["train_runtime"],
                "train_seconds_per_epoch": results["train_runtime"] / max(float(args.epochs), 1e-9),
                "truncated_train_texts": summary["splits"]["train"]["truncated"],
                "train_examples": summary["splits"]["train"]["examples"],
                "collapse_warning": collapse_warning(out_dir)}

    def save():
        report["summary"], report["verdicts"] = summarise_heads(report["runs"], args.suite)
        write_report(report, args.output, markdown(report))

    run_over_seeds(report, args.seeds, list(args.configs), make_command, collect, args.work_dir, env,
                   args.reuse_runs, save)
    save()
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md")
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
