"""bench/common.py's statistics over seeds: mean +- std, per-seed ratios and differences, the paired rule, --seeds.

Pure functions on hand-made run records: no training, no timing.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import common  # noqa: E402


def run(config, seed, returncode=0, **numbers):
    return {"config": config, "seed": seed, "returncode": returncode, **numbers}


def test_mean_std_is_the_sample_std_and_leaves_out_failed_values():
    stats = common.mean_std([0.8, None, 0.9, 1.0])
    assert stats["n"] == 3 and stats["values"] == [0.8, 0.9, 1.0]
    assert stats["mean"] == pytest.approx(0.9)
    assert stats["std"] == pytest.approx(0.1)  # sample std (n - 1): sqrt((0.01 + 0 + 0.01) / 2)
    assert common.mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1, "values": [0.5]}
    assert common.mean_std([None])["mean"] is None


def test_fmt_mean_std_scales_and_marks_missing_values():
    assert common.fmt_mean_std(common.mean_std([0.8, 0.9, 1.0])) == "90.00 ± 10.00"
    assert common.fmt_mean_std(common.mean_std([100.0, 300.0]), 1, 0) == "200 ± 141"
    assert common.fmt_mean_std(common.mean_std([])) == "-"
    assert common.fmt_ratio(common.mean_std([2.0, 4.0])) == "3.00 ± 1.41x"


def test_ratios_are_taken_within_each_seed_not_between_means():
    # seed 2 ran on a machine twice as slow for both configurations: per seed the ratio is 2 both times
    runs = [run("fast", 1, speed=200.0), run("base", 1, speed=100.0),
            run("fast", 2, speed=100.0), run("base", 2, speed=50.0)]
    ratios = common.per_seed_ratios(runs, "fast", "base", "speed")
    assert ratios == {1: 2.0, 2: 2.0}
    stats = common.summarise(runs, ["speed"], baseline="base", ratio_metrics=["speed"])["fast"]["ratio"]["speed"]
    assert stats["mean"] == pytest.approx(2.0) and stats["std"] == pytest.approx(0.0)
    # the ratio of the means would hide that the seeds agree
    assert common.summarise(runs, ["speed"])["fast"]["speed"]["std"] > 0


def test_a_seed_whose_baseline_failed_or_is_missing_gives_no_ratio():
    runs = [run("fast", 1, speed=300.0), run("base", 1, speed=100.0),
            run("fast", 2, speed=250.0), run("base", 2, returncode=1),
            run("fast", 3, speed=200.0)]
    assert common.per_seed_ratios(runs, "fast", "base", "speed") == {1: 3.0}
    summary = common.summarise(runs, ["speed"], baseline="base", ratio_metrics=["speed"])
    assert summary["base"]["failed_runs"] == 1 and summary["base"]["runs"] == 2
    assert summary["fast"]["ratio"]["speed"]["n"] == 1
    assert summary["base"]["ratio"]["speed"]["values"] == [1.0]


def test_paired_rule_better_worse_and_within_noise():
    def verdict(pairs):
        runs = [r for seed, (a, b) in enumerate(pairs, 1)
                for r in (run("head", seed, acc=a), run("mean", seed, acc=b))]
        return common.paired_comparison(common.per_seed_differences(runs, "head", "mean", "acc"))

    better = verdict([(0.82, 0.80), (0.83, 0.80), (0.81, 0.80)])  # +2, +3, +1 points: mean 2, std 1
    assert better["verdict"] == "better" and better["wins"] == 3
    assert better["mean"] == pytest.approx(0.02) and better["std"] == pytest.approx(0.01)
    assert verdict([(0.78, 0.80), (0.77, 0.80), (0.79, 0.80)])["verdict"] == "worse"
    noisy = verdict([(0.85, 0.80), (0.76, 0.80), (0.81, 0.80)])  # +5, -4, +1: mean 0.67, std 4.5
    assert noisy["verdict"] == "within noise" and noisy["wins"] == 2
    assert verdict([(0.90, 0.80)])["verdict"] == "too few seeds"


def test_paired_rule_uses_the_paired_differences_not_the_spread_of_each_configuration():
    # seeds differ a lot (0.60 .. 0.90) but the head wins by 1 point on every seed: better
    runs = []
    for seed, base in enumerate((0.60, 0.75, 0.90), 1):
        runs += [run("head", seed, acc=base + 0.01 + 0.001 * seed), run("mean", seed, acc=base)]
    summary = common.summarise(runs, ["acc"], baseline="mean", difference_metrics=["acc"])
    assert summary["head"]["acc"]["std"] > 0.1
    assert summary["head"]["difference"]["acc"]["verdict"] == "better"
    assert summary["mean"]["difference"]["acc"]["mean"] == 0.0


def test_summarise_counts_busy_runs_and_keeps_the_order_of_first_appearance():
    runs = [run("b", 1, acc=0.5, other_processes_cpu_share=0.01), run("a", 1, acc=0.6, other_processes_cpu_share=0.4),
            run("b", 2, acc=0.7, other_processes_cpu_share=0.2)]
    summary = common.summarise(runs, ["acc"])
    assert list(summary) == ["b", "a"]
    assert summary["b"]["busy_runs"] == 1 and summary["b"]["max_other_processes_cpu_share"] == 0.2
    assert summary["b"]["seeds"] == [1, 2]
    assert math.isclose(summary["b"]["acc"]["mean"], 0.6)


def test_parse_seeds():
    assert common.parse_seeds("1,2,3") == [1, 2, 3]
    assert common.parse_seeds(" 7 ") == [7]
    for bad in ("", "1,1", "a,b"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.parse_seeds(bad)
    parser = argparse.ArgumentParser()
    common.add_seed_argument(parser)
    assert parser.parse_args([]).seeds == [1, 2, 3]
    assert parser.parse_args(["--seeds", "4,5"]).seeds == [4, 5]


def test_combined_rule_needs_the_difference_of_means_to_exceed_the_combined_std():
    head, mean_pooling = common.mean_std([0.84, 0.85, 0.86]), common.mean_std([0.80, 0.81, 0.82])
    beats = common.combined_comparison(head, mean_pooling)  # +4 points, combined std sqrt(1 + 1) = 1.41 points
    assert beats["difference"] == pytest.approx(0.04) and beats["combined_std"] == pytest.approx(0.01 * 2 ** 0.5)
    assert beats["exceeds"] is True
    noisy = common.combined_comparison(common.mean_std([0.78, 0.85, 0.92]), mean_pooling)  # +4, std 7 points
    assert noisy["difference"] == pytest.approx(0.04) and noisy["exceeds"] is False
    assert common.combined_comparison(mean_pooling, head)["exceeds"] is False  # worse never "beats"
    assert common.combined_comparison(common.mean_std([0.9]), mean_pooling)["exceeds"] is None  # one seed: no std
    assert common.combined_comparison(common.mean_std([]), mean_pooling)["difference"] is None


def test_smoke_caps_replace_the_arguments_only_with_smoke():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_train_samples", type=int, default=12000)
    parser.add_argument("--epochs", type=float, default=2.0)
    caps = {"max_train_samples": 200, "epochs": 0.2}
    common.add_smoke_argument(parser, caps)
    assert "--max_train_samples 200" in parser.format_help().replace("\n", " ")
    assert vars(common.apply_smoke(parser.parse_args([]), caps)) == {"max_train_samples": 12000, "epochs": 2.0,
                                                                      "smoke": False}
    smoke = common.apply_smoke(parser.parse_args(["--smoke", "--max_train_samples", "5000"]), caps)
    assert (smoke.max_train_samples, smoke.epochs) == (200, 0.2)


# A child "run" for run_over_seeds: a fresh Python process that writes all_results.json like the run scripts do, with
# numbers that depend on its configuration and seed, and fails for the configuration named "broken".
CHILD = """
import json, os, sys
config, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if config == "broken":
    sys.exit("broken on purpose")
json.dump({"eval_accuracy": 0.5 + 0.1 * seed + (0.05 if config == "head" else 0.0), "pid": os.getpid(),
           "train_samples_per_second": 100.0 * seed}, open(os.path.join(out, "all_results.json"), "w"))
"""


def test_run_over_seeds_runs_each_configuration_per_seed_in_a_fresh_process_and_records_provenance(tmp_path):
    args = argparse.Namespace(seeds=[1, 2, 3], smoke=True)
    report = common.new_report(common.__file__, ["--seeds", "1,2,3", "--smoke"], args, seeds=args.seeds)
    order = []

    def make_command(config, seed, out_dir):
        order.append((seed, config))
        return [sys.executable, "-c", CHILD, config, str(seed), out_dir]

    def collect(config, seed, out_dir):
        return common.read_json(f"{out_dir}/all_results.json")

    output = tmp_path / "results" / "bench.json"

    def save():
        report["summary"] = common.summarise(report["runs"], ["eval_accuracy"], baseline="mean",
                                             ratio_metrics=["train_samples_per_second"],
                                             difference_metrics=["eval_accuracy"])
        common.write_report(report, str(output), "| table |\n")

    runs = common.run_over_seeds(report, [1, 2, 3], ["mean", "head", "broken"], make_command, collect,
                                 str(tmp_path / "work"), common.bench_env(str(tmp_path / "work")), save=save)
    # seed by seed, every configuration of a seed back to back
    assert order == [(s, c) for s in (1, 2, 3) for c in ("mean", "head", "broken")]
    assert len({r["pid"] for r in runs if "pid" in r}) == 6  # a fresh process per (configuration, seed)
    assert [r["returncode"] != 0 for r in runs] == [False, False, True] * 3
    assert report["commands"] == [r["command"] for r in runs] and "broken" in report["commands"][2]
    summary = report["summary"]
    assert summary["head"]["eval_accuracy"]["n"] == 3 and summary["broken"]["failed_runs"] == 3
    assert summary["head"]["difference"]["eval_accuracy"]["verdict"] == "better"  # +5 points on every seed
    assert summary["head"]["ratio"]["train_samples_per_second"]["mean"] == pytest.approx(1.0)
    saved = json.loads(output.read_text(encoding="utf-8"))
    assert saved["command"].endswith("--seeds 1,2,3 --smoke") and saved["seeds"] == [1, 2, 3]
    machine = saved["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch"] and "git_commit" in machine
    assert (tmp_path / "results" / "bench.md").read_text(encoding="utf-8").startswith("**Smoke run (--smoke)")
    assert saved["markdown"].endswith("| table |\n")
    published = argparse.Namespace(smoke=True, output=str(Path(common.REPO) / "bench" / "results" / "x.json"))
    with pytest.raises(SystemExit, match="would overwrite the published"):
        common.new_report(common.__file__, ["--smoke"], published)


def heads_args(tmp_path, *extra):
    import heads_comparison

    data, checkpoint = tmp_path / "titles", tmp_path / "mlm"
    data.mkdir(exist_ok=True)
    checkpoint.mkdir(exist_ok=True)
    for name, text in (("train.txt", "甲乙\t0\n"), ("dev.txt", "丙丁\t1\n"), ("class.txt", "a\nb\n")):
        (data / name).write_text(text, encoding="utf-8")
    (checkpoint / "config.json").write_text("{}", encoding="utf-8")
    return heads_comparison.parse_args(["--suite", "heads", "--data_dir", str(data), "--pretrained", str(checkpoint),
                                        "--work_dir", str(tmp_path / "work"), *extra])


def test_heads_comparison_takes_a_checkpoint_and_per_head_learning_rates_with_grids(tmp_path):
    args = heads_args(tmp_path, "--configs", "linear_mean,cnn,lstm,gru", "--head_lr", "cnn=5e-4:2e-3,lstm=3e-3")
    assert args.model_name_or_path == str(tmp_path / "mlm") and args.learning_rate == 2e-4  # pretrained: 2e-4
    assert {name: lr for name, (_, lr) in args.configs.items()} == {
        "linear_mean": None, "cnn@lr0.0005": 5e-4, "cnn@lr0.002": 2e-3, "lstm": 3e-3, "gru": 1e-3}
    assert args.configs["cnn@lr0.002"][0] == ["--head", "cnn"]
    smoke = heads_args(tmp_path, "--smoke", "--configs", "linear_mean,cnn")
    assert (smoke.max_train_samples, smoke.epochs) == (200, 0.2)
    for bad in (["--head_lr", "linear_mean=1e-4:1e-3"], ["--head_lr", "nope=1e-3"], ["--head_lr", "cnn=fast"]):
        with pytest.raises(SystemExit):
            heads_args(tmp_path, "--configs", "linear_mean,cnn", *bad)


def test_heads_table_says_per_head_whether_it_beats_mean_pooling_over_the_seeds():
    import heads_comparison

    accuracy = {"linear_mean": (0.80, 0.81, 0.82), "cnn": (0.84, 0.85, 0.86), "lstm": (0.70, 0.88, 0.84),
                "linear_pooler": (0.10, 0.11, 0.10)}
    runs = [run(name, seed, eval_accuracy=acc[seed - 1], eval_macro_f1=acc[seed - 1], train_samples_per_second=100.0,
                train_seconds_per_epoch=1.0) for seed in (1, 2, 3) for name, acc in accuracy.items()]
    summary, verdicts = heads_comparison.summarise_heads(runs, "heads")
    assert set(verdicts) == {"cnn", "lstm", "linear_pooler"}
    assert verdicts["cnn"]["combined"]["exceeds"] is True and verdicts["cnn"]["paired"]["verdict"] == "better"
    assert verdicts["lstm"]["combined"]["exceeds"] is False  # +2.67 points but a std of 9.5
    assert verdicts["linear_pooler"]["combined"]["exceeds"] is False
    report = {"summary": summary, "verdicts": verdicts, "runs": runs, "seeds": [1, 2, 3], "train_limit": 200,
              "eval_limit": 100, "data": {"train": "train.txt", "dev": "dev.txt"},
              "machine": {"git_commit": "abc", "date": "2026-11-29"},
              "settings": {"suite": "heads", "epochs": 2.0, "batch_size": 32, "learning_rate": 2e-4},
              "encoder": {"description": "pretrained checkpoint mlm", "pretrained": True},
              "configs": {name: (["--head", name], None) for name in accuracy},
              "head_learning_rates": {"linear_mean": None, "cnn": 1e-3, "lstm": 1e-3, "linear_pooler": 1e-3}}
    table = heads_comparison.markdown(report)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.count("|") == 8}
    assert "| **yes** |" in rows["cnn"] and "+4.00 | 1.41 |" in rows["cnn"]
    assert "| no |" in rows["lstm"] and "| no |" in rows["linear_pooler"]
    assert "beats mean pooling?" in table and "from scratch" not in table
    report["encoder"] = {"description": "scratch", "pretrained": False}
    assert "Encoder trained from scratch" in heads_comparison.markdown(report)


def test_predict_throughput_rotates_the_order_of_configurations_per_seed():
    import predict_throughput

    configs = ["torch_fp32", "onnxruntime", "pipeline_loop"]
    orders = [predict_throughput.rotated(configs, i) for i in range(3)]
    assert [order[0] for order in orders] == configs  # each configuration runs first once
    assert all(sorted(order) == sorted(configs) for order in orders)
