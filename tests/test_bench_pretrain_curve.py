"""bench/pretrain_curve.py end to end at toy size: a replaced-token-detection run with checkpoints laid out as
scripts/pretrain_news_bert.sh leaves it, each checkpoint's encoder exported and fine-tuned on titles, the final one at
a second learning rate, random weights, the pipeline's own results and stage times read back, the refusal of a
baseline made with another vocabulary and of a pipeline whose fine-tunes started from task-adapted weights."""

import json
import shutil
import sys

import helpers as h

import pytest

sys.path.insert(0, str(h.REPO_ROOT / "bench"))
import pretrain_curve  # noqa: E402

import gpu_check  # noqa: E402


def test_pretrain_curve_smoke(tmp_path, model_dir):
    import run_mlm

    data = tmp_path / "data"
    gpu_check.write_fixtures(data)
    titles = [line.split("\t")[0] for line in (data / "thucnews_titles" / "train.txt").read_text().splitlines()]
    corpus = h.write_lines(tmp_path / "corpus.txt", titles)
    pipeline = tmp_path / "news_bert"
    shutil.copytree(model_dir, pipeline / "tokenizer")
    run_mlm.main(["--objective", "rtd", "--generator_size_divisor", "2", "--config_name", str(model_dir),
                  "--tokenizer_name", str(model_dir), "--train_file", str(corpus), "--line_by_line",
                  "--max_seq_length", "32", "--per_device_train_batch_size", "8", "--max_steps", "4",
                  "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "10", "--do_train",
                  "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
                  "--output_dir", str(pipeline / "pretrained")])
    # the pipeline's fine-tune of the final checkpoint and its console log (what the benchmark reads, not reruns)
    (pipeline / "thucnews_seed1").mkdir()
    (pipeline / "thucnews_seed1" / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.75}))
    log = h.write_lines(tmp_path / "pipeline.log", [
        "[23:58:00] (0 min so far) 1. corpus: every training split", "noise",
        "[23:59:30] (1 min so far) 3. pretraining: rtd, 4 steps", "[00:10:30] (12 min so far) done: outputs"])
    results = tmp_path / "results"
    common = ["--pipeline_dir", str(pipeline), "--data_dir", str(data), "--work_dir", str(tmp_path / "work"),
              "--results_dir", str(results), "--seeds", "1", "--epochs", "1", "--max_train_samples", "48",
              "--max_eval_samples", "24"]
    pretrain_curve.main(common + ["--pipeline_log", str(log), "--learning_rates", "1e-3", "3e-4", "--frozen"])

    report = json.loads((results / "pretrain_curve.json").read_text())
    assert "bench/pretrain_curve.py --pipeline_dir" in report["command"] and report["machine"]["git_commit"]
    runs = report["runs"]
    assert set(runs) == {"titles_step2_lr0.001_seed1", "titles_step4_lr0.0003_seed1", "titles_random_seed1",
                         "titles_frozen_final_seed1", "titles_frozen_random_seed1"}
    assert all(r["returncode"] == 0 and 0 <= r["eval"]["eval_accuracy"] <= 1 for r in runs.values())
    # checkpoint-2 held the whole RTD model: its encoder was exported as a plain BERT checkpoint and fine-tuned
    encoder = tmp_path / "work" / "encoder_2"
    assert json.loads((encoder / "config.json").read_text())["model_type"] == "bert"
    assert f"--model_name_or_path {encoder}" in runs["titles_step2_lr0.001_seed1"]["command"]
    assert f"--model_name_or_path {pipeline / 'pretrained'} " in runs["titles_step4_lr0.0003_seed1"]["command"]
    summary = report["summary"]
    assert set(summary["points"]) == {"0", "2", "4"}
    final = summary["points"]["4"]["titles"]  # the pipeline's own number, paired with random weights
    random = runs["titles_random_seed1"]["eval"]["eval_accuracy"]
    assert final["mean"] == 0.75 and final["minus_random"]["mean"] == pytest.approx(0.75 - random)
    assert summary["points"]["2"]["titles"]["mean"] == runs["titles_step2_lr0.001_seed1"]["eval"]["eval_accuracy"]
    assert set(summary["final"]["learning_rates"]) == {"0.001", "0.0003"}
    frozen = runs["titles_frozen_final_seed1"]
    assert frozen["command"].endswith("--freeze all") and f"--model_name_or_path {pipeline / 'pretrained'}" in \
        frozen["command"] and "--config_name" in runs["titles_frozen_random_seed1"]["command"]
    assert summary["final"]["frozen"]["pretrained"]["mean"] == frozen["eval"]["eval_accuracy"]
    assert report["stages"] == {"1. corpus": 1.5, "3. pretraining": 11.0, "total": 12.5}  # across midnight
    assert 0 < report["tfidf"]["titles"]["eval_accuracy"] <= 1
    table = (results / "pretrain_curve.md").read_text()
    assert "| 2 |" in table and "| 0.0003 |" in table and "3. pretraining 11.0" in table and "Frozen encoder" in table
    assert (results / "pretrain_curve.png").stat().st_size > 1000

    # a random-weights baseline made with another vocabulary or config is refused, before anything runs
    other = tmp_path / "other_vocab"
    shutil.copytree(model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"hidden_size": 2 * config["hidden_size"]}))
    ablation = {"runs": {"titles_random_word_seed1": {
        "command": f"python run_classification.py --config_name {other} --tokenizer_name {other}",
        "returncode": 0, "eval": {"eval_accuracy": 0.5}, "wall_s": 1.0}}}
    (tmp_path / "ablation.json").write_text(json.dumps(ablation))
    with pytest.raises(SystemExit, match="no finished random-weight titles run"):
        pretrain_curve.main(common + ["--random_from", str(tmp_path / "ablation.json")])

    # the script's stage 3b ran: the pipeline's fine-tunes are not of pretrained/, so there is no curve to draw
    (pipeline / "task_adapted").mkdir()
    with pytest.raises(SystemExit, match="TASK_STEPS=0"):
        pretrain_curve.main(common)
