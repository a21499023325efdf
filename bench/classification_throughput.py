#!/usr/bin/env python
"""Throughput of run_classification.py over seeds: its default batching against random batches and pad-to-128.

The same small BERT (by default 2 layers, 128 wide, lr 1e-3: the setting of issue 11's table; trained from scratch,
vocab and config built once by data_scripts/train_tokenizer.py) is trained on the same THUCNews titles, epochs, batch
size and learning rate, once
per (configuration, seed), each in a fresh `python run_classification.py ...` process (so peak RSS is per run); all
configurations of one seed run back to back, so a drift of the machine hits them alike:

    default   this script's defaults: each batch padded to its longest title, --train_sampling_strategy length_pools
    random    dynamic padding, plain random batches (--train_sampling_strategy random)
    pad128    the Hugging Face example's default and the BASELINE: --pad_to_max_length (every title padded to
              --max_seq_length 128), random batches
  optional (--configs):
    bf16      the defaults + --bf16 (CPU autocast); skipped with a note where the CPU has no fast bf16 (AVX2-only
              CPUs: the scripts ignore --bf16 there, bf16 matmuls run 10-100x slower than fp32)
    quarter   the defaults on the first 1/4 of the training data  \\  with default (all of it): time should grow
    half      the defaults on the first 1/2 of the training data  /   linearly, peak memory stay flat

Per run: train/eval samples/s, dev accuracy (all_results.json), peak RSS (os.wait4), the share of the CPUs other
processes took meanwhile, and the useful-token FLOP rate (FLOPs of non-pad tokens per second of train_runtime) against
an fp32 matmul peak measured in this process with the same threads. Per configuration: mean ± std over seeds; speed as
the ratio to pad128 (and to random) of the same seed, then mean ± std of those ratios; accuracy against pad128 by the
paired rule (bench/common.PAIRED_RULE: "equal accuracy" = not worse). A TF-IDF character 1-3-gram + LinearSVC baseline
runs once on the same split (it is deterministic).

Default scale (affordable on a 2-core AVX2 CPU at OMP_NUM_THREADS=1, where pad128 dominates the time): the first 12,000
training titles, the first 2,000 dev titles, 2 epochs, seeds 1,2,3, the 2-layer 128-wide model (wall times: the runs
in the JSON). The 4-layer 256-wide model of the other benchmarks (--num_hidden_layers 4 --hidden_size 256
--num_attention_heads 4 --intermediate_size 1024 --learning_rate 5e-4) costs more, pad128 most of it.

    OMP_NUM_THREADS=1 python bench/classification_throughput.py --data_dir ../shared/data/thucnews_titles
    python bench/classification_throughput.py --smoke --seeds 1,2 --output /tmp/ct_smoke/ct.json \\
        --work_dir /tmp/ct_smoke                                                       # smoke run

Writes bench/results/classification_throughput.json (every run, the exact commands, commit, machine, seeds, the FLOP
formula) and .md (the table and the targets).
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PAIRED_RULE,
    REPO,
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
    fmt_comparison,
    fmt_mean_std,
    fmt_ratio,
    machine_line,
    mean_std,
    new_report,
    per_seed_ratios,
    read_json,
    read_split,
    resolve_data_dir,
    run_over_seeds,
    summarise,
    tfidf_svm,
    write_report,
)

RUN_SCRIPT = os.path.join(REPO, "run_classification.py")
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "classification_throughput.json")

# name -> (extra run_classification.py arguments, fraction of the training data, description)
CONFIGS = {
    "default": ([], 1.0, "defaults: dynamic padding + length_pools batches"),
    "random": (["--train_sampling_strategy", "random"], 1.0, "dynamic padding, random batches"),
    "pad128": (["--pad_to_max_length", "--train_sampling_strategy", "random"], 1.0,
               "every title padded to max_seq_length, random batches (Hugging Face example)"),
    "bf16": (["--bf16"], 1.0, "defaults + --bf16 (CPU autocast)"),
    "quarter": ([], 0.25, "defaults, first 1/4 of the training data"),
    "half": ([], 0.5, "defaults, first 1/2 of the training data"),
}
DEFAULT_CONFIGS = "default,random,pad128"
BASELINE = "pad128"
SCALING = [("quarter", 0.25), ("half", 0.5), ("default", 1.0)]
POOL_BATCHES = 4  # run_classification.py's default --length_pool_batches (for the padding estimate only)

TARGET_SPEEDUP = 3.0
TARGET_PEAK_FRACTION = 0.5
TARGET_BF16_SPEEDUP = 1.3
TARGET_TIME_PER_SAMPLE_SPREAD = 1.2  # max/min time per training sample over 1/4, 1/2, 1 of the data
TARGET_RSS_GROWTH = 1.15  # peak RSS with all the data / peak RSS with 1/4 of it

FLOPS_FORMULA = (
    "train FLOPs = epochs * [6 * P_tok * sum(l) + 6 * P_seq * n + 12 * L * H * sum(l^2)], where l = non-pad tokens "
    "of one training example incl. [CLS]/[SEP] (after truncation to max_seq_length), n = training examples, "
    "P_tok = encoder parameters (every token goes through them), P_seq = pooler + classifier parameters (once per "
    "example, on [CLS]), L = layers, H = hidden size. 6 = 2 FLOPs per multiply-add x 3 (forward, backward to inputs, "
    "backward to weights). 12*L*H*l per token = attention scores QK^T and probabilities x V (2 x 2*H*l forward per "
    "token and layer) x 3. Embedding lookups, softmax, layer norm, GELU and the optimizer are not counted. Useful "
    "FLOP rate = train FLOPs / train_runtime; padding tokens never count, so padded runs do the same useful work."
)


SMOKE = dict(max_train_samples=200, max_eval_samples=100, epochs=0.2, matmul_size=256, **TINY_SHAPE)  # --smoke


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="../shared/data/thucnews_titles",
                   help="Folder with train.txt, dev.txt, class.txt (title<TAB>label_id). Relative paths: to the "
                        "current directory, else to the repository root.")
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help=f"Comma-separated configurations, from {', '.join(CONFIGS)} (default {DEFAULT_CONFIGS}; the "
                        f"speed ratios need {BASELINE}).")
    add_seed_argument(p)
    p.add_argument("--epochs", type=float, default=2, help="Training epochs, the same for every configuration.")
    p.add_argument("--max_train_samples", type=int, default=12000,
                   help="Train on the first N titles (0: all 52,494); quarter/half take 1/4 and 1/2 of N.")
    p.add_argument("--max_eval_samples", type=int, default=2000, help="Evaluate on the first N dev titles (0: all).")
    p.add_argument("--batch_size", type=int, default=32, help="Training batch size.")
    p.add_argument("--eval_batch_size", type=int, default=128, help="Evaluation batch size.")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Peak learning rate (from-scratch model).")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--max_seq_length", type=int, default=128,
                   help="--max_seq_length for every run (truncation; pad128 pads to it).")
    p.add_argument("--script_args", default="--head linear --pooling mean",
                   help="Extra run_classification.py arguments for every configuration (default: mean pooling, "
                        "which a from-scratch model learns much faster than [CLS] through the pooler).")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON file to write (a .md table goes next to it).")
    p.add_argument("--work_dir", default="/tmp/classification_throughput",
                   help="Vocab/config, run output dirs, logs and the datasets cache go here.")
    p.add_argument("--reuse_runs", action="store_true",
                   help="Keep a run whose output dir holds a finished run of the identical command (to finish an "
                        "interrupted benchmark; its numbers then come from another time).")
    p.add_argument("--skip_tfidf", action="store_true", help="Do not run the TF-IDF + LinearSVC baseline.")
    # Model (passed to data_scripts/train_tokenizer.py).
    p.add_argument("--vocab_size", type=int, default=8000, help="Requested WordPiece vocab size (~7.4k come out).")
    p.add_argument("--num_hidden_layers", type=int, default=TINY["num_hidden_layers"])
    p.add_argument("--hidden_size", type=int, default=TINY["hidden_size"])
    p.add_argument("--num_attention_heads", type=int, default=TINY["num_attention_heads"])
    p.add_argument("--intermediate_size", type=int, default=TINY["intermediate_size"])
    p.add_argument("--matmul_size", type=int, default=2048, help="Square matrix size for the fp32 matmul peak.")
    add_smoke_argument(p, SMOKE)
    args = apply_smoke(p.parse_args(argv), SMOKE)

    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown --configs {unknown}; choose from {list(CONFIGS)}")
    args.data_dir = resolve_data_dir(args.data_dir)
    if args.data_dir is None:
        p.error("--data_dir: no train.txt/dev.txt/class.txt there (relative paths are tried against the current "
                "directory and the repository root)")
    args.output = os.path.abspath(args.output)
    args.work_dir = os.path.abspath(args.work_dir)
    return args


def matmul_peak(n=2048, repeats=5):
    """Best fp32 FLOP/s of torch.matmul on n x n matrices (2 n^3 FLOPs each) with this process's torch threads (the
    runs inherit the same OMP_NUM_THREADS)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return {"flops_per_s": 2 * n**3 / min(times), "best_s": min(times), "n": n, "repeats": repeats,
            "threads": torch.get_num_threads()}


def model_facts(model_dir, num_labels):
    """Parameter counts of the classification model (built on the meta device: no memory, no init time)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir, num_labels=num_labels)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    base = getattr(model, model.base_model_prefix)
    count = lambda module: sum(p.numel() for p in module.parameters()) if module is not None else 0  # noqa: E731
    total, embeddings, encoder = count(model), count(base.embeddings), count(base.encoder)
    return {"num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size, "num_labels": num_labels, "parameters": total,
            "embedding_parameters": embeddings, "encoder_parameters": encoder,
            "per_sequence_parameters": total - embeddings - encoder,  # pooler + classifier: on [CLS] only
            "non_embedding_parameters": total - embeddings, "model_dir": model_dir}


def token_lengths(model_dir, texts, max_seq_length):
    """Non-pad tokens per example incl. [CLS]/[SEP], truncated like run_classification.py (head, single text)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return [min(len(x), max_seq_length - 2) + 2 for x in ids]


def computed_tokens(lengths, batch_size, config_args, max_seq_length, seed):
    """Tokens computed per epoch, padding included: exact for --pad_to_max_length; for dynamic padding an estimate
    from one draw of random batches, or of length pools (POOL_BATCHES random batches sorted by length, then cut), each
    batch padded to its longest example."""
    if "--pad_to_max_length" in config_args:
        return len(lengths) * max_seq_length
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    pool = batch_size * (1 if "random" in config_args else POOL_BATCHES)
    total = 0
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        for b in range(0, len(chunk), batch_size):
            batch = chunk[b:b + batch_size]
            total += max(lengths[i] for i in batch) * len(batch)
    return total


def train_flops(model, lengths, epochs):
    L, H = model["num_hidden_layers"], model["hidden_size"]
    per_epoch = (6 * model["encoder_parameters"] * sum(lengths) + 6 * model["per_sequence_parameters"] * len(lengths)
                 + 12 * L * H * sum(x * x for x in lengths))
    return per_epoch * epochs


def evaluate_targets(summary, runs, tfidf):
    """The issue's targets, judged over seeds (means of per-seed ratios; accuracy by the paired rule)."""
    targets = []

    def add(target, value, met):
        targets.append({"target": target, "value": value, "met": met})

    def has(name):
        return name in summary and summary[name]["train_samples_per_second"]["mean"] is not None

    for name in ("default", "random"):
        if has(name) and has(BASELINE):
            s = summary[name]
            speed, accuracy = s["ratio"]["train_samples_per_second"], s["difference"]["eval_accuracy"]
            add(f"{name}: train samples/s >= {TARGET_SPEEDUP:g}x {BASELINE} (mean of per-seed ratios), dev accuracy "
                f"not worse (paired rule)",
                f"{fmt_ratio(speed)}; accuracy {fmt_comparison(accuracy)} points",
                speed["mean"] is not None and speed["mean"] >= TARGET_SPEEDUP and accuracy["verdict"] != "worse")
    if has("default"):
        fraction = summary["default"]["useful_fraction_of_fp32_peak"]
        add(f"default useful FLOP rate >= {TARGET_PEAK_FRACTION:.0%} of the fp32 matmul peak (same threads)",
            f"{fmt_mean_std(fraction, 100, 1)}%", fraction["mean"] >= TARGET_PEAK_FRACTION)
    if has("bf16") and has("default"):
        ratios = mean_std(list(per_seed_ratios(runs, "bf16", "default", "train_samples_per_second").values()))
        accuracy = summary["bf16"].get("accuracy_vs_default")
        add(f"--bf16 train samples/s >= {TARGET_BF16_SPEEDUP:g}x default, dev accuracy not worse (paired rule)",
            f"{fmt_ratio(ratios)}; accuracy {fmt_comparison(accuracy)} points",
            ratios["mean"] is not None and ratios["mean"] >= TARGET_BF16_SPEEDUP
            and (accuracy or {}).get("verdict") != "worse")
    scaling = [(name, fraction) for name, fraction in SCALING if has(name)]
    if len(scaling) >= 2:
        per_sample = [summary[name]["us_per_train_sample"]["mean"] for name, _ in scaling]
        rss = [summary[name]["peak_rss_mb"]["mean"] for name, _ in scaling]
        spread, growth = max(per_sample) / min(per_sample), rss[-1] / rss[0]
        label = ", ".join(f"{fraction:g}" for _, fraction in scaling)
        add(f"time linear in data (mean µs/sample at {label} of the data: max/min <= "
            f"{TARGET_TIME_PER_SAMPLE_SPREAD:g})", " / ".join(f"{x:.0f}" for x in per_sample) +
            f" µs (max/min {spread:.2f})", spread <= TARGET_TIME_PER_SAMPLE_SPREAD)
        add(f"peak RSS flat (largest/smallest data <= {TARGET_RSS_GROWTH:g})",
            " / ".join(f"{x:.0f}" for x in rss) + f" MB ({growth:.2f}x)", growth <= TARGET_RSS_GROWTH)
    if tfidf and has("default"):
        add("TF-IDF char 1-3-gram + LinearSVC (reference, deterministic: one run)",
            f"{100 * tfidf['eval_accuracy']:.2f} in {tfidf['fit_s']:.1f} s; default "
            f"{fmt_mean_std(summary['default']['eval_accuracy'])}", None)
    return targets


def markdown(report):
    summary, settings = report["summary"], report["settings"]
    lines = ["# Classification throughput: default batching vs random batches vs pad-to-128", "",
             machine_line(report), "",
             f"THUCNews titles: {report['train_samples']} train x {settings['epochs']:g} epochs, "
             f"{report['eval_samples']} dev; {report['model']['num_hidden_layers']}-layer "
             f"{report['model']['hidden_size']}-wide BERT from scratch ({report['model']['parameters'] / 1e6:.2f}M "
             f"parameters), batch {settings['batch_size']}, lr {settings['learning_rate']:g}, max_seq_length "
             f"{settings['max_seq_length']}, `{settings['script_args']}`. Accuracy in %; x {BASELINE} / x random: "
             f"mean ± std of per-seed ratios of train samples/s; accuracy vs {BASELINE}: {PAIRED_RULE}.", "",
             f"| configuration | dev accuracy | accuracy vs {BASELINE} (points) | train samples/s | x {BASELINE} | "
             f"x random | eval samples/s | peak RSS (MB) | padding | useful GFLOP/s | % of fp32 peak | failed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        if name == BASELINE:
            versus = "baseline"
        else:
            versus = fmt_comparison(s.get("difference", {}).get("eval_accuracy"))
        lines.append(
            f"| {name} | {fmt_mean_std(s['eval_accuracy'])} | {versus} | "
            f"{fmt_mean_std(s['train_samples_per_second'], 1, 1)}{busy_mark(s)} | "
            f"{fmt_ratio(s.get('ratio', {}).get('train_samples_per_second'))} | {fmt_ratio(s.get('vs_random'))} | "
            f"{fmt_mean_std(s['eval_samples_per_second'], 1, 0)} | {fmt_mean_std(s['peak_rss_mb'], 1, 0)} | "
            f"{fmt_mean_std(s['padding_share'], 100, 0)}% | {fmt_mean_std(s['useful_flops_per_s'], 1e-9, 2)} | "
            f"{fmt_mean_std(s['useful_fraction_of_fp32_peak'], 100, 1)} | {s['failed_runs']}/{s['runs']} |")
    t = report.get("tfidf_svm")
    if t:
        lines.append(f"| TF-IDF char 1-3 + LinearSVC (one run) | {100 * t['eval_accuracy']:.2f} | | "
                     f"{t['train_samples_per_second']:.0f} (fit) | | | {t['eval_samples_per_second']:.0f} | | | | | |")
    for name, note in report.get("skipped", {}).items():
        lines.append(f"\nSkipped `{name}`: {note}")
    lines.append(collapse_note(summary))
    peak = report.get("matmul_peak") or {}
    if peak:
        lines += ["", f"fp32 matmul peak {peak['fp32_flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['n']}x{peak['n']}, "
                      f"{peak['threads']} threads; best of before/after the runs, after/before ratio "
                      f"{peak.get('after_over_before') or '-'}). padding: share of computed tokens that are padding "
                      "(dynamic padding: estimated from one draw of the batches). (busy): other processes used more "
                      "than 5% of the CPUs during a run of that row."]
    if report.get("targets"):
        lines += ["", "| target | value | met |", "|---|---|:---:|"]
        for t in report["targets"]:
            met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {t['target']} | {t['value']} | {met} |")
    lines += ["", "Commands: `command` (the benchmark) and `commands` (every run) in the JSON."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    env = bench_env(args.work_dir)
    report = new_report(__file__, argv, args, seeds=args.seeds, flops_formula=FLOPS_FORMULA, skipped={})
    machine = report["machine"]
    configs = list(args.configs)
    if "bf16" in configs and not machine["cpu_bf16_fast"]:
        configs.remove("bf16")
        report["skipped"]["bf16"] = ("this CPU has no fast bf16 matmuls (no AVX512-BF16/AMX): the scripts ignore "
                                     "--bf16 here, and bf16 would run 10-100x slower than fp32.")
        print(f"Skipping bf16: {report['skipped']['bf16']}", flush=True)
    print(f"{machine['cpu_model']}, {machine['cpus_usable']} CPUs, OMP_NUM_THREADS={machine['omp_num_threads']}, "
          f"torch {machine['torch']} ({machine['torch_threads']} threads), commit {machine['git_commit']}", flush=True)
    peak_before = matmul_peak(args.matmul_size)
    print(f"fp32 matmul peak: {peak_before['flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)

    train_file, dev_file, label_file = (os.path.join(args.data_dir, f) for f in ("train.txt", "dev.txt", "class.txt"))
    train_texts, train_labels = read_split(train_file, args.max_train_samples or None)
    dev_texts, dev_labels = read_split(dev_file, args.max_eval_samples or None)
    with open(label_file, encoding="utf-8") as f:
        num_labels = len([line for line in f if line.strip()])
    shape = {k: getattr(args, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "intermediate_size")}
    model_dir = build_vocab(os.path.join(args.work_dir, "model"), [train_file], env, report["commands"], shape,
                            vocab_size=args.vocab_size)
    model = model_facts(model_dir, num_labels)
    all_lengths = token_lengths(model_dir, train_texts, args.max_seq_length)
    report.update(model=model, train_samples=len(train_texts), eval_samples=len(dev_texts),
                  matmul_peak={"before": peak_before, "fp32_flops_per_s": peak_before["flops_per_s"],
                               "n": args.matmul_size, "threads": peak_before["threads"]})

    common = ["--config_name", model_dir, "--tokenizer_name", model_dir,
              "--train_file", train_file, "--validation_file", dev_file, "--label_file", label_file,
              "--do_train", "--do_eval", "--max_seq_length", str(args.max_seq_length),
              "--num_train_epochs", f"{args.epochs:g}", "--per_device_train_batch_size", str(args.batch_size),
              "--per_device_eval_batch_size", str(args.eval_batch_size),
              "--learning_rate", f"{args.learning_rate:g}", "--weight_decay", f"{args.weight_decay:g}",
              # Evaluate once, after training: per-epoch evaluation would be counted in train_runtime.
              "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
              "--logging_steps", "50", "--disable_tqdm", "true", "--overwrite_output_dir"] + args.script_args.split()
    if args.max_eval_samples:
        common += ["--max_eval_samples", str(args.max_eval_samples)]

    def train_limit(name):
        return max(1, int(len(train_texts) * CONFIGS[name][1]))

    def make_command(name, seed, out_dir):
        return [sys.executable, RUN_SCRIPT, *common, "--seed", str(seed), "--output_dir", out_dir,
                "--max_train_samples", str(train_limit(name)), *CONFIGS[name][0]]

    def collect(name, seed, out_dir):
        results = read_json(os.path.join(out_dir, "all_results.json"))
        lengths = all_lengths[:train_limit(name)]
        if results.get("train_samples") != len(lengths):
            print(f"[{name}] warning: the run trained on {results.get('train_samples')} examples, the bench counted "
                  f"{len(lengths)}; FLOPs use the bench's count", flush=True)
        padded = computed_tokens(lengths, args.batch_size, CONFIGS[name][0], args.max_seq_length, seed)
        flops = train_flops(model, lengths, args.epochs)
        return {"description": CONFIGS[name][2], "train_samples": results.get("train_samples"),
                "train_runtime": results["train_runtime"],
                "train_samples_per_second": results["train_samples_per_second"],
                "us_per_train_sample": 1e6 * results["train_runtime"] / (len(lengths) * args.epochs),
                "eval_samples_per_second": results.get("eval_samples_per_second"),
                "eval_accuracy": results.get("eval_accuracy"), "eval_macro_f1": results.get("eval_macro_f1"),
                "train_loss": results.get("train_loss"), "useful_tokens_per_epoch": sum(lengths),
                "computed_tokens_per_epoch": padded, "padding_share": 1 - sum(lengths) / padded,
                "useful_train_flops": flops, "useful_flops_per_s": flops / results["train_runtime"],
                "collapse_warning": collapse_warning(out_dir)}

    def save():
        for r in report["runs"]:
            if "useful_flops_per_s" in r:
                r["useful_fraction_of_fp32_peak"] = r["useful_flops_per_s"] / report["matmul_peak"]["fp32_flops_per_s"]
        metrics = ["eval_accuracy", "eval_macro_f1", "train_samples_per_second", "eval_samples_per_second",
                   "train_runtime", "us_per_train_sample", "peak_rss_mb", "padding_share", "useful_flops_per_s",
                   "useful_fraction_of_fp32_peak"]
        baseline = BASELINE if BASELINE in configs else None
        summary = summarise(report["runs"], metrics, baseline=baseline,
                            ratio_metrics=["train_samples_per_second", "eval_samples_per_second"],
                            difference_metrics=["eval_accuracy"])
        for name, s in summary.items():
            s["vs_random"] = mean_std(list(per_seed_ratios(report["runs"], name, "random",
                                                           "train_samples_per_second").values()))
        if "bf16" in summary and "default" in summary:
            bf16 = summarise(report["runs"], [], baseline="default", difference_metrics=["eval_accuracy"])["bf16"]
            summary["bf16"]["accuracy_vs_default"] = bf16["difference"]["eval_accuracy"]
        report["summary"] = summary
        report["targets"] = evaluate_targets(summary, report["runs"], report.get("tfidf_svm"))
        write_report(report, args.output, markdown(report))

    if not args.skip_tfidf:
        report["tfidf_svm"] = tfidf_svm(train_texts, train_labels, dev_texts, dev_labels)
        print(f"[tfidf_svm] accuracy {report['tfidf_svm']['eval_accuracy']:.4f}", flush=True)
    started = time.perf_counter()
    run_over_seeds(report, args.seeds, configs, make_command, collect, args.work_dir, env, args.reuse_runs, save)
    peak_after = matmul_peak(args.matmul_size)
    report["matmul_peak"].update(after=peak_after, fp32_flops_per_s=max(peak_before["flops_per_s"],
                                                                        peak_after["flops_per_s"]),
                                 after_over_before=round(peak_after["flops_per_s"] / peak_before["flops_per_s"], 3))
    report["runs_wall_s"] = round(time.perf_counter() - started, 1)
    save()
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md ({report['runs_wall_s'] / 60:.1f} min of "
          f"runs)")
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
