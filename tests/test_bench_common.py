"""bench/common.py's statistics over seeds: mean +- std, per-seed ratios and differences, the paired rule, --seeds.

Pure functions on hand-made run records: no training, no timing.
"""

import argparse
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
        runs = [r for seed, (a, b) in enumerate(pairs, 1) for r in (run("head", seed, acc=a), run("mean", seed, acc=b))]
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
