"""Dropout with its masks drawn 16 bits at a time: the same regulariser, faster on a CPU.

Dropout zeroes each activation with probability ``p`` and scales the survivors by ``1 / (1 - p)``.
PyTorch draws its masks with ``bernoulli_``, which on a CPU without Intel's MKL path (an AMD
processor, for one) asks the random generator for one number per element, one element at a time
on one core: a noticeable share of a training step, since MiniLM has dropout after the embeddings,
on every attention map and after every attention and feed-forward block (``benchmarks/bench_training.py``
prints the profile; the measurements are in docs/performance.md).

Here one 64-bit random number makes four masks: its four 16-bit pieces are compared with a
threshold, in one vectorised comparison. An element is kept when its piece is below
``round((1 - p) * 65536)`` out of 65,536 values -- a keep rate within 1 / 131,072 of ``1 - p`` -- and
survivors are scaled by the inverse of that exact keep rate, so every activation keeps its expected
value, as with PyTorch's dropout. The masks come from PyTorch's global generator, so ``torch.manual_seed``
and a checkpoint's saved generator state reproduce them. At the ends of the range 16 bits run out: a ``p``
below 1 / 131,072 rounds to a keep rate of exactly 1 (nothing dropped), and a ``p`` above 1 - 1 / 131,072,
whose keep rate would round to 0 (nothing kept, no scale), takes PyTorch's own masks instead.

:func:`use_fast_dropout` puts this dropout in every dropout layer of a model, and the attention maps'
dropout too (:func:`eager_attention`, the plain attention of transformers' BERT with this dropout,
registered as ``"lab_eager"``). The training loop does it on a CPU; on a GPU PyTorch's own dropout is
already fast and stays.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTION = "lab_eager"
"""The backbone's attention implementation with this dropout (registered with transformers' AttentionInterface)."""


def keep_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bool,
) -> tuple[torch.Tensor, float]:
    """A mask of ``shape`` keeping each element with probability ~``1 - p`` (1 / True: kept), and that exact
    probability. ``dtype``: bool, or a float type for a 0./1. mask written by the comparison itself (on a CPU
    faster than a boolean mask converted afterwards)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    n = math.prod(shape)
    threshold = round((1 - p) * 65536)  # kept: a uniform 16-bit piece (0..65535) below this
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), 2**63 - 1)
    pieces = words.view(torch.int16)[:n].view(shape)  # signed: -32768..32767, i.e. piece - 32768
    keep = torch.empty(shape, dtype=dtype, device=device)
    if threshold == 65536:  # every piece is below it; compared in int16, 65536 - 32768 would wrap to -32768
        return keep.fill_(1), 1.0
    torch.lt(pieces, threshold - 32768, out=keep)
    return keep, threshold / 65536


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by 1 / (keep rate), in training."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    if round((1 - p) * 65536) == 0:  # a keep rate below 1 / 131,072: 16 bits would keep nothing and scale by 1 / 0
        return nn.functional.dropout(x, p, True)
    keep, rate = keep_mask(x.shape, p, x.device, x.dtype)
    # a multiplication by the scaled 0./1. mask, not torch.where(keep, x / rate, 0): on a CPU ``where`` with a boolean
    # mask runs many times slower than a multiplication (benchmarks/bench_training.py, the dropout table); same values. The
    # mask is scaled before it meets x (it needs no gradient), so the backward is one multiplication, not two.
    if x.dtype in (torch.float32, torch.float64):
        return x * keep.mul_(1 / rate)
    return x * keep * (1 / rate)  # bf16 / fp16: a scaled mask would round 1 / rate to 8 or 11 bits


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the masks of :func:`fast_dropout` (a drop-in: same ``p``, same train/eval behaviour)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with this module's dropout (the identity in eval mode)."""
        return fast_dropout(x, self.p, self.training)


def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' plain ("eager") BERT attention, softmax(QK^T * scale + mask) V, with this dropout on the map."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = fast_dropout(nn.functional.softmax(weights, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register() -> None:
    """Make ``ATTENTION`` a name transformers knows: the attention function, and the additive (eager) mask it reads
    (without a mask function transformers would hand it the raw 0/1 padding mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION, eager_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Put :class:`Dropout` in place of every ``nn.Dropout`` of ``model`` and, if it has a transformers backbone,
    :func:`eager_attention` in its attention layers. Returns the model."""
    _swap_dropouts(model, nn.Dropout, Dropout)
    if hasattr(getattr(model, "backbone", None), "set_attn_implementation"):
        _register()
        model.backbone.set_attn_implementation(ATTENTION)
    return model


def use_torch_dropout(model: nn.Module) -> nn.Module:
    """Undo :func:`use_fast_dropout`: PyTorch's ``nn.Dropout`` and transformers' eager attention (for comparisons)."""
    _swap_dropouts(model, Dropout, nn.Dropout)
    if hasattr(getattr(model, "backbone", None), "set_attn_implementation"):
        model.backbone.set_attn_implementation("eager")
    return model


def _swap_dropouts(model: nn.Module, old: type, new: type) -> None:
    """Replace every layer of exactly type ``old`` by a ``new`` of the same ``p`` and train/eval mode."""
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is old:
                setattr(parent, name, new(child.p, child.inplace).train(child.training))


def dropout_kind(model: nn.Module) -> str:
    """Which dropout a model trains with: ``mtl_lab.models.fast.dropout`` (16-bit masks) or ``torch`` (``bernoulli_``)."""
    return "mtl_lab.models.fast.dropout" if any(isinstance(m, Dropout) for m in model.modules()) else "torch"
