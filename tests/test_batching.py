"""Training batches (training.LengthPoolSampler, the default) and the collapse guard.

The regression test trains through run_classification.main() on a fixture where text length predicts the label:
with transformers' length-grouped batches (the old default) the tiny model collapses to one class at this learning
rate; with the default batches it must learn.
"""

import json
import random

import numpy as np
import pytest
import torch

import helpers as h
from training import LengthPoolSampler, collapse_warning


def batches_of(sampler, batch_size):
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded_tokens(batches, lengths):
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


@pytest.fixture(scope="module")
def lengths():
    rng = random.Random(0)
    return [rng.randint(5, 200) for _ in range(1000)]


def test_length_pools_visit_every_example_once_per_epoch(lengths):
    sampler = LengthPoolSampler(lengths, batch_size=32, pool_batches=4, seed=0)
    assert sorted(sampler) == list(range(len(lengths)))
    assert len(sampler) == len(lengths)


def test_length_pools_cut_padding_but_keep_batches_random(lengths):
    pools = batches_of(LengthPoolSampler(lengths, 32, pool_batches=4, seed=0), 32)
    plain = batches_of(LengthPoolSampler(lengths, 32, pool_batches=1, seed=0), 32)
    assert padded_tokens(pools, lengths) < 0.75 * padded_tokens(plain, lengths)
    # consecutive batches are not a long-to-short sweep: batch maxima go up about as often as they go down
    maxima = [max(lengths[i] for i in b) for b in pools[:-1]]
    ups = sum(b > a for a, b in zip(maxima, maxima[1:]))
    assert 0.3 < ups / (len(maxima) - 1) < 0.7


def test_length_pools_order_depends_on_seed_and_epoch_only(lengths):
    a = LengthPoolSampler(lengths, 32, 4, seed=7)
    b = LengthPoolSampler(lengths, 32, 4, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part: every DDP process draws the same order
    first = list(a)
    torch.manual_seed(456)
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first
    assert list(LengthPoolSampler(lengths, 32, 4, seed=8)) != first


def test_only_the_last_batch_is_short(lengths):
    batches = batches_of(LengthPoolSampler(lengths, 48, 4, seed=0), 48)  # 1000 = 20 x 48 + 40
    assert [len(b) for b in batches[:-1]] == [48] * 20 and len(batches[-1]) == 40


@pytest.mark.parametrize("predicted, gold, warns", [
    ([0] * 97 + [1] * 3, [0, 1] * 50, True),  # one class for 97% of a balanced set
    ([0] * 94 + [1] * 6, [0, 1] * 50, False),  # under 95%
    ([0] * 98 + [1] * 2, [0] * 95 + [1] * 5, False),  # the labels themselves are that skewed
    ([], [], False),
])
def test_collapse_warning_threshold(predicted, gold, warns):
    assert (collapse_warning(predicted, gold) is not None) == warns


SHIFT = 2


def length_correlated_rows(n, seed):
    """4 classes, each with its keyword character; class c's texts are about 4*c characters longer than class 0's,
    with overlapping ranges (like news titles, whose length leans towards some classes)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 4
        chars = [rng.choice(h.FILLER) for _ in range(rng.randint(4 + SHIFT * label, 14 + SHIFT * label))]
        chars.insert(rng.randrange(len(chars) + 1), h.KEYWORDS[label])
        rows.append(("".join(chars), label))
    rng.shuffle(rows)
    return rows


def train_length_correlated(model_dir, tmp_path, *extra):
    import run_classification

    train = h.write_tsv(tmp_path / "train.tsv", length_correlated_rows(1600, seed=1))
    dev = h.write_tsv(tmp_path / "dev.tsv", length_correlated_rows(400, seed=2))
    out = tmp_path / "out"
    run_classification.main(h.tiny_train_args(
        model_dir, out, "--train_file", train, "--validation_file", dev, "--do_train", "--do_eval",
        "--eval_strategy", "no", *extra, epochs=2, batch_size=16, learning_rate="2e-3"))
    return json.loads((out / "eval_results.json").read_text())["eval_accuracy"], out


def test_default_batches_learn_where_length_predicts_the_label(model_dir, tmp_path):
    accuracy, _ = train_length_correlated(model_dir, tmp_path)
    # chance: 0.25; transformers' group_by_length batches (the old default) stop at 0.5 here with this seed
    assert accuracy > 0.7


def test_collapse_is_warned_in_the_log_and_the_report(model_dir, tmp_path, capsys):
    import run_classification

    # Every training text but one is class 0: the model learns to say 0, the balanced dev set shows the collapse.
    rows = [(text, 0) for text, _ in h.keyword_rows(120, seed=3)] + [(h.filler_text(8), 1)]
    train = h.write_tsv(tmp_path / "train.tsv", rows)
    dev = h.write_tsv(tmp_path / "dev.tsv", h.keyword_rows(60, seed=4))
    out = tmp_path / "out"
    run_classification.main(h.tiny_train_args(model_dir, out, "--train_file", train, "--validation_file", dev,
                                              "--do_train", "--do_eval", epochs=2))
    log = capsys.readouterr()
    assert "WARNING" in log.out and "training has collapsed to one answer" in log.out
    report = (out / "eval_classification_report.txt").read_text(encoding="utf-8")
    assert report.startswith("WARNING: the model predicts class '0' for")
    assert "--train_sampling_strategy" in report
    assert np.isclose(json.loads((out / "eval_results.json").read_text())["eval_accuracy"], 0.5)
