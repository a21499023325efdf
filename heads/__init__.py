"""Custom sequence-classification heads on top of BERT.

`import heads` registers every head with AutoConfig / AutoModelForSequenceClassification, so a saved head loads with
`AutoModelForSequenceClassification.from_pretrained(dir)` (and `pipeline("text-classification", model=dir)`) in this
repo; elsewhere, `from_pretrained(dir, trust_remote_code=True)` runs the copy of the code that save_pretrained put in
the dir (configuration_heads.py + modeling_heads.py).

--head / --pooling -> config class (model_type) -> model class; head hyperparameters = config attributes (default):

  linear    pooler   BertConfig (bert)                      BertForSequenceClassification (transformers' own)
  linear    cls, mean, max, attention, concat_last_k
                     BertPoolingConfig (bert_pooling)       BertPoolingForSequenceClassification
                       pooling ("cls"), pooling_last_k (4): concat_last_k concatenates the last k layers' [CLS]
  cnn                BertCNNConfig (bert_cnn)               BertCNNForSequenceClassification
                       cnn_filter_sizes ((2, 3, 4)), cnn_num_filters (128)
  lstm               BertLSTMConfig (bert_lstm)             BertLSTMForSequenceClassification
  gru                BertGRUConfig (bert_gru)               BertGRUForSequenceClassification
                       rnn_hidden_size (256, per direction), rnn_num_layers (1), rnn_dropout (0.0, between layers)
  attention          BertAttentionConfig (bert_attention)   BertAttentionForSequenceClassification
                       attention_hidden_size (None = hidden_size): scores = u^T tanh(H W + b)
  windows            BertWindowsConfig (bert_windows)       BertWindowsForSequenceClassification
                       window_fusion ("max" | "mean" | "attention" | "transformer"), attention_hidden_size (None),
                       window_transformer_heads (None = num_attention_heads), window_transformer_ff (None = 2*hidden)
                       inputs [batch, n_windows, window_len] (or [batch, seq_len] = one window)

All heads: classifier_dropout (None = hidden_dropout_prob) before the final linear layer; the encoder is `model.bert`
(parameter names "bert.*"; everything else is head); outputs SequenceClassifierOutput, with labels the loss of
config.problem_type as BertForSequenceClassification computes it: cross-entropy (single_label_classification),
binary cross-entropy (multi_label_classification), MSE (regression, num_labels=1). --pooling only applies to
--head linear.

In run_classification.py, after `config = AutoConfig.from_pretrained(...)`:

    config = heads.head_config(args.head, config, pooling=args.pooling, **head_kwargs)  # kwargs left None: default
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config)      # or .from_config(config)

Loading a plain BERT checkpoint into a head raises if any encoder weight is missing from it.

Token-classification (NER) heads for run_ner.py live in configuration_token_heads.py / modeling_token_heads.py
(softmax = BertForTokenClassification, lstm, crf, lstm_crf), registered with AutoModelForTokenClassification:
`config = heads.head_config("crf", config, tokens=True, num_labels=..., id2label=...)`, see TOKEN_HEADS.
"""

import dataclasses
import os

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
)

from .configuration_heads import POOLINGS as _HEAD_POOLINGS
from .configuration_heads import (
    BertAttentionConfig,
    BertCNNConfig,
    BertGRUConfig,
    BertLSTMConfig,
    BertPoolingConfig,
    BertWindowsConfig,
)
from .configuration_token_heads import BertTokenCRFConfig, BertTokenLSTMConfig, BertTokenLSTMCRFConfig
from .modeling_heads import (
    BertAttentionForSequenceClassification,
    BertCNNForSequenceClassification,
    BertGRUForSequenceClassification,
    BertLSTMForSequenceClassification,
    BertPoolingForSequenceClassification,
    BertWindowsForSequenceClassification,
)
from .modeling_token_heads import (
    BertCRFForTokenClassification,
    BertLSTMCRFForTokenClassification,
    BertLSTMForTokenClassification,
)

POOLINGS = ("pooler",) + _HEAD_POOLINGS
# head name -> (config class, model class); "linear" with pooling="pooler" is BertConfig /
# BertForSequenceClassification
HEADS = {
    "linear": (BertPoolingConfig, BertPoolingForSequenceClassification),
    "cnn": (BertCNNConfig, BertCNNForSequenceClassification),
    "lstm": (BertLSTMConfig, BertLSTMForSequenceClassification),
    "gru": (BertGRUConfig, BertGRUForSequenceClassification),
    "attention": (BertAttentionConfig, BertAttentionForSequenceClassification),
    "windows": (BertWindowsConfig, BertWindowsForSequenceClassification),
}
HEAD_NAMES = tuple(HEADS)

for _config_class, _model_class in HEADS.values():
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_config_class, _model_class, exist_ok=True)

# Token-classification (NER) heads, for run_ner.py: --head name -> (config class, AutoModelForTokenClassification
# class); "softmax" is transformers' BertForTokenClassification. Built with head_config(head, config, tokens=True).
TOKEN_HEADS = {
    "softmax": (BertConfig, BertForTokenClassification),
    "lstm": (BertTokenLSTMConfig, BertLSTMForTokenClassification),
    "crf": (BertTokenCRFConfig, BertCRFForTokenClassification),
    "lstm_crf": (BertTokenLSTMCRFConfig, BertLSTMCRFForTokenClassification),
}
TOKEN_HEAD_NAMES = tuple(TOKEN_HEADS)
for _config_class, _model_class in list(TOKEN_HEADS.values())[1:]:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModelForTokenClassification.register(_config_class, _model_class, exist_ok=True)

# Keys of an existing config that must not follow it into another config class.
_NOT_CARRIED = ("model_type", "transformers_version", "architectures", "auto_map")


def head_of(config):
    """(head, pooling) of a config: ("linear", "pooler") for a plain BertConfig, None for anything else."""
    if type(config) is BertConfig:
        return "linear", "pooler"
    for head, (config_class, _) in HEADS.items():
        if getattr(config, "model_type", None) == config_class.model_type:
            return head, (config.pooling if head == "linear" else None)
    return None


def token_head_of(config):
    """The token (NER) --head of a config: "softmax" for a plain BertConfig, None for anything else."""
    if type(config) is BertConfig:
        return "softmax"
    for head, (config_class, _) in TOKEN_HEADS.items():
        if config_class is not BertConfig and getattr(config, "model_type", None) == config_class.model_type:
            return head
    return None


def head_config(head, config, pooling=None, tokens=False, **head_kwargs):
    """The config for `head` built from `config` (a BertConfig / head config, or a path or Hub id to load one).

    head: one of HEAD_NAMES (TOKEN_HEAD_NAMES with tokens=True), or None = keep the config's own head (a plain BERT
        config: linear, or softmax for tokens).
    pooling: for head "linear" only (None = "pooler" = BertForSequenceClassification; with head None, None and
        "pooler" keep a trained pooling head's own pooling).
    tokens: a token-classification (NER) head for run_ner.py instead of a sequence-classification one.
    head_kwargs: config attributes to set (head hyperparameters, num_labels, id2label, classifier_dropout, ...); None
        values are skipped, so a script can pass all its options and only the ones given override the config.
    A plain BERT config becomes any head's config; a head's config only stays that head (changing the head of a
    trained model would silently drop its trained head weights).
    """
    if isinstance(config, (str, os.PathLike)):
        config = AutoConfig.from_pretrained(config)
    head_kwargs = {k: v for k, v in head_kwargs.items() if v is not None}
    table = TOKEN_HEADS if tokens else HEADS
    current = (token_head_of(config), None) if tokens else head_of(config)
    if current is None or current[0] is None:
        raise ValueError(f"{type(config).__name__} (model_type {getattr(config, 'model_type', None)!r}) is neither a "
                         f"BERT config nor one of the {'token ' if tokens else ''}heads {tuple(table)}.")
    if head is None:  # keep the config's head; "pooler" (a script's default) does not count as asking for one
        head = current[0]
        if pooling in (None, "pooler"):
            pooling = current[1]
    if head not in table:
        raise ValueError(f"head={head!r}; choose one of {tuple(table)}.")
    if head == "linear" and not tokens:
        pooling = pooling or "pooler"
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}; choose one of {POOLINGS}.")
    elif pooling not in (None, "pooler"):  # "pooler" tolerated: it is the script's default
        raise ValueError(f"pooling={pooling!r} only applies to head 'linear', not {head!r}.")
    else:
        pooling = None
    if type(config) is not BertConfig and current != (head, pooling):
        raise ValueError(f"The config is a trained {current[0]} head ({config.model_type}"
                         f"{f', pooling {current[1]}' if current[1] else ''}); it cannot become a {head} head"
                         f"{f' with pooling {pooling}' if pooling else ''}. Start from a BERT checkpoint instead.")

    target = BertConfig if (head, pooling) == ("linear", "pooler") else table[head][0]
    if head == "linear" and target is not BertConfig:
        head_kwargs["pooling"] = pooling
    allowed = {f.name for f in dataclasses.fields(target)} | {"num_labels"}
    unknown = sorted(set(head_kwargs) - allowed)
    if unknown:
        own = sorted(allowed - {f.name for f in dataclasses.fields(BertConfig)})
        raise ValueError(f"{unknown} do not apply to head {head!r}" + (f" (its options: {own})" if own else "") + ".")
    values = {k: v for k, v in config.to_dict().items() if k not in _NOT_CARRIED}
    if "num_labels" in head_kwargs and "id2label" not in head_kwargs:
        values.pop("id2label", None)  # else the old id2label decides num_labels
        values.pop("label2id", None)
    return target(**{**values, **head_kwargs})


__all__ = [
    "HEADS", "HEAD_NAMES", "POOLINGS", "head_config", "head_of",
    "BertPoolingConfig", "BertCNNConfig", "BertLSTMConfig", "BertGRUConfig", "BertAttentionConfig",
    "BertWindowsConfig", "BertPoolingForSequenceClassification", "BertCNNForSequenceClassification",
    "BertLSTMForSequenceClassification", "BertGRUForSequenceClassification", "BertAttentionForSequenceClassification",
    "BertWindowsForSequenceClassification", "BertForSequenceClassification",
    "TOKEN_HEADS", "TOKEN_HEAD_NAMES", "token_head_of", "BertTokenLSTMConfig", "BertTokenCRFConfig",
    "BertTokenLSTMCRFConfig", "BertLSTMForTokenClassification", "BertCRFForTokenClassification",
    "BertLSTMCRFForTokenClassification", "BertForTokenClassification",
]
