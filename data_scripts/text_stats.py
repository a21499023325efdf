"""Look at a text classification data set before training on it.

For one or more files this reports:

* text length percentiles (50/90/95/98/99/max) in characters, and in tokens
  when --tokenizer points to a local tokenizer folder;
* class balance per file;
* exact duplicate texts inside each file and shared between files (e.g. how
  many dev texts are also in train, with a few examples): shared texts make
  dev/test scores look better than they are;
* a suggested max_seq_length: the --percentile (default 99th) token length
  (character length without --tokenizer) + 2 for [CLS]/[SEP], rounded up to a
  multiple of 8 and capped at 512 (or at the tokenizer's model_max_length);
* optionally a length histogram (--plot FILE.png) and everything as JSON
  (--output_json FILE).

Input formats, chosen by file extension:

* .json / .jsonl: JSON lines, one object per line (default keys "text", "label");
* .csv: comma separated, standard CSV quoting;
* anything else (.tsv, .txt): THUCNews style ``text<TAB>label``, no header.
  Lines are split on tabs by hand, with no quote handling, because Chinese
  text is full of quote characters that a CSV reader would misinterpret.

Columns are picked with --text_column/--label_column: a 0-based index, or a
name when the file has a header (--has_header) or is JSON lines. Use
``--label_column none`` for unlabeled files.

Percentiles use the nearest-rank method: the p-th percentile is the smallest
length such that at least p% of the texts are that long or shorter, so it is
always a length that really occurs.

Example::

    python data_scripts/text_stats.py data/thucnews/train.tsv data/thucnews/dev.tsv data/thucnews/test.tsv \\
        --tokenizer models/bert-base-chinese --plot lengths.png --output_json text_stats.json
"""

import argparse
import csv
import json
import logging
import math
import os
import sys
from collections import Counter

logger = logging.getLogger(__name__)

PERCENTILES = (50, 90, 95, 98, 99)
NUM_SPECIAL_TOKENS = 2  # [CLS] text [SEP]
MAX_MODEL_LENGTH = 512  # BERT position embeddings
NUM_EXAMPLES = 3  # duplicate examples shown per file / file pair


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="TSV/CSV/JSON-lines files, e.g. train.tsv dev.tsv test.tsv.")
    parser.add_argument(
        "--text_column", default=None, help='Index or name of the text column (default: 0, or "text" for JSON).'
    )
    parser.add_argument(
        "--label_column",
        default=None,
        help='Index or name of the label column (default: 1, or "label" for JSON); "none" for no labels.',
    )
    parser.add_argument("--has_header", action="store_true", help="The first line of TSV/CSV files is a header.")
    parser.add_argument("--tokenizer", default=None, help="Local tokenizer folder, for lengths in tokens.")
    parser.add_argument(
        "--percentile", type=float, default=99, help="Length percentile used for the suggested max_seq_length."
    )
    parser.add_argument("--plot", default=None, help="Write a length histogram to this PNG file.")
    parser.add_argument("--output_json", default=None, help="Write every statistic to this JSON file.")
    args = parser.parse_args(argv)
    if not 0 < args.percentile <= 100:
        parser.error(f"--percentile must be in (0, 100], got {args.percentile}")
    return args


def file_format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".json", ".jsonl"):
        return "jsonl"
    if ext == ".csv":
        return "csv"
    return "tsv"


def resolve_column(spec, default, header, fmt, path, option):
    """Turn a --text_column/--label_column value into a list index (TSV/CSV) or a key (JSON)."""
    if spec is None:
        spec = default
    if spec is None or str(spec).lower() == "none":
        return None
    if fmt == "jsonl":
        return str(spec)
    if str(spec).isdigit():
        return int(spec)
    if header is None:
        sys.exit(
            f"error: {path}:1: column name {spec!r} given but the file has no header "
            f"(fix: pass {option} as a 0-based index, or add --has_header)"
        )
    if spec not in header:
        sys.exit(f"error: {path}:1: no column {spec!r} in header {header} (fix: pass {option} with one of them)")
    return header.index(spec)


def read_rows(path, args):
    """Read (text, label) pairs from one file. label is None without a label column."""
    if not os.path.isfile(path):
        sys.exit(f"error: {path}: file not found (fix: check the path)")
    fmt = file_format(path)
    with open(path, encoding="utf-8", newline="") as f:
        try:
            content = f.read()
        except UnicodeDecodeError as e:
            sys.exit(f"error: {path}: not valid UTF-8 at byte {e.start} (fix: convert the file to UTF-8)")

    # Split on "\n" (not str.splitlines, which also breaks on U+2028 and friends) so
    # line numbers match editors; strip a Windows "\r".
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the empty string after the final newline is not a line
    if fmt == "csv":
        # csv handles quoted fields that span lines, so it gets the raw text (record numbers, not line numbers).
        records = list(csv.reader(content.splitlines(keepends=True)))
        numbered = list(enumerate(records, start=1))
    elif fmt == "tsv":
        numbered = [(i, line.rstrip("\r").split("\t")) for i, line in enumerate(lines, start=1)]
    else:
        numbered = []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                numbered.append((i, None))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"error: {path}:{i}: invalid JSON ({e.msg}) (fix: one JSON object per line)")
            if not isinstance(record, dict):
                kind = type(record).__name__
                sys.exit(f"error: {path}:{i}: expected a JSON object, got {kind} (fix: one JSON object per line)")
            numbered.append((i, record))

    header = None
    if args.has_header and fmt != "jsonl" and numbered:
        header = numbered[0][1]
        numbered = numbered[1:]
    default_text, default_label = ("text", "label") if fmt == "jsonl" else (0, 1)
    text_col = resolve_column(args.text_column, default_text, header, fmt, path, "--text_column")
    label_col = resolve_column(args.label_column, default_label, header, fmt, path, "--label_column")
    if text_col is None:
        sys.exit(f"error: {path}: --text_column cannot be none (fix: pass the index or name of the text column)")

    rows = []
    blank = 0
    for line_no, record in numbered:
        if record is None or record == [] or record == [""]:
            blank += 1  # empty line
            continue
        if fmt == "jsonl":
            if text_col not in record:
                sys.exit(f"error: {path}:{line_no}: no key {text_col!r} (fix: pass --text_column with the right key)")
            if label_col is not None and label_col not in record:
                sys.exit(
                    f"error: {path}:{line_no}: no key {label_col!r} "
                    "(fix: pass --label_column with the right key, or none)"
                )
        else:
            needed = max(c for c in (text_col, label_col) if c is not None) + 1
            if len(record) < needed:
                sep = "tab" if fmt == "tsv" else "comma"
                sys.exit(
                    f"error: {path}:{line_no}: expected at least {needed} {sep}-separated fields, got {len(record)} "
                    "(fix: check --text_column/--label_column, use --label_column none for unlabeled files)"
                )
        text = str(record[text_col])
        label = None if label_col is None else str(record[label_col])
        rows.append((text, label))
    logger.info("%s: %d rows (%s), %d blank lines skipped", path, len(rows), fmt, blank)
    return rows


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list: smallest value with at least p% of values <= it."""
    if not sorted_values:
        return None
    # p * n first, then / 100: exact for whole-number p (0.07 * 100 would give 7.000000000000001).
    rank = max(1, math.ceil(p * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def length_summary(lengths):
    values = sorted(lengths)
    summary = {f"p{p}": percentile(values, p) for p in PERCENTILES}
    summary["max"] = values[-1] if values else None
    summary["mean"] = round(sum(values) / len(values), 1) if values else None
    return summary


def suggest_max_seq_length(length, cap=MAX_MODEL_LENGTH):
    """length (without special tokens) + [CLS]/[SEP], rounded up to a multiple of 8, at most cap (512).

    Multiples of 8 keep tensor shapes friendly to GPU kernels; BERT has 512 positions.
    """
    return min(cap, math.ceil((length + NUM_SPECIAL_TOKENS) / 8) * 8)


def sort_labels(labels):
    """Numeric order for integer labels ("2" before "10"), text order otherwise."""
    labels = list(labels)
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def short(text, n=60):
    return text if len(text) <= n else text[:n] + "..."


def token_lengths(tokenizer, texts, batch_size=1000):
    lengths = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start : start + batch_size], add_special_tokens=False)
        lengths += [len(ids) for ids in encoded["input_ids"]]
    return lengths


def plot_histogram(path, lengths_by_file, unit, max_seq_length):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from plotting import pyplot  # Agg (no display needed), and a font that draws Chinese file names

    plt = pyplot()
    # Long tails squash the histogram into one bar; clip at 1.5x the suggested length
    # and say so in the axis label.
    all_lengths = [n for lengths in lengths_by_file.values() for n in lengths]
    upper = max(8, min(max(all_lengths), int(max_seq_length * 1.5)))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, lengths in lengths_by_file.items():
        # density=True: files of very different sizes (train vs dev) share one y axis.
        clipped = [min(n, upper) for n in lengths]
        ax.hist(clipped, bins=50, range=(0, upper), density=True, histtype="step", linewidth=1.5, label=name)
    ax.axvline(max_seq_length, color="red", linestyle="--", label=f"suggested max_seq_length={max_seq_length}")
    ax.set_xlabel(f"length in {unit} (values above {upper} drawn at {upper})")
    ax.set_ylabel("share of texts (density)")
    ax.set_title("Text length distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    tokenizer = None
    cap = MAX_MODEL_LENGTH
    if args.tokenizer is not None:
        # A name that is not a local folder would make from_pretrained try the Hub.
        if not os.path.isdir(args.tokenizer):
            sys.exit(
                f"error: {args.tokenizer}: not a directory (fix: pass --tokenizer a local folder with tokenizer files)"
            )
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        # Lengths are measured without truncation on purpose; silence the "longer than max length" warning.
        # A smaller model (e.g. max_position_embeddings 256) saves a smaller model_max_length: cap there too.
        cap = min(cap, tokenizer.model_max_length)
        tokenizer.model_max_length = int(1e9)
    unit = "tokens" if tokenizer is not None else "chars"

    # Index files by their name when names are unique (train.tsv, dev.tsv), else by full path.
    names = [os.path.basename(p) for p in args.files]
    if len(set(names)) != len(names):
        names = list(args.files)

    report = {"files": {}, "overlaps": [], "unit_for_suggestion": unit, "percentile": args.percentile}
    texts_by_file = {}
    lengths_by_file = {}
    for name, path in zip(names, args.files):
        rows = read_rows(path, args)
        texts = [text for text, _ in rows]
        texts_by_file[name] = texts
        char_lengths = [len(t) for t in texts]
        info = {"path": path, "rows": len(rows), "char_length": length_summary(char_lengths)}
        if tokenizer is not None:
            lengths = token_lengths(tokenizer, texts)
            info["token_length"] = length_summary(lengths)
        else:
            lengths = char_lengths
        lengths_by_file[name] = lengths

        labels = [label for _, label in rows if label is not None]
        if labels:
            counts = Counter(labels)
            info["labels"] = {label: counts[label] for label in sort_labels(counts)}
            # Same text with two different labels in one file: label noise.
            labels_of_text = {}
            for text, label in rows:
                labels_of_text.setdefault(text, set()).add(label)
            info["texts_with_conflicting_labels"] = sum(1 for ls in labels_of_text.values() if len(ls) > 1)

        counts = Counter(texts)
        duplicated = [t for t, c in counts.items() if c > 1]
        info["duplicate_rows"] = len(texts) - len(counts)  # rows whose text already appeared above
        info["duplicate_examples"] = [short(t) for t in duplicated[:NUM_EXAMPLES]]
        if lengths:
            file_base = percentile(sorted(lengths), args.percentile)
            info["suggested_max_seq_length"] = suggest_max_seq_length(file_base, cap)
        report["files"][name] = info

    # Texts shared between two files: every pair, in the order given (train vs dev, train vs test, dev vs test).
    for i, a in enumerate(names):
        seen_a = set(texts_by_file[a])
        for b in names[i + 1 :]:
            shared = list(dict.fromkeys(t for t in texts_by_file[b] if t in seen_a))
            report["overlaps"].append(
                {"files": [a, b], "shared_texts": len(shared), "examples": [short(t) for t in shared[:NUM_EXAMPLES]]}
            )

    all_lengths = sorted(n for lengths in lengths_by_file.values() for n in lengths)
    if not all_lengths:
        sys.exit("error: no rows in any input file (fix: check the files and --has_header)")
    base = percentile(all_lengths, args.percentile)
    max_seq_length = suggest_max_seq_length(base, cap)
    truncated = sum(1 for n in all_lengths if n + NUM_SPECIAL_TOKENS > max_seq_length)
    report["suggested_max_seq_length"] = max_seq_length
    report["suggestion_basis"] = (
        f"p{args.percentile:g} {unit} length {base} + {NUM_SPECIAL_TOKENS}, "
        f"rounded up to x8, capped at {cap}"
    )
    report["texts_truncated_at_suggestion"] = truncated
    report["share_truncated_at_suggestion"] = round(truncated / len(all_lengths), 4)

    # Human-readable summary on stdout.
    for name, info in report["files"].items():
        print(f"== {name}: {info['rows']} rows")
        print(f"   chars : {info['char_length']}")
        if "token_length" in info:
            print(f"   tokens: {info['token_length']}")
        if "labels" in info:
            total = sum(info["labels"].values())
            balance = ", ".join(f"{label}: {n} ({n / total:.1%})" for label, n in info["labels"].items())
            print(f"   labels: {balance}")
            print(f"   texts with conflicting labels: {info['texts_with_conflicting_labels']}")
        print(f"   duplicate rows: {info['duplicate_rows']} {info['duplicate_examples'] or ''}")
    for overlap in report["overlaps"]:
        a, b = overlap["files"]
        print(f"== {a} & {b}: {overlap['shared_texts']} shared texts {overlap['examples'] or ''}")
    print(
        f"== suggested max_seq_length: {max_seq_length} ({report['suggestion_basis']}); "
        f"{truncated} of {len(all_lengths)} texts ({report['share_truncated_at_suggestion']:.2%}) would be truncated"
    )

    if args.plot:
        plot_histogram(args.plot, lengths_by_file, unit, max_seq_length)
        logger.info("wrote length histogram to %s", args.plot)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False, indent=2)
        logger.info("wrote statistics to %s", args.output_json)
    return report


if __name__ == "__main__":
    main()
