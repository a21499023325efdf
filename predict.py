#!/usr/bin/env python
"""Predict with a model directory saved by the recipe's scripts: the task and the way texts were encoded in training
are read from its config.json, so predictions here match the scripts' own evaluation.

    python predict.py --model outputs/thucnews "国足今晚迎战日本"                 # one text (or several)
    cat texts.txt | python predict.py --model outputs/thucnews                  # stdin, one text per line
    python predict.py --model outputs/thucnews --input data/test.txt --top_k 3 --output predictions.jsonl
    python predict.py --model outputs/afqmc "蚂蚁借呗怎么还款" "借呗如何还钱"      # a sentence-pair model: texts in pairs
    python predict.py --model outputs/cluener "李华在北京大学读书。"                # NER: entities with offsets
    python predict.py --model outputs/cmrc "北京大学在哪里？" "北京大学在北京市海淀区。"   # QA: question, context

Input: texts as arguments; stdin (one per line; a line may also be a JSON object or `text<TAB>...`); or --input FILE,
TSV/TXT (the text in the first column, or the columns the model was trained on when the file has a header; further
columns such as a label are ignored) or JSON lines ({"text": ...}, or the model's own text column names, e.g.
sentence1/sentence2). An "id" field and a label column are copied to the output (as "id" and "true_label").

Output: JSON lines, one per input in input order, e.g.
    {"line": 1, "text": "...", "label": "体育", "score": 0.97, "top_k": [{"label": "体育", "score": 0.97}, ...],
     "truncated": false}
"line" (input from a file or stdin) is the input line; a blank line is not predicted but keeps its record,
{"line": 2, "text": "", "skipped": "blank line"}, so the output lines up with the input. Input must be UTF-8 (a GBK
file or pipe is an error naming the line and the iconv command that converts it).

Tasks (from config.json):
  * text classification (config.text_classification, saved by run_classification.py): max_seq_length, truncation
    strategy head / tail / head+tail, sentence pairs trimmed longest-first, and for --head windows the same sliding
    windows as in training; batches are sorted by length and padded per batch (dynamic padding).
  * NER (config.token_classification, run_ner.py): one sentence per line or JSON lines {"text"}; output
    {"text", "entities": [{"text", "type", "start", "end"}]}, character offsets in the text (end exclusive); long
    sentences in overlapping chunks merged back, CRF heads decoded with Viterbi, exactly as run_ner.py predicts.
  * QA (config.question_answering, run_qa.py): JSON lines {"question", "context"} (or a SQuAD/CMRC2018 .json file,
    or question and context as two arguments); output {"question", "answer", "start", "end", "score", "n_best"};
    long contexts in windows (doc_stride) as run_qa.py does, answers searched over all windows.

Backends: PyTorch (default; --bf16 for CPU/GPU autocast) or ONNX Runtime (--onnx FILE, from export_onnx.py; the
pre- and post-processing are the same code). The Python API is the same: `ClassificationPredictor(model_dir)
.predict(records)`, used by bench/predict_throughput.py.
"""

import argparse
import io
import json
import logging
import os
import sys
import time

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer, DataCollatorWithPadding

import utils_ner
import utils_qa
from script_utils import DataError, decoded_lines, run_main
from training import cpu_bf16_is_fast
from utils_classification import DEFAULT_TEXT_COLUMNS, ClassificationEncoder, ClassificationSettings, WindowCollator

logger = logging.getLogger("predict")


def cpu_precision(precision, device):
    """bf16 only where the CPU computes it fast (see training.cpu_bf16_is_fast); fp32 otherwise, with a warning."""
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_is_fast():
        logger.warning("--bf16 ignored, running in fp32: this CPU has no bf16 matrix instructions (AVX512-BF16/AMX), "
                       "so bf16 would be 10-100x slower than fp32 here.")
        return "fp32"
    return precision


# Where a trained model's config keeps the encoding settings its script used; the key decides the task.
TASK_SETTINGS = {
    "text_classification": "text-classification",
    "token_classification": "token-classification",
    "question_answering": "question-answering",
}
ARCHITECTURE_SUFFIXES = {
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "ForQuestionAnswering": "question-answering",
}


def detect_task(config):
    """The task of a saved model: from the settings its training script saved, else from its architecture."""
    for key, task in TASK_SETTINGS.items():
        if getattr(config, key, None):
            return task
    for architecture in getattr(config, "architectures", None) or []:
        for suffix, task in ARCHITECTURE_SUFFIXES.items():
            if architecture.endswith(suffix):
                return task
    raise ValueError(f"Cannot tell the task of this model (architectures {getattr(config, 'architectures', None)}, "
                     f"no {'/'.join(TASK_SETTINGS)} settings in config.json): predict.py serves models trained by "
                     f"run_classification.py, run_ner.py and run_qa.py.")


# ----------------------------------------------------------------------------------------------------------------
# Reading inputs: records (dicts) from arguments, stdin or a file
# ----------------------------------------------------------------------------------------------------------------

PASSTHROUGH = {"id": "id", "label": "true_label"}


def records_from_texts(texts, fields):
    """Positional texts -> records; a model with two text fields takes them two at a time."""
    n = len(fields)
    if len(texts) % n:
        raise DataError(f"this model reads {n} texts per example ({', '.join(fields)}): give the texts in "
                        f"{'pairs' if n == 2 else 'groups of ' + str(n)}; got {len(texts)}.")
    return [dict(zip(fields, texts[i:i + n])) for i in range(0, len(texts), n)]


def record_from_json(text, fields, where, aliases=()):
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg}); each line must be one JSON object.")
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a JSON object; write {{\"{fields[0]}\": ...}} per line.")
    for names in [fields] + [list(a) for a in aliases]:
        if all(k in obj for k in names):
            record = {f: str(obj[k]) for f, k in zip(fields, names)}
            break
    else:
        raise DataError(f"{where}: no {' + '.join(repr(f) for f in fields)} field (the keys are {sorted(obj)}).")
    record.update({out: obj[key] for key, out in PASSTHROUGH.items() if key in obj})
    return record


def read_records(path, fields, aliases=(), stream=None):
    """Records from a TSV/TXT or JSON-lines file (or, with `stream`, a binary stream such as stdin's, each line a
    JSON object or TSV), one per input line: each has the input's "line" number, and a blank line gives a record
    {"line": N, "skipped": "blank line"} (no prediction), so outputs match inputs line by line. Input that is not
    UTF-8 is an error naming the line and the iconv command that converts it."""
    where_prefix = path if stream is None else "<stdin>"
    is_json = stream is None and os.path.splitext(path)[1].lower() in (".json", ".jsonl")
    records, header = [], None
    for line_no, line in decoded_lines(where_prefix, stream):
        where = f"{where_prefix}:{line_no}"
        if not line.strip():
            records.append({"line": line_no, "skipped": "blank line"})
            continue
        if is_json or (stream is not None and line.lstrip().startswith("{")):
            record = record_from_json(line, fields, where, aliases)
        else:
            cells = line.split("\t")
            if header is None and line_no == 1 and stream is None:
                names = {f for f in fields} | {n for a in aliases for n in a} | {"label"}
                if any(c.strip() in names for c in cells):
                    header = [c.strip() for c in cells]
                    missing = [f for f in fields if f not in header]
                    if missing:
                        raise DataError(f"{where}: the header {header} lacks {missing}; the model reads {fields}.")
                    continue
            if header is not None:
                if len(cells) != len(header):
                    raise DataError(f"{where}: {len(cells)} tab-separated columns, the header has {len(header)}.")
                row = dict(zip(header, cells))
                record = {f: row[f] for f in fields}
                record.update({out: row[key] for key, out in PASSTHROUGH.items() if key in row})
            else:
                if len(cells) < len(fields):
                    raise DataError(f"{where}: {len(cells)} column(s); this model reads {len(fields)} tab-separated "
                                    f"texts ({'<TAB>'.join(fields)}) per line.")
                record = dict(zip(fields, cells))
                if len(cells) == len(fields) + 1 and stream is None:
                    record["true_label"] = cells[-1]  # THUCNews style: text<TAB>label
        if any(not record[f].strip() for f in fields):
            raise DataError(f"{where}: empty text.")
        records.append({"line": line_no, **record})
    return records


def predictable(records):
    """The records to predict: without the placeholders read_records writes for blank lines."""
    return [r for r in records if "skipped" not in r]


# ----------------------------------------------------------------------------------------------------------------
# Text classification
# ----------------------------------------------------------------------------------------------------------------


class ClassificationPredictor:
    """A run_classification.py model: texts encoded exactly as the script encodes them (its own functions), batches
    sorted by length and padded per batch, logits from PyTorch (fp32, or bf16/fp16 autocast) or ONNX Runtime.

    predict(records) -> [{"text", ["text_pair"], "label", "score", "top_k": [{"label", "score"}], "truncated"}]
    """

    task = "text-classification"

    def __init__(self, model_dir, config=None, tokenizer=None, device=None, precision="fp32", onnx_path=None,
                 trust_remote_code=False, threads=None):
        import heads  # noqa: F401  registers the custom heads with the Auto classes (no trust_remote_code needed)

        self.config = config or AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
        if not ClassificationSettings.saved_in(self.config):
            logger.warning(f"{model_dir}: no text_classification settings in config.json (not trained by "
                           f"run_classification.py?): head truncation to the model's length.")
        self.settings = settings = ClassificationSettings.of_model(self.config)
        self.text_columns = settings.text_columns
        self.is_pair = len(self.text_columns) == 2
        self.fields = ["text", "text_pair"][:len(self.text_columns)]
        # JSON inputs may use the training column names, or the usual ones
        self.aliases = [self.text_columns] + [list(g) for g in DEFAULT_TEXT_COLUMNS if len(g) == len(self.fields)]
        self.max_seq_length, self.truncation_strategy = settings.max_seq_length, settings.truncation_strategy
        self.head_tokens, self.window_stride, self.max_windows = (settings.head_tokens, settings.window_stride,
                                                                  settings.max_windows)
        self.windows = self.config.model_type == "bert_windows"
        self.encoder = ClassificationEncoder(self.tokenizer, settings, windows=self.windows)
        # batches padded as run_classification.py pads them
        self.collator = WindowCollator(self.tokenizer.pad_token_id) if self.windows else DataCollatorWithPadding(
            self.tokenizer)
        self.id2label = {int(k): v for k, v in self.config.id2label.items()}
        self.precision = precision
        self.onnx_path = onnx_path
        if onnx_path:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
            self.onnx_inputs = {i.name for i in self.session.get_inputs()}
            self.model = None
            self.device = torch.device("cpu")
        else:
            from transformers import AutoModelForSequenceClassification

            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, config=self.config, trust_remote_code=trust_remote_code).to(self.device).eval()
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision {precision!r}: fp32, bf16 or fp16.")
        if precision == "fp16" and self.device.type == "cpu":
            raise ValueError("fp16 on a CPU is about 100x slower than fp32; use bf16.")
        self.precision = precision = cpu_precision(precision, self.device)
        if precision != "fp32" and onnx_path:
            raise ValueError("--bf16/--fp16 apply to PyTorch; the ONNX model runs as exported (fp32).")

    # ---- encoding and padding: utils_classification's, as in training ----
    def encode(self, records):
        """-> list of features {"input_ids", "token_type_ids"} (windows: "input_ids" is a list of windows) and the
        truncated flags. The same ids, in the same order, as run_classification.py gives the model."""
        columns = self.encoder({column: [r[f] for r in records] for column, f in zip(self.text_columns, self.fields)})
        keys = ["input_ids"] if self.windows else ["input_ids", "token_type_ids"]
        return [{k: columns[k][i] for k in keys} for i in range(len(records))], columns["truncated"]

    def collate(self, features):
        """Pad a batch to its own longest example (windows: to its most windows and longest window)."""
        return self.collator(features)

    def forward(self, batch):
        """Logits [batch, num_labels] as float32 numpy."""
        if self.model is None:
            feeds = {k: v.numpy() for k, v in batch.items() if k in self.onnx_inputs}
            return self.session.run(["logits"], feeds)[0].astype(np.float32)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            if self.precision == "fp32":
                logits = self.model(**batch).logits
            else:
                dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    logits = self.model(**batch).logits
        return logits.float().cpu().numpy()

    def logits(self, records, batch_size=32):
        """Logits for every record, in input order; batches of similar length (little padding)."""
        features, truncated = self.encode(records)
        sizes = [sum(len(w) for w in f["input_ids"]) if self.windows else len(f["input_ids"]) for f in features]
        order = np.argsort(sizes, kind="stable")
        out = np.zeros((len(features), len(self.id2label)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self.forward(self.collate([features[i] for i in idx]))
        return out, truncated

    def predict(self, records, batch_size=32, top_k=1):
        if records and isinstance(records[0], str):
            records = [{"text": r} for r in records]
        if not records:
            return []
        logits, truncated = self.logits(records, batch_size)
        probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        k = len(self.id2label) if top_k is None or top_k <= 0 else min(top_k, len(self.id2label))
        results = []
        for record, p, cut in zip(records, probs, truncated):
            best = np.argsort(-p, kind="stable")[:k]
            out = {key: record[key] for key in ("id",) if key in record}
            out.update({f: record[f] for f in self.fields})
            out.update(label=self.id2label[int(best[0])], score=round(float(p[best[0]]), 6),
                       top_k=[{"label": self.id2label[int(j)], "score": round(float(p[j]), 6)} for j in best],
                       truncated=bool(cut))
            if "true_label" in record:
                out["true_label"] = record["true_label"]
            results.append(out)
        return results


# ----------------------------------------------------------------------------------------------------------------
# NER and QA. A predictor class takes (model_dir, config=, tokenizer=, device=, precision=, onnx_path=,
# trust_remote_code=, threads=), has `fields` (the record keys it reads, e.g. ["text"] or ["question", "context"]),
# `aliases` (other accepted key lists) and predict(records, batch_size, top_k) -> one dict per record. They encode
# and decode with the training scripts' own functions, so predictions equal the scripts' --do_predict.
# ----------------------------------------------------------------------------------------------------------------


class _TorchPredictor:
    """Shared: model loading, precision, batches sorted by length and padded per batch."""

    auto_class = None

    def _load(self, model_dir, config, tokenizer, device, precision, onnx_path, trust_remote_code):
        import transformers

        import heads  # noqa: F401  custom heads without trust_remote_code

        if onnx_path:
            raise ValueError("--onnx: export_onnx.py exports classification models; run this model with PyTorch.")
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision {precision!r}: fp32, bf16 or fp16.")
        self.config = config or AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision == "fp16" and self.device.type == "cpu":
            raise ValueError("fp16 on a CPU is about 100x slower than fp32; use bf16.")
        self.precision = cpu_precision(precision, self.device)
        self.model = getattr(transformers, self.auto_class).from_pretrained(
            model_dir, config=self.config, trust_remote_code=trust_remote_code).to(self.device).eval()

    def run(self, features, keys, batch_size):
        """features: {key: [list per example]} -> list of output tuples (numpy, unpadded) per example."""
        lengths = [len(x) for x in features["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        collator = DataCollatorWithPadding(self.tokenizer)  # as the scripts pad
        outputs = [None] * len(lengths)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = collator([{key: features[key][i] for key in keys} for i in idx])
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with torch.inference_mode():
                if self.precision == "fp32":
                    out = self.model(**batch)
                else:
                    dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
                    with torch.autocast(device_type=self.device.type, dtype=dtype):
                        out = self.model(**batch)
            tensors = self.outputs_of(out)
            for row, i in enumerate(idx):
                outputs[i] = tuple(t[row, :lengths[i]].float().cpu().numpy() for t in tensors)
        return outputs


class TokenClassificationPredictor(_TorchPredictor):
    """NER (run_ner.py): fields ["text"]; output {"text", "entities": [{"text", "type", "start", "end"}]} with
    character offsets in the input (end exclusive). As run_ner.py does it: each character tokenized on its own,
    sentences longer than config.token_classification["max_seq_length"] cut into chunks every "chunk_stride" tokens
    and merged back, one decoding per sentence (Viterbi with the CRF heads' transitions)."""

    task = "token-classification"
    auto_class = "AutoModelForTokenClassification"

    def __init__(self, model_dir, config=None, tokenizer=None, device=None, precision="fp32", onnx_path=None,
                 trust_remote_code=False, threads=None):
        self._load(model_dir, config, tokenizer, device, precision, onnx_path, trust_remote_code)
        self.settings = utils_ner.NERSettings.of_model(self.config)
        self.label_list = [self.config.id2label[i] for i in range(self.config.num_labels)]
        self.fields, self.aliases = ["text"], [["sentence"]]
        self.id2label = {}  # top_k does not apply

    def outputs_of(self, out):
        return (out.logits,)

    def predict(self, records, batch_size=32, top_k=None):
        if records and isinstance(records[0], str):
            records = [{"text": r} for r in records]
        s = self.settings
        sentences = [utils_ner.Sentence(line=i + 1, units=list(r["text"]), id=r.get("id"))
                     for i, r in enumerate(records)]
        budget = s.max_seq_length - 2
        columns, meta, unit_offsets, _ = utils_ner.encode_split(
            sentences, utils_ner.CharTokenizer(self.tokenizer, budget), self.tokenizer, None, s.label_scheme, budget,
            s.chunk_stride, s.label_all_tokens)
        scores = self.run(columns, ("input_ids", "attention_mask"), batch_size)
        width = max(len(x) for x in columns["input_ids"])
        predictions = np.zeros((len(scores), width, len(self.label_list)), dtype=np.float32)
        for k, (logits,) in enumerate(scores):
            predictions[k, :len(logits)] = logits
        merged = utils_ner.merge_chunks(predictions, meta, unit_offsets)
        tags = utils_ner.decode_sentences(self.model, merged, unit_offsets, self.label_list, s.label_scheme,
                                          s.label_all_tokens)
        results = []
        for record, sentence, sentence_tags in zip(records, sentences, tags):
            out = {"id": record["id"]} if "id" in record else {}
            out.update(text=record["text"],
                       entities=utils_ner.entity_dicts(sentence, sentence_tags, s.label_scheme, False))
            results.append(out)
        return results


class QuestionAnsweringPredictor(_TorchPredictor):
    """Extractive QA (run_qa.py): fields ["question", "context"]; output {"question", "answer", "start", "end",
    "score", "n_best"} with character offsets in the context. Windows over long contexts and the answer search as
    config.question_answering says (max_seq_length, doc_stride, max_query_length, max_answer_length,
    version_2_with_negative), with utils_qa's window and post-processing functions, as run_qa.py."""

    task = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"

    def __init__(self, model_dir, config=None, tokenizer=None, device=None, precision="fp32", onnx_path=None,
                 trust_remote_code=False, threads=None, n_best_size=20, null_score_diff_threshold=0.0):
        self._load(model_dir, config, tokenizer, device, precision, onnx_path, trust_remote_code)
        self.settings = utils_qa.QASettings(**utils_qa.QASettings.saved_in(self.config))
        self.n_best_size, self.null_score_diff_threshold = n_best_size, null_score_diff_threshold
        self.fields, self.aliases = ["question", "context"], []
        self.id2label = {}

    def outputs_of(self, out):
        return out.start_logits, out.end_logits

    def encode(self, questions, contexts):
        """run_qa.py's windows: [CLS] question [SEP] context window [SEP], context characters per position."""
        context_type = 1 if getattr(self.config, "type_vocab_size", 2) > 1 else 0
        return utils_qa.encode_windows({"question": questions, "context": contexts}, range(len(questions)),
                                       self.tokenizer, self.settings, context_type)

    def read_input(self, path):
        """SQuAD/CMRC2018-style JSON or JSON lines, as run_qa.py reads its test files."""
        examples = utils_qa.read_qa_file(path, "test", self.settings.version_2_with_negative)[0]
        return [{"id": e["id"], "question": e["question"], "context": e["context"]} for e in examples]

    def predict(self, records, batch_size=32, top_k=None):
        ids = [str(r.get("id", i)) for i, r in enumerate(records)]
        if len(set(ids)) != len(ids):
            raise DataError("question ids must be unique.")
        features = self.encode([r["question"] for r in records], [r["context"] for r in records])
        logits = self.run(features, ("input_ids", "token_type_ids", "attention_mask"), batch_size)
        s = self.settings
        predictions, nbest, null_odds = utils_qa.postprocess_predictions(
            {"id": ids, "context": [r["context"] for r in records]}, features, [x[0] for x in logits],
            [x[1] for x in logits], n_best_size=self.n_best_size, max_answer_length=s.max_answer_length,
            version_2=s.version_2_with_negative, null_score_diff_threshold=self.null_score_diff_threshold)
        k = top_k if top_k and top_k > 0 else 5
        results = []
        for qid, record in zip(ids, records):
            answer = predictions[qid]
            best = next((c for c in nbest[qid] if c["text"] == answer), None)
            start = best["answer_start"] if best and answer else -1
            out = {"id": record["id"]} if "id" in record else {}
            out.update(question=record["question"], answer=answer, start=start,
                       end=start + len(answer) if start >= 0 else -1,
                       score=round(best["probability"], 6) if best else 0.0,
                       n_best=[{"text": c["text"], "start": c["answer_start"], "score": round(c["probability"], 6)}
                               for c in nbest[qid][:k]])
            results.append(out)
        return results


PREDICTORS = {
    "text-classification": ClassificationPredictor,
    "token-classification": TokenClassificationPredictor,
    "question-answering": QuestionAnsweringPredictor,
}


def load_predictor(model_dir, **kwargs):
    """The predictor for a saved model directory, chosen by its config (see detect_task)."""
    import heads  # noqa: F401  custom heads' configs load without trust_remote_code

    if not os.path.isdir(model_dir):
        raise DataError(f"--model {model_dir}: not a directory; pass a model directory saved by run_classification.py, "
                        f"run_ner.py or run_qa.py (their --output_dir).")
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise DataError(f"--model {model_dir}: not a model directory (no config.json); pass one saved by "
                        f"run_classification.py, run_ner.py or run_qa.py (their --output_dir, or a checkpoint-N "
                        f"folder in it).")
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=kwargs.get("trust_remote_code", False))
    return PREDICTORS[detect_task(config)](model_dir, config=config, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="Texts to predict (a pair model: texts in pairs). None: --input or "
                        "stdin.")
    parser.add_argument("--model", required=True, help="A model directory saved by run_classification.py (or "
                        "run_ner.py / run_qa.py).")
    parser.add_argument("--input", help="TSV/TXT (text in the first column, or a header naming the columns) or JSON "
                        "lines (.json/.jsonl).")
    parser.add_argument("--output", help="Write the JSON lines here instead of stdout.")
    parser.add_argument("--top_k", type=int, default=None, help="Labels (with probabilities) per text; default: all "
                        "for up to 10 labels, else 5. 0 = all.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CPUs with AVX512-BF16/AMX, GPUs "
                        "from Ampere on).")
    parser.add_argument("--fp16", action="store_true", help="float16 autocast (GPU only).")
    parser.add_argument("--onnx", help="Run this ONNX file (export_onnx.py) with ONNX Runtime instead of PyTorch; "
                        "'auto' = MODEL/onnx/model.onnx.")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime).")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="Run custom modeling code from the model directory (not needed for this repo's heads).")
    args = parser.parse_args(argv)
    if args.bf16 and args.fp16:
        parser.error("--bf16 and --fp16: choose one.")
    if args.input and args.texts:
        parser.error("texts as arguments and --input: choose one.")
    if args.batch_size < 1:
        parser.error("--batch_size must be >= 1.")
    return args


def main(argv=None):
    from transformers.utils import logging as hf_logging

    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO, stream=sys.stderr)
    hf_logging.disable_progress_bar()  # stdout is for the JSON lines, stderr for a short log
    if args.threads:
        torch.set_num_threads(args.threads)
    onnx_path = args.onnx
    if onnx_path == "auto":
        onnx_path = os.path.join(args.model, "onnx", "model.onnx")
    if onnx_path and not os.path.isfile(onnx_path):
        raise DataError(f"--onnx {onnx_path}: no such file; export one with python export_onnx.py --model "
                        f"{args.model}.")
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    predictor = load_predictor(args.model, device=args.device, precision=precision, onnx_path=onnx_path,
                               trust_remote_code=args.trust_remote_code, threads=args.threads)
    fields, aliases = predictor.fields, getattr(predictor, "aliases", ())
    if args.texts:
        records = records_from_texts(args.texts, fields)
    elif args.input:
        reader = getattr(predictor, "read_input", None)
        is_json_document = args.input.lower().endswith(".json") and reader is not None
        records = reader(args.input) if is_json_document else read_records(args.input, fields, aliases)
    else:
        if sys.stdin.isatty():
            logger.info("Reading texts from stdin, one per line (Ctrl-D to end).")
        # bytes, decoded here: a GBK pipe is an error naming the line, not undecodable text for the tokenizer
        stdin = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode("utf-8"))
        records = read_records(None, fields, aliases, stream=stdin)
    to_predict = predictable(records)
    if not to_predict:
        raise DataError(f"{args.input or '<stdin>'}: no texts to predict"
                        + (f" ({len(records)} blank lines)." if records else "."))
    skipped = [r["line"] for r in records if "skipped" in r]
    if skipped:
        logger.warning(f"{args.input or '<stdin>'}: {len(skipped)} blank line(s) not predicted (lines "
                       f"{', '.join(map(str, skipped[:20]))}{' ...' if len(skipped) > 20 else ''}); their output "
                       f"records say \"skipped\": \"blank line\", so the output keeps one record per input line.")
    top_k = args.top_k
    if top_k is None:
        top_k = 0 if len(getattr(predictor, "id2label", {})) <= 10 else 5
    start = time.perf_counter()
    predicted = iter(predictor.predict(to_predict, batch_size=args.batch_size, top_k=top_k))
    seconds = time.perf_counter() - start
    results = []
    for record in records:  # input order; every record read from a file or stdin carries its input line number
        if "skipped" in record:
            results.append({"line": record["line"], **{f: "" for f in fields}, "skipped": record["skipped"]})
        else:
            result = next(predicted)
            results.append({"line": record["line"], **result} if "line" in record else result)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for result in results:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
    logger.info(f"{len(to_predict)} predictions in {seconds:.2f} s ({len(to_predict) / max(seconds, 1e-9):.1f} "
                f"texts/s, "
                f"{'ONNX Runtime' if onnx_path else f'PyTorch {precision} on {predictor.device}'})"
                + (f" -> {args.output}" if args.output else ""))
    return results


if __name__ == "__main__":
    run_main(main)
