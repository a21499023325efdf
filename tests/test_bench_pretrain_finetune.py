"""bench/pretrain_finetune.py end to end at toy size: vocabularies, calibration, every objective x vocabulary cell
pretrained and fine-tuned next to random weights, TF-IDF, the winner on ChnSentiCorp and CLUENER; the JSON, the
table and the plot hold every run."""

import json
import sys

import helpers as h

sys.path.insert(0, str(h.REPO_ROOT / "bench"))
import pretrain_finetune  # noqa: E402

import gpu_check  # noqa: E402


def test_pretrain_finetune_ablation_smoke(tmp_path):
    data = tmp_path / "data"
    gpu_check.write_fixtures(data)
    texts = [line.split("\t")[0] for line in (data / "thucnews_titles" / "train.txt").read_text().splitlines()]
    texts += [json.loads(line)["text"] for line in (data / "cluener" / "train.json").read_text().splitlines()]
    corpus = h.write_lines(tmp_path / "corpus.txt", texts * 3)
    results = tmp_path / "results"
    cells = ["char:wwm", "char:rtd", "word:mlm"]  # every objective and both vocabularies once
    pretrain_finetune.main([
        "--data_dir", str(data), "--corpus", str(corpus), "--work_dir", str(tmp_path / "work"), "--results_dir",
        str(results), "--cells", *cells, "--char_vocab_size", "200", "--word_vocab_size", "300", "--minutes", "0.01",
        "--calibration_steps", "1", "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
        "--intermediate_size", "64", "--max_seq_length", "32", "--pretrain_batch_size", "8",
        "--generator_size_divisor", "2", "--epochs", "1", "--sentiment_epochs", "1", "--ner_epochs", "1",
        "--max_train_samples", "40", "--max_eval_samples", "24", "--seeds", "1", "--jobs", "2"])
    report = json.loads((results / "pretrain_finetune.json").read_text())
    assert report["machine"]["torch"] and report["machine"]["git_commit"] and report["args"]["seeds"] == [1]
    # the benchmark's own command line (not pytest's), rerunnable as recorded
    assert f"bench/pretrain_finetune.py --data_dir {data} --corpus {corpus}" in report["command"]
    assert report["command"].endswith("--seeds 1 --jobs 2")
    assert set(report["step_seconds"]) == {"char", "word"} and min(report["max_steps"].values()) >= 1
    summary = report["summary"]
    assert set(summary["titles"]) == {*cells, "random:char", "random:word"}
    for cell in cells:
        assert summary["titles"][cell]["n"] == 1 and summary["titles"][cell]["minus_random"]["n"] == 1
        assert "--whole_word_mask" in report["runs"][f"pretrain_{cell.replace(':', '_')}"]["command"].split() \
            or not cell.endswith("wwm")
    assert "eval_rtd_accuracy" in summary["pretrain"]["char:rtd"]["eval"]
    assert "eval_masked_accuracy" in summary["pretrain"]["char:wwm"]["eval"]
    # the word vocabulary really has multi-character pieces, the char one none
    word_vocab = (tmp_path / "work" / "vocab_word" / "vocab.txt").read_text(encoding="utf-8").split()
    assert any(len(t) > 1 and all("\u4e00" <= c <= "\u9fff" for c in t) for t in word_vocab)
    winner = report["winner"]
    assert winner in cells and summary["titles"][winner]["mean"] == max(summary["titles"][c]["mean"] for c in cells)
    level = winner.split(":")[0]
    for task in ("chnsenticorp", "cluener"):
        assert set(summary[task]) == {winner, f"random:{level}"}
    assert 0 < report["tfidf"]["titles"]["eval_accuracy"] <= 1 and "chnsenticorp" in report["tfidf"]
    table = (results / "pretrain_finetune.md").read_text()
    assert all(f"| {cell} |" in table for cell in cells) and "| cluener |" in table
    assert "(commonest word: " in table  # MLM cells show the word-frequency baseline next to their masked accuracy
    assert (results / "pretrain_finetune.png").stat().st_size > 1000
