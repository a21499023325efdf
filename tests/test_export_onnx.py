"""export_onnx.py through main([...]): every classification head exports to ONNX with dynamic batch and sequence
axes, ONNX Runtime gives PyTorch's logits (max |difference| reported and small), the timing table is filled, and
predict.py --onnx gives the PyTorch predictions. Tiny BERTs (32 wide) saved untrained: parity needs no training."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import torch  # noqa: E402

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import export_onnx  # noqa: E402
import heads  # noqa: E402
import predict  # noqa: E402

LABELS = ["体育", "财经", "科技"]
# name -> (head, pooling, head options, encoding settings saved as run_classification.py saves them)
CASES = {
    "linear-pooler": ("linear", "pooler", {}, {}),
    "linear-mean": ("linear", "mean", {}, {"truncation_strategy": "head+tail", "head_tokens": 4}),
    "linear-concat_last_k": ("linear", "concat_last_k", {"pooling_last_k": 2}, {}),
    "cnn": ("cnn", None, {"cnn_filter_sizes": (2, 3), "cnn_num_filters": 8}, {"truncation_strategy": "tail"}),
    "lstm-2-layers": ("lstm", None, {"rnn_hidden_size": 8, "rnn_num_layers": 2}, {}),
    "gru": ("gru", None, {"rnn_hidden_size": 8}, {}),
    "attention": ("attention", None, {}, {}),
    "windows": ("windows", None, {"window_fusion": "attention"}, {"window_stride": 7, "max_windows": 3}),
}


def save_model(directory, model_dir, head, pooling, options, settings, pair=False):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(str(model_dir), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                                        label2id={n: i for i, n in enumerate(LABELS)})
    model = AutoModelForSequenceClassification.from_config(heads.head_config(head, config, pooling=pooling, **options))
    model.config.text_classification = {"max_seq_length": 16, "text_columns": ["sentence1", "sentence2"] if pair
                                        else ["text"], "truncation_strategy": "head", "head_tokens": 4, **settings}
    model.save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(directory))
    return directory


@pytest.mark.parametrize("name", CASES)
def test_export_parity_and_dynamic_axes(name, model_dir, tmp_path):
    directory = save_model(tmp_path / name, model_dir, *CASES[name])
    report = export_onnx.main(["--model", str(directory), "--no_timing"])
    path = directory / "onnx" / "model.onnx"
    assert path.is_file() and report["onnx"]["path"] == str(path)
    parity = report["parity"]
    assert parity["ok"] and parity["same_predictions"]
    assert parity["max_abs_logit_diff"] < 1e-4
    assert parity["batch_sizes"][:2] == [1, 3] and parity["texts"] >= 20  # several batch sizes and lengths
    graph = onnx.load(str(path)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    expected = ["batch", "windows", "sequence"] if name == "windows" else ["batch", "sequence"]
    assert dims == {n: expected for n in ("input_ids", "attention_mask", "token_type_ids")}
    assert [d.dim_param for d in graph.output[0].type.tensor_type.shape.dim][0] == "batch"
    saved = json.loads((directory / "onnx" / "export_report.json").read_text())
    assert saved["parity"]["max_abs_logit_diff"] == parity["max_abs_logit_diff"]


def test_unpacked_rnn_equals_packed_rnn():
    torch.manual_seed(0)
    for rnn in (torch.nn.LSTM(6, 5, num_layers=3, batch_first=True, bidirectional=True),
                torch.nn.GRU(6, 5, num_layers=2, batch_first=True, bidirectional=True)):
        x = torch.randn(4, 9, 6)
        lengths = torch.tensor([9, 1, 5, 3])
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        state = rnn(packed)[1]
        h_n = state[0] if isinstance(state, tuple) else state
        expected = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        got = export_onnx.UnpackedBiRNN(rnn)(x, lengths)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_timing_and_predict_with_onnx_runtime(model_dir, tmp_path):
    directory = save_model(tmp_path / "pair", model_dir, "cnn", None, {"cnn_num_filters": 8}, {}, pair=True)
    texts = tmp_path / "pairs.jsonl"
    h.write_jsonl(texts, [{"sentence1": h.filler_text(3 + i, seed=i), "sentence2": h.filler_text(20 - i, seed=50 + i)}
                          for i in range(12)])
    report = export_onnx.main(["--model", str(directory), "--texts", str(texts), "--repeats", "2",
                               "--timing_batch_size", "8"])
    assert report["parity"]["texts"] == 12 and report["parity"]["ok"]
    assert [row["batch_size"] for row in report["timing"]] == [1, 8]
    for row in report["timing"]:
        assert row["pytorch_ms"] > 0 and row["onnxruntime_ms"] > 0
        assert row["speedup"] == pytest.approx(row["pytorch_ms"] / row["onnxruntime_ms"], rel=0.02)
    with_torch = predict.main(["--model", str(directory), "--input", str(texts), "--top_k", "0"])
    with_onnx = predict.main(["--model", str(directory), "--input", str(texts), "--top_k", "0", "--onnx", "auto"])
    for a, b in zip(with_torch, with_onnx):
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-5


def test_failed_parity_exits_with_an_error(model_dir, tmp_path, capsys):
    directory = save_model(tmp_path / "plain", model_dir, "linear", "pooler", {}, {})
    with pytest.raises(SystemExit) as exit_info:
        export_onnx.main(["--model", str(directory), "--no_timing", "--atol", "-1"])
    assert exit_info.value.code == 1
    assert "ONNX and PyTorch logits differ by up to" in capsys.readouterr().err
