"""Fine-tuning strategies of run_classification.py, driven through main([...]) on tiny BERTs trained from scratch.

Heads and poolings (--head / --pooling), per-group learning rates and weight decay (--head_learning_rate,
--layerwise_lr_decay), freezing (--freeze, --freeze_layers), class weights (--class_weights) and sliding windows for
long documents (--head windows), each also with gradient accumulation.

Every model, vocab and data file is written by the tests into pytest tmp dirs: nothing is downloaded and the shared benchmark data is
never read. Models are 2 layers, at most 64 wide, and torch runs on one thread.
"""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import datasets  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoConfig, AutoModelForSequenceClassification  # noqa: E402

import heads  # noqa: E402
import run_classification as rc  # noqa: E402
import utils_classification  # noqa: E402
from script_utils import DataError  # noqa: E402
import training  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")


def capped_starts(n_tokens, content, stride, max_windows):
    """The window starts run_classification.py uses: all windows, then the cap."""
    return utils_classification.cap_windows(utils_classification.window_starts(n_tokens, content, stride), max_windows)


# ------------------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir64(tmp_path_factory):
    return h.build_tiny_bert(tmp_path_factory.mktemp("tiny_bert_64"), hidden_size=64)


def run(model_dir, output_dir, *extra, **kwargs):
    return rc.main(h.tiny_train_args(model_dir, output_dir, *extra, **kwargs))


def run_saved(saved_dir, output_dir, *extra):
    """main() on a saved model (--model_name_or_path, no --config_name / --tokenizer_name, no --head)."""
    return rc.main(["--model_name_or_path", str(saved_dir), "--output_dir", str(output_dir),
                    "--per_device_eval_batch_size", "64", "--report_to", "none", "--disable_tqdm", "true",
                    "--save_strategy", "no", "--seed", "0", "--dataloader_num_workers", "0", *[str(a) for a in extra]])


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def named_params(model):
    return dict(model.named_parameters())


def is_no_decay(name):
    """Biases and LayerNorm weights: never weight-decayed (the usual BERT recipe)."""
    return name.endswith("bias") or "LayerNorm" in name


def optimizer_settings(trainer):
    """{parameter name: (lr, initial lr, weight decay)} from the optimizer the Trainer really built."""
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    settings = {}
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            assert name not in settings, f"{name} is in two optimizer groups"
            settings[name] = (group["lr"], group["initial_lr"], group["weight_decay"])
    return settings


def save_checkpoint(directory, tokenizer_dir, head=None, num_labels=2, seed=0, **head_kwargs):
    """A saved model (weights + tokenizer) to start from with --model_name_or_path, so the initial weights are known."""
    from transformers import AutoTokenizer, set_seed

    set_seed(seed)
    config = AutoConfig.from_pretrained(str(tokenizer_dir), num_labels=num_labels,
                                        id2label={i: str(i) for i in range(num_labels)},
                                        label2id={str(i): i for i in range(num_labels)})
    config = heads.head_config(head, config, **head_kwargs)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(directory))
    return {k: v.clone() for k, v in load_file(str(Path(directory) / "model.safetensors")).items()}


# ------------------------------------------------------------------------------------------------------------------
# 1. Heads and poolings: each learns the keyword task, saves its own model_type/auto_map, reloads, predicts the same
# ------------------------------------------------------------------------------------------------------------------

# 2 classes: with 3, BERT's own pooler head sometimes sits at 2 of 3 classes for a few epochs (seed-dependent)
KEYWORD_CLASSES = 2


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("keyword")
    rows = h.keyword_rows(360, n_classes=KEYWORD_CLASSES, seed=8, min_len=4, max_len=16)
    train, test = rows[:300], rows[300:]
    h.write_tsv(d / "train.tsv", train)
    h.write_tsv(d / "test.tsv", test)
    return {"dir": d, "train": train, "test": test}


# (--head, --pooling, extra args, gradient accumulation)
HEAD_CASES = {
    "linear": ("linear", None, [], False),
    "cnn": ("cnn", None, ["--cnn_filter_sizes", "2,3", "--cnn_num_filters", "16"], True),
    "lstm": ("lstm", None, ["--rnn_hidden_size", "16"], False),
    "gru": ("gru", None, ["--rnn_hidden_size", "16"], True),
    "attention": ("attention", None, ["--attention_hidden_size", "16"], False),
    # 5-17 tokens (filler + keyword); windows of 12 (10 text tokens) every 5: 1 to 3 windows per text
    "windows": ("windows", None, ["--max_seq_length", "12", "--window_stride", "5", "--max_windows", "4"], True),
    "pooling-cls": ("linear", "cls", [], False),
    "pooling-mean": ("linear", "mean", [], True),
    "pooling-max": ("linear", "max", [], False),
    "pooling-attention": ("linear", "attention", [], False),
    "pooling-concat_last_k": ("linear", "concat_last_k", ["--pooling_last_k", "2"], True),
}


@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_head_learns_saves_and_reloads(case, model_dir64, keyword_data, tmp_path):
    head, pooling, extra, accumulate = HEAD_CASES[case]
    d = keyword_data["dir"]
    out = tmp_path / "out"
    args = ["--head", head, *(["--pooling", pooling] if pooling else []), *extra,
            "--train_file", d / "train.tsv", "--test_file", d / "test.tsv", "--do_train", "--do_predict",
            "--eval_strategy", "no"]
    batch = 16
    if accumulate:
        args += ["--gradient_accumulation_steps", "2"]
        batch = 8
    trainer = run(model_dir64, out, *args, epochs=3, batch_size=batch, learning_rate="2e-3")

    # learned: the keyword decides the class (chance: 1/2; every head reaches 1.0 for seeds 0-4)
    metrics = load_json(out / "predict_results.json")
    assert metrics["predict_accuracy"] >= 0.9, (case, metrics)
    if accumulate:
        steps_per_epoch = -(-len(keyword_data["train"]) // (batch * 2))
        assert trainer.state.global_step == 3 * steps_per_epoch

    # the saved config names the head
    config = load_json(out / "config.json")
    if head == "linear" and pooling is None:  # BERT's own [CLS] -> pooler -> linear
        assert config["model_type"] == "bert"
        assert config["architectures"] == ["BertForSequenceClassification"]
        assert "auto_map" not in config
        assert type(trainer.model).__name__ == "BertForSequenceClassification"
    else:
        config_class, model_class = heads.HEADS[head]
        assert config["model_type"] == config_class.model_type
        assert config["architectures"] == [model_class.__name__]
        assert config["auto_map"] == {
            "AutoConfig": f"configuration_heads.{config_class.__name__}",
            "AutoModelForSequenceClassification": f"modeling_heads.{model_class.__name__}",
        }
        assert (out / "modeling_heads.py").is_file() and (out / "configuration_heads.py").is_file()
        assert type(trainer.model) is model_class
    if pooling:
        assert config["pooling"] == pooling
    if case == "pooling-concat_last_k":
        assert config["pooling_last_k"] == 2
        assert trainer.model.classifier.in_features == 2 * 64
    if case == "cnn":
        assert config["cnn_filter_sizes"] == [2, 3] and config["cnn_num_filters"] == 16
    if case in ("lstm", "gru"):
        assert config["rnn_hidden_size"] == 16
    if case == "windows":
        assert sorted(set(trainer.train_dataset["n_windows"])) == [1, 2, 3]
        assert config["text_classification"]["window_stride"] == 5
        assert config["text_classification"]["max_windows"] == 4

    # predict-only from the output dir, no --head: the trained head comes back and predicts the same
    trained_state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    window_args = extra if head == "windows" else []
    reloaded = run_saved(out, tmp_path / "reloaded", "--test_file", d / "test.tsv", "--do_predict", *window_args)
    assert type(reloaded.model) is type(trainer.model)
    reloaded_state = reloaded.model.state_dict()
    assert set(reloaded_state) == set(trained_state)
    for key, value in trained_state.items():
        assert torch.equal(reloaded_state[key].cpu(), value), key
    _, first = h.read_tsv(out / "predict_results.tsv")
    _, again = h.read_tsv(tmp_path / "reloaded" / "predict_results.tsv")
    assert len(again) == len(first) == len(keyword_data["test"])
    assert again == first  # same rows, labels and probabilities (same batches: the same numbers)
    assert load_json(tmp_path / "reloaded" / "predict_results.json")["predict_accuracy"] == \
        metrics["predict_accuracy"]


# ------------------------------------------------------------------------------------------------------------------
# 2. Optimizer groups: learning rate and weight decay per parameter, read from the optimizer the Trainer built
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """32 keyword texts, 2 classes (labels 0/1): enough for a step or two."""
    d = tmp_path_factory.mktemp("small")
    h.write_tsv(d / "train.tsv", h.keyword_rows(32, n_classes=2, seed=3))
    return d


# constant learning rate, no warmup: the lr in the param groups after a step is still the configured one
CONSTANT_LR = ["--lr_scheduler_type", "constant", "--warmup_steps", "0"]


@pytest.mark.parametrize("head", ["linear", "cnn"])
def test_head_learning_rate_and_weight_decay_per_parameter(head, model_dir, small_data, tmp_path, capsys):
    trainer = run(model_dir, tmp_path / "out", "--head", head, "--train_file", small_data / "train.tsv",
                  "--do_train", "--max_steps", "1", "--head_learning_rate", "1e-4", "--weight_decay", "0.01",
                  "--gradient_accumulation_steps", "2", *CONSTANT_LR, learning_rate="2e-5", batch_size=8)
    settings = optimizer_settings(trainer)
    params = named_params(trainer.model)
    assert set(settings) == set(params)  # every parameter, each in exactly one group
    body = [n for n in params if n.startswith("bert.")]
    head_params = [n for n in params if not n.startswith("bert.")]
    assert body and head_params
    if head == "linear":
        assert sorted(head_params) == ["classifier.bias", "classifier.weight"]
        assert any(n.startswith("bert.pooler.") for n in body)
    else:
        assert any(n.startswith("convs.") for n in head_params)
    for name, (lr, initial_lr, weight_decay) in settings.items():
        expected_lr = 2e-5 if name.startswith("bert.") else 1e-4
        assert initial_lr == expected_lr, name
        assert lr == expected_lr, name
        assert weight_decay == (0.0 if is_no_decay(name) else 0.01), name
    assert {wd for _, _, wd in settings.values()} == {0.0, 0.01}
    assert trainer.state.global_step == 1
    assert "optimizer group: lr 0.0001, weight decay 0.01" in capsys.readouterr().out


@pytest.mark.parametrize("head_lr", [None, "1e-4"])
def test_layerwise_lr_decay(head_lr, model_dir, small_data, tmp_path):
    extra = ["--head_learning_rate", head_lr] if head_lr else []
    trainer = run(model_dir, tmp_path / "out", "--train_file", small_data / "train.tsv", "--do_train",
                  "--max_steps", "1", "--layerwise_lr_decay", "0.5", "--weight_decay", "0.01", *extra, *CONSTANT_LR,
                  "--gradient_accumulation_steps", "2", learning_rate="2e-5", batch_size=8)
    assert trainer.model.config.num_hidden_layers == 2
    settings = optimizer_settings(trainer)
    assert set(settings) == set(named_params(trainer.model))
    seen = set()
    for name, (lr, initial_lr, weight_decay) in settings.items():
        if name.startswith("bert.embeddings."):
            expected, part = 2e-5 * 0.25, "embeddings"
        elif name.startswith("bert.encoder.layer.0."):
            expected, part = 2e-5 * 0.5, "layer 0"
        elif name.startswith("bert.encoder.layer.1."):
            expected, part = 2e-5, "layer 1"
        elif name.startswith("bert.pooler."):
            expected, part = 2e-5, "pooler"
        else:
            assert name.startswith("classifier."), name
            expected, part = (float(head_lr) if head_lr else 2e-5), "head"
        seen.add(part)
        assert initial_lr == pytest.approx(expected, rel=1e-12), name
        assert lr == pytest.approx(expected, rel=1e-12), name
        assert weight_decay == (0.0 if is_no_decay(name) else 0.01), name
    assert seen == {"embeddings", "layer 0", "layer 1", "pooler", "head"}


def test_encoder_layer_index():
    assert training.encoder_layer_index("bert.encoder.layer.11.attention.self.query.weight") == 11
    assert training.encoder_layer_index("bert.encoder.layer.0.output.LayerNorm.bias") == 0
    for name in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight",
                 "rnn.weight_ih_l0", "window_transformer.layers.0.linear1.weight", "bert.layer.3.x"):
        assert training.encoder_layer_index(name) is None, name


# ------------------------------------------------------------------------------------------------------------------
# 3. Freezing
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_checkpoint(tmp_path_factory, model_dir):
    """A saved CNN-head model (all weights known) to fine-tune with --model_name_or_path."""
    d = tmp_path_factory.mktemp("cnn_checkpoint")
    initial = save_checkpoint(d, model_dir, head="cnn", cnn_filter_sizes=(2,), cnn_num_filters=8)
    return d, initial


FREEZE_CASES = {
    "all": (["--freeze", "all"], lambda n: n.startswith("bert.")),
    "embeddings": (["--freeze", "embeddings"], lambda n: n.startswith("bert.embeddings.")),
    "layer-0": (["--freeze_layers", "0"], lambda n: n.startswith("bert.encoder.layer.0.")),
    "embeddings+layer-1": (["--freeze", "embeddings", "--freeze_layers", "1"],
                           lambda n: n.startswith(("bert.embeddings.", "bert.encoder.layer.1."))),
}


@pytest.mark.parametrize("case", list(FREEZE_CASES))
def test_freeze(case, cnn_checkpoint, small_data, tmp_path, capsys):
    checkpoint, initial = cnn_checkpoint
    flags, should_freeze = FREEZE_CASES[case]
    out = tmp_path / "out"
    trainer = run_saved(checkpoint, out, *flags, "--train_file", small_data / "train.tsv", "--do_train",
                        "--max_steps", "2", "--learning_rate", "1e-2", "--per_device_train_batch_size", "8",
                        "--gradient_accumulation_steps", "2", "--weight_decay", "0.01")
    model = trainer.model
    params = named_params(model)
    expected_frozen = {n for n in params if should_freeze(n)}
    assert expected_frozen and expected_frozen != set(params)
    assert {n for n, p in params.items() if not p.requires_grad} == expected_frozen
    assert set(optimizer_settings(trainer)) == set(params) - expected_frozen  # frozen: not even in the optimizer

    # frozen weights are bit-identical after training (no update, no weight decay), the rest moved
    assert set(initial) == set(params)
    for name, param in params.items():
        changed = not torch.equal(param.detach().cpu(), initial[name])
        assert changed == (name not in expected_frozen), name
    saved = load_file(str(out / "model.safetensors"))
    for name in expected_frozen:
        assert torch.equal(saved[name], initial[name]), name

    n_frozen = sum(params[n].numel() for n in expected_frozen)
    n_total = sum(p.numel() for p in params.values())
    log = capsys.readouterr().out
    match = re.search(r"Frozen \(--freeze (\w+), --freeze_layers (\S+)\): ([\d,]+) parameters; trainable ([\d,]+) "
                      r"of ([\d,]+) \(([\d.]+)%\)", log)
    assert match, log[-3000:]
    assert [int(x.replace(",", "")) for x in match.group(3, 4, 5)] == [n_frozen, n_total - n_frozen, n_total]
    assert float(match.group(6)) == pytest.approx(100 * (n_total - n_frozen) / n_total, abs=0.05)


@pytest.mark.parametrize("layers", ["2", "-1", "0,5"])
def test_freeze_layers_out_of_range(layers, model_dir, small_data, tmp_path):
    with pytest.raises(ValueError, match=rf"--freeze_layers {re.escape(layers)}: the model has layers 0\.\.1"):
        run(model_dir, tmp_path / "out", "--train_file", small_data / "train.tsv", "--do_train", "--max_steps", "1",
            "--freeze_layers", layers)
    assert not (tmp_path / "out" / "config.json").exists()


# ------------------------------------------------------------------------------------------------------------------
# 4. Class weights
# ------------------------------------------------------------------------------------------------------------------

CLASS_NAMES = ["体育", "财经", "科技"]
IMBALANCED_COUNTS = [24, 8, 4]  # auto: 36 / (3 x count) = 0.5, 1.5, 3.0


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    d = tmp_path_factory.mktemp("imbalanced")
    balanced = h.keyword_rows(3 * max(IMBALANCED_COUNTS), n_classes=3, seed=0)  # shuffled, keyword = class
    rows = [(text, CLASS_NAMES[label]) for label, count in enumerate(IMBALANCED_COUNTS)
            for text in [t for t, l in balanced if l == label][:count]]
    rows = [rows[(i * 7) % len(rows)] for i in range(len(rows))]  # mixed (7 is coprime with 36)
    assert sorted(rows) == sorted(set(rows)) and len(rows) == sum(IMBALANCED_COUNTS)
    h.write_tsv(d / "train.tsv", rows)
    h.write_label_file(d / "class.txt", CLASS_NAMES)
    return d


def run_weighted(model_dir, d, out, *extra, **kwargs):
    return run(model_dir, out, "--train_file", d / "train.tsv", "--label_file", d / "class.txt", "--do_train",
               "--max_steps", "1", *extra, **kwargs)


def test_class_weights_auto_is_balanced_and_used_by_the_loss(model_dir, imbalanced, tmp_path, capsys):
    trainer = run_weighted(model_dir, imbalanced, tmp_path / "out", "--class_weights", "auto")
    n, k = sum(IMBALANCED_COUNTS), len(IMBALANCED_COUNTS)
    expected = torch.tensor([n / (k * c) for c in IMBALANCED_COUNTS])
    torch.testing.assert_close(trainer.class_weights, expected)
    torch.testing.assert_close(trainer.class_weights, torch.tensor([0.5, 1.5, 3.0]))
    assert "class weights: 体育=0.500, 财经=1.500, 科技=3.000" in capsys.readouterr().out

    # the loss the trainer optimises is the weighted cross-entropy, summed and divided by the number of examples
    model = trainer.model.eval()
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"]
    assert len(set(labels.tolist())) >= 2
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        loss = trainer.compute_loss(model, dict(batch))
        loss_accumulated = trainer.compute_loss(model, dict(batch), num_items_in_batch=2 * len(labels))
    weighted_sum = F.cross_entropy(logits, labels, weight=expected, reduction="sum")
    torch.testing.assert_close(loss, weighted_sum / len(labels))
    torch.testing.assert_close(loss_accumulated, weighted_sum / (2 * len(labels)))
    assert not torch.isclose(loss, F.cross_entropy(logits, labels), rtol=1e-3)  # not the unweighted loss


@pytest.mark.parametrize("content, expected", [
    pytest.param("1\n2.5\n0.5\n", [1.0, 2.5, 0.5], id="per-line"),  # one weight per line, label-id order
    pytest.param("\n2\n\n3\n4\n", [2.0, 3.0, 4.0], id="blank-lines"),  # blank lines ignored
    pytest.param("财经\t2.5\n体育\t0.5\n科技\t4\n", [0.5, 2.5, 4.0], id="named"),  # name<TAB>weight, any order
    pytest.param("科技\t3\n", [1.0, 1.0, 3.0], id="named-partial"),  # names left out: 1
])
def test_class_weights_file(content, expected, model_dir, imbalanced, tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text(content, encoding="utf-8")
    trainer = run_weighted(model_dir, imbalanced, tmp_path / "out", "--class_weights", path)
    torch.testing.assert_close(trainer.class_weights, torch.tensor(expected))
    assert trainer.compute_loss_func is not None


@pytest.mark.parametrize("content, message", [
    pytest.param("1\n2\n", r"2 weights for 3 labels", id="too-few"),
    pytest.param("1\n2\n3\n4\n", r"4 weights for 3 labels", id="too-many"),
    pytest.param("娱乐\t2\n", r"unknown label\(s\) \['娱乐'\]", id="unknown-name"),
])
def test_class_weights_file_errors_name_the_file(content, message, model_dir, imbalanced, tmp_path):
    path = tmp_path / "my_weights.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
        run_weighted(model_dir, imbalanced, tmp_path / "out", "--class_weights", path)


def test_class_weights_file_with_a_non_number_names_the_file(model_dir, imbalanced, tmp_path):
    """Bad input is a DataError naming the file (the script's rule), also for a weight that is not a number."""
    path = tmp_path / "my_weights.txt"
    path.write_text("1\nabc\n2\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(path))):
        run_weighted(model_dir, imbalanced, tmp_path / "out", "--class_weights", path)


# ------------------------------------------------------------------------------------------------------------------
# 5. Sliding windows for long documents (--head windows)
# ------------------------------------------------------------------------------------------------------------------


def covered(starts, n_tokens, content):
    return set().union(*(range(s, min(s + content, n_tokens)) for s in starts))


def test_window_starts_examples():
    assert capped_starts(10, 4, 2, 99) == [0, 2, 4, 6]
    assert capped_starts(11, 4, 2, 99) == [0, 2, 4, 6, 7]  # the last one flush with the end
    assert capped_starts(4, 4, 2, 99) == [0]
    assert capped_starts(3, 4, 2, 99) == [0]
    assert capped_starts(0, 4, 2, 99) == [0]
    assert capped_starts(9, 3, 3, 99) == [0, 3, 6]  # no overlap when stride == content
    assert capped_starts(11, 4, 2, 3) == [0, 4, 7]  # capped: evenly spaced, first and last kept


def test_window_starts_cover_every_token():
    for n in range(0, 70):
        for content in range(1, 13):
            for stride in range(1, content + 1):
                starts = capped_starts(n, content, stride, 10 ** 6)
                where = (n, content, stride, starts)
                assert starts[0] == 0, where
                assert starts == sorted(set(starts)), where
                assert all(0 <= s <= max(n - content, 0) for s in starts), where  # every window is full (or all)
                assert all(b - a <= stride for a, b in zip(starts, starts[1:])), where
                assert covered(starts, n, content) == set(range(n)), where
                if n > content:
                    assert starts[-1] == n - content, where
                    assert len(starts) == -(-(n - content) // stride) + 1, where  # no more windows than needed


def test_window_starts_cap_keeps_first_and_last():
    for n in range(0, 70):
        for content, stride in ((4, 2), (6, 3), (5, 1), (14, 7)):
            full = capped_starts(n, content, stride, 10 ** 6)
            for max_windows in range(2, 7):
                capped = capped_starts(n, content, stride, max_windows)
                where = (n, content, stride, max_windows, capped)
                assert len(capped) == min(len(full), max_windows), where
                assert capped[0] == full[0] and capped[-1] == full[-1], where
                assert set(capped) <= set(full) and capped == sorted(set(capped)), where


def test_window_collator_pads_documents_and_windows(model_dir):
    pad = 9
    collate = utils_classification.WindowCollator(pad)
    features = [{"input_ids": [[2, 5, 6, 3], [2, 7, 3]], "label": 1}, {"input_ids": [[2, 8, 3]], "label": 0}]
    batch = collate(features)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[key].shape == (2, 2, 4) and batch[key].dtype == torch.long, key
    assert batch["input_ids"].tolist() == [[[2, 5, 6, 3], [2, 7, 3, pad]], [[2, 8, 3, pad], [pad] * 4]]
    assert batch["attention_mask"].tolist() == [[[1, 1, 1, 1], [1, 1, 1, 0]], [[1, 1, 1, 0], [0, 0, 0, 0]]]
    assert batch["token_type_ids"].abs().sum() == 0
    assert batch["labels"].tolist() == [1, 0]
    unlabeled = collate([{"input_ids": [[2, 8, 3]]}])
    assert "labels" not in unlabeled and unlabeled["input_ids"].shape == (1, 1, 3)
    # the all-padding window of document 1 is ignored by the windows model: the logits of document 1 alone
    torch.manual_seed(0)
    model = heads.build_model("windows", config=AutoConfig.from_pretrained(str(model_dir)), num_labels=2).eval()
    with torch.no_grad():
        together = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone = model(**unlabeled).logits
    torch.testing.assert_close(together[1:], alone, atol=1e-6, rtol=1e-6)


def long_documents(lengths, seed=0):
    """One document per length: filler characters, keyword (label = index % 2) at a seeded position."""
    rows = []
    for i, n in enumerate(lengths):
        chars = list(h.filler_text(n - 1, seed=seed + i))
        chars.insert((i * 7) % n, h.KEYWORDS[i % 2])
        rows.append(("".join(chars), i % 2))
    return rows


WINDOW_ARGS = ["--head", "windows", "--max_seq_length", "16", "--window_stride", "7"]  # 14 text tokens per window
LENGTHS = [1, 5, 13, 14, 15, 20, 21, 22, 27, 28, 43, 50, 64, 79]


def check_windows(trainer, rows, max_windows):
    """Each encoded document is a list of [CLS] chunk [SEP] windows at window_starts' offsets; returns the docs that
    lost tokens to max_windows."""
    tokenizer = trainer.processing_class
    ds = trainer.train_dataset
    assert len(ds) == len(rows)  # one example per document
    lossy = 0
    for example, (text, label) in zip(ds, rows):
        assert example["text"] == text and example["label"] == label
        doc = tokenizer.convert_tokens_to_ids(list(text))
        assert tokenizer.unk_token_id not in doc
        windows = example["input_ids"]
        assert example["n_windows"] == len(windows) <= max_windows
        starts = capped_starts(len(doc), 14, 7, max_windows)
        assert len(windows) == len(starts)
        for window, start in zip(windows, starts):
            assert len(window) <= 16
            assert window[0] == tokenizer.cls_token_id and window[-1] == tokenizer.sep_token_id
            assert window[1:-1] == doc[start:start + 14]
        assert windows[0][1:-1] == doc[:14]
        assert windows[-1][1:-1] == doc[-14:]
        seen = covered(starts, len(doc), 14)
        lossy += seen != set(range(len(doc)))
    return lossy


def test_windows_cover_each_document_and_predict_once_per_document(model_dir, tmp_path):
    rows = long_documents(LENGTHS)
    h.write_tsv(tmp_path / "train.tsv", rows)
    h.write_tsv(tmp_path / "test.tsv", [(text,) for text, _ in rows[::-1]])  # unlabeled, another order
    out = tmp_path / "out"
    trainer = run(model_dir, out, *WINDOW_ARGS, "--max_windows", "100", "--train_file", tmp_path / "train.tsv",
                  "--test_file", tmp_path / "test.tsv", "--do_train", "--do_predict", "--max_steps", "2",
                  "--gradient_accumulation_steps", "2", batch_size=4)
    assert trainer.state.global_step == 2
    assert type(trainer.model) is heads.BertWindowsForSequenceClassification
    assert isinstance(trainer.data_collator, utils_classification.WindowCollator)
    assert check_windows(trainer, rows, 100) == 0
    # the union of each document's windows is exactly its tokens (no cap: nothing lost)
    assert max(trainer.train_dataset["n_windows"]) == len(capped_starts(79, 14, 7, 100)) == 11
    summary = load_json(out / "data_summary.json")
    assert summary["splits"]["train"]["truncated"] == 0 and summary["splits"]["test"]["truncated"] == 0
    assert summary["splits"]["test"]["examples"] == len(rows)

    header, predicted = h.read_tsv(out / "predict_results.tsv")
    assert header == ["line", "text", "predicted_label", "probability"]
    assert [int(r["line"]) for r in predicted] == list(range(1, len(rows) + 1))  # one row per test line
    assert [r["text"] for r in predicted] == [text for text, _ in rows[::-1]]
    # document-level logits: one row per document, the same as a forward of its windows padded by WindowCollator
    pick = [0, len(rows) - 1]  # 1 and 11 windows
    output = trainer.predict(trainer.train_dataset.select(pick))
    assert output.predictions.shape == (2, 2)
    batch = utils_classification.WindowCollator(trainer.processing_class.pad_token_id)(
        [{"input_ids": trainer.train_dataset[i]["input_ids"]} for i in pick])
    assert batch["input_ids"].shape == (2, 11, 16)
    with torch.no_grad():
        logits = trainer.model.eval()(**batch).logits
    torch.testing.assert_close(torch.from_numpy(output.predictions), logits, atol=1e-5, rtol=1e-5)


def test_windows_are_capped_and_truncated_documents_counted(model_dir, tmp_path):
    # max_windows 3 at 14 tokens every 7: up to 28 tokens 1-3 windows, from 43 tokens on tokens are lost
    lengths = [1, 14, 15, 21, 22, 28, 43, 50, 64, 79, 100]
    rows = long_documents(lengths, seed=1)
    h.write_tsv(tmp_path / "train.tsv", rows)
    out = tmp_path / "out"
    trainer = run(model_dir, out, *WINDOW_ARGS, "--max_windows", "3", "--train_file", tmp_path / "train.tsv",
                  "--do_train", "--max_steps", "1")
    lossy = check_windows(trainer, rows, 3)
    assert lossy == 5
    assert max(trainer.train_dataset["n_windows"]) == 3
    assert load_json(out / "data_summary.json")["splits"]["train"]["truncated"] == lossy
    assert load_json(out / "config.json")["text_classification"]["max_windows"] == 3


def test_windows_every_document_over_max_windows_is_counted(model_dir, tmp_path):
    """--max_windows help: "documents with more are counted". 29-42 tokens need 4-5 windows of 14 every 7; capped at
    3 (first, middle, last) they still happen to cover every token, but they are documents with more windows."""
    lengths = [10, 28, 29, 35, 42, 60]
    rows = long_documents(lengths, seed=2)
    h.write_tsv(tmp_path / "train.tsv", rows)
    out = tmp_path / "out"
    run(model_dir, out, *WINDOW_ARGS, "--max_windows", "3", "--train_file", tmp_path / "train.tsv", "--do_train",
        "--max_steps", "1")
    over = sum(len(capped_starts(n, 14, 7, 10 ** 6)) > 3 for n in lengths)
    assert over == 4
    assert load_json(out / "data_summary.json")["splits"]["train"]["truncated"] == over


def test_windows_documents_losing_tokens_to_the_cap_are_counted(model_dir, tmp_path):
    """Windows of 14 text tokens every 3, at most 4: a 55-token document gets windows at 0, 15, 27, 41, so token 14 is
    never seen, although 4 x 14 >= 55."""
    assert capped_starts(55, 14, 3, 4) == [0, 15, 27, 41]
    lengths = [10, 55, 56, 100]
    rows = long_documents(lengths, seed=3)
    h.write_tsv(tmp_path / "train.tsv", rows)
    out = tmp_path / "out"
    run(model_dir, out, "--head", "windows", "--max_seq_length", "16", "--window_stride", "3", "--max_windows", "4",
        "--train_file", tmp_path / "train.tsv", "--do_train", "--max_steps", "1")
    lost = [n for n in lengths if covered(capped_starts(n, 14, 3, 4), n, 14) != set(range(n))]
    assert lost == [55, 56, 100]
    assert load_json(out / "data_summary.json")["splits"]["train"]["truncated"] == len(lost)


def test_windows_prediction_with_the_saved_model_encodes_as_trained(model_dir, tmp_path):
    """The window settings are saved in config.json (text_classification) "so evaluation/prediction with this model
    later encodes texts the same way": predicting with --max_seq_length auto (the length as trained) and no window
    flags must give the trained run's predictions."""
    rows = long_documents([20, 33, 47, 60, 75, 90], seed=4)
    h.write_tsv(tmp_path / "train.tsv", rows)
    h.write_tsv(tmp_path / "test.tsv", [(text,) for text, _ in rows])
    out = tmp_path / "out"
    run(model_dir, out, "--head", "windows", "--max_seq_length", "16", "--window_stride", "4", "--max_windows", "3",
        "--train_file", tmp_path / "train.tsv", "--test_file", tmp_path / "test.tsv", "--do_train", "--do_predict",
        "--max_steps", "3", learning_rate="5e-3")
    saved = load_json(out / "config.json")["text_classification"]
    assert (saved["max_seq_length"], saved["window_stride"], saved["max_windows"]) == (16, 4, 3)
    again = run_saved(out, tmp_path / "again", "--test_file", tmp_path / "test.tsv", "--do_predict",
                      "--max_seq_length", "auto")
    # the settings the prediction run encoded with (it records them in the model's config)
    used = again.model.config.text_classification
    assert (used["max_seq_length"], used["window_stride"], used["max_windows"]) == (16, 4, 3)
    _, first = h.read_tsv(out / "predict_results.tsv")
    _, second = h.read_tsv(tmp_path / "again" / "predict_results.tsv")
    assert [(r["predicted_label"], r["probability"]) for r in second] == \
           [(r["predicted_label"], r["probability"]) for r in first]


@pytest.mark.parametrize("pair, extra, message", [
    pytest.param(True, ["--text_column_names", "a,b"], "--head windows is for long single texts, not sentence pairs",
                 id="sentence-pair"),
    pytest.param(False, ["--window_stride", "15"], r"--window_stride 15 must be in 1\.\.14", id="stride-too-big"),
])
def test_windows_argument_errors(pair, extra, message, model_dir, tmp_path):
    if pair:
        h.write_tsv(tmp_path / "train.tsv", [("的一甲", "是在", 0), ("不了乙", "有和", 1)], header=["a", "b", "label"])
    else:
        h.write_tsv(tmp_path / "train.tsv", [("的一甲是在", 0), ("不了乙有和", 1)])
    with pytest.raises(ValueError, match=message):
        run(model_dir, tmp_path / "out", "--head", "windows", "--max_seq_length", "16", *extra,
            "--train_file", tmp_path / "train.tsv", "--do_train", "--max_steps", "1")
    assert not (tmp_path / "out" / "config.json").exists()


# ------------------------------------------------------------------------------------------------------------------
# 6. Gradient accumulation gives the same update as one big batch (plain SGD, no clipping: the gradient itself)
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pooler_checkpoint(tmp_path_factory, model_dir):
    d = tmp_path_factory.mktemp("pooler_checkpoint")
    return d, save_checkpoint(d, model_dir, head=None)


@pytest.mark.parametrize("checkpoint_fixture, class_weights", [
    pytest.param("pooler_checkpoint", "auto", id="linear-class_weights"),
    pytest.param("pooler_checkpoint", None, id="linear"),
    pytest.param("cnn_checkpoint", None, id="cnn"),
])
def test_gradient_accumulation_matches_one_big_batch(checkpoint_fixture, class_weights, request, tmp_path):
    """16 examples as 1 x 16 or 2 x 8 (same order): the same loss and the same SGD step."""
    checkpoint, initial = request.getfixturevalue(checkpoint_fixture)
    d = tmp_path / "data"
    rows = [(text, 0 if i < 12 else 1) for i, (text, _) in enumerate(h.keyword_rows(16, n_classes=2, seed=5))]
    h.write_tsv(d / "train.tsv", rows)
    extra = ["--class_weights", class_weights] if class_weights else []
    deltas, losses = {}, {}
    for accumulation in (1, 2):
        trainer = run_saved(checkpoint, tmp_path / f"out{accumulation}", "--train_file", d / "train.tsv",
                            "--do_train", "--max_steps", "1", "--per_device_train_batch_size", 16 // accumulation,
                            "--gradient_accumulation_steps", accumulation, "--optim", "sgd", "--learning_rate", "1.0",
                            "--max_grad_norm", "0", "--train_sampling_strategy", "sequential", *CONSTANT_LR, *extra)
        deltas[accumulation] = {n: p.detach().cpu() - initial[n] for n, p in trainer.model.named_parameters()}
        losses[accumulation] = trainer.state.log_history[-1]["train_loss"]
    # the update of every tensor is the same (relative to its size: float noise only); key biases get no gradient
    moved = [n for n, delta in deltas[1].items() if delta.norm() > 1e-8]
    assert "classifier.weight" in moved and any(n.startswith("bert.encoder.") for n in moved), moved
    for name in moved:
        relative = float((deltas[2][name] - deltas[1][name]).norm() / deltas[1][name].norm())
        ratio = float(deltas[2][name].norm() / deltas[1][name].norm())
        assert relative < 1e-3, f"{name}: the update with 2 x 8 is {ratio:.4f} x the one with 1 x 16"
    assert losses[2] == pytest.approx(losses[1], rel=1e-5)  # the reported training loss too
