"""ELECTRA's replaced-token detection (Clark et al. 2020) for a BERT encoder: the model, its config, its outputs.

BERT's masked LM learns from the ~15% of tokens it masks. ELECTRA trains a small generator to fill the masks (an
ordinary masked LM), samples its guesses into the text, and trains the encoder we keep, the discriminator, to tell
for EVERY token whether it is the original or a replacement. Every token gives a training signal, so at equal compute
the discriminator learns more than an MLM model does (the paper's ELECTRA-Small beats BERT-Small by 4.8 GLUE points
at equal pretraining compute, table 1).

    masked text ──> shared embeddings ──> projection to the generator's width ──> generator (BERT layers, 1/4
                    (token + position + type)                          wide by default) ──> MLM head (tied to the
                                                                 word embeddings) │ sample at the masked positions
    corrupted text (original tokens, samples where masked) ──> shared embeddings ──> discriminator (BertModel)
                                                             ──> per-token head: 1 logit "was this token replaced?"
    loss = generator MLM loss + discriminator_loss_weight (50) * discriminator loss over every non-padding token

Input: the batches of utils_mlm.py's MaskingCollator (input_ids with [MASK] at the chosen positions, labels = original
ids there and -100 elsewhere). The paper masks with [MASK] only: run_mlm.py --objective rtd sets the collator's
mask_replace_prob=1.0, random_replace_prob=0.0 unless told otherwise.

Layout: the discriminator is a plain BertModel kept at `self.bert`, so its parameters are named `bert.embeddings.*`,
`bert.encoder.*` exactly as in every BERT checkpoint:
  * `model.save_discriminator(dir)` writes it as an ordinary BERT checkpoint (BertConfig, model_type "bert",
    architectures ["BertModel"]; weights `bert.*`): run_classification.py (every head), run_ner.py, run_qa.py and
    AutoModel.from_pretrained load it with no code changes. The detection head is not written: it only serves
    pretraining, and the discriminator has no MLM head to fill masks with;
  * `model.save_generator(dir)` writes the generator with its own copy of the shared embeddings as an
    ElectraForMaskedLM checkpoint (the same layout: ELECTRA's embeddings_project and generator head), a fill-mask
    model that AutoModelForMaskedLM and pipeline("fill-mask") load. run_mlm.py puts it in the output directory's
    generator/;
  * `BertForReplacedTokenDetection.from_pretrained(bert_dir, config=ReplacedTokenDetectionConfig.from_pretrained(
    bert_dir))` continues pretraining a BERT checkpoint (bert-base-chinese, run_mlm.py's output) with replaced-token
    detection: the encoder loads, the generator and the detection head start fresh;
  * `save_pretrained` / `from_pretrained` of the whole model (what Trainer checkpoints hold, for --resume) keep all of
    it under model_type "bert_rtd". To fine-tune such a checkpoint (say, to see what half the pretraining bought),
    export its encoder first: `python pretraining_electra.py OUTPUT_DIR/checkpoint-3000 encoder_3000/`.
"""

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig, AutoModelForPreTraining, BertConfig, BertModel, BertPreTrainedModel, ElectraConfig
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEncoder
from transformers.utils import ModelOutput

# Fields of ReplacedTokenDetectionConfig that a plain BertConfig does not have (left out of the saved discriminator).
RTD_FIELDS = ("generator_size_divisor", "generator_num_layers", "discriminator_loss_weight", "sampling_temperature")
NOT_CARRIED = ("model_type", "transformers_version", "architectures", "auto_map")
# What an ElectraConfig takes from the generator's BertConfig (the rest of a BertConfig means nothing to ELECTRA)
ELECTRA_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                  "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id")


class ReplacedTokenDetectionConfig(BertConfig):
    r"""A BertConfig (the discriminator's shape: every BERT field means what it means there) plus the generator and
    the loss. `ReplacedTokenDetectionConfig.from_pretrained(bert_dir, **overrides)` reads a plain BERT config.json.

    generator_size_divisor: the generator's width, feed-forward width and attention heads are the discriminator's
        divided by it (ELECTRA-Small: 4; ELECTRA-Base/Large: 3 and 4). ELECTRA's generator is deliberately smaller
        than the discriminator (1/4 to 1/2 of its size works best, paper section 3.2 and figure 3): a generator as
        strong as the discriminator makes replacements so plausible that the detection task is too hard to learn
        from, and it spends compute on a model that is thrown away. A weak generator also gives a curriculum: its
        samples get harder to spot as it learns. Being narrower, it reads the shared embeddings through a linear
        projection, and its MLM head projects back to the embedding width to score with the word embeddings.
    generator_num_layers: transformer layers of the generator (None = num_hidden_layers, as in ELECTRA). Fewer layers
        is the other way to shrink it: generator_size_divisor=1, generator_num_layers=1 is a full-width one-layer
        generator.
    discriminator_loss_weight: lambda in loss = generator MLM loss + lambda * discriminator loss (ELECTRA: 50; the
        binary loss per token is much smaller than the MLM loss over the vocabulary).
    sampling_temperature: the generator's logits are divided by it before sampling replacements (1.0 = ELECTRA).
    """

    model_type = "bert_rtd"

    generator_size_divisor: int = 4
    generator_num_layers: int | None = None
    discriminator_loss_weight: float | int = 50.0
    sampling_temperature: float | int = 1.0

    def __post_init__(self, **kwargs):
        # from_pretrained(bert_dir) passes the file's "model_type" ("bert") on as a kwarg; left in, it would shadow
        # the class's model_type as an instance attribute.
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)
        for name in ("generator_size_divisor", "generator_num_layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        generator = self.generator_config()
        if self.hidden_size % self.generator_size_divisor or generator.hidden_size % generator.num_attention_heads:
            raise ValueError(
                f"generator_size_divisor {self.generator_size_divisor}: the generator would be "
                f"{self.hidden_size / self.generator_size_divisor:g} wide with {generator.num_attention_heads} "
                f"attention head(s); pick a divisor of hidden_size {self.hidden_size} that leaves a width divisible "
                f"by num_attention_heads {self.num_attention_heads} // divisor.")
        if self.discriminator_loss_weight < 0:
            raise ValueError(f"discriminator_loss_weight must be >= 0, got {self.discriminator_loss_weight}.")
        if self.sampling_temperature <= 0:
            raise ValueError(f"sampling_temperature must be > 0, got {self.sampling_temperature}.")

    def discriminator_config(self):
        """The discriminator as a plain BertConfig (model_type "bert"): what save_discriminator writes."""
        values = {k: v for k, v in self.to_dict().items() if k not in RTD_FIELDS + NOT_CARRIED}
        return BertConfig(**values, architectures=["BertModel"])

    def generator_config(self):
        """The generator's BertConfig: the discriminator's, generator_size_divisor times narrower."""
        values = {k: v for k, v in self.to_dict().items() if k not in RTD_FIELDS + NOT_CARRIED}
        divisor = self.generator_size_divisor
        values["hidden_size"] = self.hidden_size // divisor
        values["num_attention_heads"] = max(1, self.num_attention_heads // divisor)
        values["intermediate_size"] = max(1, self.intermediate_size // divisor)
        values["num_hidden_layers"] = self.generator_num_layers or self.num_hidden_layers
        return BertConfig(**values)


@dataclass
class ReplacedTokenDetectionOutput(ModelOutput):
    r"""
    loss: generator_loss + discriminator_loss_weight * discriminator_loss (given labels).
    generator_loss: the generator's cross-entropy at the masked positions.
    discriminator_loss: binary cross-entropy "replaced or not", averaged over the non-padding positions.
    generator_logits [n_masked, vocab_size]: the generator's scores at the masked positions only, in row-major order
        (the order of labels[labels != -100]); its argmax against those labels is the generator's masked accuracy.
    discriminator_logits [batch, seq_len]: > 0 means "replaced".
    discriminator_labels [batch, seq_len]: 1 = replaced, 0 = original (including a sample equal to the original),
        -100 = padding (not scored).
    corrupted_input_ids [batch, seq_len]: what the discriminator read.
    """

    loss: torch.Tensor | None = None
    generator_loss: torch.Tensor | None = None
    discriminator_loss: torch.Tensor | None = None
    generator_logits: torch.Tensor | None = None
    discriminator_logits: torch.Tensor | None = None
    discriminator_labels: torch.Tensor | None = None
    corrupted_input_ids: torch.Tensor | None = None


def sample_tokens(logits, temperature=1.0):
    """One token id per row of logits [n, vocab], drawn from softmax(logits / temperature).

    Inverse-transform sampling: one uniform number per row, looked up in the row's cumulative probabilities. The
    same distribution as torch.multinomial(probabilities, 1), ~4x faster on CPU at a 16k vocabulary (where
    multinomial took ~10% of a training step)."""
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)  # [n, vocab]
    cumulative = probabilities.cumsum(dim=-1)  # [n, vocab]
    draws = torch.rand(cumulative.shape[0], 1, device=logits.device) * cumulative[:, -1:]  # [n, 1], below the total
    # right=True: the first token whose cumulative probability exceeds the draw (never a zero-probability token)
    tokens = torch.searchsorted(cumulative, draws, right=True).squeeze(1)  # [n]
    return tokens.clamp_max(logits.shape[-1] - 1)  # a draw rounded up to the total would point past the end


class GeneratorHead(nn.Module):
    """ELECTRA's generator head: dense from the generator's width back to the embedding width, GELU, LayerNorm, then
    scores over the vocabulary. The decoder's weight is the shared word embedding matrix (tied by
    BertForReplacedTokenDetection._tied_weights_keys)."""

    def __init__(self, generator_config, embedding_size):
        super().__init__()
        self.dense = nn.Linear(generator_config.hidden_size, embedding_size)
        self.activation = ACT2FN["gelu"]  # ELECTRA's, whatever hidden_act is (so ElectraForMaskedLM computes the same)
        self.LayerNorm = nn.LayerNorm(embedding_size, eps=generator_config.layer_norm_eps)
        self.decoder = nn.Linear(embedding_size, generator_config.vocab_size)

    def forward(self, hidden_states):
        # [n, generator hidden] -> [n, embedding] -> [n, vocab]
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))


class DiscriminatorHead(nn.Module):
    """Per token: dense + activation + one logit, "this token was replaced" (ELECTRA's discriminator head)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states):
        return self.classifier(self.activation(self.dense(hidden_states))).squeeze(-1)  # [B, L, hidden] -> [B, L]


class BertForReplacedTokenDetection(BertPreTrainedModel):
    """Generator (small masked LM) + discriminator (BertModel, the encoder to fine-tune), embeddings shared."""

    config_class = ReplacedTokenDetectionConfig
    base_model_prefix = "bert"
    _tied_weights_keys = {"generator_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}
    # A BERT checkpoint's MLM/NSP heads and pooler have no place here (continued pretraining from one)
    _keys_to_ignore_on_load_unexpected = [r"^cls\.", r"pooler\."]
    # The loss is a mean over this batch: Trainer must divide it by the gradient-accumulation steps itself (forward
    # takes **kwargs, from which Trainer would otherwise conclude it normalises by num_items_in_batch)
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        # The discriminator, named `bert` so that its parameters carry BERT's own names. No pooler: nothing trains it.
        self.bert = BertModel(config, add_pooling_layer=False)
        self.discriminator_head = DiscriminatorHead(config)
        # The generator: narrower BERT layers over the same embedding module (self.bert.embeddings, used in forward;
        # not a second copy). ELECTRA shares the embeddings because the generator's softmax over the vocabulary
        # updates every token embedding at every step, while the discriminator alone only updates the embeddings of
        # tokens it sees.
        generator_config = config.generator_config()
        generator_config._attn_implementation = config._attn_implementation
        self.generator_embeddings_project = (nn.Linear(config.hidden_size, generator_config.hidden_size)
                                             if generator_config.hidden_size != config.hidden_size else None)
        self.generator = BertEncoder(generator_config)
        self.generator_head = GeneratorHead(generator_config, config.hidden_size)
        self.post_init()

    def get_output_embeddings(self):
        return self.generator_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.generator_head.decoder = new_embeddings

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, GeneratorHead):
            init.zeros_(module.decoder.bias)

    def generate(self, input_ids, attention_mask, token_type_ids=None):
        """The generator's hidden states: input_ids [B, L] -> [B, L, generator hidden]."""
        embedded = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # [B, L, hidden]
        if self.generator_embeddings_project is not None:
            embedded = self.generator_embeddings_project(embedded)  # [B, L, generator hidden]
        # the mask in the format of the generator's own attention implementation (sdpa: bool/None, eager: additive)
        mask = create_bidirectional_mask(config=self.generator.config, inputs_embeds=embedded,
                                         attention_mask=attention_mask)
        return self.generator(embedded, attention_mask=mask).last_hidden_state

    def discriminate(self, input_ids, attention_mask=None, token_type_ids=None):
        """input_ids [B, L] -> logits [B, L], > 0 = "replaced"."""
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return self.discriminator_head(hidden)  # [B, L, hidden] -> [B, L]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        r"""
        input_ids [B, L]: the masked text (the collator's [MASK] at the chosen positions).
        labels [B, L]: the original token ids at the masked positions, -100 elsewhere. Without labels there is nothing
            to replace: the discriminator scores input_ids as given (which tokens look replaced?).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if labels is None:
            return ReplacedTokenDetectionOutput(
                discriminator_logits=self.discriminate(input_ids, attention_mask, token_type_ids))
        masked = labels != -100  # [B, L]

        # 1. Generator: a masked LM over the shared embeddings, scored at the masked positions only (the vocabulary
        #    projection of the other ~85% of positions would be wasted work, as in run_mlm.py's SparseBertForMaskedLM)
        generator_hidden = self.generate(input_ids, attention_mask, token_type_ids)  # [B, L, generator hidden]
        generator_logits = self.generator_head(generator_hidden[masked])  # [n_masked, vocab]
        if generator_logits.shape[0] == 0:
            generator_loss = generator_logits.sum() * 0.0
        else:
            generator_loss = F.cross_entropy(generator_logits.float(), labels[masked])

        # 2. Replacements: one sample per masked position from the generator's softmax. Sampling is not
        #    differentiable: the generator learns from its MLM loss only, not from fooling the discriminator.
        original = torch.where(masked, labels, input_ids)  # [B, L], the text before masking
        corrupted = original.clone()
        with torch.no_grad():
            if generator_logits.shape[0] > 0:
                corrupted[masked] = sample_tokens(generator_logits, self.config.sampling_temperature)  # [n_masked]
        # A sample equal to the original is original (label 0), as in the paper
        replaced = corrupted != original  # [B, L] bool
        scored = attention_mask.bool()  # every real token, [CLS] and [SEP] included (ELECTRA's input_mask)
        discriminator_labels = torch.where(scored, replaced.long(), torch.full_like(original, -100))  # [B, L]

        # 3. Discriminator: the full encoder reads the corrupted text, one logit per token
        discriminator_logits = self.discriminate(corrupted, attention_mask, token_type_ids)  # [B, L]
        if scored.any():
            discriminator_loss = F.binary_cross_entropy_with_logits(discriminator_logits[scored].float(),
                                                                    replaced[scored].float())
        else:
            discriminator_loss = discriminator_logits.sum() * 0.0
        loss = generator_loss + self.config.discriminator_loss_weight * discriminator_loss
        return ReplacedTokenDetectionOutput(
            loss=loss, generator_loss=generator_loss.detach(), discriminator_loss=discriminator_loss.detach(),
            generator_logits=generator_logits, discriminator_logits=discriminator_logits,
            discriminator_labels=discriminator_labels, corrupted_input_ids=corrupted)

    def save_discriminator(self, save_directory, tokenizer=None):
        """Write the discriminator as a plain BERT checkpoint (config.json: BertConfig, model_type "bert"; weights
        `bert.embeddings.*`, `bert.encoder.*` in model.safetensors), plus the tokenizer if given. This is the
        directory to fine-tune: `run_classification.py --model_name_or_path save_directory`."""
        os.makedirs(save_directory, exist_ok=True)
        self.config.discriminator_config().save_pretrained(save_directory)
        weights = {f"bert.{name}": tensor.detach().contiguous().cpu()
                   for name, tensor in self.bert.state_dict().items()}
        save_file(weights, os.path.join(save_directory, "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)

    def save_generator(self, save_directory, tokenizer=None):
        """Write the generator as an ElectraForMaskedLM checkpoint (embedding_size = the discriminator's width,
        hidden_size = the generator's) with a copy of the shared embeddings: a fill-mask model of its own."""
        os.makedirs(save_directory, exist_ok=True)
        generator = self.generator.config
        values = {k: v for k, v in generator.to_dict().items() if k not in NOT_CARRIED and k in ELECTRA_FIELDS}
        ElectraConfig(**values, embedding_size=self.config.hidden_size,
                      architectures=["ElectraForMaskedLM"]).save_pretrained(save_directory)
        weights = {f"electra.embeddings.{k}": v for k, v in self.bert.embeddings.state_dict().items()}
        if self.generator_embeddings_project is not None:
            weights |= {f"electra.embeddings_project.{k}": v
                        for k, v in self.generator_embeddings_project.state_dict().items()}
        weights |= {f"electra.encoder.{k}": v for k, v in self.generator.state_dict().items()}
        head = self.generator_head
        weights |= {f"generator_predictions.{k}": v for k, v in head.state_dict().items()
                    if not k.startswith("decoder.")}
        weights["generator_lm_head.bias"] = head.decoder.bias  # the weight is tied to the word embeddings
        weights = {k: v.detach().contiguous().cpu().clone() for k, v in weights.items()}
        save_file(weights, os.path.join(save_directory, "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)


# ------------------------------------------------------------------------------------------------------------------
# Metrics: counts per batch (sum them over an evaluation), then accuracies
# ------------------------------------------------------------------------------------------------------------------

COUNT_NAMES = ("masked", "generator_correct", "scored", "discriminator_correct", "replaced", "predicted_replaced",
               "replaced_found")


def detection_counts(generator_logits, discriminator_logits, discriminator_labels, labels):
    """One batch's counts (a LongTensor [7], in COUNT_NAMES order); they add up across batches.

    generator_logits [n_masked, vocab] and labels [B, L] (-100 = not masked): the generator's masked accuracy.
    discriminator_logits / discriminator_labels [B, L]: replaced-token detection."""
    targets = labels[labels != -100]  # [n_masked], the order of generator_logits' rows
    scored = discriminator_labels != -100
    predicted = discriminator_logits > 0  # [B, L]
    truth = discriminator_labels == 1
    return torch.stack([
        targets.new_tensor(targets.numel()),
        (generator_logits.argmax(-1) == targets).sum(),
        scored.sum(),
        ((predicted == truth) & scored).sum(),
        (truth & scored).sum(),
        (predicted & scored).sum(),
        (predicted & truth & scored).sum(),
    ]).long().cpu()


def detection_metrics(counts):
    """counts (summed detection_counts) -> metrics. rtd_all_original_accuracy: the accuracy of answering "original"
    everywhere, the baseline rtd_accuracy has to beat (replacements are a minority: at most the masked share)."""
    c = dict(zip(COUNT_NAMES, (int(x) for x in counts)))
    return {
        "generator_masked_accuracy": c["generator_correct"] / max(c["masked"], 1),
        "rtd_accuracy": c["discriminator_correct"] / max(c["scored"], 1),
        "rtd_all_original_accuracy": 1 - c["replaced"] / max(c["scored"], 1),
        "rtd_replaced_precision": c["replaced_found"] / max(c["predicted_replaced"], 1),
        "rtd_replaced_recall": c["replaced_found"] / max(c["replaced"], 1),
        "replaced_share": c["replaced"] / max(c["scored"], 1),
    }


def reduce_outputs(logits, labels):
    """Trainer's preprocess_logits_for_metrics: per evaluation batch keep only the counts and the summed losses
    ([1, 9] float), not the generator's [n_masked, vocab] scores. `logits` are the model's outputs after the loss, in
    ReplacedTokenDetectionOutput's order."""
    generator_loss, discriminator_loss, generator_logits, discriminator_logits, discriminator_labels, _ = logits
    counts = detection_counts(generator_logits, discriminator_logits, discriminator_labels, labels).float()
    n_masked, n_scored = counts[0], counts[2]
    losses = torch.stack([generator_loss.float().cpu() * n_masked, discriminator_loss.float().cpu() * n_scored])
    return torch.cat([counts, losses]).unsqueeze(0)  # [1, 9]


def compute_metrics(eval_pred):
    """Trainer's compute_metrics over reduce_outputs' rows: detection_metrics plus both losses per token."""
    totals = np.asarray(eval_pred.predictions).reshape(-1, len(COUNT_NAMES) + 2).sum(0)
    metrics = detection_metrics(totals[:len(COUNT_NAMES)])
    metrics["generator_loss"] = float(totals[-2]) / max(float(totals[0]), 1.0)
    metrics["discriminator_loss"] = float(totals[-1]) / max(float(totals[2]), 1.0)
    return metrics


def untrained_discriminator_warning(metrics):
    """A warning when the evaluation shows a discriminator that finds no replaced token at all (recall 0: it answers
    "original" everywhere, so rtd_accuracy = rtd_all_original_accuracy), else None. Such an encoder has learnt nothing
    that fine-tuning could use. Seen on a 2 x 128 encoder over packed blocks of short texts at learning rates 1e-3,
    3e-4 and 1e-4 (batch 32), with the generator 1/4, 1/2 or full width and the detection loss weighted 50 or 1: the
    generator never left word frequencies in the first epoch (a plain masked LM on those blocks did not either), so
    its replacements were as frequent as the originals and the discriminator settled at "always original"."""
    recall = metrics.get("eval_rtd_replaced_recall")
    if recall is None or recall > 0 or not metrics.get("eval_replaced_share"):
        return None
    accuracy, baseline = metrics["eval_rtd_accuracy"], metrics["eval_rtd_all_original_accuracy"]
    generator = metrics.get("eval_generator_masked_accuracy", 0.0)
    return (f"The discriminator found none of the replaced tokens (eval_rtd_accuracy {accuracy:.4f} = answering "
            f"'original' everywhere, {baseline:.4f}; generator masked accuracy {generator:.1%}): its encoder has "
            "learnt nothing that fine-tuning can use. Here (2 x 128, packed blocks of short texts) the generator had "
            "not left word frequencies either, and a lower --learning_rate did not help; --sampling_temperature 2 "
            "(less plausible replacements) gave the discriminator its first replaced tokens to find.")


# ------------------------------------------------------------------------------------------------------------------
# run_mlm.py --objective rtd: the flags, the model from a BERT config or checkpoint, the output directory
# ------------------------------------------------------------------------------------------------------------------

MLM_MASKING = {"mask_replace_prob": 0.8, "random_replace_prob": 0.1}  # BERT's 80/10/10
RTD_MASKING = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0}  # ELECTRA: [MASK] only; the generator fills
PLOT_METRICS = ("eval_rtd_accuracy", "eval_generator_masked_accuracy")


@dataclass
class ObjectiveArguments:
    objective: str = field(
        default="mlm",
        metadata={"help": "mlm: BERT's masked LM (with --whole_word_mask / --nsp as asked). rtd: ELECTRA's "
                          "replaced-token detection: a small generator fills the masks, the encoder learns to spot "
                          "the replaced tokens, a signal from every token instead of 15%%. The output directory is "
                          "the encoder as a plain BERT checkpoint (the generator in generator/).",
                  "choices": ["mlm", "rtd"]})
    generator_size_divisor: Optional[int] = field(
        default=None, metadata={"help": "rtd: the generator's width, attention heads and feed-forward width are the "
                                        "encoder's divided by this (default 4, as ELECTRA-Small)."})
    generator_num_layers: Optional[int] = field(
        default=None, metadata={"help": "rtd: the generator's layers (default: as many as the encoder)."})
    discriminator_loss_weight: Optional[float] = field(
        default=None, metadata={"help": "rtd: loss = generator MLM loss + this x detection loss (default 50)."})

    sampling_temperature: Optional[float] = field(
        default=None, metadata={"help": "rtd: the generator's logits are divided by this before its replacements are "
                                        "sampled (default 1.0, as ELECTRA). Above 1 the replacements are less "
                                        "plausible, so easier to spot while the generator is still weak."})

    def generator_settings(self):
        return {name: getattr(self, name) for name in RTD_FIELDS if getattr(self, name, None) is not None}


def check_objective(objective_args, data_args):
    """Before anything loads: refuse combinations that make no sense, and fill in the objective's masking split
    where --mask_replace_prob / --random_replace_prob were not given."""
    if objective_args.objective == "mlm":
        given = [f"--{name}" for name in objective_args.generator_settings()]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to --objective rtd (the generator of replaced-token "
                             f"detection); drop them or pass --objective rtd.")
    elif data_args.nsp:
        raise ValueError("--nsp with --objective rtd: replaced-token detection has no next-sentence head (ELECTRA "
                         "dropped NSP; the discriminator's task already covers every token). Drop --nsp, or pretrain "
                         "with --objective mlm --nsp.")
    defaults = RTD_MASKING if objective_args.objective == "rtd" else MLM_MASKING
    for name, value in defaults.items():
        if getattr(data_args, name) is None:
            setattr(data_args, name, value)


def model_config(config, objective_args, source):
    """The ReplacedTokenDetectionConfig for a BERT config (from scratch or the checkpoint to continue from) and the
    generator flags. `source` names the config in errors."""
    settings = objective_args.generator_settings()
    if config.model_type == ReplacedTokenDetectionConfig.model_type:  # a Trainer checkpoint of a run with rtd
        if settings:
            raise ValueError(f"{source} already holds a generator; its shape is fixed: drop "
                             f"{', '.join('--' + name for name in settings)}.")
        return config
    if config.model_type != "bert":
        raise ValueError(f"--objective rtd trains a BERT encoder (model_type bert); {source} is model_type "
                         f"{config.model_type!r}. Use --objective mlm for it, or a BERT config.")
    values = {k: v for k, v in config.to_dict().items() if k not in NOT_CARRIED}
    return ReplacedTokenDetectionConfig(**values, **settings)


def objective_settings(model, objective_args):
    """pretraining_args.json's "objective": the objective, and for rtd the generator as built."""
    if objective_args.objective != "rtd":
        return {"objective": objective_args.objective}
    config = model.config
    return {"objective": "rtd", "generator_size_divisor": config.generator_size_divisor,
            "generator_num_layers": config.generator_config().num_hidden_layers,
            "discriminator_loss_weight": config.discriminator_loss_weight,
            "sampling_temperature": config.sampling_temperature}


def save_output(trainer):
    """run_mlm.py's output directory for --objective rtd (instead of trainer.save_model()): the encoder as a plain
    BERT checkpoint with the tokenizer (what --model_name_or_path of the fine-tuning scripts reads) and the generator
    in generator/. Trainer checkpoints (checkpoint-N/) keep the whole model for --resume."""
    if not trainer.is_world_process_zero():
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    output_dir = trainer.args.output_dir
    model.save_discriminator(output_dir, trainer.processing_class)
    model.save_generator(os.path.join(output_dir, "generator"), trainer.processing_class)
    torch.save(trainer.args, os.path.join(output_dir, "training_args.bin"))


# AutoConfig.from_pretrained / AutoModelForPreTraining.from_pretrained of a full RTD checkpoint (a Trainer checkpoint)
AutoConfig.register(ReplacedTokenDetectionConfig.model_type, ReplacedTokenDetectionConfig)
AutoModelForPreTraining.register(ReplacedTokenDetectionConfig, BertForReplacedTokenDetection)


def export_encoder(checkpoint_dir, output_dir):
    """A Trainer checkpoint of run_mlm.py --objective rtd (checkpoint-N/: the whole model) -> output_dir holding the
    encoder as a plain BERT checkpoint with the tokenizer: what run_mlm.py writes at the end of training."""
    from transformers import AutoTokenizer

    model = BertForReplacedTokenDetection.from_pretrained(checkpoint_dir)
    model.save_discriminator(output_dir, AutoTokenizer.from_pretrained(checkpoint_dir))


def main(argv=None):
    """`python pretraining_electra.py CHECKPOINT_DIR OUTPUT_DIR`: export_encoder from the command line."""
    import argparse

    parser = argparse.ArgumentParser(description="Export the encoder of a replaced-token-detection Trainer checkpoint "
                                                 "(run_mlm.py --objective rtd ... --save_strategy steps: "
                                                 "OUTPUT_DIR/checkpoint-N) as a plain BERT checkpoint to fine-tune.")
    parser.add_argument("checkpoint_dir", help="OUTPUT_DIR/checkpoint-N of run_mlm.py --objective rtd")
    parser.add_argument("output_dir", help="where the BERT checkpoint (config, weights, tokenizer) goes")
    cli = parser.parse_args(argv)
    if os.path.exists(os.path.join(cli.output_dir, "model.safetensors")):
        parser.error(f"{cli.output_dir} already holds a model.safetensors: choose an empty directory.")
    export_encoder(cli.checkpoint_dir, cli.output_dir)
    print(f"wrote the encoder of {cli.checkpoint_dir} to {cli.output_dir}")


if __name__ == "__main__":
    main()
