"""What every benchmark here shares: machine facts (with the git commit), running one configuration in a fresh
process with its peak memory and the CPU other processes took meanwhile, running configurations over seeds, mean +- std
over seeds and per-seed ratios / differences to a baseline, the from-scratch vocab + config, the TF-IDF baseline, and
writing the JSON + Markdown report."""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "bench", "results")
TOKENIZER_SCRIPT = os.path.join(REPO, "data_scripts", "train_tokenizer.py")
BUSY_THRESHOLD = 0.05  # other processes' share of the CPUs during a run above which its timing is flagged
# Model shapes built from scratch (data_scripts/train_tokenizer.py --write_config).
TINY = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
SMALL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}


def git_commit():
    """The commit the benchmark ran on, with '+dirty' when the working tree had uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (commit + "+dirty" if dirty else commit) or None


def mean_std(values):
    """{"mean", "std", "n", "values"} of a list of numbers (None entries, failed runs, are left out); std is the
    sample standard deviation (0 for a single value)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def fmt_mean_std(stats, scale=100.0, digits=2):
    """'88.62 ± 0.31' (accuracy as a percentage by default); '-' when nothing was measured."""
    if not stats or stats.get("mean") is None:
        return "-"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def cpu_bf16_is_fast():
    """training.cpu_bf16_is_fast, measured on this machine (the scripts ignore --bf16 where it is False): the
    benchmarks record it, and call the scripts only through their command lines."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from training import cpu_bf16_is_fast as measured

    return measured()


def machine_facts():
    import torch
    import transformers

    facts = {
        "git_commit": git_commit(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        # Threads of the runs: they inherit this environment (unset: torch takes every core).
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_available": torch.cuda.is_available(),
        "cpu_bf16_fast": cpu_bf16_is_fast(),
        "mem_total_gb": None,
        "cpu_model": None,
        "cpu_flags": None,
        "load_average_at_start": list(os.getloadavg()),
    }
    for module in ("datasets", "tokenizers", "sklearn", "numpy"):
        try:
            facts[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - informational only
            facts[module] = None
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith("model name") and facts["cpu_model"] is None:
                facts["cpu_model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and facts["cpu_flags"] is None:
                flags = set(line.split(":", 1)[1].split())
                facts["cpu_flags"] = sorted(flags & {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                                     "amx_bf16", "amx_tile", "amx_int8"})
        with open("/proc/meminfo") as f:
            facts["mem_total_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return facts


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def cpu_jiffies():
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def same_command(recorded, cmd):
    """Whether a recorded command line is cmd, wherever the interpreter and the repository were checked out."""
    def normalised(argv):
        return [os.path.basename(argv[0]), os.path.basename(argv[1])] + list(argv[2:]) if len(argv) > 1 else argv

    return normalised(shlex.split(recorded)) == normalised([str(x) for x in cmd])


def run_config(name, cmd, out_dir, env, reuse):
    """Run one configuration in a fresh process; peak RSS and CPU time from os.wait4's rusage of that process."""
    record_path = os.path.join(out_dir, "bench_run.json")
    if reuse and os.path.isfile(record_path) and os.path.isfile(os.path.join(out_dir, "all_results.json")):
        with open(record_path) as f:
            record = json.load(f)
        if same_command(record.get("command", ""), cmd) and record.get("returncode") == 0:
            print(f"[{name}] reusing the finished run in {out_dir} ({record['finished']})", flush=True)
            record["reused"] = True
            return record
    os.makedirs(out_dir, exist_ok=True)
    log_path = out_dir + ".log"
    print(f"[{name}] {shlex.join(cmd)}\n[{name}] log: {log_path}", flush=True)
    load_before = os.getloadavg()
    jiffies_before = cpu_jiffies()
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    jiffies_after = cpu_jiffies()
    cpu_s = usage.ru_utime + usage.ru_stime
    n_cpus = max(len(os.sched_getaffinity(0)), 1)
    others = steal = None
    if jiffies_before and jiffies_after:
        # CPU the rest of the machine used meanwhile (this bench process only waits): the contention signal.
        others = max(0.0, (jiffies_after[0] - jiffies_before[0]) - cpu_s) / (wall * n_cpus)
        steal = (jiffies_after[1] - jiffies_before[1]) / (wall * n_cpus)
    record = {
        "command": shlex.join(cmd),
        "returncode": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "cpu_s": round(cpu_s, 1),
        # CPU time of the run / (wall time x usable CPUs). Below 1 also on a quiet machine (start-up, tokenization
        # and reports are single-threaded); compare it between runs.
        "cpu_share": round(cpu_s / wall / n_cpus, 3),
        # Share of all CPUs that other processes used during the run (from /proc/stat): ~0 on a quiet machine.
        "other_processes_cpu_share": None if others is None else round(others, 3),
        "steal_share": None if steal is None else round(steal, 3),
        "load_average_before": [round(x, 2) for x in load_before],
        "log": log_path,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "reused": False,
    }
    with open(record_path, "w") as f:
        json.dump(record, f, indent=2)
    if proc.returncode != 0:
        print(f"[{name}] FAILED (exit {proc.returncode}); last lines of {log_path}:\n{tail(log_path)}", flush=True)
    return record


# ------------------------------------------------------------------------------------------------------------------
# Seeds, the report, runs over seeds
# ------------------------------------------------------------------------------------------------------------------


def parse_seeds(text):
    """'1,2,3' -> [1, 2, 3] (an argparse type)."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers like 1,2,3, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs at least one seed and no seed twice, got {text!r}")
    return seeds


def add_seed_argument(parser, default="1,2,3"):
    parser.add_argument("--seeds", type=parse_seeds, default=default,
                        help="Comma-separated seeds. Every configuration runs once per seed, each in a fresh process; "
                             "all configurations of one seed run back to back, so a drift of the machine hits them "
                             "alike. Tables show mean ± std over the seeds.")


TINY_SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}


def add_smoke_argument(parser, caps):
    """--smoke: the benchmark's code path end to end on tiny caps (numbers mean nothing); caps: {argument: value}."""
    parser.add_argument("--smoke", action="store_true",
                        help="Smoke run: check the code path end to end in minutes, numbers mean nothing. Sets "
                             + ", ".join(f"--{k} {v}" for k, v in caps.items() if v is not True)
                             + "".join(f", --{k}" for k, v in caps.items() if v is True)
                             + " (over the values given).")


def apply_smoke(args, caps):
    """With --smoke, the caps replace the arguments' values; the report's settings then show what ran."""
    if getattr(args, "smoke", False):
        for name, value in caps.items():
            setattr(args, name, value)
    return args


def bench_env(work_dir):
    """The environment of every child run: offline, no tokenizer threads, its own datasets cache. OMP_NUM_THREADS and
    the rest are inherited (machine_facts records OMP_NUM_THREADS)."""
    return dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
                HF_DATASETS_CACHE=os.path.join(work_dir, "datasets_cache"))


def new_report(script, argv, args, **fields):
    """The report's head: the exact command line of the benchmark, the machine (git commit, cores, torch,
    OMP_NUM_THREADS), its settings (seeds included); the child runs' commands and records are appended to
    "commands" and "runs"."""
    argv = sys.argv[1:] if argv is None else list(argv)
    output = getattr(args, "output", None)
    if getattr(args, "smoke", False) and output and os.path.abspath(output).startswith(RESULTS_DIR + os.sep):
        sys.exit(f"error: --smoke would overwrite the published {os.path.relpath(output, REPO)}: pass --output "
                 "somewhere else (e.g. /tmp/smoke/bench.json)")
    report = {"benchmark": os.path.relpath(os.path.abspath(script), REPO),
              "command": shlex.join([sys.executable, os.path.relpath(os.path.abspath(script), os.getcwd()), *argv]),
              "cwd": os.getcwd(), "machine": machine_facts(),
              "settings": {k: v for k, v in vars(args).items()}, **fields, "commands": [], "runs": []}
    return report


def read_json(path):
    """A JSON file's content, None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_report(report, output, markdown_text):
    """output (.json) and the Markdown table next to it (.md); the table is also kept in the JSON."""
    if report.get("settings", {}).get("smoke"):
        markdown_text = "**Smoke run (--smoke): tiny caps, the numbers mean nothing.**\n\n" + markdown_text
    report["markdown"] = markdown_text
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    with open(os.path.splitext(output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(markdown_text)


def run_over_seeds(report, seeds, configs, make_command, collect, work_dir, env, reuse=False, save=None):
    """Run every configuration once per seed, each in a fresh process (run_config), seed by seed: all configurations
    of one seed back to back. make_command(config, seed, out_dir) -> argv; collect(config, seed, out_dir) -> the
    run's numbers (a dict; called only when the run succeeded). Each record (command, exit status, wall time, peak
    RSS, other processes' CPU share, the numbers, config, seed) goes to report["runs"], its command to
    report["commands"]; save() after every run keeps what an interrupted benchmark finished."""
    for seed in seeds:
        for config in configs:
            name = f"{config}/seed{seed}"
            out_dir = os.path.join(work_dir, "runs", config, f"seed{seed}")
            record = run_config(name, make_command(config, seed, out_dir), out_dir, env, reuse)
            record.update(config=config, seed=seed)
            if record["returncode"] == 0:
                try:
                    record.update(collect(config, seed, out_dir))
                except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
                    record["collect_error"] = f"{type(e).__name__}: {e}"
                    print(f"[{name}] could not read the run's results: {record['collect_error']}", flush=True)
            report["commands"].append(record["command"])
            report["runs"].append(record)
            numbers = {k: v for k, v in record.items() if k.startswith(("eval_", "train_samples_per", "accuracy"))
                       and isinstance(v, float)}
            print(f"[{name}] " + (", ".join(f"{k} {v:.4g}" for k, v in numbers.items()) or
                                  f"exit {record['returncode']}") +
                  f"; others' CPU {record.get('other_processes_cpu_share')}", flush=True)
            if save:
                save()
    return report["runs"]


# ------------------------------------------------------------------------------------------------------------------
# Over seeds: mean +- std, per-seed ratios and differences to a baseline
# ------------------------------------------------------------------------------------------------------------------


def _by_seed(runs, config, metric, key):
    return {r["seed"]: r.get(metric) for r in runs
            if r.get(key) == config and r.get("returncode", 0) == 0 and r.get(metric) is not None}


def per_seed_ratios(runs, config, baseline, metric, key="config"):
    """{seed: config's metric / baseline's metric, of the same seed}, for the seeds where both runs have it. Ratios of
    runs that ran back to back, instead of a ratio of means: slow drifts of the machine cancel."""
    mine, base = _by_seed(runs, config, metric, key), _by_seed(runs, baseline, metric, key)
    return {seed: mine[seed] / base[seed] for seed in sorted(mine) if base.get(seed)}


def per_seed_differences(runs, config, baseline, metric, key="config"):
    """{seed: config's metric - baseline's metric, of the same seed}, for the seeds where both runs have it."""
    mine, base = _by_seed(runs, config, metric, key), _by_seed(runs, baseline, metric, key)
    return {seed: mine[seed] - base[seed] for seed in sorted(mine) if seed in base}


PAIRED_RULE = ("paired over seeds: d = configuration - baseline of the same seed; better when mean(d) - std(d) > 0, "
               "worse when mean(d) + std(d) < 0, else within noise (std: sample standard deviation of d; needs >= 2 "
               "seeds)")


def paired_comparison(differences):
    """mean_std of per-seed differences, the verdict of PAIRED_RULE and on how many seeds the configuration won."""
    stats = mean_std(list(differences.values()))
    if stats["n"] < 2:
        verdict = "too few seeds"
    elif stats["mean"] - stats["std"] > 0:
        verdict = "better"
    elif stats["mean"] + stats["std"] < 0:
        verdict = "worse"
    else:
        verdict = "within noise"
    stats.update(verdict=verdict, wins=sum(d > 0 for d in stats["values"]), seeds=sorted(differences))
    return stats


COMBINED_RULE = ("beats the baseline when the difference of the means over seeds is larger than the combined std "
                 "sqrt(std_a^2 + std_b^2) of the two configurations (sample stds over seeds)")


def combined_comparison(stats, baseline_stats):
    """COMBINED_RULE on two mean_std results: {"difference", "combined_std", "exceeds", "n", "baseline_n"};
    exceeds is None when either side has fewer than 2 values (no std to compare with)."""
    if stats.get("mean") is None or baseline_stats.get("mean") is None:
        return {"difference": None, "combined_std": None, "exceeds": None, "n": stats.get("n", 0),
                "baseline_n": baseline_stats.get("n", 0)}
    difference = stats["mean"] - baseline_stats["mean"]
    combined = (stats["std"] ** 2 + baseline_stats["std"] ** 2) ** 0.5
    enough = stats["n"] >= 2 and baseline_stats["n"] >= 2
    return {"difference": difference, "combined_std": combined, "exceeds": (difference > combined) if enough else None,
            "n": stats["n"], "baseline_n": baseline_stats["n"]}


def summarise(runs, metrics, baseline=None, ratio_metrics=(), difference_metrics=(), key="config"):
    """Per configuration (in the order first run): mean_std over seeds of each metric; with a baseline, mean_std of
    the per-seed ratios (ratio_metrics) and the paired comparison of per-seed differences (difference_metrics); how
    many runs failed, and the largest share of the CPUs other processes took during any of its runs."""
    summary = {}
    for config in dict.fromkeys(r[key] for r in runs):
        mine = [r for r in runs if r[key] == config]
        ok = [r for r in mine if r.get("returncode") == 0]
        entry = {metric: mean_std([r.get(metric) for r in ok]) for metric in metrics}
        if baseline is not None:
            entry["ratio"] = {m: mean_std(list(per_seed_ratios(runs, config, baseline, m, key).values()))
                              for m in ratio_metrics}
            entry["difference"] = {m: paired_comparison(per_seed_differences(runs, config, baseline, m, key))
                                   for m in difference_metrics}
        shares = [r["other_processes_cpu_share"] for r in mine if r.get("other_processes_cpu_share") is not None]
        entry.update(runs=len(mine), failed_runs=len(mine) - len(ok), seeds=[r["seed"] for r in ok],
                     collapsed_runs=sum(bool(r.get("collapse_warning")) for r in ok),
                     max_other_processes_cpu_share=max(shares) if shares else None,
                     busy_runs=sum(s > BUSY_THRESHOLD for s in shares))
        summary[config] = entry
    return summary


def fmt_ratio(stats, digits=2):
    """'3.41 ± 0.12x'; '-' when nothing was measured."""
    return "-" if not stats or stats.get("mean") is None else f"{fmt_mean_std(stats, 1, digits)}x"


def fmt_comparison(stats, scale=100.0, digits=2):
    """'+1.23 ± 0.40 (better, 3/3)'; '-' when nothing was measured."""
    if not stats or stats.get("mean") is None:
        return "-"
    return (f"{stats['mean'] * scale:+.{digits}f} ± {stats['std'] * scale:.{digits}f} ({stats['verdict']}, "
            f"{stats['wins']}/{stats['n']})")


def collapse_note(summary):
    """A Markdown line naming the configurations where the scripts' collapse guard fired (one class, or only "O", for
    >= 95% of the dev set), '' when it never did."""
    fired = [f"{name} ({s['collapsed_runs']}/{s['runs']} runs)"
             for name, s in summary.items() if s.get("collapsed_runs")]
    return ("\n**Collapse guard fired** (the model predicted one class / only O for >= 95% of the dev set; see "
            f"`collapse_warning` in the runs): {', '.join(fired)}.\n") if fired else ""


def busy_mark(entry):
    """' (busy)' when other processes took more than BUSY_THRESHOLD of the CPUs during one of the runs."""
    return " (busy)" if entry.get("busy_runs") else ""


def machine_line(report):
    """One Markdown line: commit, machine, threads, seeds, and how busy the machine was."""
    m = report["machine"]
    shares = [r["other_processes_cpu_share"] for r in report["runs"] if r.get("other_processes_cpu_share") is not None]
    busy = sum(s > BUSY_THRESHOLD for s in shares)
    over = f"seeds {report['seeds']}" if report.get("seeds") else f"{report.get('repeats')} rounds"
    return (f"Commit `{m.get('git_commit')}`; {m.get('cpu_model')}, {m.get('cpus_usable')} usable cores, "
            f"OMP_NUM_THREADS={m.get('omp_num_threads') or 'unset'}, torch {m.get('torch')}, transformers "
            f"{m.get('transformers')}, bf16 fast: {m.get('cpu_bf16_fast')}; {over}; {m.get('date', '')[:10]}. "
            f"Mean ± std over {'seeds' if report.get('seeds') else 'rounds'} (sample std). Others' CPU: share of "
            f"the machine's CPUs other processes used during a run; {busy} of {len(shares)} runs above "
            f"{BUSY_THRESHOLD:.0%} (\"busy\": timings not comparable)"
            + (f", the most {max(shares):.0%}." if shares else "."))


# ------------------------------------------------------------------------------------------------------------------
# Data and models shared by several benchmarks
# ------------------------------------------------------------------------------------------------------------------


def collapse_warning(out_dir):
    """The collapse guard's warning of a finished run (run_classification.py and run_ner.py write it into their eval
    report), else None."""
    for file_name, section in (("eval_classification_report.json", "report"), ("eval_entity_report.json", "per_type")):
        report = read_json(os.path.join(out_dir, file_name))
        if report is not None:
            warning = (report.get(section) or {}).get("warning")
            return warning if isinstance(warning, str) else None
    return None


def resolve_path(path):
    """A path as given if it exists (relative to the current directory), else relative to the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path)
    return os.path.normpath(os.path.join(REPO, path))


def resolve_data_dir(path, names=("train.txt", "dev.txt", "class.txt")):
    """The folder holding every file in names (relative paths: to the current directory, else the repository root);
    None when there is none."""
    candidates = [path] if os.path.isabs(path) else [os.path.abspath(path), os.path.join(REPO, path)]
    for candidate in candidates:
        if all(os.path.isfile(os.path.join(candidate, n)) for n in names):
            return os.path.normpath(candidate)
    return None


def read_split(path, limit=None):
    """(texts, labels) of a text<TAB>label file, the first `limit` non-blank rows (as run_classification.py reads
    THUCNews titles)."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n").lstrip("\ufeff")
            if not line.strip():
                continue
            if limit is not None and len(texts) >= limit:
                break
            text, label = line.rsplit("\t", 1)
            texts.append(text)
            labels.append(label.strip())
    return texts, labels


def tfidf_svm(train_texts, train_labels, dev_texts, dev_labels):
    """Character 1-3-gram TF-IDF + LinearSVC (scikit-learn): the baseline to beat; deterministic, so run once."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score
    from sklearn.svm import LinearSVC

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(train_texts)
    clf = LinearSVC()
    clf.fit(x_train, train_labels)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = clf.predict(vectorizer.transform(dev_texts))
    predict_s = time.perf_counter() - start
    return {
        "model": 'TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2) + LinearSVC()',
        "train_samples": len(train_texts),
        "eval_samples": len(dev_texts),
        "features": len(vectorizer.vocabulary_),
        "fit_s": round(fit_s, 2),
        "predict_s": round(predict_s, 3),
        "train_samples_per_second": round(len(train_texts) / fit_s, 1),
        "eval_samples_per_second": round(len(dev_texts) / predict_s, 1),
        "eval_accuracy": float(accuracy_score(dev_labels, preds)),
    }


def build_vocab(model_dir, train_files, env, commands, shape=SMALL, vocab_size=8000, text_column_index=None,
                max_position_embeddings=512):
    """A WordPiece vocab learnt from train_files + a BertConfig of `shape` (random weights come from it), written to
    model_dir by data_scripts/train_tokenizer.py. Built once and reused while the command and the files are
    unchanged: the vocab trainer is not fully deterministic, so every seed and configuration must share one."""
    cmd = [sys.executable, TOKENIZER_SCRIPT, "--train_files", *train_files, "--output_dir", model_dir,
           "--vocab_size", str(vocab_size), "--min_frequency", "2", "--write_config",
           "--max_position_embeddings", str(max_position_embeddings)]
    cmd += [x for name, value in shape.items() for x in (f"--{name}", str(value))]
    if text_column_index is not None:
        cmd += ["--text_column_index", str(text_column_index)]
    commands.append(shlex.join(cmd))
    stamp = {"command": shlex.join(cmd),
             "files": [[p, os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in train_files]}
    stamp_path = os.path.join(model_dir, "bench_model_stamp.json")
    if read_json(stamp_path) == stamp and os.path.isfile(os.path.join(model_dir, "config.json")):
        print(f"Reusing the vocab + config in {model_dir}", flush=True)
        return model_dir
    os.makedirs(model_dir, exist_ok=True)
    print(f"Building a vocab + config: {shlex.join(cmd)}", flush=True)
    log_path = model_dir.rstrip("/") + ".log"
    with open(log_path, "w") as log:
        returncode = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if returncode != 0:
        sys.exit(f"error: train_tokenizer.py failed (exit {returncode}); see {log_path}:\n{tail(log_path)}")
    with open(stamp_path, "w") as f:
        json.dump(stamp, f, indent=2)
    return model_dir
