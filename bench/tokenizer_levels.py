#!/usr/bin/env python
"""Character vs word vocabularies: tokens per text, [UNK] rate and token boundaries on the repo's Chinese datasets.

Every vocabulary is trained on the same corpus (data_scripts/build_corpus.py output) and measured on THUCNews titles,
ChnSentiCorp reviews, CLUENER sentences (train and dev) and CMRC2018 trial contexts:

    char-N            data_scripts/train_tokenizer.py --level char (bert-base-chinese's pipeline: one token per
                      Chinese character, WordPiece "##" pieces for Latin words and numbers)
    word-bpe-N        data_scripts/train_tokenizer.py --level word (the default design: BPE over runs of text whose
                      CJK characters are not split apart; all characters in the vocab)
    word-unigram-N    train_tokenizer.py --level word --word_model unigram (the same, with a Unigram model:
                      sentencepiece's algorithm)
    word-jieba-fmm-N  the rejected candidate, built here: the most frequent jieba words of the corpus + every
                      character, as a WordPiece vocab without "##" (inference = forward maximum matching over each
                      run, no jieba at inference)

Measured per tokenizer: vocab size, multi-character tokens, CPU seconds to build, tokens per text (mean / p50 / p99)
on train and dev, [UNK] rate on dev (share of tokens, and share of characters covered by [UNK] tokens: a WordPiece
[UNK] swallows its whole run), on CLUENER dev the share of entity boundaries that fall inside a multi-character token
(run_ner.py tokenizes character by character, so these would only matter for a token-level tagger), and on CMRC2018
trial the answers whose first or last character is inside a token (run_qa.py can then only predict a wider span).

    python bench/tokenizer_levels.py --corpus data/corpus_all.txt --data_dir ../shared/data

Writes bench/results/tokenizer_levels.json and .md (with the command, git commit, machine and library versions).
Unigram training takes minutes of CPU per size; it runs at --unigram_sizes only (default 16000). The whole benchmark
took about 17 minutes on the shared 2-core machine.
"""

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from data_scripts import train_tokenizer  # noqa: E402

DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "tokenizer_levels.json")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", required=True, help="Training text for every vocab (build_corpus.py output).")
    p.add_argument("--data_dir", default="../shared/data",
                   help="Folder with thucnews_titles/, chnsenticorp/, cluener/, cmrc2018/.")
    p.add_argument("--sizes", default="8000,16000,32000", help="Vocab sizes for char, word-bpe and word-jieba-fmm.")
    p.add_argument("--unigram_sizes", default="16000", help="Vocab sizes for word-unigram ('' for none: slow).")
    p.add_argument("--candidates", default="char,word-bpe,word-jieba-fmm,word-unigram",
                   help="Comma-separated subset of the tokenizers to build.")
    p.add_argument("--work_dir", default="/tmp/tokenizer_levels", help="Where the vocab folders go.")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON results (the .md goes next to it).")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------------


def read_data(data_dir):
    """{name: texts} for the token counts, plus CLUENER dev entities and CMRC2018 trial answers."""
    def column(path, index, skip_header=False):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()[1 if skip_header else 0:]
        return [line.split("\t")[index] for line in lines if line.strip()]

    def cluener(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    d = data_dir
    texts = {
        "thucnews_train": column(f"{d}/thucnews_titles/train.txt", 0),
        "thucnews_dev": column(f"{d}/thucnews_titles/dev.txt", 0),
        "chnsenticorp_train": column(f"{d}/chnsenticorp/train.tsv", 1, skip_header=True),
        "chnsenticorp_dev": column(f"{d}/chnsenticorp/dev.tsv", 1, skip_header=True),
    }
    cluener_dev = cluener(f"{d}/cluener/dev.json")
    texts["cluener_train"] = [row["text"] for row in cluener(f"{d}/cluener/train.json")]
    texts["cluener_dev"] = [row["text"] for row in cluener_dev]
    # CLUENER spans are [start, end] with end inclusive.
    entities = [[(s, e + 1) for spans in row.get("label", {}).values() for places in spans.values()
                 for s, e in places] for row in cluener_dev]
    with open(f"{d}/cmrc2018/cmrc2018_trial.json", encoding="utf-8") as f:
        paragraphs = [p for article in json.load(f)["data"] for p in article["paragraphs"]]
    texts["cmrc2018_trial_contexts"] = [p["context"] for p in paragraphs]
    answers = [[(a["answer_start"], a["answer_start"] + len(a["text"])) for a in qa["answers"][:1]
                if p["context"][a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"]]
               for p in paragraphs for qa in p["qas"]]
    answer_paragraph = [i for i, p in enumerate(paragraphs) for _ in p["qas"]]
    return texts, entities, list(zip(answer_paragraph, answers))


def read_corpus(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


# ------------------------------------------------------------------------------------------------------------------
# Tokenizers
# ------------------------------------------------------------------------------------------------------------------


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process (the Rust trainers are threads)
    return usage.ru_utime + usage.ru_stime


def script_tokenizer(corpus, size, out_dir, *level_args):
    """Train with data_scripts/train_tokenizer.py and load the saved folder the way the run scripts do."""
    from transformers import AutoTokenizer

    train_tokenizer.main(["--train_files", corpus, "--output_dir", out_dir, "--vocab_size", str(size), *level_args])
    return AutoTokenizer.from_pretrained(out_dir).backend_tokenizer


def word_normalizer_and_pre_tokenizer():
    from tokenizers import normalizers, pre_tokenizers

    # The same text pipeline as train_tokenizer.py --level word, so only the model differs.
    return (normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=True,
                                       lowercase=True),
            pre_tokenizers.BertPreTokenizer())


def jieba_word_counts(texts):
    """Counts of jieba words (HMM off: dictionary words only) over the pre-tokenized runs of the corpus."""
    import re
    from collections import Counter

    import jieba

    jieba.setLogLevel(logging.WARNING)
    normalizer, pre_tokenizer = word_normalizer_and_pre_tokenizer()
    words, chars = Counter(), set()
    for text in texts:
        text = normalizer.normalize_str(text)
        chars.update(c for c in text if not c.isspace())
        for piece, _ in pre_tokenizer.pre_tokenize_str(text):
            words.update(jieba.lcut(piece, HMM=False) if re.search(r"[\u4e00-\u9fff]", piece) else [piece])
    return words, chars


def jieba_fmm_tokenizer(words, chars, size):
    """Candidate (a): special tokens + every character + the most frequent multi-character jieba words (seen twice
    or more) as a WordPiece vocab with no continuation prefix: greedy longest match over each run of text."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece

    vocab = list(train_tokenizer.SPECIAL_TOKENS) + sorted(chars)
    for word, count in words.most_common():
        if len(vocab) >= size or count < 2:
            break
        if len(word) > 1 and word not in chars:
            vocab.append(word)
    # A run longer than max_input_chars_per_word becomes one [UNK]: 10,000 keeps the corpus' longest (961) whole.
    model = WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", continuing_subword_prefix="",
                      max_input_chars_per_word=10000)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer, tokenizer.pre_tokenizer = word_normalizer_and_pre_tokenizer()
    return tokenizer


# ------------------------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------------------------


def encode(tokenizer, texts):
    return tokenizer.encode_batch(texts, add_special_tokens=False)


def length_stats(encodings, texts):
    n = np.array([len(e.ids) for e in encodings])
    return {"mean": round(float(n.mean()), 2), "p50": float(np.percentile(n, 50)),
            "p99": float(np.percentile(n, 99)), "max": int(n.max()),
            "chars_per_token": round(sum(map(len, texts)) / max(int(n.sum()), 1), 3)}


def unk_stats(encodings, texts, unk_id):
    tokens = sum(len(e.ids) for e in encodings)
    unk_tokens = sum(e.ids.count(unk_id) for e in encodings)
    unk_chars = sum(end - start for e in encodings for i, (start, end) in zip(e.ids, e.offsets) if i == unk_id)
    return {"unk_token_rate": unk_tokens / max(tokens, 1), "unk_char_rate": unk_chars / max(sum(map(len, texts)), 1),
            "texts_with_unk": sum(1 for e in encodings if unk_id in e.ids)}


def inside_token(offsets, position):
    """True if a token spans characters on both sides of `position` (a boundary between position-1 and position)."""
    return any(start < position < end for start, end in offsets)


def boundary_stats(encodings, entities):
    """CLUENER dev: entity boundaries (start and end of each entity) that fall inside a token."""
    boundaries = inside = entities_split = n_entities = 0
    for encoding, spans in zip(encodings, entities):
        for start, end in spans:
            n_entities += 1
            hits = [inside_token(encoding.offsets, b) for b in (start, end)]
            boundaries += 2
            inside += sum(hits)
            entities_split += any(hits)
    return {"entities": n_entities, "boundaries": boundaries, "boundaries_inside_a_token": inside,
            "boundary_inside_rate": inside / max(boundaries, 1),
            "entities_not_on_token_boundaries": entities_split / max(n_entities, 1)}


def answer_stats(encodings, answers):
    """CMRC2018 trial: answers (first gold answer) whose first or last character is inside a token."""
    checked = off = 0
    for paragraph, spans in answers:
        for start, end in spans:
            checked += 1
            offsets = encodings[paragraph].offsets
            off += inside_token(offsets, start) or inside_token(offsets, end)
    return {"answers": checked, "answers_not_on_token_boundaries": off, "rate": off / max(checked, 1)}


def measure(name, tokenizer, texts, entities, answers, build_cpu_s, build_wall_s):
    unk_id = tokenizer.token_to_id("[UNK]")
    vocab = tokenizer.get_vocab()
    learned = [t for t in vocab if t not in train_tokenizer.SPECIAL_TOKENS]
    row = {"name": name, "vocab_size": len(vocab),
           "multi_character_tokens": sum(1 for t in learned if len(t.removeprefix("##")) > 1),
           "chinese_word_tokens": sum(1 for t in learned if sum("\u4e00" <= c <= "\u9fff" for c in t) > 1),
           "build_cpu_seconds": round(build_cpu_s, 1), "build_wall_seconds": round(build_wall_s, 1),
           "tokens_per_text": {}, "unk": {}}
    for split, split_texts in texts.items():
        encodings = encode(tokenizer, split_texts)
        row["tokens_per_text"][split] = length_stats(encodings, split_texts)
        row["unk"][split] = unk_stats(encodings, split_texts, unk_id)
        if split == "cluener_dev":
            row["cluener_dev_entity_boundaries"] = boundary_stats(encodings, entities)
        if split == "cmrc2018_trial_contexts":
            row["cmrc2018_trial_answers"] = answer_stats(encodings, answers)
    example = "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。"
    row["example"] = " ".join(tokenizer.encode(example, add_special_tokens=False).tokens)
    return row


# ------------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------------


def machine_facts():
    import tokenizers
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                                    text=True).stdout.strip())
    except OSError:
        commit, dirty = None, None
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_commit": commit, "git_dirty": dirty, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "load_average_at_start": list(os.getloadavg()),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__}


def markdown(report):
    rows = report["tokenizers"]
    lines = [
        f"Corpus: `{report['corpus']}` ({report['corpus_lines']:,} lines, {report['corpus_chars']:,} characters). "
        f"Command: `{report['command']}`. Commit {report['machine']['git_commit']}"
        f"{' (uncommitted changes)' if report['machine']['git_dirty'] else ''}; {report['machine']['cpu_count']} "
        f"cores (shared; load {report['machine']['load_average_at_start'][0]:.1f} at start), torch "
        f"{report['machine']['torch']}, transformers {report['machine']['transformers']}, tokenizers "
        f"{report['machine']['tokenizers']}; {report['machine']['date']}.",
        "",
        "Tokens per text (no [CLS]/[SEP]), mean / p50 / p99:",
        "",
        "| tokenizer | vocab | tokens of 2+ Chinese chars | THUCNews title train | THUCNews title dev "
        "| ChnSentiCorp train "
        "| ChnSentiCorp dev | CLUENER train | CLUENER dev | CMRC trial context | build CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    splits = ["thucnews_train", "thucnews_dev", "chnsenticorp_train", "chnsenticorp_dev", "cluener_train",
              "cluener_dev", "cmrc2018_trial_contexts"]
    for r in rows:
        cells = [f"{r['tokens_per_text'][s]['mean']:.2f} / {r['tokens_per_text'][s]['p50']:g} / "
                 f"{r['tokens_per_text'][s]['p99']:g}" for s in splits]
        lines.append(f"| {r['name']} | {r['vocab_size']:,} | {r['chinese_word_tokens']:,} | " + " | ".join(cells)
                     + f" | {r['build_cpu_seconds']:g} |")
    lines += [
        "",
        "[UNK] on dev (share of tokens / share of characters covered by [UNK]) and boundaries:",
        "",
        "| tokenizer | THUCNews dev [UNK] | ChnSentiCorp dev [UNK] | CLUENER dev [UNK] | CLUENER dev entity "
        "boundaries inside a token | CLUENER dev entities not on token boundaries | CMRC trial answers not on "
        "token boundaries | example |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        unk = [f"{100 * r['unk'][s]['unk_token_rate']:.3f}% / {100 * r['unk'][s]['unk_char_rate']:.3f}%"
               for s in ("thucnews_dev", "chnsenticorp_dev", "cluener_dev")]
        b, a = r["cluener_dev_entity_boundaries"], r["cmrc2018_trial_answers"]
        lines.append(f"| {r['name']} | " + " | ".join(unk)
                     + f" | {100 * b['boundary_inside_rate']:.1f}% ({b['boundaries_inside_a_token']:,} of "
                     f"{b['boundaries']:,}) | {100 * b['entities_not_on_token_boundaries']:.1f}% | "
                     f"{100 * a['rate']:.1f}% ({a['answers_not_on_token_boundaries']} of {a['answers']}) | "
                     f"{r['example']} |")
    lines += [
        "",
        "build CPU s: CPU seconds of this process (all threads) for train_tokenizer.py's main() (read, train, save, "
        "reload and check) or for building the candidate; word-jieba-fmm segments the corpus with jieba once, charged "
        "to its first size. A character vocab runs out of merges at about 14.1k tokens (16k and 32k differ by a few "
        "tokens: the trainer is not deterministic). [UNK] characters: a WordPiece [UNK] (jieba-fmm) stands for its "
        "whole run of text, a BPE / Unigram [UNK] for one character. Entity boundaries: the start and the end of "
        "every CLUENER dev entity; inside a token = one token covers characters on both sides. run_ner.py tokenizes "
        "character by character, so they do not affect it; run_qa.py can only predict whole tokens.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    unigram_sizes = [int(s) for s in args.unigram_sizes.split(",") if s]
    candidates = [c for c in args.candidates.split(",") if c]
    texts, entities, answers = read_data(args.data_dir)
    corpus = read_corpus(args.corpus)
    report = {"command": "python " + " ".join([os.path.relpath(__file__, REPO)] + (argv or sys.argv[1:])),
              "corpus": args.corpus, "corpus_lines": len(corpus), "corpus_chars": sum(map(len, corpus)),
              "machine": machine_facts(), "tokenizers": []}
    os.makedirs(args.work_dir, exist_ok=True)

    def timed(build):
        cpu, wall = cpu_seconds(), time.time()
        tokenizer = build()
        return tokenizer, cpu_seconds() - cpu, time.time() - wall

    level_args = {"char": ["--level", "char"], "word-bpe": ["--level", "word", "--word_model", "bpe"],
                  "word-unigram": ["--level", "word", "--word_model", "unigram"]}
    plan = []
    for name in ("char", "word-bpe", "word-unigram"):
        if name in candidates:
            for size in unigram_sizes if name == "word-unigram" else sizes:
                plan.append((f"{name}-{size}", lambda name=name, size=size: script_tokenizer(
                    args.corpus, size, os.path.join(args.work_dir, f"{name}-{size}"), *level_args[name])))
    if "word-jieba-fmm" in candidates:
        counted = {}

        def fmm(size):
            if not counted:  # jieba segments the corpus once; its CPU time is charged to the first size
                counted["words"], counted["chars"] = jieba_word_counts(corpus)
            return jieba_fmm_tokenizer(counted["words"], counted["chars"], size)

        plan += [(f"word-jieba-fmm-{size}", lambda size=size: fmm(size)) for size in sizes]

    for name, build in plan:
        tokenizer, cpu_s, wall_s = timed(build)
        row = measure(name, tokenizer, texts, entities, answers, cpu_s, wall_s)
        report["tokenizers"].append(row)
        print(json.dumps({k: row[k] for k in ("name", "vocab_size", "build_cpu_seconds")}
                         | {"title_dev": row["tokens_per_text"]["thucnews_dev"]["mean"]}), flush=True)

    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    with open(os.path.splitext(args.output)[0] + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
