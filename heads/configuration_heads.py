"""Configs for the custom classification heads in modeling_heads.py.

Each config is a BertConfig (so every BERT checkpoint's config.json loads into it) plus the head's hyperparameters,
with its own `model_type` so that AutoConfig / AutoModelForSequenceClassification can tell the heads apart.

`save_pretrained` copies this file (and modeling_heads.py) next to the weights, and a process without this repo loads
them with `trust_remote_code=True`: keep this file self-contained (torch/transformers imports only).

Configs in transformers 5 are dataclasses: a head hyperparameter is a class-level annotated field with a default;
defaults must be immutable (tuples, not lists), and JSON turns tuples into lists on the way back, hence the tuple()
in __post_init__.
"""

from transformers import BertConfig

POOLINGS = ("cls", "mean", "max", "attention", "concat_last_k")  # "pooler" is BertForSequenceClassification itself
WINDOW_FUSIONS = ("max", "mean", "attention", "transformer")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r}; choose one of {list(choices)}.")


def _check_positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


class _BertHeadConfig(BertConfig):
    """A BertConfig that loads a plain BERT config.json (model_type "bert") without taking its model_type."""

    def __post_init__(self, **kwargs):
        # from_pretrained passes the file's "model_type" on as a kwarg; left in, it would become an instance attribute
        # shadowing the class's (config.model_type == "bert" on a BertCNNConfig). The class attribute is what is saved.
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)


class BertPoolingConfig(_BertHeadConfig):
    r"""BERT + one linear layer over a pooled vector.

    pooling: "cls" (raw [CLS] vector, no pooler), "mean" / "max" (over real tokens only), "attention" (one learned
        query scores each token: softmax(H w) over real tokens), "concat_last_k" ([CLS] of the last `pooling_last_k`
        layers, concatenated). BERT's own pooler ([CLS] -> dense -> tanh) is BertForSequenceClassification.
    pooling_last_k: layers for "concat_last_k" (the classifier sees pooling_last_k * hidden_size features).
    """

    model_type = "bert_pooling"

    pooling: str = "cls"
    pooling_last_k: int = 4

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_positive("pooling_last_k", self.pooling_last_k)
        # hidden_states has num_hidden_layers + 1 entries (the embeddings come first); layers only, not embeddings
        if self.pooling == "concat_last_k" and self.pooling_last_k > self.num_hidden_layers:
            raise ValueError(f"pooling_last_k={self.pooling_last_k} > num_hidden_layers={self.num_hidden_layers}.")


class BertCNNConfig(_BertHeadConfig):
    r"""BERT + TextCNN (Kim 2014) over the token outputs.

    cnn_filter_sizes: kernel widths, one Conv1d per width.
    cnn_num_filters: output channels per width (the classifier sees len(cnn_filter_sizes) * cnn_num_filters).
    """

    model_type = "bert_cnn"

    cnn_filter_sizes: tuple[int, ...] | list[int] = (2, 3, 4)
    cnn_num_filters: int = 128

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.cnn_filter_sizes = tuple(self.cnn_filter_sizes)
        if not self.cnn_filter_sizes:
            raise ValueError("cnn_filter_sizes is empty.")
        for size in self.cnn_filter_sizes:
            _check_positive("cnn_filter_sizes entry", size)
        _check_positive("cnn_num_filters", self.cnn_num_filters)


class _BertRNNConfig(_BertHeadConfig):
    r"""Shared fields of BertLSTMConfig / BertGRUConfig (bidirectional RNN over the token outputs).

    rnn_hidden_size: hidden size per direction (the classifier sees 2 * rnn_hidden_size).
    rnn_num_layers: stacked RNN layers.
    rnn_dropout: dropout between stacked layers (PyTorch applies none after the last one, so 0 when rnn_num_layers=1).
    """

    rnn_hidden_size: int = 256
    rnn_num_layers: int = 1
    rnn_dropout: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_positive("rnn_hidden_size", self.rnn_hidden_size)
        _check_positive("rnn_num_layers", self.rnn_num_layers)
        if not 0.0 <= self.rnn_dropout < 1.0:
            raise ValueError(f"rnn_dropout must be in [0, 1), got {self.rnn_dropout!r}.")


class BertLSTMConfig(_BertRNNConfig):
    """BERT + bidirectional LSTM over the token outputs; fields: see _BertRNNConfig."""

    model_type = "bert_lstm"


class BertGRUConfig(_BertRNNConfig):
    """BERT + bidirectional GRU over the token outputs; fields: see _BertRNNConfig."""

    model_type = "bert_gru"


class BertAttentionConfig(_BertHeadConfig):
    r"""BERT + additive attention over the token outputs: scores = u^T tanh(H W + b), softmax over real tokens.

    attention_hidden_size: size of tanh(H W + b); None = hidden_size.
    """

    model_type = "bert_attention"

    attention_hidden_size: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_positive("attention_hidden_size", self.attention_hidden_size, allow_none=True)


class BertWindowsConfig(_BertHeadConfig):
    r"""BERT over the windows of a long document, one [CLS] vector per window, fused into one document vector.

    window_fusion: "max" / "mean" (over real windows), "attention" (additive attention over windows, as in
        BertAttentionConfig), "transformer" (one nn.TransformerEncoderLayer over the window vectors, then mean).
    attention_hidden_size: for "attention"; None = hidden_size.
    window_transformer_heads: for "transformer"; None = num_attention_heads (must divide hidden_size).
    window_transformer_ff: feed-forward size for "transformer"; None = 2 * hidden_size (one small layer, trained
        from scratch on the task data, so smaller than BERT's intermediate_size).
    """

    model_type = "bert_windows"

    window_fusion: str = "max"
    attention_hidden_size: int | None = None
    window_transformer_heads: int | None = None
    window_transformer_ff: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _check_choice("window_fusion", self.window_fusion, WINDOW_FUSIONS)
        _check_positive("attention_hidden_size", self.attention_hidden_size, allow_none=True)
        _check_positive("window_transformer_heads", self.window_transformer_heads, allow_none=True)
        _check_positive("window_transformer_ff", self.window_transformer_ff, allow_none=True)
        heads = self.window_transformer_heads or self.num_attention_heads
        if self.window_fusion == "transformer" and self.hidden_size % heads:
            raise ValueError(f"window_transformer_heads={heads} does not divide hidden_size={self.hidden_size}.")


# save_pretrained copies this file and writes config.json's auto_map["AutoConfig"], so that
# AutoConfig.from_pretrained(dir, trust_remote_code=True) works without this repo.
for _config_class in (BertPoolingConfig, BertCNNConfig, BertLSTMConfig, BertGRUConfig, BertAttentionConfig,
                      BertWindowsConfig):
    _config_class.register_for_auto_class()
