"""Tests for heads/: custom classification heads as PreTrainedModels.

Every model is a tiny BERT (hidden 32, 2 layers) with a tokenizer built from an in-memory vocab; nothing is
downloaded. The fresh-process reload runs two subprocesses for all heads at once (a process start costs ~8 s).

Run with: pytest -q tests/test_heads.py --durations=5
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import REPO_ROOT, build_tiny_bert, filler_text  # noqa: E402  (also puts REPO_ROOT on sys.path)

from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    pipeline,
)

import heads  # noqa: E402

LABELS = ["neg", "mid", "pos"]
# name -> (head, pooling, head kwargs). Names have hyphens on purpose: a saved dir's name becomes a Python module
# name under trust_remote_code.
CASES = {
    "linear-pooler": ("linear", "pooler", {}),
    "linear-cls": ("linear", "cls", {}),
    "linear-mean": ("linear", "mean", {}),
    "linear-max": ("linear", "max", {}),
    "linear-attention": ("linear", "attention", {}),
    "linear-concat_last_k": ("linear", "concat_last_k", {"pooling_last_k": 2}),
    # a filter of 6 is longer than SHORT_TEXT with its [CLS]/[SEP] (4 tokens): the "full" convolution must cope
    "cnn": ("cnn", None, {"cnn_filter_sizes": [2, 3, 6], "cnn_num_filters": 8}),
    "lstm": ("lstm", None, {"rnn_hidden_size": 8, "rnn_num_layers": 2}),
    "gru": ("gru", None, {"rnn_hidden_size": 8}),
    "attention": ("attention", None, {"attention_hidden_size": 16}),
    "windows-max": ("windows", None, {"window_fusion": "max"}),
    "windows-mean": ("windows", None, {"window_fusion": "mean"}),
    "windows-attention": ("windows", None, {"window_fusion": "attention", "attention_hidden_size": 16}),
    "windows-transformer": ("windows", None, {"window_fusion": "transformer", "window_transformer_heads": 2}),
}
CUSTOM = [name for name in CASES if name != "linear-pooler"]  # linear-pooler is transformers' own class
WINDOWS = [name for name in CASES if name.startswith("windows")]
SHORT_TEXT = "的一"
TEXTS = [filler_text(12, seed=1), SHORT_TEXT, filler_text(5, seed=2)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: with 2 intra-op threads every op waits for the other core (measured
    ~0.01 s vs ~1 s per forward+backward under load). Restored afterwards for the other test files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(dir with tokenizer + BertConfig, tokenizer, BertConfig)."""
    directory = build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
    return directory, AutoTokenizer.from_pretrained(str(directory)), BertConfig.from_pretrained(str(directory))


def build_model(head, model_name_or_path=None, config=None, pooling=None, **head_kwargs):
    """A model for `head` as run_classification.py builds one: heads.head_config, then BERT weights from
    `model_name_or_path` (a plain BERT checkpoint or a saved head), or fresh weights from `config`."""
    config = heads.head_config(head, config if config is not None else model_name_or_path, pooling=pooling,
                               **head_kwargs)
    if model_name_or_path is None:
        return AutoModelForSequenceClassification.from_config(config)
    return AutoModelForSequenceClassification.from_pretrained(model_name_or_path, config=config)


def make_model(tiny, name, seed=0):
    head, pooling, kwargs = CASES[name]
    torch.manual_seed(seed)
    return build_model(head, config=tiny[2], pooling=pooling, num_labels=len(LABELS),
                             id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}, **kwargs)


def encode(tokenizer, texts):
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def windowed(tokenizer, docs, window_len=16, n_windows=None):
    """docs: list of lists of window texts -> [B, W, T] inputs; missing windows are all padding (mask 0)."""
    n_windows = n_windows or max(len(d) for d in docs)
    empty = {"input_ids": [0] * window_len, "attention_mask": [0] * window_len, "token_type_ids": [0] * window_len}
    rows = []
    for doc in docs:
        enc = [tokenizer(t, padding="max_length", max_length=window_len, truncation=True) for t in doc]
        rows.append([{k: e[k] for k in empty} for e in enc] + [empty] * (n_windows - len(doc)))
    return {k: torch.tensor([[w[k] for w in row] for row in rows]) for k in empty}


def batch_for(tiny, name):
    """The standard batch of a case: 3 texts ([3, L]) or, for windows, 3 documents of 1-3 windows ([3, 3, 16])."""
    tokenizer = tiny[1]
    if name in WINDOWS:
        return windowed(tokenizer, [[TEXTS[0], TEXTS[2], SHORT_TEXT], [SHORT_TEXT], [TEXTS[2], TEXTS[0]]])
    return encode(tokenizer, TEXTS)


def head_parameters(model):
    return {n: p for n, p in model.named_parameters() if not n.startswith("bert.")}


# ------------------------------------------------------------------------------------------------------------------
# Forward, loss, gradients
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_forward_shapes(tiny, name):
    model = make_model(tiny, name)
    inputs = batch_for(tiny, name)
    out = model(**inputs, labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, len(LABELS))
    assert out.loss.shape == () and torch.isfinite(out.loss)
    # Not asked for: none (Trainer would gather them with the logits); asked for: one per layer + embeddings
    assert out.hidden_states is None and out.attentions is None
    hidden = model(**inputs, output_hidden_states=True).hidden_states
    assert len(hidden) == tiny[2].num_hidden_layers + 1
    assert model(**inputs, return_dict=False)[0].shape == (3, len(LABELS))
    if name != "linear-pooler":
        assert model.config.model_type == heads.HEADS[CASES[name][0]][0].model_type
        assert not any(n.startswith("bert.pooler") for n, _ in model.named_parameters())


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen_encoder"])
@pytest.mark.parametrize("name", CASES)
def test_gradients(tiny, name, frozen):
    model = make_model(tiny, name)
    model.train()
    if frozen:
        for p in model.bert.parameters():
            p.requires_grad_(False)
    model(**batch_for(tiny, name), labels=torch.tensor([0, 2, 1])).loss.backward()
    word_embeddings = model.bert.embeddings.word_embeddings.weight
    if frozen:
        assert all(p.grad is None for p in model.bert.parameters())
    else:
        assert word_embeddings.grad is not None and word_embeddings.grad.abs().sum() > 0
    missing = [n for n, p in head_parameters(model).items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"head parameters without gradient: {missing}"


@pytest.mark.parametrize("name", CASES)
def test_padding_does_not_change_logits(tiny, name):
    """SHORT_TEXT alone (no padding) and inside a padded batch: same logits."""
    model = make_model(tiny, name).eval()
    tokenizer = tiny[1]
    with torch.no_grad():
        alone = model(**encode(tokenizer, [SHORT_TEXT])).logits[0]
        batch = encode(tokenizer, TEXTS)
        assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # really padded
        in_batch = model(**batch).logits[1]
    torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=1e-5)


def test_cnn_padding_invariance_is_exact_at_head_level(tiny):
    """The TextCNN head alone (encoder output fixed, garbage at padding) gives the same logits with and without
    padding: the zeroing + full convolution + masking is exact, not approximately right thanks to BERT."""
    model = make_model(tiny, "cnn").eval()
    h = torch.randn(1, 4, tiny[2].hidden_size)
    padded = torch.cat([h, torch.randn(1, 5, tiny[2].hidden_size)], dim=1)  # garbage at padding positions

    def features(hidden, mask):
        class Out:  # stands in for BERT's output
            last_hidden_state, hidden_states, attentions = hidden, None, None
        model.bert.forward = lambda *a, **k: Out
        return model(input_ids=torch.zeros(mask.shape, dtype=torch.long), attention_mask=mask).logits

    with torch.no_grad():
        alone = features(h, torch.ones(1, 4, dtype=torch.long))
        in_batch = features(padded, torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(in_batch, alone, atol=1e-6, rtol=1e-6)


def test_rnn_rejects_left_padding(tiny):
    model = make_model(tiny, "lstm").eval()
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=torch.tensor([[0, 2, 5, 3]]), attention_mask=torch.tensor([[0, 1, 1, 1]]))


# ------------------------------------------------------------------------------------------------------------------
# Save -> reload in fresh processes; pipeline()
# ------------------------------------------------------------------------------------------------------------------

RELOAD_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    mode, root, repo = sys.argv[1:]
    if mode == "import_heads":
        sys.path.insert(0, repo)
        import heads
    else:  # the code must come from the saved dirs alone
        assert importlib.util.find_spec("heads") is None, "heads is importable without the repo"
    import torch
    from transformers import AutoModelForSequenceClassification
    names = json.load(open(f"{root}/cases.json"))
    inputs = torch.load(f"{root}/inputs.pt")
    result = {}
    for name in names:
        kwargs = {"trust_remote_code": True} if mode == "trust_remote_code" else {}
        model = AutoModelForSequenceClassification.from_pretrained(f"{root}/{name}", **kwargs).eval()
        with torch.no_grad():
            result[name] = {"logits": model(**inputs[name]).logits, "module": type(model).__module__}
    torch.save(result, f"{root}/{mode}.pt")
""")


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """Every case saved (model + tokenizer) under root/<name>, with its reference logits (eval mode)."""
    root = tmp_path_factory.mktemp("saved")
    inputs, reference = {}, {}
    for name in CASES:
        model = make_model(tiny, name).eval()
        model.save_pretrained(str(root / name))
        tiny[1].save_pretrained(str(root / name))
        inputs[name] = batch_for(tiny, name)
        with torch.no_grad():
            reference[name] = model(**inputs[name]).logits
    torch.save(inputs, root / "inputs.pt")
    (root / "cases.json").write_text(json.dumps(list(CASES)))
    return root, reference


@pytest.fixture(scope="module")
def reloaded(saved):
    """mode -> {name: {"logits", "module"}}: both loading ways, each in one fresh process (run side by side), with
    cwd in a temp dir, PYTHONPATH cleared and a private module cache for trust_remote_code."""
    root, _ = saved
    script = root / "reload.py"
    script.write_text(RELOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(root / "hf_modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1")
    procs = {}
    for mode in ("trust_remote_code", "import_heads"):
        procs[mode] = subprocess.Popen([sys.executable, str(script), mode, str(root), str(REPO_ROOT)], cwd=str(root),
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = {}
    for mode, proc in procs.items():
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{mode} reload failed:\n{output[-5000:]}"
        results[mode] = torch.load(root / f"{mode}.pt")
    return results


@pytest.mark.parametrize("mode", ["trust_remote_code", "import_heads"])
@pytest.mark.parametrize("name", CASES)
def test_save_reload_in_fresh_process(saved, reloaded, name, mode):
    root, reference = saved
    got = reloaded[mode][name]
    torch.testing.assert_close(got["logits"], reference[name], atol=1e-6, rtol=1e-6)
    if name == "linear-pooler":
        assert got["module"] == "transformers.models.bert.modeling_bert"
    elif mode == "trust_remote_code":
        assert got["module"].startswith("transformers_modules.") and got["module"].endswith(".modeling_heads")
    else:
        assert got["module"] == "heads.modeling_heads"


@pytest.mark.parametrize("name", CUSTOM)
def test_save_pretrained_writes_code_and_auto_map(saved, name):
    directory = saved[0] / name
    files = set(os.listdir(directory))
    assert {"config.json", "model.safetensors", "configuration_heads.py", "modeling_heads.py"} <= files
    assert not {f for f in files if f.endswith(".py")} - {"configuration_heads.py", "modeling_heads.py"}
    config = json.loads((directory / "config.json").read_text())
    config_class, model_class = heads.HEADS[CASES[name][0]]
    assert config["model_type"] == config_class.model_type
    assert config["auto_map"] == {
        "AutoConfig": f"configuration_heads.{config_class.__name__}",
        "AutoModelForSequenceClassification": f"modeling_heads.{model_class.__name__}",
    }
    assert config["architectures"] == [model_class.__name__]
    for key, value in CASES[name][2].items():
        assert config[key] == value


@pytest.mark.parametrize("name", CASES)
def test_pipeline(tiny, saved, name):
    root, _ = saved
    classifier = pipeline("text-classification", model=str(root / name), device="cpu")
    model = classifier.model
    assert type(model).__name__ == type(make_model(tiny, name)).__name__
    result = classifier([TEXTS[0], SHORT_TEXT])
    assert [r["label"] in LABELS for r in result] == [True, True]
    with torch.no_grad():
        probs = model(**encode(tiny[1], [SHORT_TEXT])).logits.softmax(-1)[0]
    assert result[1]["label"] == LABELS[int(probs.argmax())]
    assert abs(result[1]["score"] - float(probs.max())) < 1e-5


# ------------------------------------------------------------------------------------------------------------------
# Starting from a plain BERT checkpoint
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_checkpoints(tiny, tmp_path_factory):
    """name -> (dir, encoder state dict without prefix) for a saved BertModel and a saved BertForMaskedLM (no pooler),
    plus two broken checkpoints: encoder keys under another prefix, and one encoder layer missing."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("bert_ckpt")
    out = {}
    torch.manual_seed(1)
    bert = BertModel(tiny[2])
    bert.save_pretrained(str(root / "bertmodel"))
    out["bertmodel"] = (root / "bertmodel", bert.state_dict())
    torch.manual_seed(2)
    mlm = BertForMaskedLM(tiny[2])
    mlm.save_pretrained(str(root / "mlm"))
    out["mlm"] = (root / "mlm", mlm.bert.state_dict())

    state = load_file(str(root / "mlm" / "model.safetensors"))
    broken = {
        "other_prefix": {k.replace("bert.", "encoder_model.", 1): v for k, v in state.items()},
        "missing_layer": {k: v for k, v in state.items() if ".layer.1." not in k},
    }
    for name, tensors in broken.items():
        (root / name).mkdir()
        save_file(tensors, str(root / name / "model.safetensors"), metadata={"format": "pt"})
        tiny[2].save_pretrained(str(root / name))
        out[name] = (root / name, None)
    return out


@pytest.mark.parametrize("source", ["bertmodel", "mlm"])
@pytest.mark.parametrize("name", CASES)
def test_bert_checkpoint_encoder_transfers(bert_checkpoints, name, source, monkeypatch):
    directory, encoder_state = bert_checkpoints[source]
    # transformers allocates weights missing from the checkpoint with torch.empty_like and then runs _init_weights on
    # them: fill that memory with NaN so that a head parameter _init_weights does not cover shows up
    empty_like = torch.empty_like

    def nan_empty_like(tensor, *args, **kwargs):
        out = empty_like(tensor, *args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty_like", nan_empty_like)
    head, pooling, kwargs = CASES[name]
    model = build_model(head, str(directory), pooling=pooling, num_labels=len(LABELS), **kwargs)
    assert type(model) is (BertForSequenceClassification if name == "linear-pooler" else heads.HEADS[head][1])
    loaded = model.bert.state_dict()
    compared = 0
    for key, value in encoder_state.items():
        if key.startswith("pooler.") and name != "linear-pooler" or key.endswith("position_ids"):
            continue
        torch.testing.assert_close(loaded[key], value, atol=0, rtol=0, msg=f"{key} not loaded")
        compared += 1
    assert compared >= 30
    not_finite = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    assert not not_finite, f"left uninitialised: {not_finite}"
    with torch.no_grad():
        assert torch.isfinite(model.eval()(input_ids=torch.tensor([[2, 10, 11, 3]])).logits).all()


@pytest.mark.parametrize("broken", ["other_prefix", "missing_layer"])
@pytest.mark.parametrize("name", CUSTOM)
def test_checkpoint_missing_encoder_weights_raises(bert_checkpoints, name, broken):
    head, pooling, kwargs = CASES[name]
    with pytest.raises(ValueError, match="encoder weights"):
        build_model(head, str(bert_checkpoints[broken][0]), pooling=pooling, num_labels=3, **kwargs)


def test_own_checkpoint_reloads_without_new_weights(saved):
    model, info = heads.BertCNNForSequenceClassification.from_pretrained(str(saved[0] / "cnn"),
                                                                          output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


# ------------------------------------------------------------------------------------------------------------------
# Windows model
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WINDOWS)
def test_windows_ignores_padding_windows(tiny, name):
    """A document alone, with an extra all-padding window, and in a batch padded to more windows and longer windows:
    same logits; one prediction per document."""
    model = make_model(tiny, name).eval()
    tokenizer = tiny[1]
    doc = [TEXTS[0], SHORT_TEXT]
    with torch.no_grad():
        alone = model(**windowed(tokenizer, [doc])).logits
        assert alone.shape == (1, len(LABELS))
        extra = model(**windowed(tokenizer, [doc], n_windows=3)).logits
        batch = model(**windowed(tokenizer, [[TEXTS[2]] * 4, doc], window_len=20)).logits
    assert batch.shape == (2, len(LABELS))
    torch.testing.assert_close(extra, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", WINDOWS)
def test_windows_accepts_2d_input(tiny, name):
    model = make_model(tiny, name).eval()
    inputs = encode(tiny[1], TEXTS)  # [3, L]: one window per document
    with torch.no_grad():
        flat = model(**inputs).logits
        one_window = model(**{k: v.unsqueeze(1) for k, v in inputs.items()}).logits  # [3, 1, L]
    assert flat.shape == (3, len(LABELS))
    torch.testing.assert_close(flat, one_window)


def test_windows_rejects_4d_input(tiny):
    model = make_model(tiny, "windows-max")
    with pytest.raises(ValueError, match="n_windows"):
        model(input_ids=torch.ones(1, 1, 1, 4, dtype=torch.long))


# ------------------------------------------------------------------------------------------------------------------
# head_config API
# ------------------------------------------------------------------------------------------------------------------


def test_linear_pooler_is_bert_for_sequence_classification(tiny):
    model = build_model("linear", config=tiny[2], pooling="pooler", num_labels=4)
    assert type(model) is BertForSequenceClassification and model.config.num_labels == 4
    assert type(heads.head_config("linear", tiny[2])) is BertConfig  # pooling defaults to "pooler"


def test_head_config_from_path_and_registration(tiny):
    config = heads.head_config("cnn", str(tiny[0]), cnn_num_filters=16, cnn_filter_sizes=None)
    assert type(config) is heads.BertCNNConfig and config.model_type == "bert_cnn"
    assert config.cnn_num_filters == 16 and config.cnn_filter_sizes == (2, 3, 4)  # None = the default
    assert config.hidden_size == tiny[2].hidden_size
    for config_class, _ in heads.HEADS.values():
        assert type(AutoConfig.for_model(config_class.model_type)) is config_class


def test_head_config_keeps_a_trained_head(saved):
    config = AutoConfig.from_pretrained(str(saved[0] / "lstm"))
    assert heads.head_of(config) == ("lstm", None)
    kept = heads.head_config(None, config, pooling="pooler")  # the script's defaults: no head given
    assert type(kept) is heads.BertLSTMConfig and kept.rnn_num_layers == 2
    assert heads.head_config("lstm", config, rnn_dropout=0.1).rnn_hidden_size == 8
    with pytest.raises(ValueError, match="cannot become"):
        heads.head_config("gru", config)
    pooled = AutoConfig.from_pretrained(str(saved[0] / "linear-mean"))
    with pytest.raises(ValueError, match="cannot become"):
        heads.head_config("linear", pooled, pooling="max")


@pytest.mark.parametrize("head, pooling, kwargs, match", [
    ("cnn", "mean", {}, "only applies to head 'linear'"),
    ("linear", "median", {}, "choose one of"),
    ("transformer", None, {}, "choose one of"),
    ("lstm", None, {"cnn_num_filters": 8}, "do not apply to head 'lstm'"),
    ("cnn", None, {"cnn_filter_size": [2]}, "do not apply"),
    ("cnn", None, {"cnn_filter_sizes": []}, "empty"),
    ("windows", None, {"window_fusion": "sum"}, "window_fusion"),
    ("windows", None, {"window_fusion": "transformer", "window_transformer_heads": 5}, "does not divide"),
    ("linear", "concat_last_k", {}, "pooling_last_k=4 > num_hidden_layers=2"),
])
def test_head_config_errors(tiny, head, pooling, kwargs, match):
    with pytest.raises(ValueError, match=match):
        heads.head_config(head, tiny[2], pooling=pooling, **kwargs)


def test_num_labels_overrides_the_config_labels(tiny):
    config = heads.head_config("attention", tiny[2], num_labels=5)
    config = heads.head_config("attention", config, num_labels=3)
    assert config.num_labels == 3 and len(config.id2label) == 3


def test_head_none_keeps_or_picks_linear(tiny):
    assert type(heads.head_config(None, tiny[2])) is BertConfig
    assert heads.head_config(None, tiny[2], pooling="max").pooling == "max"
    with pytest.raises(ValueError, match="only applies to head 'linear'"):
        heads.head_config(None, heads.head_config("gru", tiny[2]), pooling="mean")
