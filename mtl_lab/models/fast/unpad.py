"""BERT over its real tokens only: padding is dropped before every token-wise layer.

A batch of sentences is padded to its longest one, and a padded BERT pushes every padding
position through every layer: the query/key/value projections, the attention output, the
feed-forward block, the layer norms and dropouts. Only the attention itself needs the padded
[sentences, width] layout (a token attends to the tokens of its own sentence). Here the token
states live as one [real tokens, hidden] matrix; each layer scatters its queries, keys and values
straight into the padded, head-major layout the attention multiplies in (no transposes), and
gathers the attention's output back. Every real token gets the backbone's own maths -- its
embeddings, layers and layer norms are called as they are, and the attention is BERT's
softmax(QK^T / sqrt(d) + mask) V with transformers' additive mask on padding keys -- so the states
equal the padded model's (to float rounding); padding positions come out as zeros, which the
sentence encoders never read (they pool over real tokens only).

It also lets several batches share one pass (:func:`encode`): the SBERT + CNN-BiLSTM model's pair
tasks need the cross-encoder's ``[CLS] a [SEP] b [SEP]`` and both sentences alone, which a padded
backbone runs as two passes; here their real tokens make one matrix, so every linear layer runs one
bigger multiplication instead of two smaller ones, and each batch's attention keeps its own width.
On a CPU, where a multiplication's cost follows its size, this is where the time goes
(``benchmarks/bench_training.py`` measures it). On a GPU the padded passes with fused attention
kernels stay (``MultitaskModel.unpadded``).

And where a batch's reader takes only the [CLS] token's final state (the [CLS] baseline's heads, every
cross-encoder), the last layer runs for that token alone: the other tokens' keys and values are still
computed (the [CLS] token attends to them), but their queries, attention outputs and feed-forward blocks
-- five sixths of a layer's work per token -- feed nothing that is read, so they are skipped. The [CLS]
state, and every gradient, is the one the full layer gives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_lab.models.fast import dropout

Group = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""One padded batch: token ids [B, L], attention mask [B, L] (1 = real token), token types [B, L] or None."""


def encode(
    backbone: nn.Module, groups: list[Group], first_only: list[bool] | None = None
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Run ``backbone`` (a transformers BERT) once over the real tokens of every group; return each group's
    (last hidden states [B, L, H] with zeros at padding, pooler output [B, H] or None), as the padded model would.

    ``first_only[i]``: group i's reader takes only each sentence's first token ([CLS]), so the last layer computes
    that token's query, attention output and feed-forward block alone (keys and values still for every token) and
    the group's states come back as [B, 1, H]: the same [CLS] state without five sixths of the last layer's work."""
    heads = backbone.config.num_attention_heads
    first_only = [False] * len(groups) if first_only is None else list(first_only)
    if len(first_only) != len(groups):
        raise ValueError(f"first_only has {len(first_only)} entries for {len(groups)} groups")
    layouts, start, tokens = [], 0, 0
    for (_, mask, _), first in zip(groups, first_only):
        layouts.append(Layout(mask.bool(), heads, start, tokens, first))
        start, tokens = start + layouts[-1].size, tokens + layouts[-1].tokens
    spots = torch.cat([lay.spots for lay in layouts])  # [tokens, heads]
    qkv_spots = torch.cat([spots + k * start for k in range(3)], dim=1)  # query, key, value blocks
    qkv_gaps = _gaps(qkv_spots, 3 * start)
    ids = torch.cat([lay.pick(i) for lay, (i, _, _) in zip(layouts, groups)])
    types = torch.cat([lay.pick(i.new_zeros(i.shape) if t is None else t) for lay, (i, _, t) in zip(layouts, groups)])
    positions = torch.cat([lay.columns for lay in layouts])  # a token's column, as in the padded batch
    hidden = backbone.embeddings(input_ids=ids[None], token_type_ids=types[None], position_ids=positions[None])[0]
    kind = backbone.config._attn_implementation
    layers = list(backbone.encoder.layer)
    for n, layer in enumerate(layers):
        attention = layer.attention.self
        size = attention.attention_head_size
        parts = (attention.query, attention.key, attention.value)
        if n < len(layers) - 1 or not any(first_only):
            weight, bias = torch.cat([m.weight for m in parts]), torch.cat([m.bias for m in parts])
            qkv = _head_major(F.linear(hidden, weight, bias), qkv_spots, qkv_gaps, size).view(3, start, size)
            q, k, v = (_pieces(t, [lay.size for lay in layouts]) for t in qkv.unbind(0))
            short = [False] * len(layouts)
        else:  # the last layer: keys and values for every token, queries for the tokens the readers keep
            weight, bias = torch.cat([m.weight for m in parts[1:]]), torch.cat([m.bias for m in parts[1:]])
            kv_spots = qkv_spots[:, : 2 * heads]
            kv = _head_major(F.linear(hidden, weight, bias), kv_spots, _gaps(kv_spots, 2 * start), size)
            k, v = (_pieces(t, [lay.size for lay in layouts]) for t in kv.view(2, start, size).unbind(0))
            hidden = hidden[torch.cat([lay.kept for lay in layouts])]
            offsets = np.cumsum([0] + [lay.query_size for lay in layouts]).tolist()
            q_spots = torch.cat([lay.query_spots(o) for lay, o in zip(layouts, offsets)])
            q = _head_major(attention.query(hidden), q_spots, _gaps(q_spots, offsets[-1]), size)
            q, short = _pieces(q, [lay.query_size for lay in layouts]), first_only
        # unbind and split, not slicing: their backward joins the pieces in one pass (a slice's fills a zero buffer)
        contexts = [lay.attend(attention, *qkv_g, kind, s) for lay, *qkv_g, s in zip(layouts, q, k, v, short)]
        context = (torch.cat(contexts) if len(contexts) > 1 else contexts[0]).view(-1, heads * size)  # [kept, H]
        hidden = layer.attention.output(context, hidden)  # dense, dropout, residual, layer norm
        hidden = layer.output(layer.intermediate(hidden), hidden)  # feed-forward, dropout, residual, layer norm
    out = []
    for lay, piece in zip(layouts, _pieces(hidden, [len(lay.kept) for lay in layouts])):
        if lay.first_only:
            states = piece[:, None]  # [B, 1, H]: the first token's state
        else:
            states = piece.new_zeros(lay.rows * lay.width, piece.shape[-1]).index_copy_(0, lay.real, piece)
            states = states.view(lay.rows, lay.width, -1)
        out.append((states, backbone.pooler(states) if getattr(backbone, "pooler", None) is not None else None))
    return out


def _pieces(values: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """``values`` split into consecutive pieces of ``sizes`` rows; itself for one piece (a split's backward copies)."""
    return (values,) if len(sizes) == 1 else values.split(sizes)


def _gaps(spots: torch.Tensor, size: int) -> torch.Tensor:
    """The positions of a [size] head-major buffer that no token's ``spots`` fill: padding, to be zeros."""
    free = torch.ones(size, dtype=torch.bool, device=spots.device)
    free[spots.reshape(-1)] = False
    return free.nonzero().squeeze(1)


def _head_major(values: torch.Tensor, spots: torch.Tensor, gaps: torch.Tensor, head_size: int) -> torch.Tensor:
    """[tokens, k * heads * head size] projections scattered to their ``spots`` ([tokens, k * heads]) in a
    [len(spots) + len(gaps), head size] buffer zeroed at its ``gaps``: the padded, head-major layout the attention
    multiplies in (zeroing the padding alone, not the whole buffer first)."""
    flat = values.reshape(-1, head_size)
    buffer = flat.new_empty(flat.shape[0] + len(gaps), head_size).index_fill_(0, gaps, 0)
    return buffer.index_copy_(0, spots.reshape(-1), flat)


class Layout:
    """One padded batch's real tokens, and where their heads sit in the padded, head-major attention layout
    [rows, heads, width, head size] (placed at ``offset`` in a buffer shared by all batches of a pass; its tokens
    start at ``first_token`` in the pass's token matrix). ``first_only``: the last layer keeps each row's first
    token alone (:func:`encode`)."""

    def __init__(self, mask: torch.Tensor, heads: int, offset: int, first_token: int = 0, first_only: bool = False):
        self.rows, self.width = mask.shape
        self.heads, self.offset, self.first_only = heads, offset, first_only
        self.size = self.rows * heads * self.width  # head positions
        self.real = mask.reshape(-1).nonzero().squeeze(1)  # where each real token sits in [rows * width]
        self.tokens = len(self.real)
        row, self.columns = self.real // self.width, self.real % self.width
        spots = (row[:, None] * heads + torch.arange(heads, device=mask.device)) * self.width + self.columns[:, None]
        self.local = spots.reshape(-1)  # token t's head h -> (row_t, h, col_t)
        self.spots = spots + offset  # [tokens, heads], in the shared buffer
        keys = torch.zeros(self.rows, 1, 1, self.width, device=mask.device)
        keys = keys.masked_fill(~mask[:, None, None, :], torch.finfo(keys.dtype).min)  # transformers' additive mask
        self.keys_mask = keys.expand(self.rows, heads, 1, self.width).reshape(self.rows * heads, 1, self.width)
        if first_only:
            kept = (self.columns == 0).nonzero().squeeze(1)
            if len(kept) != self.rows:
                raise ValueError("first_only needs every row's first position to be a real token (right padding)")
            self.query_size = self.rows * heads  # one query per row and head
        else:
            kept = torch.arange(self.tokens, device=mask.device)
            self.query_size = self.size
        self.kept = kept + first_token  # the tokens whose last-layer states are kept, in the pass's token matrix

    def query_spots(self, offset: int) -> torch.Tensor:
        """[kept tokens, heads]: where the kept tokens' queries sit in a last-layer query buffer whose block for
        this batch starts at ``offset`` (one query per row and head where ``first_only``)."""
        if self.first_only:
            return torch.arange(self.query_size, device=self.real.device).view(self.rows, self.heads) + offset
        return self.local.view(self.tokens, self.heads) + offset

    def pick(self, values: torch.Tensor) -> torch.Tensor:
        """The real tokens' entries of a [rows, width] tensor (ids, token types), in token order."""
        return values.reshape(-1)[self.real]

    def attend(
        self, attention: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str, first: bool = False
    ) -> torch.Tensor:
        """softmax(QK^T * scale + mask) V for this batch's sentences (queries, keys, values: its [head positions,
        head size] blocks; ``first``: one query per row and head, the first token's), with dropout on the attention
        map (the lab's masks where the backbone uses the lab's attention); returns [queries * heads, head size]."""
        shape = (self.rows * self.heads, self.width, k.shape[-1])
        q, k, v = q.view(shape[0], 1 if first else self.width, shape[2]), k.view(shape), v.view(shape)
        scores = torch.baddbmm(self.keys_mask.to(q.dtype), q, k.transpose(1, 2), alpha=attention.scaling)
        weights = F.softmax(scores, dim=-1)
        if attention.training and attention.dropout.p > 0:
            drop = dropout.fast_dropout if kind == dropout.ATTENTION else F.dropout
            weights = drop(weights, attention.dropout.p, True)
        context = torch.bmm(weights.to(v.dtype), v).view(-1, shape[-1])
        return context if first else context.index_select(0, self.local)
