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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import dropout

Group = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""One padded batch: token ids [B, L], attention mask [B, L] (1 = real token), token types [B, L] or None."""


def encode(backbone: nn.Module, groups: list[Group]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Run ``backbone`` (a transformers BERT) once over the real tokens of every group; return each group's
    (last hidden states [B, L, H] with zeros at padding, pooler output [B, H] or None), as the padded model would."""
    heads = backbone.config.num_attention_heads
    layouts, start = [], 0
    for _, mask, _ in groups:
        layouts.append(Layout(mask.bool(), heads, start))
        start += layouts[-1].size
    spots = torch.cat([lay.spots for lay in layouts])
    qkv_spots = torch.cat([spots + k * start for k in range(3)], dim=1).reshape(-1)  # query, key, value blocks
    ids = torch.cat([lay.pick(i) for lay, (i, _, _) in zip(layouts, groups)])
    types = torch.cat([lay.pick(i.new_zeros(i.shape) if t is None else t) for lay, (i, _, t) in zip(layouts, groups)])
    positions = torch.cat([lay.columns for lay in layouts])  # a token's column, as in the padded batch
    hidden = backbone.embeddings(input_ids=ids[None], token_type_ids=types[None], position_ids=positions[None])[0]
    kind = backbone.config._attn_implementation
    for layer in backbone.encoder.layer:
        attention = layer.attention.self
        weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
        bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias])
        qkv = F.linear(hidden, weight, bias)  # [tokens, 3 H]: one multiplication for the three projections
        size = attention.attention_head_size
        padded = qkv.new_zeros(3 * start, size).index_copy_(0, qkv_spots, qkv.reshape(-1, size)).view(3, start, size)
        # unbind and split, not slicing: their backward joins the pieces in one pass (a slice's fills a zero buffer)
        q, k, v = (t.split([lay.size for lay in layouts]) for t in padded.unbind(0))
        contexts = [lay.attend(attention, *qkv_g, kind) for lay, *qkv_g in zip(layouts, q, k, v)]
        context = torch.cat(contexts).view(-1, heads * size)  # [tokens, H]
        hidden = layer.attention.output(context, hidden)  # dense, dropout, residual, layer norm
        hidden = layer.output(layer.intermediate(hidden), hidden)  # feed-forward, dropout, residual, layer norm
    out = []
    for lay, piece in zip(layouts, hidden.split([lay.tokens for lay in layouts])):
        states = piece.new_zeros(lay.rows * lay.width, piece.shape[-1]).index_copy_(0, lay.real, piece)
        states = states.view(lay.rows, lay.width, -1)
        out.append((states, backbone.pooler(states) if getattr(backbone, "pooler", None) is not None else None))
    return out


class Layout:
    """One padded batch's real tokens, and where their heads sit in the padded, head-major attention layout
    [rows, heads, width, head size] (placed at ``offset`` in a buffer shared by all batches of a pass)."""

    def __init__(self, mask: torch.Tensor, heads: int, offset: int):
        self.rows, self.width = mask.shape
        self.heads, self.offset = heads, offset
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

    def pick(self, values: torch.Tensor) -> torch.Tensor:
        """The real tokens' entries of a [rows, width] tensor (ids, token types), in token order."""
        return values.reshape(-1)[self.real]

    def attend(self, attention: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str):
        """softmax(QK^T * scale + mask) V for this batch's sentences (queries, keys, values: its [head positions,
        head size] block), with dropout on the attention map (the lab's masks where the backbone uses the lab's
        attention); returns [tokens * heads, head size]."""
        shape = (self.rows * self.heads, self.width, q.shape[-1])
        q, k, v = q.view(shape), k.view(shape), v.view(shape)
        scores = torch.baddbmm(self.keys_mask.to(q.dtype), q, k.transpose(1, 2), alpha=attention.scaling)
        weights = F.softmax(scores, dim=-1)
        if attention.training and attention.dropout.p > 0:
            drop = dropout.fast_dropout if kind == dropout.ATTENTION else F.dropout
            weights = drop(weights, attention.dropout.p, True)
        context = torch.bmm(weights.to(v.dtype), v)
        return context.view(-1, shape[-1]).index_select(0, self.local)
