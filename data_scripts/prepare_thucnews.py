"""Turn the raw THUCNews corpus into THUCNews-style train/dev/test TSV files.

The raw corpus (http://thuctc.thunlp.org/) unpacks into one folder per
category with one article per ``.txt`` file::

    THUCNews/体育/0.txt
    THUCNews/体育/1.txt
    THUCNews/财经/798977.txt
    ...

In every article the first non-empty line is the title and the remaining lines
are the body. This script samples articles per category (stratified), splits
every category into train/dev/test with the same ratios, and writes::

    OUTPUT_DIR/train.tsv   text<TAB>label_id   (no header, UTF-8, one row per line)
    OUTPUT_DIR/dev.tsv
    OUTPUT_DIR/test.tsv
    OUTPUT_DIR/class.txt   line i = name of label i (category folder names, sorted)
    OUTPUT_DIR/stats.json  the counts printed at the end

Sampling (pick at most one of the two, default: use every article):

* ``--samples_per_class N``: N articles per category (or all of a smaller one),
  i.e. a balanced data set.
* ``--max_total M``: M articles in total, each category keeps its share of the
  corpus (the course used a 50k-article sample drawn this way).

Example (titles only, 50k articles, 80/10/10 split)::

    python data_scripts/prepare_thucnews.py \\
        --data_dir /data/THUCNews --output_dir data/thucnews_50k \\
        --max_total 50000 --text title --dev_ratio 0.1 --test_ratio 0.1 --seed 42

Files that cannot be used (empty, or neither UTF-8 nor GB18030) are counted per
category and reported; with sampling, only the files that were actually read
can be judged, so the script reads the shuffled files of a category until its
quota is filled and keeps going past skipped ones.
"""

import argparse
import json
import logging
import os
import random
import sys

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="THUCNews root folder (one sub-folder per category).")
    parser.add_argument("--output_dir", required=True, help="Where train.tsv/dev.tsv/test.tsv/class.txt are written.")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--samples_per_class", type=int, default=None, help="Articles per category (balanced).")
    sampling.add_argument(
        "--max_total", type=int, default=None, help="Articles in total, split over categories by corpus share."
    )
    parser.add_argument("--dev_ratio", type=float, default=0.1, help="Share of each category that goes to dev.")
    parser.add_argument("--test_ratio", type=float, default=0.1, help="Share of each category that goes to test.")
    parser.add_argument(
        "--text", choices=["title", "title+body"], default="title", help="What goes into the text column."
    )
    parser.add_argument(
        "--max_chars", type=int, default=None, help="Truncate every text to this many characters (bodies are long)."
    )
    parser.add_argument("--seed", type=int, default=42, help="Random seed for sampling, splitting and shuffling.")
    args = parser.parse_args(argv)

    if args.samples_per_class is not None and args.samples_per_class <= 0:
        parser.error(f"--samples_per_class must be > 0, got {args.samples_per_class}")
    if args.max_total is not None and args.max_total <= 0:
        parser.error(f"--max_total must be > 0, got {args.max_total}")
    if args.max_chars is not None and args.max_chars <= 0:
        parser.error(f"--max_chars must be > 0, got {args.max_chars}")
    for name in ("dev_ratio", "test_ratio"):
        value = getattr(args, name)
        if not 0.0 <= value < 1.0:
            parser.error(f"--{name} must be in [0, 1), got {value}")
    if args.dev_ratio + args.test_ratio >= 1.0:
        total = args.dev_ratio + args.test_ratio
        parser.error(f"--dev_ratio + --test_ratio must be < 1 (nothing left for train), got {total}")
    return args


def list_categories(data_dir):
    """Return {category: sorted list of .txt paths} and the number of non-.txt files ignored."""
    if not os.path.isdir(data_dir):
        sys.exit(f"error: {data_dir}: not a directory (fix: pass --data_dir pointing to the unpacked THUCNews folder)")
    categories = {}
    ignored = 0
    for name in sorted(os.listdir(data_dir)):
        folder = os.path.join(data_dir, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        paths = []
        for file_name in os.listdir(folder):
            if file_name.endswith(".txt"):
                paths.append(os.path.join(folder, file_name))
            else:
                ignored += 1
        # Sorting makes the shuffle below depend on the seed only, not on the file system's listing order.
        categories[name] = sorted(paths)
    if not categories:
        sys.exit(
            f"error: {data_dir}: no category sub-folders found "
            "(fix: --data_dir must contain one folder per category, e.g. THUCNews/体育/0.txt)"
        )
    return categories, ignored


def class_quotas(sizes, samples_per_class=None, max_total=None):
    """How many articles to take from each category.

    sizes: {category: number of files}. Returns {category: quota}.
    """
    if samples_per_class is not None:
        return {c: min(samples_per_class, n) for c, n in sizes.items()}
    total = sum(sizes.values())
    if max_total is None or max_total >= total:
        return dict(sizes)
    # Proportional allocation: floor of the exact share, then hand the few leftover
    # articles to the categories with the largest fractional remainder, so the
    # quotas add up to exactly max_total.
    exact = {c: max_total * n / total for c, n in sizes.items()}
    quotas = {c: int(x) for c, x in exact.items()}
    leftover = max_total - sum(quotas.values())
    by_remainder = sorted(sizes, key=lambda c: (-(exact[c] - quotas[c]), c))
    for c in by_remainder[:leftover]:
        quotas[c] += 1
    return quotas


def decode(raw):
    """Decode bytes as UTF-8 (with or without BOM), else GB18030; None if both fail."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return None


def article_text(content, mode):
    """Build the text column from an article, or return None if it has no text.

    Every whitespace run (tabs, newlines, the full-width indent "\\u3000\\u3000" of
    THUCNews paragraphs) becomes one space, so a TSV row never breaks.
    """
    lines = [" ".join(line.split()) for line in content.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return None
    if mode == "title":
        return lines[0]
    return " ".join(lines)


def split_sizes(n, dev_ratio, test_ratio):
    """(train, dev, test) sizes for one category; round half up so small classes still get dev/test rows."""
    n_dev = int(n * dev_ratio + 0.5)
    n_test = int(n * test_ratio + 0.5)
    # Guard for tiny classes: keep at least what is left for train non-negative.
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

    categories, ignored = list_categories(args.data_dir)
    sizes = {c: len(paths) for c, paths in categories.items()}
    logger.info("found %d categories, %d .txt files in %s", len(sizes), sum(sizes.values()), args.data_dir)
    if ignored:
        logger.warning("ignored %d files that do not end in .txt", ignored)

    quotas = class_quotas(sizes, args.samples_per_class, args.max_total)
    rng = random.Random(args.seed)
    label_names = list(categories)  # already sorted: label id i = i-th category name
    splits = {name: [] for name in SPLITS}
    table = []
    for label_id, category in enumerate(label_names):
        paths = list(categories[category])
        rng.shuffle(paths)
        texts = []
        read = skipped_empty = skipped_undecodable = 0
        truncated = 0
        for path in paths:
            if len(texts) == quotas[category]:
                break
            read += 1
            with open(path, "rb") as f:
                content = decode(f.read())
            if content is None:
                skipped_undecodable += 1
                logger.warning("skipped %s: neither UTF-8 nor GB18030", path)
                continue
            text = article_text(content, args.text)
            if text is None:
                skipped_empty += 1
                logger.warning("skipped %s: empty file", path)
                continue
            if args.max_chars is not None and len(text) > args.max_chars:
                text = text[: args.max_chars].rstrip()
                truncated += 1
            texts.append(text)
        sampling = args.samples_per_class is not None or args.max_total is not None
        if sampling and len(texts) < quotas[category]:
            logger.warning(
                "%s: only %d usable articles for a quota of %d (too many skipped files)",
                category, len(texts), quotas[category],
            )

        # texts is already in random order, so slicing gives a random stratified split.
        n_train, n_dev, n_test = split_sizes(len(texts), args.dev_ratio, args.test_ratio)
        splits["train"] += [(t, label_id) for t in texts[:n_train]]
        splits["dev"] += [(t, label_id) for t in texts[n_train : n_train + n_dev]]
        splits["test"] += [(t, label_id) for t in texts[n_train + n_dev :]]
        table.append(
            {
                "label_id": label_id,
                "category": category,
                "files": sizes[category],
                "read": read,
                "skipped_empty": skipped_empty,
                "skipped_undecodable": skipped_undecodable,
                "truncated": truncated,
                "train": n_train,
                "dev": n_dev,
                "test": n_test,
            }
        )

    os.makedirs(args.output_dir, exist_ok=True)
    for name in SPLITS:
        # Mix the categories: the rows were appended category by category.
        rng.shuffle(splits[name])
        write_tsv(os.path.join(args.output_dir, f"{name}.tsv"), splits[name])
    with open(os.path.join(args.output_dir, "class.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(name + "\n" for name in label_names))

    totals = {key: sum(row[key] for row in table) for key in table[0] if key not in ("label_id", "category")}
    stats = {"args": vars(args), "ignored_non_txt_files": ignored, "per_class": table, "total": totals}
    with open(os.path.join(args.output_dir, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)

    header = ["id", "category", "files", "read", "empty", "undecodable", "train", "dev", "test"]
    keys = ["label_id", "category", "files", "read", "skipped_empty", "skipped_undecodable", "train", "dev", "test"]
    print("\t".join(header))
    for row in table:
        print("\t".join(str(row[k]) for k in keys))
    print("\t".join(["", "TOTAL"] + [str(totals[k]) for k in keys[2:]]))
    if totals["truncated"]:
        print(f"{totals['truncated']} texts truncated to --max_chars={args.max_chars}")
    logger.info(
        "wrote %d train / %d dev / %d test rows and class.txt (%d labels) to %s",
        totals["train"], totals["dev"], totals["test"], len(label_names), args.output_dir,
    )
    return stats


if __name__ == "__main__":
    main()
