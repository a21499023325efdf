"""Shared test helpers: a tiny BERT built from scratch (no download) and writers for fixture data files.

Everything here is written by the tests themselves into pytest's tmp dirs; nothing is downloaded and nothing is read
from the shared benchmark data.
"""

import json
import os
import random
import sys
from pathlib import Path

# No network at test time: make any accidental Hub/dataset lookup fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# --bf16 tests exercise the bf16 code paths on any CPU (a CPU without bf16 matrix instructions would drop the flag;
# tests/test_precision.py checks that drop)
os.environ.setdefault("RECIPES_CPU_BF16", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Filler characters for synthetic texts (each one is a single token for BertTokenizer: CJK chars are split apart).
FILLER = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面")
# Keyword characters: one per class in the learnable fixture. Not in FILLER, so only they decide the label.
KEYWORDS = list("甲乙丙丁")
# Distinct markers for truncation tests (first/last tokens of a long text).
MARKERS = list("首尾前后左右")
DIGITS = [str(i) for i in range(10)]
VOCAB = SPECIAL_TOKENS + FILLER + KEYWORDS + MARKERS + DIGITS


def build_tiny_bert(directory, vocab=VOCAB, hidden_size=32, num_layers=2, max_position_embeddings=128):
    """Write a tokenizer and a BertConfig (no weights) into `directory`, for --config_name DIR --tokenizer_name DIR.

    The tokenizer is built from an in-memory vocab dict: in transformers 5, BertTokenizer given vocab_file=... silently
    yields a 5-token tokenizer.
    """
    from transformers import BertConfig, BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.save_pretrained(str(directory))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config.save_pretrained(str(directory))
    return directory


# ------------------------------------------------------------------------------------------------------------------
# Fixture file writers
# ------------------------------------------------------------------------------------------------------------------


def write_lines(path, lines, encoding="utf-8"):
    """Write `lines` (strings, no line endings) joined by '\n' with a trailing newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding) if lines else b"")
    return path


def write_tsv(path, rows, header=None, encoding="utf-8"):
    """rows: sequences of fields, joined by tabs. header: optional list of column names."""
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(f) for f in row) for row in rows]
    return write_lines(path, lines, encoding)


def write_csv(path, rows, header):
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, records):
    return write_lines(path, [json.dumps(r, ensure_ascii=False) for r in records])


def write_label_file(path, names):
    return write_lines(path, list(names))


def keyword_rows(n, n_classes=2, seed=0, min_len=6, max_len=14):
    """Learnable synthetic task: a text of filler characters with one keyword character KEYWORDS[label] inserted at a
    random position. Returns [(text, label_id)]; classes are balanced and shuffled."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % n_classes
        chars = [rng.choice(FILLER) for _ in range(rng.randint(min_len, max_len))]
        chars.insert(rng.randrange(len(chars) + 1), KEYWORDS[label])
        rows.append(("".join(chars), label))
    rng.shuffle(rows)
    return rows


def filler_text(n, seed=0):
    rng = random.Random(seed)
    return "".join(rng.choice(FILLER) for _ in range(n))


def read_tsv(path):
    """Header and rows of a TSV file written by the script (e.g. predict_results.tsv)."""
    lines = Path(path).read_text(encoding="utf-8").rstrip("\n").split("\n")
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def tiny_train_args(model_dir, output_dir, *extra, epochs=1, batch_size=16, learning_rate="1e-3", save="no"):
    """Common arguments for a fast run of run_classification.main on the tiny model."""
    return [
        "--config_name", str(model_dir),
        "--tokenizer_name", str(model_dir),
        "--output_dir", str(output_dir),
        "--num_train_epochs", str(epochs),
        "--per_device_train_batch_size", str(batch_size),
        "--per_device_eval_batch_size", "64",
        "--learning_rate", str(learning_rate),
        "--report_to", "none",
        "--save_strategy", save,
        "--disable_tqdm", "true",
        "--seed", "0",
        "--dataloader_num_workers", "0",
        *[str(a) for a in extra],
    ]
