"""Configs for the token-classification (NER) heads in modeling_token_heads.py, and the --head -> config mapping.

Each config is a BertConfig (so every BERT checkpoint's config.json, an MLM one included, loads into it) plus the
head's hyperparameters, with its own `model_type` so that AutoConfig / AutoModelForTokenClassification can tell the
heads apart. The classification heads' base classes (configuration_heads.py) are reused: save_pretrained copies this
file and, through the relative import, configuration_heads.py next to the weights.

  softmax   BertConfig (bert)                         BertForTokenClassification (transformers' own)
  lstm      BertTokenLSTMConfig (bert_token_lstm)     BertLSTMForTokenClassification
              rnn_hidden_size (256, per direction), rnn_num_layers (1), rnn_dropout (0.0, between layers)
  crf       BertTokenCRFConfig (bert_token_crf)       BertCRFForTokenClassification
              crf_constraints (True): transitions the tag scheme forbids (I-X after O or after Y, ...) are never
              taken, in decoding and in the likelihood
  lstm_crf  BertTokenLSTMCRFConfig (bert_token_lstm_crf)  BertLSTMCRFForTokenClassification: both sets of fields

Keep this file self-contained (transformers imports and the relative import only): it travels with saved models.
"""

import dataclasses
import os

from transformers import AutoConfig, BertConfig

from .configuration_heads import _BertHeadConfig, _BertRNNConfig


class BertTokenLSTMConfig(_BertRNNConfig):
    """BERT + bidirectional LSTM over the token outputs + a linear layer per token; fields: see _BertRNNConfig."""

    model_type = "bert_token_lstm"


class BertTokenCRFConfig(_BertHeadConfig):
    r"""BERT + a linear layer per token (emission scores) + a linear-chain CRF.

    crf_constraints: forbid the transitions the tag scheme of `id2label` does not allow (BIO: I-X only after B-X or
        I-X, never first; BIOES also: E/I only after B/I of the same type, B/S/O only after O/E/S, last tag O/E/S).
        Labels that are not a BIO/BIOES scheme leave every transition allowed.
    """

    model_type = "bert_token_crf"

    crf_constraints: bool = True


class BertTokenLSTMCRFConfig(_BertRNNConfig):
    """BERT + bidirectional LSTM + a linear layer per token + a CRF; fields: see _BertRNNConfig and
    BertTokenCRFConfig."""

    model_type = "bert_token_lstm_crf"

    crf_constraints: bool = True


# --head name -> config class; "softmax" is a plain BertConfig (BertForTokenClassification)
TOKEN_HEAD_CONFIGS = {
    "softmax": BertConfig,
    "lstm": BertTokenLSTMConfig,
    "crf": BertTokenCRFConfig,
    "lstm_crf": BertTokenLSTMCRFConfig,
}
_NOT_CARRIED = ("model_type", "transformers_version", "architectures", "auto_map")


def token_head_of(config):
    """The --head name of a config: "softmax" for a plain BertConfig, None for anything else."""
    if type(config) is BertConfig:
        return "softmax"
    for head, config_class in TOKEN_HEAD_CONFIGS.items():
        if config_class is not BertConfig and getattr(config, "model_type", None) == config_class.model_type:
            return head
    return None


def token_head_config(head, config, **head_kwargs):
    """The config for token head `head` built from `config` (a BertConfig / token-head config, or a path to one).

    head: "softmax", "lstm", "crf", "lstm_crf", or None = keep the config's own head (a plain BERT config: softmax).
    head_kwargs: config attributes (num_labels, id2label, label2id, rnn_hidden_size, crf_constraints,
        classifier_dropout, ...); None values are skipped, so a script can pass all its options.
    A plain BERT config becomes any head's config; a trained head's config only stays that head (another head would
    silently drop its trained weights).
    """
    if isinstance(config, (str, os.PathLike)):
        config = AutoConfig.from_pretrained(config)
    head_kwargs = {k: v for k, v in head_kwargs.items() if v is not None}
    current = token_head_of(config)
    if current is None:
        raise ValueError(f"{type(config).__name__} (model_type {getattr(config, 'model_type', None)!r}) is neither a "
                         f"BERT config nor one of the token heads {tuple(TOKEN_HEAD_CONFIGS)}.")
    head = head or current
    if head not in TOKEN_HEAD_CONFIGS:
        raise ValueError(f"head={head!r}; choose one of {tuple(TOKEN_HEAD_CONFIGS)}.")
    if type(config) is not BertConfig and head != current:
        raise ValueError(f"The config is a trained {current} head ({config.model_type}); it cannot become a {head} "
                         f"head. Start from a BERT checkpoint instead.")
    target = TOKEN_HEAD_CONFIGS[head]
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


# save_pretrained copies this file and writes config.json's auto_map["AutoConfig"].
for _config_class in (BertTokenLSTMConfig, BertTokenCRFConfig, BertTokenLSTMCRFConfig):
    _config_class.register_for_auto_class()
