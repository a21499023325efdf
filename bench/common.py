"""What every benchmark here shares: machine facts (with the git commit), running one configuration in a fresh
process with its peak memory and the CPU other processes took meanwhile, and mean +- std over seeds."""

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        "cuda_available": torch.cuda.is_available(),
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
