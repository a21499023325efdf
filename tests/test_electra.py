"""pretraining_electra.py: replaced-token detection (ELECTRA) over a BERT encoder.

Tiny models (32 wide, generator 8 wide) on token ids written here (no tokenizer needed): the generator/discriminator
wiring, the corrupted input and the discriminator's labels, learning on a learnable corpus, bf16 autocast, the saved
discriminator loading as a plain BERT into every fine-tuning class, the saved generator as ElectraForMaskedLM.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    ElectraForMaskedLM,
)

import heads
from pretraining_electra import (
    BertForReplacedTokenDetection,
    ReplacedTokenDetectionConfig,
    detection_counts,
    detection_metrics,
    sample_tokens,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4  # ids of the specials, as in tests/helpers.VOCAB
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
VOCAB_SIZE = 120
DIGITS = list(range(5, 15))  # the learnable corpus uses only these 10 ids


def tiny_config(**overrides):
    values = dict(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, generator_num_layers=1)
    return ReplacedTokenDetectionConfig(**{**values, **overrides})


def tiny_model(**overrides):
    torch.manual_seed(0)
    return BertForReplacedTokenDetection(tiny_config(**overrides))


def counting_lines(n, generator):
    """[CLS] d, d+1, d+2, ... (digits, cyclic, random start and length) [SEP], padded: [n, <= 22]."""
    rows = []
    for _ in range(n):
        start = int(torch.randint(10, (1,), generator=generator))
        length = int(torch.randint(12, 21, (1,), generator=generator))
        rows.append([CLS] + [DIGITS[(start + i) % 10] for i in range(length)] + [SEP])
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def mask_tokens(input_ids, generator, probability=0.15):
    """ELECTRA's masking (what MaskingCollator does with mask_replace_prob=1.0): each non-special token is chosen
    with `probability` and becomes [MASK]; labels = the original ids there, -100 elsewhere."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~torch.isin(
        input_ids, torch.tensor(SPECIALS))
    return torch.where(chosen, MASK, input_ids), torch.where(chosen, input_ids, -100)


def fixed_batch():
    """Three lines, the last one padded; masked positions chosen by hand (some hold digit 7, some not)."""
    original = torch.tensor([
        [CLS, 7, 8, 9, 7, 10, SEP, 11, 12, SEP],
        [CLS, 5, 7, 6, 7, 8, 9, UNK, 10, SEP],
        [CLS, 7, 12, 13, SEP, PAD, PAD, PAD, PAD, PAD],
    ])
    masked = torch.zeros_like(original, dtype=torch.bool)
    masked[0, [1, 3, 8]] = True  # originals 7, 9, 12
    masked[1, [2, 5]] = True  # 7, 8
    masked[2, [1, 2]] = True  # 7, 12
    labels = torch.where(masked, original, -100)
    return original, torch.where(masked, MASK, original), labels, (original != PAD).long()


def always_sample(model, token_id):
    """Make the generator's softmax put (all but) all its mass on token_id, so sampling is deterministic."""
    with torch.no_grad():
        model.generator_head.decoder.bias.fill_(-1e4)
        model.generator_head.decoder.bias[token_id] = 1e4


# ------------------------------------------------------------------------------------------------------------------
# Config and model structure
# ------------------------------------------------------------------------------------------------------------------


def test_config_from_a_bert_config_and_its_parts(tmp_path):
    BertConfig(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=8, num_attention_heads=4,
               intermediate_size=64).save_pretrained(tmp_path)
    config = ReplacedTokenDetectionConfig.from_pretrained(tmp_path)  # a plain BERT config.json
    assert config.model_type == "bert_rtd" and config.num_hidden_layers == 8 and config.hidden_size == 32
    assert config.discriminator_loss_weight == 50.0 and config.sampling_temperature == 1.0
    generator = config.generator_config()
    # a quarter of the discriminator's width, heads and feed-forward width by default, all its layers (ELECTRA)
    assert (generator.hidden_size, generator.num_attention_heads, generator.intermediate_size) == (8, 1, 16)
    assert generator.num_hidden_layers == 8 and type(generator) is BertConfig
    small = ReplacedTokenDetectionConfig.from_pretrained(tmp_path, generator_size_divisor=2,
                                                         generator_num_layers=1).generator_config()
    assert (small.hidden_size, small.num_attention_heads, small.intermediate_size, small.num_hidden_layers) == \
        (16, 2, 32, 1)
    full_width = ReplacedTokenDetectionConfig.from_pretrained(tmp_path, generator_size_divisor=1,
                                                              generator_num_layers=2).generator_config()
    assert (full_width.hidden_size, full_width.num_hidden_layers) == (32, 2)
    discriminator = config.discriminator_config()
    assert type(discriminator) is BertConfig and discriminator.model_type == "bert"
    assert discriminator.num_hidden_layers == 8 and not hasattr(discriminator, "generator_size_divisor")
    for bad in ({"generator_num_layers": 0}, {"generator_size_divisor": 0}, {"sampling_temperature": 0.0},
                {"discriminator_loss_weight": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            tiny_config(**bad)
    # 32 / 3 is no width; 48 / 3 = 16 wide cannot hold 16 // 3 = 5 heads of equal size
    with pytest.raises(ValueError, match="generator_size_divisor 3: .*divisor of hidden_size 32"):
        tiny_config(generator_size_divisor=3)
    with pytest.raises(ValueError, match="generator_size_divisor 3: the generator would be 16 wide with 5 "):
        tiny_config(hidden_size=48, num_attention_heads=16, generator_size_divisor=3)
    # a full-width generator needs no projection; a narrower one reads the embeddings through one
    assert tiny_model(generator_size_divisor=1).generator_embeddings_project is None
    assert tiny_model().generator_embeddings_project.weight.shape == (8, 32)


def test_generator_and_discriminator_share_the_embeddings():
    model = tiny_model()
    embeddings = model.bert.embeddings
    # one word-embedding matrix in the whole model, and it is the generator's output projection
    assert model.generator_head.decoder.weight is embeddings.word_embeddings.weight
    vocab_matrices = [n for n, p in model.named_parameters() if p.shape[0] == VOCAB_SIZE and p.dim() == 2]
    assert vocab_matrices == ["bert.embeddings.word_embeddings.weight"]
    assert not any("embeddings" in n for n, _ in model.generator.named_parameters())
    assert len(model.generator.layer) == 1 and len(model.bert.encoder.layer) == 2

    _, masked_ids, labels, attention_mask = fixed_batch()
    shared = {n: p for n, p in model.named_parameters() if n.startswith("bert.embeddings.")}
    assert len(shared) == 5  # word, position, token type, LayerNorm weight and bias

    # the generator's loss alone (discriminator weight 0) trains every shared embedding parameter ...
    model.config.discriminator_loss_weight = 0.0
    model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    for name, p in shared.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # (the discriminator's loss is in the graph times 0: its encoder gets zero gradients)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for n, p in model.named_parameters()
               if n.startswith("bert.encoder."))
    model.zero_grad(set_to_none=True)
    # ... and so does the discriminator's loss alone (no gradient reaches the generator through the sampling)
    out = model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels)
    scored = out.discriminator_labels != -100
    F.binary_cross_entropy_with_logits(out.discriminator_logits[scored],
                                       out.discriminator_labels[scored].float()).backward()
    for name, p in shared.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith(("generator.", "generator_head.")))


def test_output_shapes_and_loss():
    model = tiny_model()
    original, masked_ids, labels, attention_mask = fixed_batch()
    out = model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels)
    n_masked = int((labels != -100).sum())
    assert out.generator_logits.shape == (n_masked, VOCAB_SIZE)  # masked positions only
    for name in ("discriminator_logits", "discriminator_labels", "corrupted_input_ids"):
        assert getattr(out, name).shape == original.shape, name
    assert out.loss.dim() == 0
    torch.testing.assert_close(out.loss.detach(), out.generator_loss + 50.0 * out.discriminator_loss)
    # the generator's loss is cross-entropy at the masked positions, rows in the order of labels[labels != -100]
    torch.testing.assert_close(out.generator_loss,
                               F.cross_entropy(out.generator_logits.detach(), labels[labels != -100]))
    # without labels: the discriminator scores the text as given
    plain = model(input_ids=original, attention_mask=attention_mask)
    assert plain.loss is None and plain.generator_logits is None and plain.discriminator_logits.shape == original.shape


# ------------------------------------------------------------------------------------------------------------------
# Corruption and the discriminator's labels
# ------------------------------------------------------------------------------------------------------------------


def test_corrupted_input_differs_from_the_original_only_at_masked_positions():
    model = tiny_model()
    generator = torch.Generator().manual_seed(0)
    original = counting_lines(64, generator)
    masked_ids, labels = mask_tokens(original, generator)
    masked = labels != -100
    torch.manual_seed(1)
    out = model(input_ids=masked_ids, attention_mask=(original != PAD).long(), labels=labels)
    corrupted = out.corrupted_input_ids
    assert torch.equal(corrupted[~masked], original[~masked])
    assert (corrupted[masked] != MASK).float().mean() > 0.9  # samples, not the [MASK]s (an untrained generator)
    assert (corrupted[masked] != original[masked]).any()
    # the discriminator's label is exactly "differs from the original", on every non-padding token
    scored = original != PAD
    expected = torch.where(scored, (corrupted != original).long(), -100)
    assert torch.equal(out.discriminator_labels, expected)


def test_discriminator_labels_sample_equal_to_original_and_padding():
    model = tiny_model()
    always_sample(model, 7)
    original, masked_ids, labels, attention_mask = fixed_batch()
    out = model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels)
    masked = labels != -100
    assert torch.equal(out.corrupted_input_ids[masked], torch.full((int(masked.sum()),), 7))
    expected = torch.tensor([
        [0, 0, 0, 1, 0, 0, 0, 0, 1, 0],  # masked 7 (sampled 7: original) / 9 / 12 (replaced); [CLS] [SEP] scored
        [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # masked 7 (original), 8 (replaced); [UNK] scored (original)
        [0, 0, 1, 0, 0, -100, -100, -100, -100, -100],  # masked 7, 12; padding not scored
    ])
    assert torch.equal(out.discriminator_labels, expected)
    scored = expected != -100
    torch.testing.assert_close(out.discriminator_loss, F.binary_cross_entropy_with_logits(
        out.discriminator_logits.detach()[scored], expected[scored].float()))
    counts = detection_metrics(detection_counts(out.generator_logits, out.discriminator_logits,
                                                out.discriminator_labels, labels))
    assert counts["replaced_share"] == pytest.approx(4 / int(scored.sum()))
    assert counts["rtd_all_original_accuracy"] == pytest.approx(1 - 4 / int(scored.sum()))
    assert int(scored.sum()) == 25  # 10 + 10 + 5 real tokens


def test_masking_rate_and_labels_from_run_mlms_collator(model_dir):
    """utils_mlm.py's MaskingCollator as --objective rtd configures it (all chosen tokens [MASK]ed): 15% of the real
    tokens are masked, the discriminator's labels say 1 exactly where the sample differs from the original, and
    replacements never outnumber the masks."""
    import helpers as h

    from transformers import AutoTokenizer

    from utils_mlm import MaskingCollator

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    collator = MaskingCollator(tokenizer, mlm_probability=0.15, mask_replace_prob=1.0, random_replace_prob=0.0, seed=0)
    rng = torch.Generator().manual_seed(1)
    features = [{"input_ids": [tokenizer.cls_token_id] + tokenizer.convert_tokens_to_ids(
        [h.FILLER[int(i)] for i in torch.randint(len(h.FILLER), (int(n),), generator=rng)]) + [tokenizer.sep_token_id]}
        for n in torch.randint(10, 60, (400,), generator=rng)]
    batch = collator(features)
    original = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    real = (batch["attention_mask"] == 1) & ~torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    masked = batch["labels"] != -100
    assert abs(masked.sum().item() / real.sum().item() - 0.15) < 0.01
    assert (batch["input_ids"][masked] == tokenizer.mask_token_id).all() and not (masked & ~real).any()

    torch.manual_seed(0)
    model = BertForReplacedTokenDetection(tiny_config(vocab_size=len(tokenizer)))
    with torch.no_grad():
        out = model(**batch)
    replaced = out.discriminator_labels == 1
    assert torch.equal(replaced, out.corrupted_input_ids != original)
    assert torch.equal(out.discriminator_labels == -100, batch["attention_mask"] == 0)
    assert not (replaced & ~masked).any() and 0 < replaced.sum() <= masked.sum()


def test_sample_tokens_follows_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, float("-inf"), 0.0]]).repeat(100_000, 1)
    counts = torch.bincount(sample_tokens(logits), minlength=6).float() / 100_000
    expected = torch.softmax(logits[0], -1)
    assert counts[4] == 0  # probability 0: never drawn
    torch.testing.assert_close(counts, expected, atol=0.006, rtol=0)
    # temperature: sharper below 1, flatter above
    sharp = torch.bincount(sample_tokens(logits, temperature=0.5), minlength=6).float() / 100_000
    flat = torch.bincount(sample_tokens(logits, temperature=2.0), minlength=6).float() / 100_000
    torch.testing.assert_close(sharp, torch.softmax(logits[0] / 0.5, -1), atol=0.006, rtol=0)
    torch.testing.assert_close(flat, torch.softmax(logits[0] / 2.0, -1), atol=0.006, rtol=0)
    assert sharp[0] > counts[0] > flat[0]


# ------------------------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------------------------


def test_learns_replaced_token_detection_on_a_learnable_corpus():
    """Counting digits: the generator soon samples digits only (its loss falls towards ln 10) and the discriminator
    learns to flag what is not a digit: its accuracy beats answering "original" everywhere, both on the model's own
    replacements and on random ones."""
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = torch.Generator().manual_seed(1)
    held_out = counting_lines(256, data)
    held_out_masked, held_out_labels = mask_tokens(held_out, data)

    def evaluate():
        model.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            out = model(input_ids=held_out_masked, attention_mask=(held_out != PAD).long(), labels=held_out_labels)
        model.train()
        return detection_metrics(detection_counts(out.generator_logits, out.discriminator_logits,
                                                  out.discriminator_labels, held_out_labels))

    before = evaluate()
    losses = []
    for _ in range(40):
        original = counting_lines(32, data)
        masked_ids, labels = mask_tokens(original, data)
        out = model(input_ids=masked_ids, attention_mask=(original != PAD).long(), labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    after = evaluate()

    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert before["rtd_accuracy"] < before["rtd_all_original_accuracy"]  # untrained: guesses, worse than baseline
    assert after["rtd_accuracy"] > after["rtd_all_original_accuracy"], after
    assert after["rtd_replaced_precision"] > 0.5 and after["generator_masked_accuracy"] > 0.05, after

    # random replacements (any token of the vocabulary) at the masked positions: flagged far above the baseline
    torch.manual_seed(5)
    masked = held_out_labels != -100
    corrupted = torch.where(masked, torch.randint(len(SPECIALS), VOCAB_SIZE, held_out.shape), held_out)
    with torch.no_grad():
        logits = model.eval().discriminate(corrupted, (held_out != PAD).long())
    scored = held_out != PAD
    truth = corrupted != held_out
    accuracy = ((logits > 0) == truth)[scored].float().mean().item()
    baseline = 1 - truth[scored].float().mean().item()
    assert accuracy > baseline + 0.1, (accuracy, baseline)


def test_bf16_autocast_forward_and_backward():
    model = tiny_model()
    generator = torch.Generator().manual_seed(0)
    original = counting_lines(8, generator)
    masked_ids, labels = mask_tokens(original, generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=masked_ids, attention_mask=(original != PAD).long(), labels=labels)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    detection_counts(out.generator_logits, out.discriminator_logits, out.discriminator_labels, labels)


def test_resize_token_embeddings_keeps_the_generator_tied():
    model = tiny_model()
    model.resize_token_embeddings(VOCAB_SIZE + 8)  # run_mlm.py does this when the tokenizer has more tokens
    assert model.generator_head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.generator_head.decoder.bias.shape == (VOCAB_SIZE + 8,)
    _, masked_ids, labels, attention_mask = fixed_batch()
    assert model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels).generator_logits.shape[1] == \
        VOCAB_SIZE + 8


# ------------------------------------------------------------------------------------------------------------------
# Checkpoints: the discriminator for fine-tuning, the whole model for resuming, a BERT to continue from
# ------------------------------------------------------------------------------------------------------------------


def encoder_weights(model):
    return {k: v for k, v in model.bert.state_dict().items() if not k.startswith("pooler.")}


def assert_same_encoder(loaded, model):
    ours = encoder_weights(model)
    theirs = encoder_weights(loaded)
    assert set(theirs) == set(ours)
    for name, tensor in ours.items():
        assert torch.equal(theirs[name], tensor), name


def test_saved_discriminator_is_a_plain_bert_checkpoint(tmp_path):
    model = tiny_model()
    # train one step so the weights are not the initialisation any loader would also produce
    _, masked_ids, labels, attention_mask = fixed_batch()
    model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.save_discriminator(tmp_path)

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "bert" and saved["architectures"] == ["BertModel"]
    assert not any(k in saved for k in ("generator_num_layers", "generator_size_divisor", "discriminator_loss_weight"))
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is BertConfig
    from safetensors.torch import load_file

    keys = set(load_file(tmp_path / "model.safetensors"))
    assert keys == {f"bert.{k}" for k in model.bert.state_dict()}  # the encoder only, under BERT's names

    base = AutoModel.from_pretrained(tmp_path)
    ours = encoder_weights(model)
    for name, tensor in ours.items():
        assert torch.equal(base.state_dict()[name], tensor), name
    assert_same_encoder(AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3), model)
    assert_same_encoder(AutoModelForTokenClassification.from_pretrained(tmp_path, num_labels=5), model)
    assert_same_encoder(AutoModelForQuestionAnswering.from_pretrained(tmp_path), model)
    # the repo's own heads (run_classification.py --head, run_ner.py --head): they refuse a checkpoint without
    # the encoder weights, so loading is the check
    for head in heads.HEAD_NAMES:
        config = heads.head_config(head, str(tmp_path), num_labels=3)
        assert_same_encoder(AutoModelForSequenceClassification.from_pretrained(tmp_path, config=config), model)
    for head in ("lstm", "crf"):
        config = heads.head_config(head, str(tmp_path), tokens=True, num_labels=5)
        assert_same_encoder(AutoModelForTokenClassification.from_pretrained(tmp_path, config=config), model)
    # same encoder, same features
    base.eval()
    model.eval()
    original = fixed_batch()[0]
    with torch.no_grad():
        assert torch.equal(base(original).last_hidden_state, model.bert(original).last_hidden_state)


@pytest.mark.parametrize("divisor", [4, 1])
def test_saved_generator_is_an_electra_fill_mask_model(tmp_path, divisor):
    model = tiny_model(generator_size_divisor=divisor)
    _, masked_ids, labels, attention_mask = fixed_batch()
    model(input_ids=masked_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.save_generator(tmp_path)

    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is ElectraForMaskedLM
    assert (loaded.config.embedding_size, loaded.config.hidden_size) == (32, 32 // divisor)
    assert hasattr(loaded.electra, "embeddings_project") == (divisor > 1)
    # every weight came from the file (a missing one would be freshly initialised and the logits would differ)
    model.eval()
    with torch.no_grad():
        ours = model.generator_head(model.generate(masked_ids, attention_mask))  # [B, L, vocab]
        theirs = loaded(input_ids=masked_ids, attention_mask=attention_mask).logits
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


def test_whole_model_round_trip_and_continuing_from_a_bert_checkpoint(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "rtd")
    for loaded in (BertForReplacedTokenDetection.from_pretrained(tmp_path / "rtd"),
                   AutoModelForPreTraining.from_pretrained(tmp_path / "rtd")):
        assert type(loaded) is BertForReplacedTokenDetection
        assert loaded.config.generator_size_divisor == 4 and loaded.config.generator_num_layers == 1
        assert loaded.generator_head.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name

    # a BERT checkpoint (run_mlm.py's output) continues with replaced-token detection: the encoder loads, the
    # generator and the detection head start fresh (and finite)
    torch.manual_seed(1)
    bert = BertForMaskedLM(BertConfig(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    bert.save_pretrained(tmp_path / "mlm")
    config = ReplacedTokenDetectionConfig.from_pretrained(tmp_path / "mlm", generator_num_layers=1)
    continued = BertForReplacedTokenDetection.from_pretrained(tmp_path / "mlm", config=config)
    assert_same_encoder(continued, bert)
    assert torch.equal(continued.generator_head.decoder.bias, torch.zeros(VOCAB_SIZE))
    assert continued.generator_head.decoder.weight is continued.bert.embeddings.word_embeddings.weight
    _, masked_ids, labels, attention_mask = fixed_batch()
    assert torch.isfinite(continued(input_ids=masked_ids, attention_mask=attention_mask, labels=labels).loss)


def test_export_encoder_of_a_trainer_checkpoint(tmp_path, model_dir):
    import pretraining_electra

    model = tiny_model().eval()
    model.save_pretrained(tmp_path / "checkpoint-7")  # what a Trainer checkpoint holds: the whole model ...
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp_path / "checkpoint-7")  # ... and the tokenizer
    out = tmp_path / "encoder"
    pretraining_electra.main([str(tmp_path / "checkpoint-7"), str(out)])
    assert json.loads((out / "config.json").read_text())["model_type"] == "bert"
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(model_dir).get_vocab()
    ids = torch.tensor([[2] + list(range(5, 25)) + [3]])
    with torch.no_grad():
        assert torch.equal(AutoModel.from_pretrained(out).eval()(ids).last_hidden_state,
                           model.bert(ids).last_hidden_state)
    with pytest.raises(SystemExit):  # never over an existing model
        pretraining_electra.main([str(tmp_path / "checkpoint-7"), str(out)])


# ------------------------------------------------------------------------------------------------------------------
# run_mlm.py --objective rtd end to end, then run_classification.py from its output directory
# ------------------------------------------------------------------------------------------------------------------


def rtd_args(model_dir, output_dir, corpus, *extra, epochs=1):
    return ["--config_name", str(model_dir), "--tokenizer_name", str(model_dir), "--output_dir", str(output_dir),
            "--train_file", str(corpus), "--line_by_line", "--max_seq_length", "32", "--num_train_epochs",
            str(epochs), "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64",
            "--learning_rate", "3e-3", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
            "--seed", "0", "--dataloader_num_workers", "0", *[str(a) for a in extra]]


def phrase_corpus(path, n_lines, seed=0):
    """Lines of a few fixed 3-5 character phrases: a generator learns which characters follow which. Every character
    of the vocabulary occurs (the classification keywords too: a token never seen in pretraining keeps an embedding
    that the generator's softmax only ever pushed away, like every other unseen token's)."""
    import random

    import helpers as h

    rng = random.Random(seed)
    characters = h.FILLER + h.KEYWORDS
    rng.shuffle(characters)
    phrases = ["".join(characters[i:i + 4]) for i in range(0, len(characters), 4)]
    return h.write_lines(path, ["".join(rng.choice(phrases) for _ in range(rng.randint(2, 5)))
                                for _ in range(n_lines)])


def test_run_mlm_objective_rtd_then_run_classification(tmp_path, model_dir):
    import helpers as h

    import run_classification
    import run_mlm

    corpus = phrase_corpus(tmp_path / "corpus.txt", 800)
    out = tmp_path / "rtd"
    trainer = run_mlm.main(rtd_args(model_dir, out, corpus, "--objective", "rtd", "--generator_size_divisor", "2",
                                    "--do_train", "--do_eval", epochs=4))
    model = trainer.model
    assert type(model) is BertForReplacedTokenDetection and model.config.generator_config().hidden_size == 16
    assert trainer.model_accepts_loss_kwargs is False  # Trainer divides the mean loss by gradient accumulation
    evals = [e for e in trainer.state.log_history if "eval_rtd_accuracy" in e]
    assert len(evals) == 5  # one per epoch + the final evaluation
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"], evals
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_rtd_accuracy"] > results["eval_rtd_all_original_accuracy"], results
    assert results["eval_generator_masked_accuracy"] > 1 / len(h.FILLER), results
    # ELECTRA's masking: 15% of the real tokens, all [MASK] (the generator's samples are the replacements)
    summary = json.loads((out / "pretraining_args.json").read_text())
    assert summary["objective"]["objective"] == "rtd" and summary["objective"]["sampling_temperature"] == 1.0
    assert (summary["masking"]["mask_replace_prob"], summary["masking"]["random_replace_prob"]) == (1.0, 0.0)

    # the output directory is a plain BERT encoder: AutoModel gives the trained discriminator's outputs exactly
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "bert" and saved["architectures"] == ["BertModel"]
    ids = torch.tensor([[2] + list(range(5, 25)) + [3]])
    model.eval()
    with torch.no_grad():
        expected = model.bert(ids).last_hidden_state
        assert torch.equal(AutoModel.from_pretrained(out).eval()(ids).last_hidden_state, expected)
    generator = AutoModelForMaskedLM.from_pretrained(out / "generator")
    assert type(generator) is ElectraForMaskedLM and generator.config.hidden_size == 16

    # run_classification.py loads it unchanged (learning rate 0: the encoder it fine-tunes is the discriminator) ...
    train = h.write_tsv(tmp_path / "train.tsv", h.keyword_rows(320))
    dev = h.write_tsv(tmp_path / "dev.tsv", h.keyword_rows(60, seed=1))
    common = ["--model_name_or_path", str(out), "--train_file", str(train), "--validation_file", str(dev),
              "--report_to", "none", "--save_strategy", "no", "--per_device_train_batch_size", "16",
              "--disable_tqdm", "true", "--seed", "0", "--dataloader_num_workers", "0"]
    frozen = run_classification.main(common + ["--do_train", "--max_steps", "1", "--learning_rate", "0",
                                               "--warmup_steps", "0", "--eval_strategy", "no",
                                               "--output_dir", str(tmp_path / "clf0")])
    with torch.no_grad():
        assert torch.equal(frozen.model.bert.eval()(ids).last_hidden_state, expected)
    # ... and fine-tunes it: the keyword task is learnt
    tuned = run_classification.main(common + ["--do_train", "--do_eval", "--num_train_epochs", "3", "--pooling",
                                              "mean", "--learning_rate", "2e-3",
                                              "--output_dir", str(tmp_path / "clf")])
    assert json.loads((tmp_path / "clf" / "eval_results.json").read_text())["eval_accuracy"] >= 0.9  # chance 0.5
    del tuned


def test_run_mlm_sampling_temperature(tmp_path, model_dir):
    import run_mlm

    corpus = phrase_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "hot"
    trainer = run_mlm.main(rtd_args(model_dir, out, corpus, "--objective", "rtd", "--sampling_temperature", "2.5",
                                    "--do_train", "--max_steps", "2"))
    assert trainer.model.config.sampling_temperature == 2.5
    assert json.loads((out / "pretraining_args.json").read_text())["objective"]["sampling_temperature"] == 2.5
    # forward samples at the config's temperature: a flatter softmax replaces with more distinct tokens
    model = trainer.model.eval()
    ids = torch.tensor([[2] + [4] * 60 + [3]])  # [CLS] [MASK] x 60 [SEP]
    labels = torch.full_like(ids, -100)
    labels[0, 1:-1] = 5
    distinct = {}
    for temperature in (0.05, 2.5):
        model.config.sampling_temperature = temperature
        torch.manual_seed(0)
        with torch.no_grad():
            distinct[temperature] = len(model(input_ids=ids, labels=labels).corrupted_input_ids[0, 1:-1].unique())
    assert distinct[2.5] > distinct[0.05], distinct


def test_untrained_discriminator_warning():
    from pretraining_electra import untrained_discriminator_warning

    # the evaluation of a collapsed 2 x 128 run (lr 1e-3, 3000 steps): "original" everywhere, generator = frequencies
    collapsed = {"eval_rtd_accuracy": 0.8601, "eval_rtd_all_original_accuracy": 0.8601,
                 "eval_rtd_replaced_recall": 0.0, "eval_replaced_share": 0.1399,
                 "eval_generator_masked_accuracy": 0.0487}
    assert "learnt nothing" in untrained_discriminator_warning(collapsed)
    assert untrained_discriminator_warning(collapsed | {"eval_rtd_replaced_recall": 0.02}) is None
    assert untrained_discriminator_warning(collapsed | {"eval_replaced_share": 0.0}) is None  # nothing to find
    assert untrained_discriminator_warning({"eval_loss": 1.0}) is None  # an MLM evaluation


def test_run_mlm_objective_errors(tmp_path, model_dir):
    import run_mlm

    corpus = phrase_corpus(tmp_path / "corpus.txt", 20)
    with pytest.raises(ValueError, match="--generator_size_divisor only apply to --objective rtd"):
        run_mlm.main(rtd_args(model_dir, tmp_path / "a", corpus, "--do_train", "--generator_size_divisor", "2"))
    with pytest.raises(ValueError, match="--sampling_temperature only apply to --objective rtd"):
        run_mlm.main(rtd_args(model_dir, tmp_path / "a2", corpus, "--do_train", "--sampling_temperature", "2"))
    with pytest.raises(ValueError, match="sampling_temperature must be > 0"):
        run_mlm.main(rtd_args(model_dir, tmp_path / "a3", corpus, "--do_train", "--objective", "rtd",
                              "--sampling_temperature", "0"))
    with pytest.raises(ValueError, match="--nsp with --objective rtd"):
        run_mlm.main(rtd_args(model_dir, tmp_path / "b", corpus, "--do_train", "--objective", "rtd", "--nsp"))
    with pytest.raises(ValueError, match="generator_size_divisor 3"):
        run_mlm.main(rtd_args(model_dir, tmp_path / "c", corpus, "--do_train", "--objective", "rtd",
                              "--generator_size_divisor", "3"))
    AutoConfig.for_model("roberta", vocab_size=80, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64).save_pretrained(tmp_path / "roberta")
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        run_mlm.main(rtd_args(model_dir, tmp_path / "d", corpus, "--do_train", "--objective", "rtd",
                              "--config_name", tmp_path / "roberta"))
