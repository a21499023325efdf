"""Token-classification (NER) heads on top of BERT, as real PreTrainedModels: BiLSTM, CRF, BiLSTM + CRF.

Every model outputs transformers' TokenClassifierOutput with `logits` [batch, seq_len, num_labels]: the per-token
scores of the linear layer (for the CRF heads, the CRF's emission scores). With `labels` [batch, seq_len] (-100 =
no label: [CLS]/[SEP], padding, later sub-tokens of a character) the loss is

  * lstm:           cross-entropy over the labelled tokens (as BertForTokenClassification, the softmax head);
  * crf / lstm_crf: the CRF's negative log-likelihood of the gold tag path through the labelled tokens, divided by
                    the number of labelled tokens (the same scale as cross-entropy, so one learning rate and
                    max_grad_norm suit every head).

The CRF runs over the labelled positions only, taken in order (the tokens between them are skipped), so "label the
first sub-token only" and "label every sub-token" both train one clean tag chain. Decoding (Viterbi) is
`model.decode(logits, mask)`: the logits argmax would ignore the transition scores (and that argmax is what
pipeline("token-classification") takes; run_ner.py decodes with the CRF). The CRF always computes in fp32,
also under bf16/fp16 autocast (its log-sum-exp over paths loses too much in half precision).

The encoder is `self.bert` (parameter names "bert.*", everything else is head: a separate --head_learning_rate
reaches the LSTM, the classifier and the CRF transitions); a BERT checkpoint, an MLM one (BertForMaskedLM /
BertForPreTraining: bert.embeddings.*, bert.encoder.*, cls.*) included, loads its encoder into every head, and a
checkpoint without the encoder weights raises (BertHeadPreTrainedModel.from_pretrained).

save_pretrained copies this file with its relative imports (configuration_token_heads.py, modeling_heads.py,
configuration_heads.py) next to the weights: keep it self-contained (torch / transformers only).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import TokenClassifierOutput
from transformers.utils.generic import can_return_tuple

from .configuration_token_heads import BertTokenCRFConfig, BertTokenLSTMConfig, BertTokenLSTMCRFConfig
from .modeling_heads import BertHeadPreTrainedModel, _wants_hidden_states

FORBIDDEN = -10000.0  # score of a forbidden transition: exp() is 0 in fp32, and an all-forbidden row stays finite

# ----------------------------------------------------------------------------------------------------------------------
# Tag-scheme constraints
# ----------------------------------------------------------------------------------------------------------------------

# Tag prefixes of every scheme, read as BIOES: BMES' M and BIO's I are "inside", BILOU's L/U are E/S.
TAG_PREFIXES = {"B": "B", "I": "I", "M": "I", "E": "E", "L": "E", "S": "S", "U": "S"}


def parse_tag(tag):
    """The one tag parser of the recipe (run_ner.py reads data files with it too): "B-PER" / "B_PER" -> ("B", "PER"),
    "O" -> ("O", None), "M-LOC" -> ("I", "LOC"); None if `tag` is not a tag."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[0] in TAG_PREFIXES and tag[1] in "-_" and tag[2:].strip():
        return TAG_PREFIXES[tag[0]], tag[2:]
    return None


def allowed_transitions(id2label):
    """(allowed [C][C] from -> to, allowed_start [C], allowed_end [C]) as Python lists of bools, from the label names;
    None when the labels are not a BIO/BIOES tag set (then nothing is forbidden)."""
    n = len(id2label)
    parts = [parse_tag(str(id2label[i])) for i in range(n)]
    if any(p is None for p in parts):
        return None
    bioes = any(p[0] in ("E", "S") for p in parts)

    def may_follow(prev, cur):  # prev None = sentence start
        p_pre, p_type = prev if prev is not None else ("O", None)
        c_pre, c_type = cur
        inside = p_pre in ("B", "I")  # an entity is open after prev
        if c_pre in ("I", "E"):
            return inside and p_type == c_type
        return not inside if bioes else True  # B, S, O: BIOES needs the previous entity closed (E/S/O)

    allowed = [[may_follow(parts[i], parts[j]) for j in range(n)] for i in range(n)]
    start = [may_follow(None, parts[j]) for j in range(n)]
    end = [not (bioes and parts[i][0] in ("B", "I")) for i in range(n)]
    return allowed, start, end


# ----------------------------------------------------------------------------------------------------------------------
# Linear-chain CRF
# ----------------------------------------------------------------------------------------------------------------------


def _compact(mask, *tensors):
    """Move the masked positions of each row to the front, in order: mask [B, T] bool (any pattern) -> the new mask
    [B, T] (True on a prefix of each row) and each tensor [B, T, ...] gathered the same way."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # [B, T]: True positions first, in order
    lengths = mask.sum(1)  # [B]
    new_mask = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
    out = []
    for t in tensors:
        index = order.view(*order.shape, *([1] * (t.dim() - 2))).expand_as(t)
        out.append(t.gather(1, index))
    return (new_mask, *out)


class CRF(nn.Module):
    """Linear-chain conditional random field over emission scores [B, T, C].

    score(y) = start[y_1] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_T];
    p(y | x) = exp(score(y)) / sum_y' exp(score(y')).

    constraints: the (allowed, allowed_start, allowed_end) of allowed_transitions(), or None. Forbidden transitions
    score FORBIDDEN (-1e4) in both the likelihood (the partition function) and Viterbi.
    Masks passed to log_likelihood/viterbi must be True on a prefix of each row (see `_compact` for other patterns).
    """

    def __init__(self, num_labels, constraints=None):
        super().__init__()
        self.num_labels = num_labels
        self.transitions = nn.Parameter(torch.empty(num_labels, num_labels))  # [from, to]
        self.start_transitions = nn.Parameter(torch.empty(num_labels))  # [C]
        self.end_transitions = nn.Parameter(torch.empty(num_labels))  # [C]
        # Python lists, not buffers: nothing to save or load, rebuilt from config.id2label on every load
        self.constraints = constraints
        self.reset_parameters()

    def reset_parameters(self):
        for p in (self.transitions, self.start_transitions, self.end_transitions):
            init.uniform_(p, -0.1, 0.1)

    def scores(self):
        """(transitions [C, C], start [C], end [C]) in fp32, forbidden entries set to FORBIDDEN."""
        trans, start, end = self.transitions.float(), self.start_transitions.float(), self.end_transitions.float()
        if self.constraints is not None:
            allowed, allowed_start, allowed_end = (torch.tensor(c, dtype=torch.bool, device=trans.device)
                                                   for c in self.constraints)
            trans = trans.masked_fill(~allowed, FORBIDDEN)
            start = start.masked_fill(~allowed_start, FORBIDDEN)
            end = end.masked_fill(~allowed_end, FORBIDDEN)
        return trans, start, end

    def log_likelihood(self, emissions, tags, mask):
        """emissions [B, T, C], tags [B, T] (any value where mask is False), mask [B, T] prefix -> log p(tags) [B]
        (0 for an empty row)."""
        with torch.autocast(device_type=emissions.device.type, enabled=False):
            emissions = emissions.float()
            trans, start, end = self.scores()
            tags = tags.masked_fill(~mask, 0)
            lengths = mask.sum(1)  # [B]
            m = mask.float()
            # gold path score
            gold = start[tags[:, 0]] + (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * m).sum(1)  # [B]
            if tags.shape[1] > 1:
                gold = gold + (trans[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)
            last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # [B]
            gold = gold + end[last]
            # log partition function: forward algorithm
            alpha = start.unsqueeze(0) + emissions[:, 0]  # [B, C]
            for t in range(1, emissions.shape[1]):
                # [B, C_prev, 1] + [C_prev, C] + [B, 1, C] -> logsumexp over C_prev -> [B, C]
                step = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0) + emissions[:, t].unsqueeze(1), dim=1)
                alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
            log_z = torch.logsumexp(alpha + end.unsqueeze(0), dim=1)  # [B]
            return torch.where(lengths > 0, gold - log_z, torch.zeros_like(log_z))

    def viterbi(self, emissions, mask, pad=-100):
        """emissions [B, T, C], mask [B, T] prefix -> the best tag path [B, T] (long), `pad` where mask is False."""
        with torch.no_grad(), torch.autocast(device_type=emissions.device.type, enabled=False):
            emissions = emissions.float()
            trans, start, end = self.scores()
            B, T, C = emissions.shape
            score = start.unsqueeze(0) + emissions[:, 0]  # [B, C]
            identity = torch.arange(C, device=emissions.device).expand(B, C)
            history = []
            for t in range(1, T):
                best, index = (score.unsqueeze(2) + trans.unsqueeze(0)).max(dim=1)  # [B, C]: best previous tag
                real = mask[:, t].unsqueeze(1)
                score = torch.where(real, best + emissions[:, t], score)
                history.append(torch.where(real, index, identity))  # beyond a row's end: stay on the same tag
            last = (score + end.unsqueeze(0)).argmax(dim=1)  # [B]
            path = [last]
            for index in reversed(history):
                last = index.gather(1, last.unsqueeze(1)).squeeze(1)
                path.append(last)
            path = torch.stack(path[::-1], dim=1)  # [B, T]
            return path.masked_fill(~mask, pad)

    def neg_log_likelihood(self, emissions, labels, ignore_index=-100):
        """Mean negative log-likelihood per labelled token: emissions [B, L, C], labels [B, L] with ignore_index at
        unlabelled positions (anywhere; the labelled ones are chained in order)."""
        mask = labels != ignore_index  # [B, L]
        mask, emissions, labels = _compact(mask, emissions, labels)
        n_tokens = mask.sum()
        return -self.log_likelihood(emissions, labels, mask).sum() / n_tokens.clamp(min=1)

    def decode(self, emissions, mask):
        """Best tag path per row over the positions where mask [B, L] is True (any pattern, taken in order):
        a list of B lists of label ids."""
        compact_mask, compact = _compact(mask.bool(), emissions)
        paths = self.viterbi(compact, compact_mask)
        return [row[: int(n)].tolist() for row, n in zip(paths, compact_mask.sum(1))]


# ----------------------------------------------------------------------------------------------------------------------
# The models
# ----------------------------------------------------------------------------------------------------------------------


class _BertTokenHead(BertHeadPreTrainedModel):
    """BERT (no pooler) -> optional BiLSTM -> dropout -> linear per token -> optional CRF."""

    use_lstm = False
    use_crf = False

    def __init__(self, config):
        super().__init__(config)  # self.bert, self.dropout, self.num_labels
        width = config.hidden_size
        if self.use_lstm:
            self.lstm = nn.LSTM(config.hidden_size, config.rnn_hidden_size, num_layers=config.rnn_num_layers,
                                batch_first=True, bidirectional=True,
                                dropout=config.rnn_dropout if config.rnn_num_layers > 1 else 0.0)
            width = 2 * config.rnn_hidden_size
        self.classifier = nn.Linear(width, config.num_labels)
        if self.use_crf:
            constraints = allowed_transitions(config.id2label) if config.crf_constraints else None
            self.crf = CRF(config.num_labels, constraints)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CRF):  # runs when the checkpoint has no CRF (a BERT checkpoint), never over loaded ones
            module.reset_parameters()

    def _lstm(self, h, mask):
        """h [B, L, D], mask [B, L] bool (right-padded) -> [B, L, 2H], zeros at padding."""
        lengths = mask.sum(1)  # [B]
        right_padded = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)
        if not torch.equal(mask, right_padded):
            raise ValueError(f"{type(self).__name__} needs right-padded inputs (attention_mask 1...1 0...0).")
        # Packed: the backward direction starts at each sentence's last real token, not in the padding.
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu().clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])  # [B, L, 2H]
        return out

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, **kwargs):
        # input_ids / attention_mask / token_type_ids: [B, L]; labels: [B, L], -100 = no label
        outputs, mask = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        h = outputs.last_hidden_state  # [B, L, D]
        if self.use_lstm:
            h = self._lstm(h, mask)  # [B, L, 2H]
        logits = self.classifier(self.dropout(h))  # [B, L, C]
        loss = None
        if labels is not None:
            if self.use_crf:
                loss = self.crf.neg_log_likelihood(logits, labels)
            else:
                loss = F.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(
            loss=loss,
            logits=logits,
            # only when asked: Trainer.prediction_step would gather them over the whole evaluation set
            hidden_states=outputs.hidden_states if _wants_hidden_states(self, kwargs) else None,
            attentions=outputs.attentions,
        )

    def decode(self, logits, mask):
        """Best label ids per row over the positions where mask [B, L] is True (e.g. the first sub-token of every
        character): Viterbi for the CRF heads, argmax otherwise. A list of B lists."""
        if self.use_crf:
            return self.crf.decode(logits, mask)
        best = logits.argmax(-1)  # [B, L]
        return [row[m.bool()].tolist() for row, m in zip(best, mask)]


class BertLSTMForTokenClassification(_BertTokenHead):
    config_class = BertTokenLSTMConfig
    use_lstm = True


class BertCRFForTokenClassification(_BertTokenHead):
    config_class = BertTokenCRFConfig
    use_crf = True


class BertLSTMCRFForTokenClassification(_BertTokenHead):
    config_class = BertTokenLSTMCRFConfig
    use_lstm = True
    use_crf = True


# save_pretrained copies this file (and its relative imports) and writes config.json's
# auto_map["AutoModelForTokenClassification"]: from_pretrained(dir, trust_remote_code=True) works without this repo.
for _model_class in (BertLSTMForTokenClassification, BertCRFForTokenClassification, BertLSTMCRFForTokenClassification):
    _model_class.register_for_auto_class("AutoModelForTokenClassification")
