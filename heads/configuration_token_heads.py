"""Configs for the token-classification (NER) heads in modeling_token_heads.py (--head -> config: heads.TOKEN_HEADS).

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


# save_pretrained copies this file and writes config.json's auto_map["AutoConfig"].
for _config_class in (BertTokenLSTMConfig, BertTokenCRFConfig, BertTokenLSTMCRFConfig):
    _config_class.register_for_auto_class()
