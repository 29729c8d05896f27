"""Sentence encoders: token states of the backbone -> one vector per sentence.

Each encoder is a small module ``(hidden [B, T, H], mask [B, T]) -> [B, D]`` with an
``out_dim``. Padding never reaches a pooled value: padded positions are zeroed before the
CNN, excluded from means and maxima, and skipped by the packed BiLSTM, so a sentence gets
the same vector whatever the batch it is padded in.

- ``cls``: the [CLS] token state (BERT's classification token).
- ``pooled``: BERT's pooler (tanh dense over [CLS]).
- ``mean``: SBERT's masked mean pooling.
- ``cnn``: n-gram filters (1..4) over token states, ReLU, dropout, masked max pooling.
- ``bilstm``: a BiLSTM over token states; final forward and backward states.
- ``bilstm_cnn``: the BiLSTM over the CNN's n-gram features instead of raw token states.
- ``sbert_cnn_bilstm``: the paper's combined embedding, concat(mean, cnn, bilstm_cnn).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states over real (mask == 1) tokens."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of token states over real tokens."""
    fill = torch.finfo(hidden.dtype).min
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), fill).max(1).values


class CLSEncoder(nn.Module):
    """The [CLS] token's final state."""

    def __init__(self, hidden: int):
        super().__init__()
        self.out_dim = hidden

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """[CLS] state, shape [B, H]."""
        return hidden[:, 0]


class PooledEncoder(CLSEncoder):
    """BERT's pooler output (dense + tanh over [CLS]); falls back to [CLS] if the backbone has none."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Pooler output, shape [B, H]."""
        return pooled if pooled is not None else hidden[:, 0]


class MeanEncoder(CLSEncoder):
    """SBERT mean pooling over real tokens."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Masked mean, shape [B, H]."""
        return masked_mean(hidden, mask)


class NGramCNN(nn.Module):
    """Uni-, bi-, tri- and four-gram convolutions over token states (the paper's CNN).

    ``conv_features`` is the reference to read first: one ``nn.Conv1d`` per n-gram width, as in the
    paper. ``fused_features`` computes the same numbers from the same weights as one matrix
    multiplication, faster on a CPU; ``features`` uses it unless ``fused`` is False. Both read the
    weights of ``self.convs``, so a checkpoint holds the same keys and values whichever path ran.
    """

    def __init__(
        self,
        hidden: int,
        filters: int = 128,
        kernel_sizes: tuple[int, ...] = (1, 2, 3, 4),
        dropout: float = 0.1,
        fused: bool = True,
    ):
        super().__init__()
        self.kernel_sizes = kernel_sizes
        self.convs = nn.ModuleList(nn.Conv1d(hidden, filters, k) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.feat_dim = filters * len(kernel_sizes)
        self.out_dim = self.feat_dim
        self.fused = fused  # a plain attribute, not a buffer: the state_dict does not depend on it

    def conv_features(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token n-gram features [B, T, F] by four convolutions; the n-gram starting at token t covers t..t+k-1.

        Each width k pads k - 1 zeros after the last token, so every token starts one n-gram and
        the output keeps the T positions; padded tokens are zeroed first, so they add nothing."""
        x = (hidden * mask.unsqueeze(-1).to(hidden.dtype)).transpose(1, 2)  # [B, H, T], padding zeroed
        feats = [torch.relu(conv(nn.functional.pad(x, (0, k - 1)))) for conv, k in zip(self.convs, self.kernel_sizes)]
        return self.dropout(torch.cat(feats, 1).transpose(1, 2))  # [B, F, T] -> [B, T, F]

    def fused_features(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``conv_features`` computed as one multiplication: the same numbers, faster on a CPU, forward and backward.

        Every tap j of every filter width k is applied to every token at once, [B, T, H] x
        [H, sum(k) * filters]; then tap j of width k is read j tokens later and the taps summed.
        Four convolutions over the transposed [B, H, T] states are slower on a CPU."""
        x = hidden * mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, H], padding zeroed
        taps = torch.cat([conv.weight[:, :, j] for conv in self.convs for j in range(conv.kernel_size[0])])
        applied = (x @ taps.t().to(x.dtype)).split(self.convs[0].out_channels, dim=-1)  # [B, T, filters] per tap
        feats, i = [], 0
        for conv, k in zip(self.convs, self.kernel_sizes):
            out = applied[i] + conv.bias.to(x.dtype)
            for j in range(1, k):  # tap j sees token t + j: shift it back by j, zeros past the end
                out = out + nn.functional.pad(applied[i + j][:, j:], (0, 0, 0, j))
            feats.append(torch.relu(out))
            i += k
        return self.dropout(torch.cat(feats, -1))

    def features(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token n-gram features [B, T, F]: ``fused_features``, or ``conv_features`` when ``fused`` is False."""
        return self.fused_features(hidden, mask) if self.fused else self.conv_features(hidden, mask)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Masked max pooling of the n-gram features, shape [B, F]."""
        return masked_max(self.features(hidden, mask), mask)


class BiLSTMEncoder(nn.Module):
    """A BiLSTM over a sequence of vectors, packed by length; returns [h_forward; h_backward]."""

    def __init__(self, in_dim: int, hidden: int = 128):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Final states of both directions, shape [B, 2 * hidden]."""
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(hidden.float(), lengths, batch_first=True, enforce_sorted=False)
        with torch.autocast(hidden.device.type, enabled=False):
            _, (h, _) = self.lstm(packed)
        return torch.cat([h[0], h[1]], dim=-1)


class CNNBiLSTMEncoder(nn.Module):
    """A BiLSTM over the CNN's n-gram features."""

    def __init__(self, cnn: NGramCNN, lstm_hidden: int = 128):
        super().__init__()
        self.cnn = cnn
        self.lstm = BiLSTMEncoder(cnn.feat_dim, lstm_hidden)
        self.out_dim = self.lstm.out_dim

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """BiLSTM final states over n-gram features, shape [B, 2 * lstm_hidden]."""
        return self.lstm(self.cnn.features(hidden, mask), mask)


class SBERTCNNBiLSTMEncoder(nn.Module):
    """The paper's combined embedding: concat(SBERT mean, CNN max-pool, BiLSTM over CNN features)."""

    def __init__(self, hidden: int, filters: int = 128, lstm_hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.cnn = NGramCNN(hidden, filters, dropout=dropout)
        self.lstm = BiLSTMEncoder(self.cnn.feat_dim, lstm_hidden)
        self.out_dim = hidden + self.cnn.feat_dim + self.lstm.out_dim

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Combined embedding, shape [B, H + F + 2 * lstm_hidden]; n-gram features computed once."""
        feats = self.cnn.features(hidden, mask)
        parts = [masked_mean(hidden, mask), masked_max(feats, mask), self.lstm(feats, mask)]
        return torch.cat([p.float() for p in parts], dim=-1)


ENCODERS = ("cls", "pooled", "mean", "cnn", "bilstm", "bilstm_cnn", "sbert_cnn_bilstm")
FIRST_TOKEN_ONLY = ("cls", "pooled")
"""The encoders whose sentence vector reads the first token's final state alone (see ``mtl_lab.models.fast.unpad.encode``)."""


def build_encoder(
    name: str, hidden: int, filters: int = 128, lstm_hidden: int = 128, dropout: float = 0.1
) -> nn.Module:
    """Make a sentence encoder by name (one of ``ENCODERS``)."""
    if name == "cls":
        return CLSEncoder(hidden)
    if name == "pooled":
        return PooledEncoder(hidden)
    if name == "mean":
        return MeanEncoder(hidden)
    if name == "cnn":
        return NGramCNN(hidden, filters, dropout=dropout)
    if name == "bilstm":
        return BiLSTMEncoder(hidden, lstm_hidden)
    if name == "bilstm_cnn":
        return CNNBiLSTMEncoder(NGramCNN(hidden, filters, dropout=dropout), lstm_hidden)
    if name == "sbert_cnn_bilstm":
        return SBERTCNNBiLSTMEncoder(hidden, filters, lstm_hidden, dropout)
    raise ValueError(f"unknown sentence encoder {name!r}; expected one of {', '.join(ENCODERS)}")
