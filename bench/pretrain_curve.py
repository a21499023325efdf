#!/usr/bin/env python
"""What each stretch of pretraining buys: THUCNews titles fine-tuned from every checkpoint that one pretraining run
kept, over seeds, next to random weights of the same vocabulary and config and TF-IDF + linear SVM; with the
pipeline's own fine-tunes of the final checkpoint (titles, ChnSentiCorp, CLUENER) and its stage times.

    CHECKPOINT_EVERY=1500 STEPS=6000 TASK_STEPS=0 bash scripts/pretrain_news_bert.sh ../shared/data \\
        outputs/news_bert 2>&1 | tee outputs/news_bert.log
    python bench/pretrain_curve.py --pipeline_dir outputs/news_bert --pipeline_log outputs/news_bert.log \\
        --data_dir ../shared/data

--pipeline_dir is scripts/pretrain_news_bert.sh's output: tokenizer/ (vocabulary + config), pretrained/ (run_mlm.py's
output, with checkpoint-N/ inside) and the fine-tunes of the final checkpoint, {thucnews,chnsenticorp,cluener}_seedS/.
A replaced-token-detection checkpoint-N holds the whole pretraining model: its encoder is exported first
(pretraining_electra.export_encoder); an MLM checkpoint is fine-tuned as it is. The minutes of a checkpoint are the
run's train_runtime x N / its steps (every step costs the same). The linear decay of the learning rate spans the whole
run, so checkpoint N is not what a run of N steps would give: it is the curve of this one run.

--learning_rates: the first is the pipeline's (every checkpoint, random weights); each further one fine-tunes the final
checkpoint again (does a pretrained encoder want a gentler fine-tune than random weights?).
--random_from: a bench/pretrain_finetune.py JSON whose random-weight runs used the same vocabulary and config (checked
file by file): its titles, ChnSentiCorp and CLUENER runs are the baseline. Without it, random weights are fine-tuned
on titles here.

Results: bench/results/<--results_name>.{json,md,png}; every run's command, wall and CPU time in the JSON.
"""

import argparse
import glob
import json
import os
import re
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import REPO, fmt_mean_std, machine_facts, mean_std, read_json, read_split, run_config, tfidf_svm  # noqa: E402,E501
from bench.pretrain_finetune import (  # noqa: E402
    MALLOC_ENV,
    finish_titles_plot,
    pretrain_quality,
    read_tsv,
    titles_command,
)

RESULTS = os.path.join(REPO, "bench", "results")
TASKS = {"thucnews": "eval_accuracy", "chnsenticorp": "eval_accuracy", "cluener": "eval_f1"}  # the pipeline's names
ABLATION_NAMES = {"thucnews": "titles", "chnsenticorp": "chnsenticorp", "cluener": "cluener"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline_dir", required=True, help="scripts/pretrain_news_bert.sh's output directory.")
    p.add_argument("--pipeline_log", help="Its console log: the stage lines give the time of every stage.")
    p.add_argument("--data_dir", default="../shared/data", help="Holds thucnews_titles/ (and chnsenticorp/).")
    p.add_argument("--steps", type=int, nargs="*",
                   help="Fine-tune only these checkpoints (default: all; --steps alone: none, the final one only).")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="Fine-tuning seeds.")
    p.add_argument("--learning_rates", type=float, nargs="+", default=[1e-3],
                   help="The first: the pipeline's, for every checkpoint; the others: the final checkpoint again.")
    p.add_argument("--epochs", type=float, default=4.0, help="THUCNews titles fine-tuning (the pipeline's: 4).")
    p.add_argument("--frozen", action="store_true",
                   help="Also train only a head on the frozen final checkpoint and on frozen random weights.")
    p.add_argument("--random_from", help="A pretrain_finetune.json with random-weight runs of the same vocabulary.")
    p.add_argument("--max_train_samples", type=int, default=0, help="Cap the titles training set (0: all).")
    p.add_argument("--max_eval_samples", type=int, default=0, help="Cap the titles dev set (0: all).")
    p.add_argument("--jobs", type=int, default=2, help="Single-threaded runs at a time (one per core).")
    p.add_argument("--work_dir", default="outputs/bench_pretrain_curve")
    p.add_argument("--reuse", action="store_true", help="Keep runs that already finished with the same command.")
    p.add_argument("--results_name", default="pretrain_curve")
    p.add_argument("--results_dir", default=RESULTS, help="Where the JSON, markdown and plot go.")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pipeline, work, data = (os.path.abspath(d) for d in (args.pipeline_dir, args.work_dir, args.data_dir))
    pretrained, vocab_dir = os.path.join(pipeline, "pretrained"), os.path.join(pipeline, "tokenizer")
    state = read_json(os.path.join(pretrained, "trainer_state.json"))
    train = read_json(os.path.join(pretrained, "train_results.json"))
    if not (state and train):
        sys.exit(f"error: {pretrained} holds no finished run_mlm.py run (trainer_state.json, train_results.json): "
                 "run scripts/pretrain_news_bert.sh first.")
    if os.path.isdir(os.path.join(pipeline, "task_adapted")):
        sys.exit(f"error: {pipeline} holds task_adapted/ (the script's stage 3b): the pipeline's fine-tunes started "
                 "from it, not from pretrained/, so its results are not the curve's last point. Run "
                 "scripts/pretrain_news_bert.sh with TASK_STEPS=0 for a curve.")
    total_steps, runtime = state["global_step"], train["train_runtime"]
    checkpoints = {int(re.search(r"checkpoint-(\d+)$", d).group(1)): d
                   for d in glob.glob(os.path.join(pretrained, "checkpoint-*"))}
    checkpoints = {n: d for n, d in sorted(checkpoints.items())
                   if n < total_steps and (args.steps is None or n in args.steps)}
    os.makedirs(work, exist_ok=True)
    os.makedirs(args.results_dir, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", HF_DATASETS_CACHE=os.path.join(work, "datasets_cache"), **MALLOC_ENV)
    py = sys.executable
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    report = {"benchmark": "bench/pretrain_curve.py", "command": shlex.join([py, "bench/pretrain_curve.py", *argv]),
              "machine": machine_facts(), "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "pretraining": {"steps": total_steps, "train_runtime_min": round(runtime / 60, 2),
                              "args": read_json(os.path.join(pretrained, "pretraining_args.json")),
                              "eval": read_json(os.path.join(pretrained, "eval_results.json")),
                              "evals": [e for e in state["log_history"] if any(k.startswith("eval_") for k in e)]},
              "stages": stage_minutes(args.pipeline_log) if args.pipeline_log else None, "runs": {}}
    caps = [x for flag, n in (("--max_train_samples", args.max_train_samples),
                              ("--max_eval_samples", args.max_eval_samples)) if n for x in (flag, n)]

    # ---- the encoders to fine-tune: every checkpoint (RTD: exported), the final output --------------------------
    encoders = {}
    for n, d in checkpoints.items():
        if (read_json(os.path.join(d, "config.json")) or {}).get("model_type") == "bert_rtd":
            import pretraining_electra

            encoders[n] = os.path.join(work, f"encoder_{n}")
            if not os.path.isfile(os.path.join(encoders[n], "model.safetensors")):
                pretraining_electra.export_encoder(d, encoders[n])
        else:
            encoders[n] = d
    encoders[total_steps] = pretrained

    # ---- the runs: checkpoints x seeds, the final checkpoint at the other learning rates, random weights --------
    first_lr, *other_lrs = args.learning_rates
    final_model = ["--model_name_or_path", pretrained]
    random_model = ["--config_name", vocab_dir, "--tokenizer_name", vocab_dir]
    random_runs = baseline_runs(args.random_from, vocab_dir) if args.random_from else None
    variants = [(f"titles_step{total_steps}_lr{lr:g}", final_model, lr, []) for lr in other_lrs]
    if args.frozen:  # only the head trains: what the encoder's features hold, before fine-tuning can reshape them
        variants += [("titles_frozen_final", final_model, first_lr, ["--freeze", "all"]),
                     ("titles_frozen_random", random_model, first_lr, ["--freeze", "all"])]
    if random_runs is None:
        variants.append(("titles_random", random_model, first_lr, []))
    # the pipeline already fine-tuned the final checkpoint at first_lr: every other checkpoint, last in the queue
    variants += [(f"titles_step{n}_lr{first_lr:g}", ["--model_name_or_path", encoder], first_lr, [])
                 for n, encoder in encoders.items() if n != total_steps]
    jobs = {}
    for prefix, model, lr, extra in variants:
        for seed in args.seeds:
            name = f"{prefix}_seed{seed}"
            jobs[name] = titles_command(py, model, data, args.epochs, lr, seed, os.path.join(work, name), caps) + extra
    json_path = os.path.join(args.results_dir, args.results_name + ".json")
    lock = threading.Lock()

    def save():
        with lock:  # runs finish in worker threads
            report["summary"] = summarise(report, args, total_steps, runtime, pipeline, random_runs)
            with open(json_path, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2, ensure_ascii=False)
            with open(os.path.join(args.results_dir, args.results_name + ".md"), "w", encoding="utf-8") as f:
                f.write(markdown(report, args))

    def run(name):
        record = run_config(name, [str(c) for c in jobs[name]], os.path.join(work, name), env, args.reuse)
        for file in ("train_results.json", "eval_results.json"):
            record[file.split("_")[0]] = read_json(os.path.join(work, name, file))
        with lock:
            report["runs"][name] = record
        return record

    titles = {s: os.path.join(data, "thucnews_titles", f"{s}.txt") for s in ("train", "dev")}
    report["tfidf"] = {"titles": tfidf_svm(*read_split(titles["train"], args.max_train_samples or None),
                                           *read_split(titles["dev"], args.max_eval_samples or None))}
    senti = {s: os.path.join(data, "chnsenticorp", f"{s}.tsv") for s in ("train", "dev")}
    if os.path.isfile(senti["train"]):
        report["tfidf"]["chnsenticorp"] = tfidf_svm(*read_tsv(senti["train"], args.max_train_samples),
                                                    *read_tsv(senti["dev"], args.max_eval_samples))
    save()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for _ in pool.map(run, list(jobs)):
            save()
    failed = [n for n, r in report["runs"].items() if r["returncode"] != 0]
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    plot(report, args, os.path.join(args.results_dir, args.results_name + ".png"))
    print(markdown(report, args))
    if failed:
        sys.exit(f"error: {len(failed)} run(s) failed: {failed} (logs in {work})")


def stage_minutes(log_path):
    """scripts/pretrain_news_bert.sh's stage lines '[HH:MM:SS] (N min so far) 3. pretraining: ...' -> the minutes
    from each stage's start to the next one's, and the whole pipeline's (the 'done' line)."""
    stamps = []
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"\[(\d\d):(\d\d):(\d\d)\] \(\d+ min so far\) (.*)", line)
            if m:
                h, mi, s = (int(x) for x in m.groups()[:3])
                stamps.append((h * 3600 + mi * 60 + s, m.group(4).strip()))
    stages = {}
    for (t, label), (t_next, _) in zip(stamps, stamps[1:]):
        name = re.match(r"\d+\. [\w-]+", label)  # "3. pretraining: rtd, ..." -> "3. pretraining"
        stages[name.group(0) if name else label] = round(((t_next - t) % 86400) / 60, 1)  # % 86400: past midnight
    if stamps and stamps[-1][1].startswith("done"):
        stages["total"] = round(((stamps[-1][0] - stamps[0][0]) % 86400) / 60, 1)
    return stages


def same_vocabulary_and_config(dir_a, dir_b):
    """Both directories hold the same config.json and the same tokenizer files (tokenizer.json, vocab.txt: each one
    that either of them has)."""
    def content(d, name):
        path = os.path.join(d, name)
        if not os.path.isfile(path):
            return None
        return read_json(path) if name.endswith(".json") else open(path, "rb").read()

    config_a, config_b = content(dir_a, "config.json"), content(dir_b, "config.json")
    tokenizers = [(content(dir_a, n), content(dir_b, n)) for n in ("tokenizer.json", "vocab.txt")]
    tokenizers = [pair for pair in tokenizers if pair != (None, None)]  # a file neither has is not compared
    return config_a is not None and config_a == config_b and bool(tokenizers) and all(a == b for a, b in tokenizers)


def baseline_runs(json_path, vocab_dir):
    """The random-weight runs of a pretrain_finetune.json made with the same vocabulary and config as vocab_dir:
    {task: {seed: eval results}}. Exits when none matches (a different vocabulary is no baseline)."""
    report = read_json(json_path) or {}
    found = {}
    for name, record in report.get("runs", {}).items():
        m = re.match(r"(titles|chnsenticorp|cluener)_random_\w+_seed(\d+)$", name)
        if not (m and record.get("returncode") == 0 and record.get("eval")):
            continue
        cmd = shlex.split(record["command"])
        if "--config_name" in cmd and same_vocabulary_and_config(cmd[cmd.index("--config_name") + 1], vocab_dir):
            found.setdefault(m.group(1), {})[int(m.group(2))] = record["eval"] | {"wall_s": record["wall_s"]}
    if "titles" not in found:
        sys.exit(f"error: --random_from {json_path}: no finished random-weight titles run whose vocabulary and "
                 f"config (config.json, tokenizer files) equal {vocab_dir}'s. Leave out --random_from to fine-tune "
                 "them here.")
    return found


def summarise(report, args, total_steps, runtime, pipeline, random_runs):
    """Per point (steps): titles dev accuracy over seeds and the paired difference to random weights; the final
    checkpoint's transfer tasks (the pipeline's fine-tunes) and the other learning rates."""
    runs, first_lr = report["runs"], args.learning_rates[0]

    def evals(name_of_seed):
        return {s: (runs.get(name_of_seed(s)) or {}).get("eval") for s in args.seeds}

    pipeline_evals = {task: {s: read_json(os.path.join(pipeline, f"{task}_seed{s}", "eval_results.json"))
                             for s in args.seeds} for task in TASKS}
    if random_runs is not None:
        random = {task: random_runs.get(ABLATION_NAMES[task], {}) for task in TASKS}
    else:
        random = {"thucnews": evals(lambda s: f"titles_random_seed{s}")}

    def row(values, baseline=None, metric="eval_accuracy"):
        got = {s: (v or {}).get(metric) for s, v in values.items()}
        out = mean_std([v for v in got.values() if v is not None])
        if baseline:
            base = {s: (v or {}).get(metric) for s, v in baseline.items()}
            out["minus_random"] = mean_std([v - base[s] for s, v in got.items()
                                            if v is not None and base.get(s) is not None])
        return out

    points = {0: {"minutes": 0.0, "titles": row(random.get("thucnews", {}))}}
    for n in sorted({int(re.search(r"step(\d+)_", k).group(1)) for k in runs if k.startswith("titles_step")}
                    | {total_steps}):
        values = pipeline_evals["thucnews"] if n == total_steps else evals(
            lambda s, n=n: f"titles_step{n}_lr{first_lr:g}_seed{s}")
        if any(values.values()):
            points[n] = {"minutes": round(runtime / 60 * n / total_steps, 1),
                         "titles": row(values, random.get("thucnews"))}
    final = {"learning_rates": {f"{first_lr:g}": row(pipeline_evals["thucnews"], random.get("thucnews"))}}
    for lr in args.learning_rates[1:]:
        final["learning_rates"][f"{lr:g}"] = row(evals(lambda s, lr=lr: f"titles_step{total_steps}_lr{lr:g}_seed{s}"),
                                                 random.get("thucnews"))
    if args.frozen:
        frozen_random = evals(lambda s: f"titles_frozen_random_seed{s}")
        final["frozen"] = {"pretrained": row(evals(lambda s: f"titles_frozen_final_seed{s}"), frozen_random),
                           "random": row(frozen_random)}
    for task, metric in TASKS.items():
        if any(pipeline_evals[task].values()):
            final[task] = {"pretrained": row(pipeline_evals[task], random.get(task), metric),
                           "random": row(random.get(task, {}), metric=metric) if random.get(task) else None}
            if task == "cluener":
                final[task]["pretrained_macro_f1"] = row(pipeline_evals[task], metric="eval_macro_f1")
                if random.get(task):
                    final[task]["random_macro_f1"] = row(random[task], metric="eval_macro_f1")
    return {"points": points, "final": final,
            "cpu_minutes_all_runs": round(sum(r.get("cpu_s", 0) for r in runs.values()) / 60, 1)}


def markdown(report, args):
    s, pre, m = report.get("summary", {}), report["pretraining"], report["machine"]
    tfidf = report.get("tfidf", {})
    objective = ((pre.get("args") or {}).get("objective") or {}).get("objective", "?")
    lines = [f"# What pretraining buys over one run: {objective}, {pre['steps']} steps "
             f"({pre['train_runtime_min']} min)", "",
             f"THUCNews titles dev accuracy (%) fine-tuned from each checkpoint ({args.epochs:g} epochs, mean "
             f"pooling, lr {args.learning_rates[0]:g}, batch 32), mean ± std over seeds {args.seeds}; "
             "'vs random' = paired difference to random weights of the same vocabulary and config, same seed. "
             "Step 0 = random weights. "
             "Pretraining quality: the evaluation nearest before the checkpoint (held-out 1% of the corpus).", "",
             "| pretraining steps | pretraining min | pretraining quality | titles dev | vs random |",
             "|---:|---:|---|---:|---:|"]
    evals = pre.get("evals") or []
    for n, point in (s.get("points") or {}).items():
        n = int(n)
        before = [e for e in evals if e.get("step", 0) <= n]
        quality = f"step {before[-1]['step']}: {pretrain_quality(before[-1])}" if n and before else "-"
        diff = point["titles"].get("minus_random")
        lines.append(f"| {n} | {point['minutes']} | {quality} | {fmt_mean_std(point['titles'])} | "
                     f"{fmt_mean_std(diff) if diff else '-'} |")
    if "titles" in tfidf:
        lines.append(f"| TF-IDF + LinearSVC | - | - | {100 * tfidf['titles']['eval_accuracy']:.2f} | - |")
    lines += ["", "The last step's row is the pipeline's own fine-tuning of its final checkpoint "
                  "(scripts/pretrain_news_bert.sh: all titles, 4 epochs, lr 1e-3)."]
    final = s.get("final", {})
    if len(final.get("learning_rates", {})) > 1:
        lines += ["", "Final checkpoint, titles at each fine-tuning learning rate:", "",
                  f"| learning rate | titles dev | vs random (lr {args.learning_rates[0]:g}) |", "|---:|---:|---:|"]
        for lr, r in final["learning_rates"].items():
            lines.append(f"| {lr} | {fmt_mean_std(r)} | "
                         f"{fmt_mean_std(r['minus_random']) if r.get('minus_random') else '-'} |")
    if "frozen" in final:
        f = final["frozen"]
        lines += ["", "Frozen encoder (`--freeze all`: only the head trains, same settings), titles dev: final "
                  f"checkpoint {fmt_mean_std(f['pretrained'])}, random weights {fmt_mean_std(f['random'])}, "
                  f"paired difference {fmt_mean_std(f['pretrained'].get('minus_random'))}."]
    transfer = [t for t in ("chnsenticorp", "cluener") if t in final]
    if transfer:
        lines += ["", "Final checkpoint on the other tasks (the pipeline's fine-tunes):", "",
                  "| task | metric | pretrained | random weights | TF-IDF + LinearSVC |", "|---|---|---:|---:|---:|"]
        for task in transfer:
            f = final[task]
            if task == "cluener":
                got = f"{fmt_mean_std(f['pretrained'])} / {fmt_mean_std(f['pretrained_macro_f1'])}"
                rnd = f"{fmt_mean_std(f['random'])} / {fmt_mean_std(f['random_macro_f1'])}" if f.get("random") else "-"
                label = "dev entity F1 (micro) / macro-F1"
            else:
                got, rnd = fmt_mean_std(f["pretrained"]), fmt_mean_std(f["random"]) if f.get("random") else "-"
                label = "dev accuracy"
            base = f"{100 * tfidf[task]['eval_accuracy']:.2f}" if task in tfidf else "-"
            lines.append(f"| {task} | {label} | {got} | {rnd} | {base} |")
    if report.get("stages"):
        lines += ["", "Pipeline stages (wall minutes, scripts/pretrain_news_bert.sh): " +
                  ", ".join(f"{k} {v}" for k, v in report["stages"].items())]
    lines += ["", f"Commit {m.get('git_commit')}, torch {m.get('torch')}, {m.get('cpus_usable')} usable cores, CPU "
                  f"{m.get('cpu_model')}; fine-tunes here: {args.jobs} single-threaded runs at a time, "
                  f"{s.get('cpu_minutes_all_runs')} CPU-minutes. Every run's command and times are in the JSON."]
    return "\n".join(lines) + "\n"


def plot(report, args, path):
    """Titles dev accuracy against pretraining minutes (mean ± std over seeds), TF-IDF + SVM as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["summary"]["points"]
    xs = [p["minutes"] for p in points.values() if p["titles"]["n"]]
    ys = [100 * p["titles"]["mean"] for p in points.values() if p["titles"]["n"]]
    errs = [100 * p["titles"]["std"] for p in points.values() if p["titles"]["n"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label="fine-tuned from the checkpoint")
    finish_titles_plot(fig, ax, report, args, "pretraining wall minutes (0 = random weights)", path)


if __name__ == "__main__":
    main()
