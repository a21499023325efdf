"""Word-level vocabularies (data_scripts/train_tokenizer.py --level word) and the scripts that read them.

A BPE and a Unigram vocab are trained on a small corpus written here; it must load with AutoTokenizer as a fast
tokenizer (no jieba), keep BERT's special tokens and ids, hold every character of the corpus, map every token back to
its exact characters, and work with BertForMaskedLM, run_ner.py (character labels) and run_qa.py (answers as exact
context substrings).
"""

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402  (also puts the repo root on sys.path and switches the Hub offline)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import run_ner  # noqa: E402
import run_qa as rq  # noqa: E402
import utils_ner  # noqa: E402
import utils_qa  # noqa: E402
from data_scripts import train_tokenizer  # noqa: E402

# Sentences of words drawn at random, so that the word models learn the words (北京大学, 天气, 工作 ...), each seen
# ~60 times, and not pairs of neighbouring words (a few times each).
WORDS = ["北京大学", "今天", "天气", "很好", "上海", "工作", "张三", "李四", "我们", "喜欢", "酒店", "服务",
         "在", "的", "了", "很", "Hello", "World", "123"]
PUNCTUATION = ["，", "。", "！", " "]


def make_corpus(n=300, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) + rng.choice(PUNCTUATION) for _ in range(n)]


CORPUS = make_corpus()
pytestmark = pytest.mark.filterwarnings("ignore:.*null_placement.*:FutureWarning")

SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


# Settings that learn exactly the words on this corpus: BPE merges pairs seen 20 times or more; Unigram keeps the
# 170 best pieces.
WORD_MODELS = {"bpe": ["--vocab_size", "400", "--min_frequency", "20"], "unigram": ["--vocab_size", "170"]}


@pytest.fixture(scope="module", params=sorted(WORD_MODELS))
def word_vocab(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"word_vocab_{request.param}")
    corpus = h.write_lines(root / "corpus.txt", CORPUS)
    out = root / "tok"
    stats = train_tokenizer.main(
        ["--train_files", str(corpus), "--output_dir", str(out), "--level", "word", "--word_model", request.param,
         *WORD_MODELS[request.param], "--write_config", "--hidden_size", "32", "--num_hidden_layers", "2",
         "--num_attention_heads", "2", "--intermediate_size", "64", "--max_position_embeddings", "128"]
    )
    return out, stats


def load(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def test_loads_as_fast_tokenizer_with_bert_special_tokens(word_vocab):
    from transformers import AutoConfig

    out, stats = word_vocab
    tokenizer = load(out)
    assert tokenizer.is_fast
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] != "BertTokenizer"
    assert {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_IDS} == SPECIAL_IDS
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.mask_token_id) == (0, 100, 103)
    assert len(tokenizer) == stats["vocab_size"] == AutoConfig.from_pretrained(str(out)).vocab_size
    assert stats["level"] == "word" and stats["word_model"] in WORD_MODELS and stats["multi_character_tokens"] > 0
    assert tokenizer.model_max_length == 128

    # Multi-character Chinese tokens, learned from the corpus, no jieba involved.
    assert tokenizer.tokenize("今天天气很好") == ["今天", "天气", "很好"]
    assert "北京大学" in tokenizer.tokenize("张三在北京大学工作")

    # Single texts and pairs are laid out as BERT's: [CLS] A [SEP] B [SEP], token_type_ids 0 then 1.
    pair = tokenizer("今天天气很好", "北京大学")
    ids, types = pair["input_ids"], pair["token_type_ids"]
    first_sep = ids.index(102)
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(102) == 2
    assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    batch = tokenizer(["北京", "今天天气很好，适合出去玩。"], padding=True)
    assert batch["input_ids"][0][-1] == 0 and batch["attention_mask"][0][-1] == 0


def test_every_character_is_a_token_of_its_own(word_vocab):
    out, stats = word_vocab
    tokenizer = load(out)
    vocab = tokenizer.get_vocab()
    chars = {c.lower() for text in CORPUS for c in text if not c.isspace()}
    assert chars <= set(vocab)
    assert stats["characters_not_in_vocab"] == 0 and stats["unk_rate"] == 0.0
    for c in chars:  # so text can also be tokenized character by character with the same vocab (run_ner.py does)
        assert tokenizer.tokenize(c) == [c]


def test_offsets_map_every_token_back_to_its_exact_characters(word_vocab):
    tokenizer = load(word_vocab[0])
    unk = tokenizer.unk_token_id
    texts = CORPUS[:50] + [
        "HELLO World，北京大学 张三！",  # upper case (lowercased by the tokenizer), spaces, full-width punctuation
        "今天龘天气很好",  # an unseen character: one [UNK], its neighbours keep their tokens
        "北京大学" * 150,  # a 600-character run without spaces or punctuation
    ]
    for text in texts:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        covered = []
        for token, token_id, (start, end) in zip(tokens, encoded["input_ids"], encoded["offset_mapping"]):
            assert start < end
            if token_id != unk:
                assert text[start:end].lower() == token, (text, token, start, end)
            covered += range(start, end)
        # every character but whitespace belongs to exactly one token, in order
        assert covered == [i for i, c in enumerate(text) if not c.isspace()], text
    encoded = tokenizer("今天龘天气很好", add_special_tokens=False, return_offsets_mapping=True)
    assert encoded["input_ids"].count(unk) == 1
    assert encoded["offset_mapping"][encoded["input_ids"].index(unk)] == (2, 3)
    long_run = tokenizer("北京大学" * 150, add_special_tokens=False)["input_ids"]
    assert unk not in long_run and len(long_run) < 600


def test_bert_for_masked_lm_trains_with_the_written_config(word_vocab):
    from transformers import AutoConfig, BertForMaskedLM

    out, stats = word_vocab
    tokenizer = load(out)
    config = AutoConfig.from_pretrained(str(out))
    assert config.vocab_size == len(tokenizer) and config.pad_token_id == 0
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    batch = tokenizer(["北京大学在北京", "今天天气很好"], padding=True, return_tensors="pt")
    labels = batch["input_ids"].clone()
    batch["input_ids"][:, 1] = tokenizer.mask_token_id
    output = model(**batch, labels=labels)
    assert output.logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # the written stats count BertModel with its pooler (hidden x hidden + hidden); BertForMaskedLM has none
    pooler = config.hidden_size * config.hidden_size + config.hidden_size
    assert sum(p.numel() for p in model.bert.parameters()) + pooler == stats["config"]["parameters"]


# ------------------------------------------------------------------------------------------------------------------
# The run scripts with a word vocab
# ------------------------------------------------------------------------------------------------------------------


def test_run_ner_labels_characters_with_their_single_character_tokens(word_vocab, tmp_path):
    """run_ner.py tokenizes every character on its own: with a word vocab each character is still exactly one token
    (its own), so character labels and entity offsets are unchanged; the multi-character tokens are not used."""
    out, _ = word_vocab
    sentences = [("张三在北京大学工作", {"PER": {"张三": [[0, 1]]}, "ORG": {"北京大学": [[3, 6]]}}),
                 ("李四在上海工作", {"PER": {"李四": [[0, 1]]}, "LOC": {"上海": [[3, 4]]}})] * 8
    data = h.write_jsonl(tmp_path / "train.json", [{"text": t, "label": label} for t, label in sentences])
    run_ner.main(h.tiny_train_args(out, tmp_path / "out", "--train_file", data, "--validation_file", data,
                                   "--test_file", data, "--do_train", "--do_eval", "--do_predict",
                                   "--max_seq_length", "32", epochs=1))
    summary = json.loads((tmp_path / "out" / "data_summary.json").read_text())["splits"]["train"]
    assert summary["characters_by_tokenizer"] == {}  # no character split, unknown or dropped
    assert summary["mean_chunk_tokens"] == pytest.approx(np.mean([len(t) for t, _ in sentences]) + 2)

    tokenizer = load(out)
    char_tokenizer = utils_ner.CharTokenizer(tokenizer, 32)
    text = sentences[0][0]
    assert [char_tokenizer(c, Counter()) for c in text] == [[tokenizer.convert_tokens_to_ids(c)] for c in text]
    assert len(tokenizer.tokenize(text)) < len(text)  # the same text, tokenized as a whole, has word tokens
    # The gold entities come back at their character offsets, as written in the file.
    lines = (tmp_path / "out" / "predict_entities.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert sorted((e["text"], e["start"], e["end"]) for e in first["gold_entities"]) == [
        ("北京大学", 3, 7), ("张三", 0, 2)]


def test_run_mlm_spell_out_share_pretrains_on_character_sequences_too(word_vocab, tmp_path):
    """run_mlm.py --spell_out_share: that share of the training sentences is read one character per token (the ids
    run_ner.py gives each character), the rest keep their words; the same sentences on every run; recorded."""
    import run_mlm
    import utils_mlm

    out, _ = word_vocab
    tokenizer = load(out)
    chars_of = utils_mlm.character_ids(tokenizer)
    assert chars_of[tokenizer.convert_tokens_to_ids("北京大学")] == tokenizer.convert_tokens_to_ids(list("北京大学"))
    corpus = h.write_lines(tmp_path / "corpus.txt", CORPUS)

    def train_examples(share, name):
        trainer = run_mlm.main([
            "--config_name", str(out), "--tokenizer_name", str(out), "--train_file", str(corpus), "--do_train",
            "--line_by_line", "--max_seq_length", "64", "--spell_out_share", str(share), "--max_steps", "1",
            "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / name), "--save_strategy", "no",
            "--eval_strategy", "no",
            "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0"])
        settings = json.loads((tmp_path / name / "pretraining_args.json").read_text())
        assert settings["spell_out_share"] == share
        return trainer.train_dataset["input_ids"]

    def spelt(ids):
        return [c for i in ids for c in chars_of.get(i, [i])]

    words, half = train_examples(0, "words"), train_examples(0.5, "half")
    assert len(words) == len(half) == len(CORPUS)
    with_words = [i for i, ids in enumerate(words) if spelt(ids) != ids]
    assert len(with_words) > 0.9 * len(words)
    for ids, mixed in zip(words, half):
        assert mixed in (ids, spelt(ids))  # a whole sentence is spelt out or left as it is
    n_spelt = sum(half[i] == spelt(words[i]) for i in with_words)
    assert 0.35 < n_spelt / len(with_words) < 0.65
    assert train_examples(0.5, "again") == half  # picked by a hash: the same sentences every run

    # With whole-word masking a spelt word stays one word; without, every character is its own, as every token is.
    word = tokenizer.convert_tokens_to_ids("北京大学")
    batch = {"ids": [[[word, 5]]], "starts": [[[1, 1]]]}
    for whole_words, starts in ((True, [1, 0, 0, 0, 1]), (False, [1, 1, 1, 1, 1])):
        spelt_batch = utils_mlm.spell_out_documents(batch, chars_of, 1.0, whole_words)
        assert spelt_batch == {"ids": [[chars_of[word] + [5]]], "starts": [[starts]]}


def test_run_mlm_spell_out_share_needs_a_word_vocabulary(tmp_path):
    import run_mlm
    from script_utils import DataError

    char_vocab = h.build_tiny_bert(tmp_path / "char_vocab")
    corpus = h.write_lines(tmp_path / "corpus.txt", ["".join(h.FILLER[i:i + 8]) for i in range(20)])
    common = ["--config_name", str(char_vocab), "--tokenizer_name", str(char_vocab), "--train_file", str(corpus),
              "--do_train", "--max_steps", "1", "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    with pytest.raises(DataError, match="no multi-character tokens to spell out"):
        run_mlm.main(common + ["--spell_out_share", "0.5"])
    with pytest.raises(ValueError, match="a share of the sentences, from 0 to 1"):
        run_mlm.main(common + ["--spell_out_share", "1.5"])


def test_run_qa_answers_are_exact_substrings_with_a_word_vocab(word_vocab, tmp_path):
    """Offsets of multi-character tokens map answers onto tokens; an answer that starts or ends inside a token is
    counted (answers_not_on_token_boundaries) and can only be predicted as the whole token, still an exact substring
    of the context."""
    out, _ = word_vocab
    tokenizer = load(out)
    context = "张三在北京大学工作，李四在上海工作。"
    assert "北京大学" in tokenizer.tokenize(context)  # so the answer 北京 lies inside a token
    qas = [{"id": "whole", "question": "张三在哪里工作？", "answers": [{"text": "北京大学", "answer_start": 3}]},
           {"id": "person", "question": "谁在上海工作？", "answers": [{"text": "李四", "answer_start": 10}]},
           {"id": "inside", "question": "哪个城市？", "answers": [{"text": "北京", "answer_start": 3}]}]
    squad = {"version": "v1.0", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    data = tmp_path / "train.json"
    data.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    trainer = rq.main(h.tiny_train_args(out, tmp_path / "out", "--train_file", data, "--validation_file", data,
                                        "--do_train", "--do_eval", "--max_steps", "1", "--max_seq_length", "48",
                                        "--doc_stride", "8", "--max_query_length", "12"))
    summary = json.loads((tmp_path / "out" / "data_summary.json").read_text())["splits"]["train"]
    assert summary["answers_not_on_token_boundaries"] == 1

    # Perfect logits on the training labels: the aligned answers come back exactly, the one inside a token as the
    # covering token; every prediction is a substring of the context.
    features, examples = trainer.eval_dataset, trainer.eval_examples
    n, width = len(features), max(features["length"])
    start, end = np.full((n, width), -10.0), np.full((n, width), -10.0)
    for i, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])):
        start[i, s], end[i, e] = 10.0, 10.0
    predictions, _, _ = utils_qa.postprocess_predictions(examples, features, start, end)
    assert predictions["whole"] == "北京大学" and predictions["person"] == "李四"
    assert predictions["inside"] == "北京大学"
    assert all(p in context for p in predictions.values())
    saved = json.loads((tmp_path / "out" / "eval_predictions.json").read_text(encoding="utf-8"))
    assert all(p in context for p in saved.values())


def test_word_model_needs_word_level(tmp_path):
    corpus = h.write_lines(tmp_path / "corpus.txt", CORPUS)
    with pytest.raises(SystemExit):
        train_tokenizer.main(["--train_files", str(corpus), "--output_dir", str(tmp_path / "out"),
                              "--word_model", "unigram"])
    assert not (tmp_path / "out").exists()
