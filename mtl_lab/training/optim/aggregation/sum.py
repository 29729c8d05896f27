"""The plain multi-task aggregation: the mean (or sum) of the task gradients, no surgery."""

from __future__ import annotations

import torch


def sum_gradients(
    grads: torch.Tensor,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean (or sum) of the K x D task gradients, a D vector (into ``out`` if given); ``generator`` is unused."""
    return torch.mean(grads, 0, out=out) if reduction == "mean" else torch.sum(grads, 0, out=out)
