"""Tests for run_qa.py, driven through main([...]) on a tiny BERT (no download, no shared data).

Every model, vocab and data file is written by the tests into pytest tmp dirs. Training runs are a few steps of a
2-layer BERT at most 64 wide, with short windows (max_seq_length 32-64) so that contexts span several windows.
"""

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import run_qa as rq  # noqa: E402
import utils_qa  # noqa: E402
from script_utils import DataError, run_main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

# The vocab: the helpers' filler characters plus what the script tests need: Traditional characters, full-width
# punctuation, English word pieces (lowercase: the tokenizer lowercases), question words.
EXTRA = (list("问答题什么谁哪里是北京大学清华市我们的模型提出发布年月日米比赛分为队胜臺灣於國語體這個說們") +
         list("，。！？：；（）《》「」、") +
         ["bert", "goo", "##gle", "brain", "paris", "the", "is", "in", "20", "##18"])
QA_VOCAB = h.VOCAB + [t for t in EXTRA if t not in h.VOCAB]


# ------------------------------------------------------------------------------------------------------------------
# Fixture writers
# ------------------------------------------------------------------------------------------------------------------


def qa(qid, question, *answers):
    """One question; answers are (text, answer_start) pairs."""
    return {"id": qid, "question": question, "answers": [{"text": t, "answer_start": s} for t, s in answers]}


def write_squad(path, paragraphs, title="测试"):
    """paragraphs: [(context, [qa, ...])] -> a SQuAD/CMRC2018-style file."""
    data = {"version": "v1.0", "data": [{"title": title, "paragraphs": [
        {"context": context, "qas": qas} for context, qas in paragraphs]}]}
    Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return Path(path)


def with_answer(context, answer, qid, question="什么是答案？"):
    """A question whose answer is the first occurrence of `answer` in `context`."""
    start = context.index(answer)
    return qa(qid, question, (answer, start))


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def args(model_dir, out, *extra, epochs=1, batch_size=16, learning_rate="1e-3", save="no", max_seq_length=48,
         doc_stride=16):
    return h.tiny_train_args(model_dir, out, "--max_seq_length", max_seq_length, "--doc_stride", doc_stride,
                             "--max_query_length", 12, *extra, epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, save=save)


def oracle_logits(features):
    """Start/end logits that put all the mass on the labelled positions of every window ([CLS] where the answer is
    not inside): what a perfect model would output."""
    n, width = len(features), max(features["length"])
    start, end = np.full((n, width), -10.0), np.full((n, width), -10.0)
    for i, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])):
        start[i, s], end[i, e] = 10.0, 10.0
    return start, end


# Contexts in every script the tokenizer must map back exactly. (context, answer)
SCRIPT_CASES = [
    ("我们在北京大学学习，北京是首都。", "北京大学"),  # Simplified Chinese
    ("这个BERT模型由Google提出，2018年发布。", "Google"),  # mixed Chinese/English: word pieces goo ##gle
    ("这个BERT模型由Google提出，2018年发布。", "BERT模型"),  # case kept: the text comes from the context
    ("这个BERT模型由Google提出，2018年发布。", "2018年"),  # 20 ##18 年
    ("臺灣大學位於臺北，這個說法們都同意。", "臺灣大學"),  # Traditional Chinese
    ("比赛比分为１０：８，（甲）队胜。", "１０：８"),  # full-width digits and colon
    ("比赛比分为１０：８，（甲）队胜。", "（甲）队"),  # full-width brackets
    ("ＢＥＲＴ模型是我们的", "ＢＥＲＴ模型"),  # full-width Latin letters
    ("北京  大学在 北京 ", "大学在 北京"),  # whitespace inside the answer and the context
]


REPAIR_CONTEXT = "北京市在北方，北京大学在北京市海淀区，北京很大。"


@pytest.fixture(scope="module")
def qa_model_dir(tmp_path_factory):
    return h.build_tiny_bert(tmp_path_factory.mktemp("tiny_qa_bert"), vocab=QA_VOCAB, hidden_size=32)


@pytest.fixture(scope="module")
def scripts_run(qa_model_dir, tmp_path_factory):
    """One short training run (1 step) over the script cases, a long context whose answer crosses the first window's
    end, and the answer-repair cases; validation = the same questions."""
    d = tmp_path_factory.mktemp("scripts")
    paragraphs = [(c, [with_answer(c, a, f"case{i}")]) for i, (c, a) in enumerate(SCRIPT_CASES)]
    # A context of 60 filler characters (max_seq_length 32, question 6 tokens: 23 context tokens per window, a new
    # window every 23 - 8 = 15 tokens). The answer covers characters 20..27: it crosses the end of window 0 (0..22)
    # and lies whole inside window 1 (15..37).
    long_context = h.filler_text(60, seed=3)
    paragraphs.append((long_context, [qa("crossing", "什么是答案？", (long_context[20:28], 20))]))
    paragraphs.append((REPAIR_CONTEXT, [
        qa("repaired", "什么是答案？", ("北京", 11)),  # wrong start: 北京 is at 0, 7, 12, 19 -> 12 is nearest
        qa("no_start", "什么是答案？", ("海淀区", None)),  # no answer_start: located
        qa("not_found", "什么是答案？", ("上海", 3)),  # not in the context: skipped for training
        qa("not_found_but_second", "什么是答案？", ("上海", 0), ("北方", 4)),  # the second answer is used
        qa("empty", "什么是答案？", ("", 0), ("很大", 21)),  # an empty answer is skipped, the other used
        qa("padded", "什么是答案？", (" 北京大学 ", 6)),  # spaces around the text: trimmed, start moved to 7
    ]))
    paragraphs.append(("我们用Google的模型。", [qa("inside_word", "什么是答案？", ("oogle", 4))]))  # inside goo ##gle
    train = write_squad(d / "train.json", paragraphs)
    trainer = rq.main(args(qa_model_dir, d / "out", "--train_file", train, "--validation_file", train,
                           "--do_train", "--do_eval", "--max_steps", "1", max_seq_length=32, doc_stride=8))
    return {"dir": d, "trainer": trainer, "paragraphs": paragraphs, "out": d / "out",
            "summary": load_json(d / "out" / "data_summary.json")}


# ------------------------------------------------------------------------------------------------------------------
# Offsets: every labelled span is the exact answer text, in every script
# ------------------------------------------------------------------------------------------------------------------


def test_tokenizer_is_fast_with_offsets(qa_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(qa_model_dir))
    assert tokenizer.is_fast
    encoded = tokenizer("这个BERT模型由Google提出", add_special_tokens=False, return_offsets_mapping=True)
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"])[:4] == ["这", "个", "bert", "模"]
    assert ["goo", "##gle"] == tokenizer.convert_ids_to_tokens(encoded["input_ids"])[6:8]
    assert encoded["offset_mapping"][6:8] == [(9, 12), (12, 15)]


def test_training_labels_map_back_to_the_exact_answer_text(scripts_run):
    trainer = scripts_run["trainer"]
    features, examples = trainer.train_dataset, trainer.train_examples
    checked = set()
    for f in features:
        s, e = f["start_positions"], f["end_positions"]
        if s == 0:
            continue
        example = examples[f["example_index"]]
        assert s <= e and f["token_type_ids"][s] == 1 and f["char_start"][s] >= 0
        text = example["context"][f["char_start"][s]:f["char_end"][e]]
        if example["id"] != "inside_word":
            found = [t for t, a in zip(example["answers"]["text"], example["answers"]["answer_start"]) if a >= 0]
            assert text == found[0], example["id"]
        checked.add(example["id"])
    assert {f"case{i}" for i in range(len(SCRIPT_CASES))} <= checked
    assert "crossing" in checked


def test_oracle_logits_give_the_exact_answer_substring(scripts_run):
    """Post-processing of perfect logits returns each answer exactly as it is written in the context: Chinese, mixed
    Chinese/English (original case), Traditional, full-width characters, inner whitespace."""
    trainer = scripts_run["trainer"]
    features, examples = trainer.eval_dataset, trainer.eval_examples
    start, end = oracle_logits(features)
    predictions, nbest, _ = utils_qa.postprocess_predictions(examples, features, start, end)
    for i, (context, answer) in enumerate(SCRIPT_CASES):
        assert predictions[f"case{i}"] == answer
        assert context[nbest[f"case{i}"][0]["answer_start"]:].startswith(answer)
    assert predictions["crossing"] == examples[[e["id"] for e in examples].index("crossing")]["answers"]["text"][0]
    assert predictions["repaired"] == "北京" and nbest["repaired"][0]["answer_start"] == 12
    assert predictions["no_start"] == "海淀区"
    assert predictions["not_found_but_second"] == "北方"
    assert predictions["empty"] == "很大"
    assert predictions["padded"] == "北京大学" and nbest["padded"][0]["answer_start"] == 7
    assert predictions["inside_word"] == "Google"  # the model predicts whole tokens: oogle is inside goo ##gle


def test_answer_crossing_a_window_boundary_is_found_in_the_next_window(scripts_run):
    trainer = scripts_run["trainer"]
    index = trainer.train_examples["id"].index("crossing")
    windows = sorted((f for f in trainer.train_dataset if f["example_index"] == index), key=lambda f: f["window_index"])
    assert [min(c for c in w["char_start"] if c >= 0) for w in windows] == [0, 15, 30, 37]
    # window 0 holds characters 0..22: the answer (20..27) is cut, so it points at [CLS]
    assert max(windows[0]["char_end"]) == 23
    assert windows[0]["start_positions"] == windows[0]["end_positions"] == 0
    w1 = windows[1]
    assert w1["start_positions"] > 0 and w1["char_start"][w1["start_positions"]] == 20
    assert w1["char_end"][w1["end_positions"]] == 28
    # windows overlap by doc_stride (8) tokens at least, and the last one ends with the context
    for a, b in zip(windows, windows[1:]):
        a_chars = {c for c in a["char_start"] if c >= 0}
        b_chars = {c for c in b["char_start"] if c >= 0}
        assert len(a_chars & b_chars) >= 8
    assert max(windows[-1]["char_end"]) == 60

    # A model that sees only window 0's cut answer with a high start score and the whole answer in window 1 with
    # moderate scores: the whole answer (from window 1) wins, because window 0 has no good end inside the answer.
    features, examples = trainer.eval_dataset, trainer.eval_examples
    index = examples["id"].index("crossing")
    start, end = np.zeros((len(features), max(features["length"]))), np.zeros((len(features), max(features["length"])))
    for i, f in enumerate(features):
        if f["example_index"] != index:
            continue
        for p, (cs, ce) in enumerate(zip(f["char_start"], f["char_end"])):
            if cs == 20:
                start[i, p] = 5.0 if f["window_index"] == 0 else 4.0
            if ce == 28:
                end[i, p] = 4.0
    predictions, _, _ = utils_qa.postprocess_predictions(examples, features, start, end, max_answer_length=10)
    assert predictions["crossing"] == examples[index]["answers"]["text"][0]


def test_window_starts_cover_every_token_with_overlap():
    assert utils_qa.window_starts(10, 24, 16) == [0]
    assert utils_qa.window_starts(24, 24, 16) == [0]
    assert utils_qa.window_starts(25, 24, 16) == [0, 1]
    assert utils_qa.window_starts(60, 24, 16) == [0, 16, 32, 36]
    for n in range(1, 80):
        starts = utils_qa.window_starts(n, 24, 16)
        covered = set().union(*(range(s, min(s + 24, n)) for s in starts))
        assert covered == set(range(n))
        assert all(b - a <= 16 for a, b in zip(starts, starts[1:]))


def test_token_span():
    offsets = [(0, 1), (1, 2), (3, 6), (6, 9), (9, 10)]  # a b _ goo ##gle c
    assert utils_qa.token_span(offsets, 0, 2) == (0, 1)
    assert utils_qa.token_span(offsets, 3, 9) == (2, 3)
    assert utils_qa.token_span(offsets, 4, 8) == (2, 3)  # inside words: the covering tokens
    assert utils_qa.token_span(offsets, 2, 3) is None  # only the space
    assert utils_qa.token_span(offsets, 10, 12) is None


# ------------------------------------------------------------------------------------------------------------------
# Repairs and counts
# ------------------------------------------------------------------------------------------------------------------


def test_answer_repairs_and_skips_are_counted(scripts_run):
    train = scripts_run["summary"]["splits"]["train"]
    n_cases = len(SCRIPT_CASES)
    assert train["questions_read"] == n_cases + 1 + 6 + 1
    assert train["answers_repaired"] == 2  # 'repaired' (wrong start), 'no_start' (none)
    assert train["answers_not_found"] == 2  # 上海 twice
    assert train["answers_empty"] == 1
    assert train["questions_skipped"] == {"no answer found in the context": 1}  # 'not_found'
    assert train["questions_used"] == train["questions_read"] - 1
    assert train["answers_not_on_token_boundaries"] == 1  # oogle
    # validation keeps the question whose gold answer is not in the context: it still scores (0)
    validation = scripts_run["summary"]["splits"]["validation"]
    assert validation["questions_used"] == validation["questions_read"] == train["questions_read"]
    assert validation["questions_skipped"] == {}


def test_repaired_answer_moves_to_the_nearest_occurrence():
    context = REPAIR_CONTEXT
    assert utils_qa.locate_answer(context, "北京", 11) == (12, "repaired")
    assert utils_qa.locate_answer(context, "北京", 7) == (7, "ok")
    assert utils_qa.locate_answer(context, "北京", 100) == (19, "repaired")
    assert utils_qa.locate_answer(context, "北京", None) == (0, "repaired")
    assert utils_qa.locate_answer(context, "上海", 0) == (-1, "not_found")


def test_predictions_files_have_one_entry_per_question(scripts_run):
    out, trainer = scripts_run["out"], scripts_run["trainer"]
    ids = [q["id"] for _, qas in scripts_run["paragraphs"] for q in qas]
    predictions = load_json(out / "eval_predictions.json")
    nbest = load_json(out / "eval_nbest_predictions.json")
    assert sorted(predictions) == sorted(ids) == sorted(nbest)
    contexts = {q["id"]: c for c, qas in scripts_run["paragraphs"] for q in qas}
    for qid, candidates in nbest.items():
        assert 1 <= len(candidates) <= 20
        assert candidates[0]["text"] == predictions[qid]
        assert abs(sum(c["probability"] for c in candidates) - 1) < 1e-6
        for c in candidates:  # every candidate is the context's own text at its offset
            assert contexts[qid][c["answer_start"]:c["answer_start"] + len(c["text"])] == c["text"]
    results = load_json(out / "eval_results.json")
    assert results["eval_questions"] == len(ids)
    assert 0 <= results["eval_exact_match"] <= results["eval_f1"] <= 100
    assert results["eval_samples"] == len(trainer.eval_dataset)  # windows
    config = load_json(out / "config.json")
    assert config["question_answering"]["max_seq_length"] == 32
    assert config["architectures"] == ["BertForQuestionAnswering"]


# ------------------------------------------------------------------------------------------------------------------
# Metrics: hand-made cases with known EM/F1
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction, golds, em, f1", [
    ("北京", ["北京"], 1, 1),
    ("北京。", ["北京"], 1, 1),  # full-width punctuation removed
    ("，北京！", ["北京"], 1, 1),
    ("（北京）", ["「北京」"], 1, 1),
    ("北京.", ["北京"], 1, 1),  # ASCII punctuation removed
    ("北京", ["北京大学", "北京市"], 0, 0.8),  # best over gold answers: vs 北京市 P=1 R=2/3
    ("北京大学", ["清华大学", "北京大学"], 1, 1),
    ("BERT模型", ["我们的bert模型"], 0, 2 / 3),  # bert is one token: P=3/3, R=3/6
    ("Google Brain", ["google"], 0, 2 / 3),  # English words are tokens
    ("2018年", ["2018"], 0, 2 / 3),  # numbers are tokens
    ("3.14米", ["3.14"], 0, 2 / 3),  # 3.14 stays one token (not 3, 14)
    ("甲丙丁", ["甲乙丙丁"], 0, 4 / 7),  # longest common substring (丙丁), not a bag of tokens: P=2/3, R=2/4
    ("上海", ["北京"], 0, 0),
    ("", ["北京"], 0, 0),
    ("", [], 1, 1),  # unanswerable, predicted no answer
    ("北京", [], 0, 0),
])
def test_cmrc2018_metric_known_values(prediction, golds, em, f1):
    got_em, got_f1 = utils_qa.question_scores(prediction, golds, "cmrc2018")
    assert got_em == em
    assert got_f1 == pytest.approx(f1)


def test_cmrc_tokens():
    assert utils_qa.cmrc_tokens("我用BERT模型，在2V2中得了3.14分！") == \
        ["我", "用", "bert", "模", "型", "在", "2v2", "中", "得", "了", "3.14", "分"]
    # the official list's marks (- : / ...) are dropped without splitting, as the official script does
    assert utils_qa.cmrc_tokens("M-Touch机，10-14个") == ["mtouch", "机", "1014", "个"]
    # other punctuation is removed too (ASCII brackets and quotes, full-width brackets)
    assert utils_qa.cmrc_tokens('（"HotShot"）(Billy Joel)【甲】') == ["hotshot", "billy", "joel", "甲"]
    assert utils_qa.cmrc_tokens("臺灣大學") == ["臺", "灣", "大", "學"]
    assert utils_qa.cmrc_tokens("「」，。（）《》") == []


@pytest.mark.parametrize("prediction, golds, em, f1", [
    ("The Eiffel Tower!", ["eiffel tower"], 1, 1),
    ("in Paris, France", ["Paris"], 0, 0.5),
    ("Paris", ["London", "paris"], 1, 1),
    ("", [], 1, 1),
])
def test_squad_metric_known_values(prediction, golds, em, f1):
    got_em, got_f1 = utils_qa.question_scores(prediction, golds, "squad")
    assert (got_em, got_f1) == (em, pytest.approx(f1))


def test_qa_metrics_averages_and_counts_missing_predictions():
    golds = {"a": ["北京"], "b": ["北京市"], "c": ["上海"]}
    result = utils_qa.qa_metrics(golds, {"a": "北京", "b": "北京"})  # c missing: scores 0
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 0.8) / 3)
    assert result["missing_predictions"] == 1


def test_best_null_threshold():
    golds = {"a": ["北京"], "b": [], "c": ["上海"]}
    best_answers = {"a": "北京", "b": "北京", "c": "天津"}
    null_odds = {"a": -2.0, "b": 1.0, "c": 3.0}
    # threshold 0: a answered (1), b null (1), c null (0) -> 2/3
    result = utils_qa.qa_metrics(golds, {"a": "北京", "b": "", "c": ""}, null_odds=null_odds, best_answers=best_answers)
    assert result["f1"] == pytest.approx(200 / 3)
    assert result["best_f1"] == pytest.approx(200 / 3) and result["best_f1_threshold"] == -2.0
    assert result["has_answer_total"] == 2 and result["no_answer_total"] == 1
    assert result["no_answer_f1"] == 100 and result["has_answer_f1"] == 50


# ------------------------------------------------------------------------------------------------------------------
# A learnable task: the answer runs from 甲 to 乙 in a filler context
# ------------------------------------------------------------------------------------------------------------------


def marker_questions(n, seed, prefix, min_len=8, max_len=70):
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        inner = h.filler_text(rng.randint(1, 4), seed=rng.random())
        answer = "甲" + inner + "乙"
        context = h.filler_text(rng.randint(min_len, max_len), seed=rng.random())
        at = rng.randint(0, len(context))
        context = context[:at] + answer + context[at:]
        paragraphs.append((context, [qa(f"{prefix}{i}", "甲乙之间是什么？", (answer, at))]))
    return paragraphs


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    model_dir = h.build_tiny_bert(tmp_path_factory.mktemp("tiny_qa_bert_64"), vocab=QA_VOCAB, hidden_size=64)
    d = tmp_path_factory.mktemp("learnable")
    train = write_squad(d / "train.json", marker_questions(320, 0, "t"))
    dev = write_squad(d / "dev.json", marker_questions(60, 1, "d"))
    test_paragraphs = marker_questions(30, 2, "p")
    for _, qas in test_paragraphs:
        del qas[0]["answers"]  # a test file without answers
    test = write_squad(d / "test.json", test_paragraphs)
    out = d / "out"
    trainer = rq.main(args(model_dir, out, "--train_file", train, "--validation_file", dev, "--test_file", test,
                           "--do_train", "--do_eval", "--do_predict", "--early_stopping_patience", "1",
                           epochs=3, learning_rate="3e-3", save="epoch"))
    return {"dir": d, "out": out, "trainer": trainer, "model_dir": model_dir, "dev": dev, "test": test,
            "test_paragraphs": test_paragraphs}


def test_learnable_fixture_reaches_high_f1(learned):
    results = load_json(learned["out"] / "all_results.json")
    assert results["eval_f1"] > 60, results
    assert results["eval_exact_match"] > 40, results
    summary = load_json(learned["out"] / "data_summary.json")["splits"]["train"]
    assert summary["windows_per_question"] > 1.2  # the long contexts really use several windows
    # evaluation during training ran the post-processing (eval_f1 per epoch) and early stopping followed eval_f1
    logged = [e for e in learned["trainer"].state.log_history if "eval_f1" in e]
    assert len(logged) >= 2
    assert learned["trainer"].state.best_metric == max(e["eval_f1"] for e in logged)


def test_output_dir_is_hub_ready(learned):
    """Model card and training curves; the saved dir answers with plain transformers (AutoModelForQuestionAnswering +
    the tokenizer's offsets: transformers 5 has no question-answering pipeline any more)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out = learned["out"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: question-answering" in card and "| exact_match |" in card and "| f1 |" in card
    assert "postprocess" not in card
    assert (out / "training_curves.png").stat().st_size > 0

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForQuestionAnswering.from_pretrained(str(out)).eval()
    question, context = "甲乙之间是什么？", "的一是在不了甲中国乙有和人这"
    inputs = tokenizer(question, context, truncation="only_second", max_length=48, return_offsets_mapping=True,
                       return_tensors="pt")
    offsets = inputs.pop("offset_mapping")[0]
    in_context = torch.tensor([s == 1 for s in inputs.sequence_ids(0)])
    with torch.no_grad():
        output = model(**inputs)
    start = int(output.start_logits[0].masked_fill(~in_context, -1e4).argmax())
    end = start + int(output.end_logits[0].masked_fill(~in_context, -1e4)[start:start + 30].argmax())
    assert context[offsets[start][0]:offsets[end][1]] == "甲中国乙"


def test_test_predictions_without_answers(learned):
    predictions = load_json(learned["out"] / "predictions.json")
    ids = [q["id"] for _, qas in learned["test_paragraphs"] for q in qas]
    assert sorted(predictions) == sorted(ids)
    assert sorted(load_json(learned["out"] / "nbest_predictions.json")) == sorted(ids)
    results = load_json(learned["out"] / "predict_results.json")
    assert "predict_f1" not in results  # no gold answers: no metrics
    assert results["predict_questions"] == len(ids)
    # most predictions are the 甲...乙 span
    assert sum(p.startswith("甲") and p.endswith("乙") for p in predictions.values()) > len(ids) / 2


def test_trained_model_evaluates_with_its_saved_settings(learned, tmp_path):
    """--do_eval from the output dir alone: max_seq_length/doc_stride come from config.json; same answers."""
    out = tmp_path / "eval_only"
    rq.main(["--model_name_or_path", str(learned["out"]), "--validation_file", str(learned["dev"]), "--do_eval",
             "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true",
             "--per_device_eval_batch_size", "64"])
    assert load_json(out / "data_summary.json")["settings"]["max_seq_length"] == 48
    assert load_json(out / "eval_predictions.json") == load_json(learned["out"] / "eval_predictions.json")


def test_output_dir_with_results_is_not_overwritten(learned):
    with pytest.raises(ValueError, match="already holds results"):
        rq.main(args(learned["model_dir"], learned["out"], "--train_file", learned["dev"], "--do_train",
                     "--max_steps", "1"))


# ------------------------------------------------------------------------------------------------------------------
# SQuAD v2: unanswerable questions
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("v2")
    paragraphs = marker_questions(12, 5, "a", max_len=20)
    for i, (context, qas) in enumerate(paragraphs[:4]):
        qas.append({"id": f"none{i}", "question": "丙是什么？", "answers": [], "is_impossible": True})
    paragraphs.append(("的一是在不了有和人这", [{"id": "plain_empty", "question": "丙是什么？", "answers": []}]))
    return {"dir": d, "file": write_squad(d / "train.json", paragraphs), "n_questions": 12 + 4 + 1}


def test_v2_unanswerable_questions_point_at_cls(qa_model_dir, v2_files, tmp_path):
    out = tmp_path / "out"
    trainer = rq.main(args(qa_model_dir, out, "--train_file", v2_files["file"], "--validation_file", v2_files["file"],
                           "--do_train", "--do_eval", "--max_steps", "1", "--version_2_with_negative",
                           "--null_score_diff_threshold=-1e9"))
    examples = trainer.train_examples
    none_rows = {i for i, e in enumerate(examples) if not e["answers"]["text"]}
    assert len(none_rows) == 5
    for f in trainer.train_dataset:
        if f["example_index"] in none_rows:
            assert f["start_positions"] == f["end_positions"] == 0
    summary = load_json(out / "data_summary.json")["splits"]["train"]
    assert summary["questions_unanswerable"] == 5 and summary["questions_used"] == v2_files["n_questions"]
    # threshold -1e9: the null answer always wins
    predictions = load_json(out / "eval_predictions.json")
    assert set(predictions.values()) == {""}
    results = load_json(out / "eval_results.json")
    assert results["eval_no_answer_exact_match"] == 100 and results["eval_has_answer_exact_match"] == 0
    assert results["eval_exact_match"] == pytest.approx(100 * 5 / v2_files["n_questions"])
    assert "eval_best_f1" in results and "eval_best_f1_threshold" in results
    null_odds = load_json(out / "eval_null_odds.json")
    assert sorted(null_odds) == sorted(predictions)
    nbest = load_json(out / "eval_nbest_predictions.json")
    assert all(any(c["text"] == "" for c in cands) for cands in nbest.values())  # the null answer is a candidate


def test_v1_skips_and_counts_unanswerable_questions(qa_model_dir, v2_files, tmp_path):
    trainer = rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", v2_files["file"], "--validation_file",
                           v2_files["file"], "--do_train", "--do_eval", "--max_steps", "1"))
    summary = load_json(tmp_path / "out" / "data_summary.json")["splits"]
    reason = "unanswerable (no answer; pass --version_2_with_negative)"
    for split in ("train", "validation"):
        assert summary[split]["questions_skipped"] == {reason: 5}
        assert summary[split]["questions_used"] == 12
    assert len(trainer.eval_examples) == 12


# ------------------------------------------------------------------------------------------------------------------
# Formats
# ------------------------------------------------------------------------------------------------------------------


def test_json_lines_formats(qa_model_dir, tmp_path):
    """Flat JSON lines: answers as a list of objects or as {"text": [...], "answer_start": [...]}; integer ids;
    a test file without answers."""
    context = "我们在北京大学学习，北京是首都。"
    lines = [
        {"id": 1, "question": "在哪里学习？", "context": context, "answers": [{"text": "北京大学", "answer_start": 3}]},
        {"id": "2", "question": "首都是哪里？", "context": context, "answers": {"text": ["北京"], "answer_start": [10]}},
        {"id": 3, "question": "什么？", "context": context, "answers": {"text": ["学习"], "answer_start": [0]}},
    ]
    train = h.write_jsonl(tmp_path / "train.jsonl", lines)
    test = h.write_jsonl(tmp_path / "test.jsonl", [{k: v for k, v in r.items() if k != "answers"} for r in lines])
    out = tmp_path / "out"
    rq.main(args(qa_model_dir, out, "--train_file", train, "--validation_file", train, "--test_file", test,
                 "--do_train", "--do_eval", "--do_predict", "--max_steps", "1", "--metric", "squad"))
    summary = load_json(out / "data_summary.json")["splits"]
    assert load_json(out / "data_summary.json")["settings"]["metric"] == "squad"
    assert 0 <= load_json(out / "eval_results.json")["eval_f1"] <= 100
    assert summary["train"]["format"] == "lines"
    assert summary["train"]["answers_repaired"] == 1  # 学习 is at 7, not 0
    assert sorted(load_json(out / "predictions.json")) == ["1", "2", "3"]
    assert sorted(load_json(out / "eval_predictions.json")) == ["1", "2", "3"]


def test_json_list_and_squad_v2_fields_are_read(tmp_path):
    """A JSON list of flat records; SQuAD v2's is_impossible (its plausible_answers are not gold answers)."""
    path = tmp_path / "list.json"
    path.write_text(json.dumps([
        {"id": "a", "question": "哪里？", "context": "北京是首都。", "answers": [{"text": "北京", "answer_start": 0}]},
        {"id": "b", "question": "哪里？", "context": "北京是首都。", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "首都", "answer_start": 3}]},
    ], ensure_ascii=False), encoding="utf-8")
    examples, stats, fmt = utils_qa.read_qa_file(str(path), "validation", version_2=True)
    assert fmt == "lines" and [e["id"] for e in examples] == ["a", "b"]
    assert examples[1]["answers"] == {"text": [], "answer_start": []}
    assert stats["questions_unanswerable"] == 1 and stats["answers"] == 1
    with pytest.raises(DataError, match=r"list\.json: \[1\]: missing 'question'"):
        path.write_text(json.dumps([{"id": "a", "question": "q", "context": "北京", "answers": []},
                                    {"id": "b", "context": "北京", "answers": []}]), encoding="utf-8")
        utils_qa.read_qa_file(str(path), "train", version_2=True)


def test_max_samples_limits_questions(qa_model_dir, scripts_run, tmp_path):
    train = scripts_run["dir"] / "train.json"
    trainer = rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", train, "--validation_file", train,
                           "--test_file", train, "--do_train", "--do_eval", "--do_predict", "--max_steps", "1",
                           "--max_train_samples", "3", "--max_eval_samples", "2", "--max_predict_samples", "4",
                           "--pad_to_max_length"))
    assert trainer.data_collator.padding == "max_length" and trainer.data_collator.max_length == 48
    summary = load_json(tmp_path / "out" / "data_summary.json")["splits"]
    assert [summary[s]["questions_used"] for s in ("train", "validation", "test")] == [3, 2, 4]
    assert len(load_json(tmp_path / "out" / "predictions.json")) == 4


# ------------------------------------------------------------------------------------------------------------------
# Model: a run_mlm.py checkpoint's encoder is transferred; optimizer groups, freezing, bf16
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["BertForMaskedLM", "BertForPreTraining"])
def test_mlm_checkpoint_encoder_is_transferred(qa_model_dir, scripts_run, tmp_path, capsys, architecture):
    import transformers
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(str(qa_model_dir))
    torch.manual_seed(1)
    mlm = getattr(transformers, architecture)(config)
    checkpoint = tmp_path / "mlm"
    mlm.save_pretrained(str(checkpoint))
    transformers.AutoTokenizer.from_pretrained(str(qa_model_dir)).save_pretrained(str(checkpoint))
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert any(k.startswith("cls.") for k in saved)

    train = scripts_run["dir"] / "train.json"
    trainer = rq.main(["--model_name_or_path", str(checkpoint), "--validation_file", str(train), "--do_eval",
                       "--max_seq_length", "32", "--doc_stride", "8", "--max_query_length", "12",
                       "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--disable_tqdm", "true"])
    state = trainer.model.state_dict()
    encoder = [k for k in state if k.startswith(("bert.embeddings.", "bert.encoder."))]
    assert len(encoder) == len([k for k in saved if k.startswith(("bert.embeddings.", "bert.encoder."))]) > 10
    for k in encoder:
        assert torch.equal(state[k], saved[k]), k
    assert "qa_outputs.weight" in state and not any(k.startswith("cls.") for k in state)
    log = capsys.readouterr().out
    assert "encoder loaded; new (random): ['qa_outputs.bias', 'qa_outputs.weight']; not used:" in log


def test_head_learning_rate_freezing_bf16_and_show_examples(qa_model_dir, scripts_run, tmp_path, capsys, monkeypatch):
    import training

    monkeypatch.setattr(training, "cpu_bf16_is_fast", lambda: True)  # bf16 is kept on any CPU here (a tiny model)
    train = scripts_run["dir"] / "train.json"
    trainer = rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", train, "--do_train", "--max_steps", "2",
                           "--head_learning_rate", "1e-2", "--freeze_layers", "0", "--bf16", "--show_examples", "2",
                           max_seq_length=32, doc_stride=8))
    shown = capsys.readouterr().out
    assert shown.count("--- training window") == 2
    assert "tokens:         [CLS] 什 么 是 答 [UNK] ？ [SEP] 我 们 在 北 京 大 学" in shown
    assert "answer:         positions 11..14: 北京大学  (gold: ['北京大学'])" in shown
    groups = trainer.optimizer.param_groups
    lr_of = {id(p): g["initial_lr"] for g in groups for p in g["params"]}
    model = trainer.model
    assert lr_of[id(model.qa_outputs.weight)] == 1e-2
    assert lr_of[id(model.bert.encoder.layer[1].attention.self.query.weight)] == 1e-3
    assert id(model.bert.encoder.layer[0].attention.self.query.weight) not in lr_of  # frozen
    assert not model.bert.encoder.layer[0].attention.self.query.weight.requires_grad
    assert trainer.args.bf16
    assert np.isfinite(load_json(tmp_path / "out" / "train_results.json")["train_loss"])


def test_freeze_all_trains_only_the_span_head(qa_model_dir, scripts_run, tmp_path):
    train = scripts_run["dir"] / "train.json"
    trainer = rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", train, "--do_train", "--max_steps", "1",
                           "--freeze", "all", max_seq_length=32, doc_stride=8))
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    trained = sorted(n for n, p in trainer.model.named_parameters() if id(p) in in_optimizer)
    assert trained == ["qa_outputs.bias", "qa_outputs.weight"]


# ------------------------------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file and the place in the JSON, before training
# ------------------------------------------------------------------------------------------------------------------


def good_squad():
    return {"data": [{"title": "t", "paragraphs": [
        {"context": "我们在北京大学学习。", "qas": [qa("q0", "在哪里？", ("北京大学", 3)), qa("q1", "学什么？", ("学习", 7))]},
        {"context": "北京是首都。", "qas": [qa("q2", "首都？", ("北京", 0))]},
    ]}]}


def broken(change):
    data = good_squad()
    change(data)
    return data


P0, P1 = (lambda d: d["data"][0]["paragraphs"][0]), (lambda d: d["data"][0]["paragraphs"][1])
BAD_SQUAD = [
    ("missing_question", lambda d: P0(d)["qas"][1].pop("question"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]: missing 'question'; add the question text"),
    ("missing_id", lambda d: P1(d)["qas"][0].pop("id"), r"data\[0\]\.paragraphs\[1\]\.qas\[0\]: missing 'id'"),
    ("missing_context", lambda d: P1(d).pop("context"), r"data\[0\]\.paragraphs\[1\]: missing 'context'"),
    ("empty_context", lambda d: P1(d).update(context="  "), r"data\[0\]\.paragraphs\[1\]: empty context"),
    ("duplicate_id", lambda d: P1(d)["qas"][0].update(id="q0"),
     r"data\[0\]\.paragraphs\[1\]\.qas\[0\]: duplicate id 'q0' \(first at data\[0\]\.paragraphs\[0\]\.qas\[0\]\)"),
    ("answers_not_a_list", lambda d: P0(d)["qas"][1].update(answers={"text": "学习", "answer_start": 7}),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers: expected a list, got an object"),
    ("answer_without_text", lambda d: P0(d)["qas"][1]["answers"][0].pop("text"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]: missing 'text'"),
    ("answer_start_not_a_number", lambda d: P0(d)["qas"][1]["answers"][0].update(answer_start="seven"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]\.answer_start: expected a character offset"),
    ("missing_answers", lambda d: P0(d)["qas"][1].pop("answers"),
     r"data\[0\]\.paragraphs\[0\]\.qas\[1\]: missing 'answers'"),
    ("missing_paragraphs", lambda d: d["data"][0].pop("paragraphs"), r"data\[0\]: missing 'paragraphs'"),
    ("qas_not_a_list", lambda d: P1(d).update(qas="北京"), r"data\[0\]\.paragraphs\[1\]\.qas: expected a list"),
    ("question_not_a_string", lambda d: P0(d)["qas"][0].update(question=["在哪里？"]),
     r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: 'question' must be a string"),
]


@pytest.mark.parametrize("name, change, message", BAD_SQUAD, ids=[c[0] for c in BAD_SQUAD])
def test_bad_squad_input_names_file_and_json_path(qa_model_dir, tmp_path, name, change, message):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(broken(change), ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json: " + message):
        rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", path, "--do_train"))
    assert not (tmp_path / "out").exists()  # stopped before anything was written


@pytest.mark.parametrize("content, message", [
    ('{"data": [{"paragraphs": [}]}', r"train\.json:1:27: invalid JSON"),
    ('[{"paragraphs": []}]', r"top level is a list"),
    ('{"version": 1}', r"top level is an object without a 'data' list"),
    ('{"id": 1, "question": "q", "context": "北京", "answers": []}\n{"id": 2, "context": "北京", "answers": []}\n',
     r"train\.json: line 2: missing 'question'"),
    ('{"id": 1, "question": "q", "context": "北京", "answers": []}\n{"id": 2, \n', r"train\.json:2: invalid JSON"),
    ("", r"empty file"),
])
def test_bad_files(qa_model_dir, tmp_path, content, message):
    path = tmp_path / "train.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", path, "--do_train"))


def test_not_utf8_and_missing_file(qa_model_dir, tmp_path):
    path = tmp_path / "train.json"
    path.write_bytes(json.dumps(good_squad(), ensure_ascii=False).encode("gb18030"))
    with pytest.raises(DataError, match=r"train\.json:1: not UTF-8; convert it first, e\.g\. iconv"):
        rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", path, "--do_train"))
    with pytest.raises(DataError, match=r"nothere\.json: file not found"):
        rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", tmp_path / "nothere.json", "--do_train"))


def test_command_line_error_is_one_line(qa_model_dir, tmp_path, capsys):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(broken(lambda d: P0(d)["qas"][1].pop("question")), ensure_ascii=False),
                    encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", path, "--do_train")))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "qas[1]: missing 'question'" in err[0]


def test_doc_stride_too_large_is_explained(qa_model_dir, tmp_path):
    path = write_squad(tmp_path / "train.json", [("北京是首都。", [qa("q", "首都？", ("北京", 0))])])
    with pytest.raises(ValueError, match=r"--doc_stride 20 must be smaller .* 32 - 12 - 3 = 17"):
        rq.main(args(qa_model_dir, tmp_path / "out", "--train_file", path, "--do_train", max_seq_length=32,
                     doc_stride=20))


def test_empty_question_is_skipped_and_counted(tmp_path):
    # CMRC2018's trial set has a question with empty text: it cannot be asked, so it is skipped (and counted)
    data = broken(lambda d: P0(d)["qas"][0].update(question=" "))
    path = tmp_path / "empty_q.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    examples, stats, _ = utils_qa.read_qa_file(str(path), "validation", version_2=False)
    assert stats["questions_skipped"] == {"empty question": 1}
    assert stats["questions_read"] == 3 and [e["id"] for e in examples] == ["q1", "q2"]
