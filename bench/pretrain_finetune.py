#!/usr/bin/env python
"""Does pretraining pay, and which lever buys what? An ablation of objective (MLM, whole-word MLM, ELECTRA's
replaced-token detection) x vocabulary (character WordPiece, word-level BPE), every cell pretrained for the same
minutes of one core, then fine-tuned; next to random weights and TF-IDF + linear SVM on the same splits.

    python data_scripts/build_corpus.py ... --output data/corpus.txt      # the corpus (README: "Pretraining")
    python bench/pretrain_finetune.py --corpus data/corpus.txt --data_dir ../shared/data --minutes 6

Stages (every run a fresh single-threaded process, --jobs of them at a time; wall, CPU time, peak memory and the CPU
other processes took are recorded per run, bench/common.run_config):
  1. vocab      data_scripts/train_tokenizer.py --level char|word on the corpus, + one small BertConfig (--hidden_size
                ...) per vocabulary;
  2. calibrate  bench/rtd_step_time.py per vocabulary: the CPU seconds of one MLM and one RTD step at the
                pretraining shapes, measured side by side; --max_steps of a cell = --minutes x 60 / its seconds per
                step (whole-word MLM costs what MLM costs), so every cell gets the same CPU time and a complete
                learning-rate schedule;
  3. pretrain   run_mlm.py per cell (--cells, e.g. char:wwm = character vocab, whole-word masking);
  4. titles     run_classification.py on THUCNews titles (all training titles, --epochs, mean pooling) from each
                cell's checkpoint and from random weights of each vocabulary, per seed; TF-IDF + SVM once;
  5. transfer   from the cell with the best mean titles accuracy (the winner) and from random weights of its
                vocabulary: ChnSentiCorp (run_classification.py) and CLUENER (run_ner.py --head crf), per seed;
                TF-IDF + SVM on ChnSentiCorp.
Child processes get glibc malloc settings that keep freed memory (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_):
without them a 16k-vocabulary model spends a third of its time in the kernel mapping and zeroing pages.

Results: bench/results/<--results_name>.json (command, commit, machine, seeds, every run's command and numbers), .md
(the tables) and .png (dev accuracy against pretraining minutes). The JSON is rewritten after every run; --reuse
keeps runs that already finished with the same command, so an interrupted benchmark resumes.
"""

import argparse
import json
import os
import shlex
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import (  # noqa: E402
    REPO,
    TINY,
    fmt_mean_std,
    machine_facts,
    mean_std,
    read_json,
    read_split,
    run_config,
    tfidf_svm,
)

RESULTS = os.path.join(REPO, "bench", "results")
LEVELS = ("char", "word")
OBJECTIVES = ("mlm", "wwm", "rtd")
DEFAULT_CELLS = ("char:mlm", "char:wwm", "char:rtd", "word:mlm", "word:rtd")
# Keep freed memory in the process instead of returning it to the kernel after every step (see the docstring).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="../shared/data",
                   help="Holds thucnews_titles/ (train.txt, dev.txt, class.txt), chnsenticorp/ (train.tsv, dev.tsv) "
                        "and cluener/ (train.json, dev.json).")
    p.add_argument("--corpus", required=True, help="Pretraining text (data_scripts/build_corpus.py's output).")
    p.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS), help="vocabulary:objective pairs.")
    p.add_argument("--char_vocab_size", type=int, default=8000)
    p.add_argument("--word_vocab_size", type=int, default=16000)
    p.add_argument("--minutes", type=float, default=6.0, help="CPU minutes of pretraining per cell (one core).")
    p.add_argument("--calibration_steps", type=int, default=4, help="Timed steps per objective.")
    for name, value in TINY.items():
        p.add_argument(f"--{name}", type=int, default=value)
    p.add_argument("--max_seq_length", type=int, default=128, help="Pretraining blocks (packed texts).")
    p.add_argument("--pretrain_batch_size", type=int, default=32)
    p.add_argument("--pretrain_learning_rate", type=float, default=1e-3)
    p.add_argument("--generator_size_divisor", type=int, default=4)
    p.add_argument("--epochs", type=float, default=4.0, help="THUCNews titles fine-tuning.")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Fine-tuning, from a checkpoint and from random.")
    p.add_argument("--sentiment_epochs", type=float, default=3.0)
    p.add_argument("--sentiment_max_seq_length", type=int, default=256)
    p.add_argument("--ner_epochs", type=float, default=4.0)
    p.add_argument("--tasks", nargs="*", default=["chnsenticorp", "cluener"], help="Transfer tasks of the winner.")
    p.add_argument("--max_train_samples", type=int, default=0, help="Cap every fine-tuning training set (0: all).")
    p.add_argument("--max_eval_samples", type=int, default=0, help="Cap every dev set (0: all).")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="Fine-tuning seeds.")
    p.add_argument("--jobs", type=int, default=2, help="Single-threaded runs at a time (one per core).")
    p.add_argument("--work_dir", default="outputs/bench_pretrain_finetune")
    p.add_argument("--reuse", action="store_true", help="Keep runs that already finished with the same command.")
    p.add_argument("--results_name", default="pretrain_finetune")
    p.add_argument("--results_dir", default=RESULTS, help="Where the JSON, markdown and plot go.")
    args = p.parse_args(argv)
    for cell in args.cells:
        level, _, objective = cell.partition(":")
        if level not in LEVELS or objective not in OBJECTIVES:
            p.error(f"--cells {cell}: expected vocabulary:objective with a vocabulary in {LEVELS} and an objective "
                    f"in {OBJECTIVES}, e.g. word:rtd")
    return args


def main(argv=None):
    args = parse_args(argv)
    work = os.path.abspath(args.work_dir)
    data = os.path.abspath(args.data_dir)
    os.makedirs(work, exist_ok=True)
    os.makedirs(args.results_dir, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", HF_DATASETS_CACHE=os.path.join(work, "datasets_cache"), **MALLOC_ENV)
    py = sys.executable
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    report = {"benchmark": "bench/pretrain_finetune.py",
              "command": shlex.join([py, "bench/pretrain_finetune.py", *argv]),
              "machine": machine_facts(), "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "runs": {}}
    lock = threading.Lock()
    json_path = os.path.join(args.results_dir, args.results_name + ".json")

    def save():
        with lock:
            report["summary"] = summarise(report, args)
            with open(json_path, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2, ensure_ascii=False)
            with open(os.path.join(args.results_dir, args.results_name + ".md"), "w", encoding="utf-8") as f:
                f.write(markdown(report, args))

    def run(name, cmd, results=("train_results.json", "eval_results.json")):
        run_dir = os.path.join(work, name)
        record = run_config(name, [str(c) for c in cmd], run_dir, env, args.reuse)
        for file in results:
            record[file.split("_")[0]] = read_json(os.path.join(run_dir, file))
        with lock:
            report["runs"][name] = record
        save()
        if record["returncode"] != 0:
            raise RuntimeError(f"{name} failed (exit {record['returncode']}); see {run_dir}.log")
        return record

    def run_parallel(jobs):
        """jobs: (name, cmd, waits_for_names); a job starts once the runs it waits for have finished."""
        done = {}
        events = {name: threading.Event() for name, _, _ in jobs}

        def one(name, cmd, waits):
            for w in waits:
                events[w].wait()
                if done.get(w) is None:
                    raise RuntimeError(f"{name}: {w} failed")
            try:
                done[name] = run(name, cmd)
            finally:
                events[name].set()

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(one, *job) for job in jobs]
        errors = [f.exception() for f in futures if f.exception()]
        if errors:
            sys.exit(f"error: {len(errors)} run(s) failed: {errors[0]}")

    levels = sorted({cell.split(":")[0] for cell in args.cells}, key=LEVELS.index)
    titles = {s: os.path.join(data, "thucnews_titles", f"{s}.txt") for s in ("train", "dev", "class")}
    caps = [x for flag, n in (("--max_train_samples", args.max_train_samples),
                              ("--max_eval_samples", args.max_eval_samples)) if n for x in (flag, n)]

    # ---- 1. vocabularies + configs --------------------------------------------------------------------------------
    shape = [x for name in TINY for x in (f"--{name}", getattr(args, name))]
    vocab_dirs = {level: os.path.join(work, f"vocab_{level}") for level in levels}
    run_parallel([(f"vocab_{level}", [
        py, "data_scripts/train_tokenizer.py", "--train_files", args.corpus, "--output_dir", vocab_dirs[level],
        "--level", level, "--vocab_size", getattr(args, f"{level}_vocab_size"), "--min_frequency", "2",
        "--write_config", "--max_position_embeddings", "512", *shape], []) for level in levels])
    # train_tokenizer.py writes no results file: mark it finished for --reuse.
    for level in levels:
        shutil.copy(os.path.join(vocab_dirs[level], "config.json"),
                    os.path.join(work, f"vocab_{level}", "all_results.json"))

    # ---- 2. calibrate: CPU seconds per step of MLM and RTD, side by side, per vocabulary -------------------------
    run_parallel([(f"calibrate_{level}", [
        py, "bench/rtd_step_time.py", *shape, "--vocab_size", getattr(args, f"{level}_vocab_size"),
        "--generator_size_divisor", args.generator_size_divisor, "--batch_size", args.pretrain_batch_size,
        "--seq_len", args.max_seq_length, "--steps", args.calibration_steps, "--output",
        os.path.join(work, f"calibrate_{level}", "all_results.json")], []) for level in levels])
    report["step_seconds"], report["max_steps"] = {}, {}
    for level in levels:
        timing = read_json(os.path.join(work, f"calibrate_{level}", "all_results.json"))["median_cpu_s"]
        report["step_seconds"][level] = timing
        for objective in OBJECTIVES:
            seconds = timing["rtd" if objective == "rtd" else "mlm"]
            report["max_steps"][f"{level}:{objective}"] = max(1, int(args.minutes * 60 / seconds))
    save()

    # ---- 3 + 4. pretrain every cell, fine-tune it and random weights on THUCNews titles ----------------------
    def pretrain_cmd(cell):
        level, objective = cell.split(":")
        cmd = [py, "run_mlm.py", "--objective", "rtd" if objective == "rtd" else "mlm",
               "--config_name", vocab_dirs[level], "--tokenizer_name", vocab_dirs[level], "--train_file", args.corpus,
               "--do_train", "--do_eval", "--validation_split_percentage", "1", "--max_eval_samples", "1000",
               "--max_seq_length", args.max_seq_length, "--per_device_train_batch_size", args.pretrain_batch_size,
               "--per_device_eval_batch_size", "64", "--learning_rate", args.pretrain_learning_rate,
               "--warmup_steps", "0.06", "--weight_decay", "0.01", "--max_steps", report["max_steps"][cell],
               "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "50", "--report_to", "none",
               "--disable_tqdm", "true", "--seed", "0", "--dataloader_num_workers", "0",
               "--output_dir", os.path.join(work, pretrain_name(cell)), "--overwrite_output_dir"]
        if objective == "wwm":
            cmd += ["--whole_word_mask"]
        if objective == "rtd":
            cmd += ["--generator_size_divisor", args.generator_size_divisor]
        return cmd

    def model_args(source):
        """A cell's checkpoint, or random:<level> = random weights of that vocabulary's config."""
        if source.startswith("random:"):
            d = vocab_dirs[source.split(":")[1]]
            return ["--config_name", d, "--tokenizer_name", d]
        return ["--model_name_or_path", os.path.join(work, pretrain_name(source))]

    def common_finetune(name, seed):
        return finetune_args(args.learning_rate, seed, os.path.join(work, name), caps)

    def titles_cmd(source, seed):
        return titles_command(py, model_args(source), data, args.epochs, args.learning_rate, seed,
                              os.path.join(work, finetune_name("titles", source, seed)), caps)

    jobs = [(pretrain_name(cell), pretrain_cmd(cell), []) for cell in args.cells]
    # Random-weight runs wait for nothing: queued right after the pretraining runs they keep the cores busy.
    jobs += [(finetune_name("titles", f"random:{level}", seed), titles_cmd(f"random:{level}", seed), [])
             for level in levels for seed in args.seeds]
    jobs += [(finetune_name("titles", cell, seed), titles_cmd(cell, seed), [pretrain_name(cell)])
             for cell in args.cells for seed in args.seeds]
    run_parallel(jobs)

    # ---- TF-IDF + linear SVM on the same splits (deterministic: once) --------------------------------------------
    train_texts, train_labels = read_split(titles["train"], args.max_train_samples or None)
    dev_texts, dev_labels = read_split(titles["dev"], args.max_eval_samples or None)
    report["tfidf"] = {"titles": tfidf_svm(train_texts, train_labels, dev_texts, dev_labels)}
    save()

    # ---- 5. the winner on ChnSentiCorp and CLUENER, next to random weights of its vocabulary ----------------------
    titles_means = {cell: report["summary"]["titles"][cell]["mean"] for cell in args.cells}
    winner = max(titles_means, key=lambda c: titles_means[c])
    report["winner"] = winner
    sources = (winner, f"random:{winner.split(':')[0]}")
    jobs = []
    if "chnsenticorp" in args.tasks:
        senti = {s: os.path.join(data, "chnsenticorp", f"{s}.tsv") for s in ("train", "dev")}
        jobs += [(finetune_name("chnsenticorp", source, seed), [
            py, "run_classification.py", *model_args(source), "--train_file", senti["train"], "--validation_file",
            senti["dev"], "--pooling", "mean", "--max_seq_length", args.sentiment_max_seq_length,
            "--num_train_epochs", args.sentiment_epochs,
            *common_finetune(finetune_name("chnsenticorp", source, seed), seed)], [])
            for seed in args.seeds for source in sources]
        report["tfidf"]["chnsenticorp"] = tfidf_svm(*read_tsv(senti["train"], args.max_train_samples),
                                                    *read_tsv(senti["dev"], args.max_eval_samples))
    if "cluener" in args.tasks:
        ner = {s: os.path.join(data, "cluener", f"{s}.json") for s in ("train", "dev")}
        jobs += [(finetune_name("cluener", source, seed), [
            py, "run_ner.py", *model_args(source), "--train_file", ner["train"], "--validation_file", ner["dev"],
            "--head", "crf", "--head_learning_rate", "1e-3", "--max_seq_length", "64",
            "--num_train_epochs", args.ner_epochs, *common_finetune(finetune_name("cluener", source, seed), seed)],
            []) for seed in args.seeds for source in sources]
    save()
    run_parallel(jobs)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    plot(report, args, os.path.join(args.results_dir, args.results_name + ".png"))
    print(markdown(report, args))


def finetune_args(learning_rate, seed, output_dir, caps=()):
    """The fine-tuning settings every run of the ablation shares (the pipeline's, scripts/pretrain_news_bert.sh)."""
    return ["--do_train", "--do_eval", "--weight_decay", "0.01", "--per_device_train_batch_size", "32",
            "--per_device_eval_batch_size", "256", "--learning_rate", learning_rate, "--save_strategy", "no",
            "--eval_strategy", "no", "--logging_steps", "200", "--report_to", "none", "--seed", seed,
            "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--output_dir", output_dir,
            "--overwrite_output_dir", *caps]


def titles_command(py, model_args, data_dir, epochs, learning_rate, seed, output_dir, caps=()):
    """THUCNews titles fine-tuning: all training titles (unless capped), mean pooling, max length from the data."""
    titles = {s: os.path.join(data_dir, "thucnews_titles", f"{s}.txt") for s in ("train", "dev", "class")}
    return [py, "run_classification.py", *model_args, "--train_file", titles["train"], "--validation_file",
            titles["dev"], "--label_file", titles["class"], "--pooling", "mean", "--max_seq_length", "auto",
            "--num_train_epochs", epochs, *finetune_args(learning_rate, seed, output_dir, caps)]


def pretrain_name(cell):
    return "pretrain_" + cell.replace(":", "_")


def finetune_name(task, source, seed):
    return f"{task}_{source.replace(':', '_')}_seed{seed}"


def read_tsv(path, limit=0):
    """ChnSentiCorp's `label<TAB>text_a` with a header -> (texts, labels)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            if limit and len(texts) >= limit:
                break
            label, text = line.rstrip("\n").split("\t", 1)
            texts.append(text)
            labels.append(label)
    return texts, labels


TASK_METRIC = {"titles": "eval_accuracy", "chnsenticorp": "eval_accuracy", "cluener": "eval_f1"}


def summarise(report, args):
    """Per task, per source (cell or random:<level>): the dev metric, mean ± std over seeds, and the paired difference
    to random weights of the same vocabulary (same seed)."""
    runs, summary = report["runs"], {}
    levels = sorted({cell.split(":")[0] for cell in args.cells}, key=LEVELS.index)
    sources = [*args.cells, *(f"random:{level}" for level in levels)]
    for task, metric in TASK_METRIC.items():
        summary[task] = {}
        for source in sources:
            values = {seed: ((runs.get(finetune_name(task, source, seed)) or {}).get("eval") or {}).get(metric)
                      for seed in args.seeds}
            if not any(v is not None for v in values.values()):
                continue
            row = mean_std(list(values.values()))
            if not source.startswith("random:"):
                base = f"random:{source.split(':')[0]}"
                base_values = {s: ((runs.get(finetune_name(task, base, s)) or {}).get("eval") or {}).get(metric)
                               for s in args.seeds}
                row["minus_random"] = mean_std([v - base_values[s] for s, v in values.items()
                                                if v is not None and base_values[s] is not None])
            if task == "cluener":
                row["macro_f1"] = mean_std([((runs.get(finetune_name(task, source, s)) or {}).get("eval") or {})
                                            .get("eval_macro_f1") for s in args.seeds])
            walls = [(runs.get(finetune_name(task, source, s)) or {}).get("wall_s") for s in args.seeds]
            row["wall_min"] = mean_std([w / 60 for w in walls if w])
            summary[task][source] = row
    summary["pretrain"] = {}
    for cell in args.cells:
        record = runs.get(pretrain_name(cell)) or {}
        if record.get("returncode") == 0:
            summary["pretrain"][cell] = {"steps": report.get("max_steps", {}).get(cell),
                                         "wall_min": round(record["wall_s"] / 60, 2),
                                         "cpu_min": round(record["cpu_s"] / 60, 2), "eval": record.get("eval")}
    summary["cpu_minutes_all_runs"] = round(sum(r.get("cpu_s", 0) for r in runs.values()) / 60, 1)
    return summary


def pretrain_quality(ev):
    if not ev:
        return "-"
    if "eval_rtd_accuracy" in ev:
        return (f"RTD acc {ev['eval_rtd_accuracy']:.1%} (all 'original': {ev['eval_rtd_all_original_accuracy']:.1%}), "
                f"generator masked acc {ev['eval_generator_masked_accuracy']:.1%}")
    if "eval_most_frequent_token_accuracy" in ev:  # run_mlm.py's [MASK]-only validation masks
        return (f"masked acc {ev['eval_masked_accuracy']:.1%} (commonest word: "
                f"{ev['eval_most_frequent_token_accuracy']:.1%})")
    if "eval_masked_accuracy" in ev:  # older runs: 80/10/10 validation masks, copies of visible tokens counted
        return f"masked acc {ev['eval_masked_accuracy']:.1%} (80/10/10 masks)"
    return "-"


def markdown(report, args):
    s = report.get("summary", {})
    m = report["machine"]
    tfidf = report.get("tfidf", {})
    lines = [
        "# Pretraining ablation: objective x vocabulary at equal CPU time, then fine-tuning",
        "",
        f"Encoder {args.num_hidden_layers} layers x {args.hidden_size} (heads {args.num_attention_heads}, FFN "
        f"{args.intermediate_size}); vocabularies: char WordPiece {args.char_vocab_size}, word BPE "
        f"{args.word_vocab_size}, both trained on the corpus `{args.corpus}`. Each cell: {args.minutes:g} CPU-min of "
        f"pretraining (one core; steps = minutes / the calibrated CPU seconds per step), blocks of "
        f"{args.max_seq_length}, batch {args.pretrain_batch_size}, lr {args.pretrain_learning_rate:g}; RTD generator "
        f"1/{args.generator_size_divisor} wide. Fine-tuning: THUCNews titles, all training titles unless capped, "
        f"{args.epochs:g} epochs, mean pooling, lr {args.learning_rate:g}, batch 32; seeds {args.seeds}. "
        "Dev accuracy / F1 in %, mean ± std over seeds; 'vs random' = the paired difference to random weights of "
        "the same vocabulary, same seed.",
        "",
        "| source | pretraining steps | pretraining wall min | pretraining quality (held-out) | THUCNews titles dev "
        "| vs random | fine-tune wall min |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for source, row in s.get("titles", {}).items():
        pre = s.get("pretrain", {}).get(source, {})
        lines.append(f"| {source} | {pre.get('steps', '-')} | {pre.get('wall_min', '-')} | "
                     f"{pretrain_quality(pre.get('eval'))} | {fmt_mean_std(row)} | "
                     f"{fmt_mean_std(row.get('minus_random'), digits=2) if row.get('minus_random') else '-'} | "
                     f"{fmt_mean_std(row['wall_min'], scale=1, digits=1)} |")
    if "titles" in tfidf:
        t = tfidf["titles"]
        lines.append(f"| TF-IDF + LinearSVC | - | - | - | {100 * t['eval_accuracy']:.2f} | - | "
                     f"{t['fit_s'] / 60:.1f} |")
    if report.get("winner"):
        lines += ["", f"Winner on titles: **{report['winner']}**. Transfer from its checkpoint:", "",
                  "| task | metric | winner | random weights | TF-IDF + LinearSVC |", "|---|---|---:|---:|---:|"]
        level = report["winner"].split(":")[0]
        for task, label in (("chnsenticorp", "dev accuracy"), ("cluener", "dev entity F1 (micro) / macro-F1")):
            rows = s.get(task, {})
            if not rows:
                continue
            win, rnd = rows.get(report["winner"], {}), rows.get(f"random:{level}", {})
            if task == "cluener":
                cell = [f"{fmt_mean_std(r)} / {fmt_mean_std(r.get('macro_f1'))}" if r else "-" for r in (win, rnd)]
            else:
                cell = [fmt_mean_std(r) if r else "-" for r in (win, rnd)]
            base = f"{100 * tfidf[task]['eval_accuracy']:.2f}" if task in tfidf else "-"
            lines.append(f"| {task} | {label} | {cell[0]} | {cell[1]} | {base} |")
    lines += ["", f"Commit {m.get('git_commit')}, torch {m.get('torch')}, transformers {m.get('transformers')}, "
                  f"{m.get('cpus_usable')} usable cores, {args.jobs} single-threaded runs at a time, CPU "
                  f"{m.get('cpu_model')}; all runs together {s.get('cpu_minutes_all_runs')} CPU-minutes. Every run's "
                  "command, wall and CPU time, and the CPU share other processes took, are in the JSON."]
    return "\n".join(lines) + "\n"


def plot(report, args, path):
    """Dev accuracy on THUCNews titles against pretraining minutes: random weights at 0, each cell at --minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = report["summary"].get("titles", {})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for cell in args.cells:
        level = cell.split(":")[0]
        start, end = titles.get(f"random:{level}"), titles.get(cell)
        if not (start and end):
            continue
        ax.errorbar([0, args.minutes], [100 * start["mean"], 100 * end["mean"]],
                    yerr=[100 * start["std"], 100 * end["std"]], marker="o", capsize=3, label=cell)
    finish_titles_plot(fig, ax, report, args, "pretraining CPU minutes (one core)", path)


def finish_titles_plot(fig, ax, report, args, xlabel, path):
    """The TF-IDF + SVM line, the axes of 'titles dev accuracy against pretraining minutes', the file."""
    import matplotlib.pyplot as plt

    if "titles" in report.get("tfidf", {}):
        ax.axhline(100 * report["tfidf"]["titles"]["eval_accuracy"], color="grey", linestyle="--",
                   label="TF-IDF + LinearSVC")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("THUCNews titles dev accuracy (%)")
    ax.set_title(f"Fine-tuning {args.epochs:g} epochs, mean ± std over seeds {args.seeds}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"benchmark took {(time.time() - start) / 60:.1f} min")
