#!/usr/bin/env python
"""Export a classification model saved by run_classification.py (any head) to ONNX, check it against PyTorch, and
time ONNX Runtime against PyTorch on the CPU.

    python export_onnx.py --model outputs/thucnews                       # -> outputs/thucnews/onnx/model.onnx
    python export_onnx.py --model outputs/thucnews --texts data/dev.txt  # parity and timing on your own texts
    python predict.py --model outputs/thucnews --onnx auto "国足今晚迎战日本"   # predict with ONNX Runtime

The ONNX graph takes input_ids, attention_mask, token_type_ids of shape [batch, sequence] (windows head:
[batch, windows, sequence]) with every axis dynamic, and returns logits [batch, num_labels]. Texts are encoded as in
training by predict.py's ClassificationPredictor (truncation strategy, sentence pairs, sliding windows from
config.json).

Parity: the same texts through PyTorch and ONNX Runtime in batches of 1, 3 and all of them (different padding) with
the maximum absolute logit difference reported; above --atol (default 1e-4) the script fails (exit status 1).
Timing: median milliseconds per batch of 1 and of --timing_batch_size texts, PyTorch fp32 vs ONNX Runtime, same
number of threads. A report goes to onnx/export_report.json next to the model.

LSTM/GRU heads: their packed sequences (pack_padded_sequence) do not export, so the export runs an equivalent without
packing: per layer, the forward direction over the padded batch and the backward direction over each text reversed
within its length, final states read at each text's last real token. Same numbers (the parity check shows it).
"""

import argparse
import json
import logging
import os
import random
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

from script_utils import run_main

logger = logging.getLogger("export_onnx")

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


# ----------------------------------------------------------------------------------------------------------------
# What gets exported: the model as a function of three tensors -> logits
# ----------------------------------------------------------------------------------------------------------------


class LogitsOnly(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                          return_dict=True).logits


def reverse_within_length(x, lengths):
    """x [B, L, ...]: each row's first lengths[b] positions reversed, the padding after them left in place."""
    positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # [1, L]
    source = lengths.unsqueeze(1) - 1 - positions  # [B, L]
    source = torch.where(source >= 0, source, positions.expand_as(source))
    index = source.view(*source.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class UnpackedBiRNN(nn.Module):
    """A bidirectional nn.LSTM/nn.GRU (batch_first) evaluated like its packed form, without packing: the exact
    computation of `rnn(pack_padded_sequence(h, lengths))` for right-padded inputs, in ops ONNX can express."""

    def __init__(self, rnn):
        super().__init__()
        if not (rnn.bidirectional and rnn.batch_first):
            raise ValueError("UnpackedBiRNN handles the heads' bidirectional, batch_first RNNs only.")
        self.is_lstm = isinstance(rnn, nn.LSTM)
        self.hidden_size = rnn.hidden_size
        self.directions = nn.ModuleList()
        for layer in range(rnn.num_layers):
            for suffix in ("", "_reverse"):
                cell = type(rnn)(rnn.input_size if layer == 0 else 2 * rnn.hidden_size, rnn.hidden_size,
                                 batch_first=True, bias=rnn.bias)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    if hasattr(rnn, f"{name}_l{layer}{suffix}"):
                        setattr(cell, f"{name}_l0", getattr(rnn, f"{name}_l{layer}{suffix}"))
                self.directions.append(cell)

    def run(self, cell, x):
        h0 = x.new_zeros((1, x.shape[0], self.hidden_size))  # batch size from the input: stays dynamic in ONNX
        return cell(x, (h0, torch.zeros_like(h0)) if self.is_lstm else h0)[0]

    def forward(self, h, lengths):
        """h [B, L, D], lengths [B] (>= 1) -> the top layer's final (forward, backward) states, [B, 2H]."""
        x = h
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.hidden_size)
        for layer in range(len(self.directions) // 2):
            forward_out = self.run(self.directions[2 * layer], x)  # causal: positions < length never see padding
            backward_rev = self.run(self.directions[2 * layer + 1], reverse_within_length(x, lengths))
            x = torch.cat([forward_out, reverse_within_length(backward_rev, lengths)], dim=-1)
        return torch.cat([forward_out.gather(1, last).squeeze(1), backward_rev.gather(1, last).squeeze(1)], dim=-1)


class RNNHeadLogits(nn.Module):
    """heads' BertLSTM/BertGRUForSequenceClassification with the RNN evaluated by UnpackedBiRNN."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.rnn = UnpackedBiRNN(model.rnn)

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.model.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            return_dict=True).last_hidden_state
        lengths = attention_mask.sum(1).clamp(min=1)
        return self.model.classifier(self.model.dropout(self.rnn(h, lengths)))


def exportable(model):
    if isinstance(getattr(model, "rnn", None), (nn.LSTM, nn.GRU)) and hasattr(model, "classifier"):
        return RNNHeadLogits(model).eval()
    return LogitsOnly(model).eval()


# ----------------------------------------------------------------------------------------------------------------
# Texts for the parity check and the timing
# ----------------------------------------------------------------------------------------------------------------


def vocab_texts(tokenizer, n=24, seed=0, max_chars=None):
    """Texts made of the model's own vocabulary (so they are not all [UNK]): n texts of varied lengths, the last ones
    longer than the model's window so truncation / sliding windows take part."""
    special = set(tokenizer.all_special_tokens)
    pieces = [t for t in tokenizer.get_vocab() if t not in special and not t.startswith("##")
              and not (t.startswith("[") and t.endswith("]"))]
    cjk = [t for t in pieces if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    pool, joiner = (cjk, "") if len(cjk) >= 20 else (pieces, " ")
    pool = sorted(pool)
    rng = random.Random(seed)
    lengths = [rng.randint(2, 40) for _ in range(n - 2)] + [max_chars or 300, (max_chars or 300) // 2 + 7]
    return [joiner.join(rng.choice(pool) for _ in range(k)) for k in lengths]


def records_for(predictor, texts):
    if predictor.is_pair:
        return [{"text": a, "text_pair": b} for a, b in zip(texts, texts[1:] + texts[:1])]
    return [{"text": t} for t in texts]


# ----------------------------------------------------------------------------------------------------------------
# Export, parity, timing
# ----------------------------------------------------------------------------------------------------------------


def export(predictor, path, opset=17):
    """Trace the model on a padded batch and write the ONNX file with every axis dynamic."""
    model = exportable(predictor.model)
    texts = vocab_texts(predictor.tokenizer, n=4, seed=1)
    records = records_for(predictor, [texts[0][:1]] + texts[1:])
    for key in predictor.fields:  # the first example is one character (per text): shorter than the others
        records[0][key] = records[0][key][:1]
    # A batch WITH padding (and, for windows, a document with fewer windows): a trace of an unpadded batch could
    # take the "no padding" shortcut of the attention mask and bake it into the graph.
    features, _ = predictor.encode(records)
    batch = predictor.collate(features)
    if not (batch["attention_mask"] == 0).any():
        raise RuntimeError("the tracing batch has no padding")
    axes = {0: "batch", 1: "windows", 2: "sequence"} if predictor.windows else {0: "batch", 1: "sequence"}
    dynamic_axes = {name: dict(axes) for name in INPUT_NAMES}
    dynamic_axes["logits"] = {0: "batch"}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph; the parity check decides
        torch.onnx.export(model, tuple(batch[name] for name in INPUT_NAMES), path, input_names=list(INPUT_NAMES),
                          output_names=["logits"], dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    return {"path": path, "opset": opset, "inputs": list(INPUT_NAMES), "dynamic_axes": dynamic_axes,
            "size_mb": round(os.path.getsize(path) / 2 ** 20, 2)}


def parity(torch_predictor, onnx_predictor, records, batch_sizes=(1, 3, None)):
    """Max |logit difference| between PyTorch and ONNX Runtime over the records, batched several ways."""
    worst, argmax_agree, n = 0.0, True, 0
    for size in batch_sizes:
        size = size or len(records)
        reference, _ = torch_predictor.logits(records, batch_size=size)
        got, _ = onnx_predictor.logits(records, batch_size=size)
        worst = max(worst, float(np.abs(reference - got).max()))
        argmax_agree &= bool((reference.argmax(-1) == got.argmax(-1)).all())
        n += len(records)
    return {"max_abs_logit_diff": worst, "same_predictions": argmax_agree, "texts": len(records),
            "batch_sizes": [s or len(records) for s in batch_sizes]}


def time_backends(torch_predictor, onnx_predictor, records, batch_size, repeats=20, warmup=3):
    """Median ms per batch for one padded batch of `batch_size` records (and for a single record)."""
    rows = []
    for size in sorted({1, batch_size}):
        chosen = (records * (size // len(records) + 1))[:size]
        features, _ = torch_predictor.encode(chosen)
        batch = torch_predictor.collate(features)
        row = {"batch_size": size, "tokens_per_text": round(float(batch["attention_mask"].sum()) / size, 1)}
        for name, predictor in (("pytorch", torch_predictor), ("onnxruntime", onnx_predictor)):
            for _ in range(warmup):
                predictor.forward(batch)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                predictor.forward(batch)
                times.append(time.perf_counter() - start)
            row[f"{name}_ms"] = round(1000 * float(np.median(times)), 3)
            row[f"{name}_texts_per_s"] = round(size / float(np.median(times)), 1)
        row["speedup"] = round(row["pytorch_ms"] / row["onnxruntime_ms"], 2)
        rows.append(row)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A model directory saved by run_classification.py.")
    parser.add_argument("--output", help="The ONNX file (default MODEL/onnx/model.onnx).")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--texts", help="Texts for the parity check and timing: TSV/TXT or JSON lines, as predict.py "
                        "reads them (default: texts drawn from the model's vocabulary).")
    parser.add_argument("--max_texts", type=int, default=256, help="Use at most this many texts from --texts.")
    parser.add_argument("--atol", type=float, default=1e-4, help="Largest allowed |logit difference|.")
    parser.add_argument("--no_timing", action="store_true")
    parser.add_argument("--timing_batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20, help="Timed runs per backend and batch size.")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both backends (default torch's).")
    parser.add_argument("--trust_remote_code", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    import onnxruntime
    from transformers.utils import logging as hf_logging

    from predict import ClassificationPredictor, load_predictor, predictable, read_records

    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO, stream=sys.stderr)
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or torch.get_num_threads()
    predictor = load_predictor(args.model, device="cpu", trust_remote_code=args.trust_remote_code)
    if not isinstance(predictor, ClassificationPredictor):
        raise ValueError(f"{args.model} is a {predictor.task} model; export_onnx.py exports classification models.")
    path = args.output or os.path.join(args.model, "onnx", "model.onnx")
    start = time.perf_counter()
    info = export(predictor, path, args.opset)
    info["seconds"] = round(time.perf_counter() - start, 2)
    logger.info(f"Exported {type(predictor.model).__name__} to {path} ({info['size_mb']} MB, opset {args.opset}, "
                f"{info['seconds']} s)")

    onnx_predictor = ClassificationPredictor(args.model, config=predictor.config, tokenizer=predictor.tokenizer,
                                             onnx_path=path, threads=threads)
    if args.texts:
        records = predictable(read_records(args.texts, predictor.fields, predictor.aliases))[:args.max_texts]
    else:
        records = records_for(predictor, vocab_texts(predictor.tokenizer, max_chars=2 * predictor.max_seq_length))
    check = parity(predictor, onnx_predictor, records)
    check["atol"] = args.atol
    check["ok"] = check["max_abs_logit_diff"] <= args.atol
    logger.info(f"Parity on {check['texts']} texts (batches of {check['batch_sizes']}): max |logit difference| "
                f"{check['max_abs_logit_diff']:.3g} (atol {args.atol:g}), same predictions: "
                f"{check['same_predictions']}")
    report = {"model": os.path.abspath(args.model), "architecture": type(predictor.model).__name__, "onnx": info,
              "parity": check, "threads": threads, "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__}
    if not args.no_timing:
        report["timing"] = time_backends(predictor, onnx_predictor, records, args.timing_batch_size, args.repeats)
        print(f"\n{'batch':>5} {'tokens/text':>11} {'PyTorch ms':>11} {'ORT ms':>9} {'speedup':>8}")
        for row in report["timing"]:
            print(f"{row['batch_size']:>5} {row['tokens_per_text']:>11} {row['pytorch_ms']:>11.2f} "
                  f"{row['onnxruntime_ms']:>9.2f} {row['speedup']:>7.2f}x")
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), "export_report.json"), "w",
              encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    if not check["ok"]:
        print(f"error: ONNX and PyTorch logits differ by up to {check['max_abs_logit_diff']:.3g} > --atol "
              f"{args.atol:g}.", file=sys.stderr)
        sys.exit(1)
    return report


if __name__ == "__main__":
    run_main(main)
