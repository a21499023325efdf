"""Sequence-classification heads on top of BERT, as real PreTrainedModels.

Every model here keeps the encoder at `self.bert` (base_model_prefix "bert"), so
  * a plain BERT checkpoint (bert-base-chinese, a saved BertModel / BertForMaskedLM) loads its encoder into any head,
  * optimizer groups and freezing can tell encoder ("bert.*") from head (everything else) by parameter name.
The encoder is built without BERT's pooler (add_pooling_layer=False): no head here uses it, and an unused pooler would
be a parameter with no gradient (DDP complains) that MLM checkpoints do not even contain. "[CLS] -> pooler" is
transformers' BertForSequenceClassification, used as is.

`save_pretrained` copies this file and configuration_heads.py next to the weights (see register_for_auto_class at the
bottom), so keep both self-contained: torch / transformers imports only, plus the relative import of the configs.

Padding: tokenizers pad on the right, and every head only looks at real tokens (attention_mask == 1), so a text gives
the same logits alone and in a padded batch (checked by tests/test_heads.py).
"""

from typing import Unpack

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel, BertPreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_heads import (
    BertAttentionConfig,
    BertCNNConfig,
    BertGRUConfig,
    BertLSTMConfig,
    BertPoolingConfig,
    BertWindowsConfig,
)

# ---------------------------------------------------------------------------------------------------------------------
# Padding-aware pooling over a sequence of vectors (tokens, or the windows of a document)
# ---------------------------------------------------------------------------------------------------------------------


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h: [B, L, D], mask: [B, L] bool (True = real) -> [B, D]. A row with no real position gives zeros."""
    m = mask.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h: [B, L, D], mask: [B, L] bool -> [B, D], the max over real positions only."""
    return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)


class AttentionPooling(nn.Module):
    """Weighted sum of the real positions, weights = softmax over positions of a learned score.

    attention_size None: score = w^T h (one learned query; the `pooling="attention"` of BertPoolingConfig).
    attention_size int: score = u^T tanh(h W + b) (additive attention, as in hierarchical attention networks).
    """

    def __init__(self, hidden_size, attention_size=None):
        super().__init__()
        self.proj = None if attention_size is None else nn.Linear(hidden_size, attention_size)
        self.score = nn.Linear(hidden_size if attention_size is None else attention_size, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # h: [B, L, D], mask: [B, L] bool
        x = h if self.proj is None else torch.tanh(self.proj(h))  # [B, L, D] or [B, L, A]
        scores = self.score(x).squeeze(-1).float()  # [B, L]; softmax in fp32, also under fp16/bf16 autocast
        # finfo.min rather than -inf: a row with no real position gets uniform weights instead of NaN
        scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
        weights = torch.softmax(scores, dim=-1)  # [B, L], exactly 0 at padding
        return torch.bmm(weights.unsqueeze(1).to(h.dtype), h).squeeze(1)  # [B, 1, L] @ [B, L, D] -> [B, D]


# ---------------------------------------------------------------------------------------------------------------------
# Shared base
# ---------------------------------------------------------------------------------------------------------------------


class BertHeadPreTrainedModel(BertPreTrainedModel):
    """BERT encoder (no pooler) + dropout; subclasses add the head and `forward`.

    from_pretrained fails loudly if the checkpoint lacks encoder weights: transformers would otherwise initialise them
    at random with only a log line (a checkpoint whose keys have another prefix silently trains from scratch).
    """

    base_model_prefix = "bert"
    # BERT pretraining checkpoints carry a pooler and MLM/NSP heads that no model here uses: not worth a warning
    _keys_to_ignore_on_load_unexpected = {r"(^|\.)pooler\.dense\.", r"^cls\.(predictions|seq_relationship)\."}

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args, output_loading_info=True,
                                              **kwargs)
        prefix = cls.base_model_prefix + "."
        # mismatched = wrong shape, re-initialised when ignore_mismatched_sizes=True: as bad as missing for the encoder
        lost = sorted({k for k in info["missing_keys"] if k.startswith(prefix)}
                      | {k[0] for k in info["mismatched_keys"] if k[0].startswith(prefix)})
        if lost:
            unused = sorted(info["unexpected_keys"])
            raise ValueError(
                f"{pretrained_model_name_or_path}: {len(lost)} encoder weights of {cls.__name__} are missing or have "
                f"another shape in the checkpoint (e.g. {lost[:3]}); only the head may be newly initialised. "
                + (f"The checkpoint has {len(unused)} keys this model does not use (e.g. {unused[:3]}): another "
                   f"prefix than '{prefix}' or none? " if unused else "")
                + "Load a BERT checkpoint (model_type bert) or one saved by this head.")
        return (model, info) if output_loading_info else model

    def _init_weights(self, module):
        # Runs on every module whose weights were not in the checkpoint. transformers' default covers Linear, Conv1d,
        # LSTM, LayerNorm, MultiheadAttention, but not GRU: without this, a GRU loaded from a BERT checkpoint keeps
        # whatever memory torch.empty_like gave it.
        super()._init_weights(module)
        if isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if "weight" in name:
                    init.xavier_uniform_(param)
                else:
                    init.zeros_(param)

    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs):
        """-> (BERT outputs, attention_mask as [B, L] bool)."""
        if attention_mask is None:
            shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
            device = input_ids.device if input_ids is not None else inputs_embeds.device
            attention_mask = torch.ones(shape, dtype=torch.long, device=device)
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        return outputs, attention_mask.bool()

    def _output(self, logits, labels, outputs, output_hidden_states=True):
        loss = None
        if labels is not None:
            # as transformers' BertForSequenceClassification: problem_type decides (None: regression for one output,
            # single-label for integer labels, else multi-label); class weights are the trainer's
            problem_type = self.config.problem_type
            if problem_type is None:
                problem_type = ("regression" if self.num_labels == 1 else "single_label_classification"
                                if labels.dtype in (torch.long, torch.int) else "multi_label_classification")
            if problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))  # logits [B, C], labels [B]
            elif problem_type == "multi_label_classification":
                # logits [B, C], labels [B, C] multi-hot; fp32 loss under mixed precision
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
            elif problem_type == "regression":
                loss = F.mse_loss(logits.float().view(-1, self.num_labels).squeeze(-1),  # [B] (or [B, C])
                                  labels.float().view(-1, self.num_labels).squeeze(-1))
            else:
                raise ValueError(f"config.problem_type={problem_type!r}: single_label_classification, "
                                 f"multi_label_classification or regression.")
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            # Only when asked: Trainer.prediction_step gathers every non-None output, so unasked-for hidden states
            # would be concatenated over the whole eval set and handed to compute_metrics.
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions,
        )


def _wants_hidden_states(model, kwargs):
    return bool(kwargs.get("output_hidden_states", model.config.output_hidden_states))


# ---------------------------------------------------------------------------------------------------------------------
# linear head over a pooled vector
# ---------------------------------------------------------------------------------------------------------------------


class BertPoolingForSequenceClassification(BertHeadPreTrainedModel):
    config_class = BertPoolingConfig

    def __init__(self, config):
        super().__init__(config)
        self.pooling = config.pooling
        self.attention = AttentionPooling(config.hidden_size) if config.pooling == "attention" else None
        k = config.pooling_last_k if config.pooling == "concat_last_k" else 1
        self.classifier = nn.Linear(k * config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | SequenceClassifierOutput:
        # input_ids / attention_mask / token_type_ids: [B, L]; labels: [B]
        want_hidden = _wants_hidden_states(self, kwargs)
        if self.pooling == "concat_last_k":
            kwargs["output_hidden_states"] = True
        outputs, mask = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        h = outputs.last_hidden_state  # [B, L, D]; mask: [B, L]
        if self.pooling == "cls":
            pooled = h[:, 0]  # [B, D]
        elif self.pooling == "mean":
            pooled = masked_mean(h, mask)  # [B, D]
        elif self.pooling == "max":
            pooled = masked_max(h, mask)  # [B, D]
        elif self.pooling == "attention":
            pooled = self.attention(h, mask)  # [B, D]
        elif self.pooling == "concat_last_k":
            # hidden_states: num_hidden_layers + 1 tensors [B, L, D] (embeddings first); the last k are layers
            layers = outputs.hidden_states[-self.config.pooling_last_k:]
            pooled = torch.cat([layer[:, 0] for layer in layers], dim=-1)  # [B, k * D]
        else:
            raise ValueError(f"unknown pooling {self.pooling!r}")
        logits = self.classifier(self.dropout(pooled))  # [B, num_labels]
        return self._output(logits, labels, outputs, want_hidden)


# ---------------------------------------------------------------------------------------------------------------------
# TextCNN
# ---------------------------------------------------------------------------------------------------------------------


class BertCNNForSequenceClassification(BertHeadPreTrainedModel):
    config_class = BertCNNConfig

    def __init__(self, config):
        super().__init__(config)
        self.filter_sizes = tuple(config.cnn_filter_sizes)
        # padding=k-1 on both sides ("full" convolution): a text shorter than the filter still gets outputs
        self.convs = nn.ModuleList(
            nn.Conv1d(config.hidden_size, config.cnn_num_filters, kernel_size=k, padding=k - 1)
            for k in self.filter_sizes)
        self.classifier = nn.Linear(len(self.filter_sizes) * config.cnn_num_filters, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | SequenceClassifierOutput:
        # input_ids / attention_mask / token_type_ids: [B, L]; labels: [B]
        outputs, mask = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        h = outputs.last_hidden_state  # [B, L, D]
        # BERT's outputs at padding are not zero; zeroed, the padding looks exactly like the conv's own zero padding,
        # so a padded text and the same text alone see the same numbers.
        h = h * mask.unsqueeze(-1).to(h.dtype)  # [B, L, D]
        x = h.transpose(1, 2)  # [B, D, L]: Conv1d wants channels first
        m = mask.unsqueeze(1).float()  # [B, 1, L]
        features = []
        for k, conv in zip(self.filter_sizes, self.convs):
            c = F.relu(conv(x))  # [B, F, L + k - 1]; output j sees inputs j-k+1 .. j
            # Output j is real if its window holds a real token: j <= n + k - 2 for a text of n tokens padded on the
            # right. Beyond that it sees only padding (= relu(bias)), which must not win the max.
            real = F.max_pool1d(F.pad(m, (k - 1, k - 1)), kernel_size=k, stride=1) > 0  # [B, 1, L + k - 1]
            features.append(c.masked_fill(~real, torch.finfo(c.dtype).min).amax(-1))  # [B, F], max over time
        pooled = torch.cat(features, dim=-1)  # [B, len(filter_sizes) * F]
        logits = self.classifier(self.dropout(pooled))  # [B, num_labels]
        return self._output(logits, labels, outputs, _wants_hidden_states(self, kwargs))


# ---------------------------------------------------------------------------------------------------------------------
# Bidirectional LSTM / GRU
# ---------------------------------------------------------------------------------------------------------------------


class _BertRNNForSequenceClassification(BertHeadPreTrainedModel):
    rnn_class = None  # nn.LSTM or nn.GRU

    def __init__(self, config):
        super().__init__(config)
        self.rnn = self.rnn_class(
            config.hidden_size, config.rnn_hidden_size, num_layers=config.rnn_num_layers, batch_first=True,
            bidirectional=True, dropout=config.rnn_dropout if config.rnn_num_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * config.rnn_hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | SequenceClassifierOutput:
        # input_ids / attention_mask / token_type_ids: [B, L]; labels: [B]
        outputs, mask = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        h = outputs.last_hidden_state  # [B, L, D]
        lengths = mask.sum(1)  # [B]
        right_padded = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)
        if not torch.equal(mask, right_padded):
            raise ValueError(f"{type(self).__name__} needs right-padded inputs (attention_mask 1...1 0...0).")
        # Packing makes the RNN stop at each text's last real token: without it the forward direction's final state
        # comes from running over the padding, and the backward direction starts in it.
        packed = nn.utils.rnn.pack_padded_sequence(
            h, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)  # lengths must be on the CPU
        _, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n); GRU: h_n
        # h_n: [num_layers * 2, B, H], back in the batch's order (enforce_sorted=False undoes the sort);
        # the last two are the top layer's forward and backward final states
        pooled = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # [B, 2H]
        logits = self.classifier(self.dropout(pooled))  # [B, num_labels]
        return self._output(logits, labels, outputs, _wants_hidden_states(self, kwargs))


class BertLSTMForSequenceClassification(_BertRNNForSequenceClassification):
    config_class = BertLSTMConfig
    rnn_class = nn.LSTM


class BertGRUForSequenceClassification(_BertRNNForSequenceClassification):
    config_class = BertGRUConfig
    rnn_class = nn.GRU


# ---------------------------------------------------------------------------------------------------------------------
# Additive attention over the tokens
# ---------------------------------------------------------------------------------------------------------------------


class BertAttentionForSequenceClassification(BertHeadPreTrainedModel):
    config_class = BertAttentionConfig

    def __init__(self, config):
        super().__init__(config)
        self.attention = AttentionPooling(config.hidden_size, config.attention_hidden_size or config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | SequenceClassifierOutput:
        # input_ids / attention_mask / token_type_ids: [B, L]; labels: [B]
        outputs, mask = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        h = outputs.last_hidden_state  # [B, L, D]
        pooled = self.attention(h, mask)  # [B, D]: softmax_L(u^T tanh(H W + b)) weighted sum of H
        logits = self.classifier(self.dropout(pooled))  # [B, num_labels]
        return self._output(logits, labels, outputs, _wants_hidden_states(self, kwargs))


# ---------------------------------------------------------------------------------------------------------------------
# Long documents: windows -> [CLS] per window -> one document vector
# ---------------------------------------------------------------------------------------------------------------------


class BertWindowsForSequenceClassification(BertHeadPreTrainedModel):
    """Inputs [B, W, T] (B documents, W windows of T tokens; [B, T] = one window each, as pipeline() sends).

    A window whose first attention_mask entry is 0 is padding (documents with fewer than W windows) and is ignored:
    it is not even encoded. hidden_states / attentions, when asked for, are those of the real windows only:
    [n_real_windows, T, D] each, windows in row-major (document, window) order.
    """

    config_class = BertWindowsConfig

    def __init__(self, config):
        super().__init__(config)
        self.fusion = config.window_fusion
        d = config.hidden_size
        if self.fusion == "attention":
            self.window_attention = AttentionPooling(d, config.attention_hidden_size or d)
        elif self.fusion == "transformer":
            self.window_transformer = nn.TransformerEncoderLayer(
                d, nhead=config.window_transformer_heads or config.num_attention_heads,
                dim_feedforward=config.window_transformer_ff or 2 * d, dropout=config.hidden_dropout_prob,
                activation="gelu", batch_first=True)
        self.classifier = nn.Linear(d, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor] | SequenceClassifierOutput:
        # input_ids / attention_mask / token_type_ids / position_ids: [B, W, T] or [B, T]; inputs_embeds: the same
        # with a trailing D; labels: [B] (one per document)
        def windows(x, trailing=0):  # -> [B, W, T, ...]
            if x is None or x.dim() == 3 + trailing:
                return x
            if x.dim() == 2 + trailing:
                return x.unsqueeze(1)  # [B, T] -> [B, 1, T]
            raise ValueError(f"{type(self).__name__} expects [batch, n_windows, window_len] inputs, got "
                             f"{tuple(x.shape)}")

        input_ids, attention_mask, token_type_ids, position_ids = map(
            windows, (input_ids, attention_mask, token_type_ids, position_ids))
        inputs_embeds = windows(inputs_embeds, trailing=1)
        ref = input_ids if input_ids is not None else inputs_embeds
        B, W, T = ref.shape[:3]
        if attention_mask is None:
            attention_mask = torch.ones((B, W, T), dtype=torch.long, device=ref.device)
        window_mask = attention_mask[:, :, 0] > 0  # [B, W]: real windows start with [CLS], mask 1
        keep = window_mask.reshape(-1).nonzero().squeeze(1)  # [N] indices of the real windows in B * W

        def real(x):  # [B, W, T, ...] -> [N, T, ...]
            return None if x is None else x.reshape(B * W, *x.shape[2:]).index_select(0, keep)

        outputs, _ = self._encode(real(input_ids), real(attention_mask), real(token_type_ids), real(position_ids),
                                  real(inputs_embeds), **kwargs)
        cls = outputs.last_hidden_state[:, 0]  # [N, D]
        D = cls.shape[-1]
        # scatter back; padding windows stay 0 and are masked below (index_copy is differentiable w.r.t. cls)
        v = cls.new_zeros(B * W, D).index_copy(0, keep, cls).view(B, W, D)  # [B, W, D]
        if self.fusion == "max":
            doc = masked_max(v, window_mask)  # [B, D]
        elif self.fusion == "mean":
            doc = masked_mean(v, window_mask)  # [B, D]
        elif self.fusion == "attention":
            doc = self.window_attention(v, window_mask)  # [B, D]
        elif self.fusion == "transformer":
            # a document with no real window would make every attention row empty (NaN): let it see window 0
            padding = ~window_mask  # [B, W], True = ignore
            padding[:, 0] &= window_mask.any(1)
            v = self.window_transformer(v, src_key_padding_mask=padding)  # [B, W, D]
            doc = masked_mean(v, window_mask)  # [B, D]
        else:
            raise ValueError(f"unknown window_fusion {self.fusion!r}")
        logits = self.classifier(self.dropout(doc))  # [B, num_labels]
        return self._output(logits, labels, outputs, _wants_hidden_states(self, kwargs))


# save_pretrained copies this file (and, through the relative import, configuration_heads.py) and writes
# config.json's auto_map["AutoModelForSequenceClassification"]: from_pretrained(dir, trust_remote_code=True) then
# works in a process without this repo.
for _model_class in (BertPoolingForSequenceClassification, BertCNNForSequenceClassification,
                     BertLSTMForSequenceClassification, BertGRUForSequenceClassification,
                     BertAttentionForSequenceClassification, BertWindowsForSequenceClassification):
    _model_class.register_for_auto_class("AutoModelForSequenceClassification")
