"""Shared maths over the K x D task-gradient matrix: its Gram matrix, pairwise cosines, a weighted sum of rows.

K (tasks) is tiny and D (shared parameters) huge, so every aggregator reads the D-long rows as
few times as it can: once for the K x K Gram matrix, once more to combine the rows with K weights.
"""

from __future__ import annotations

import torch


def gram_matrix(grads: torch.Tensor) -> torch.Tensor:
    """G[i, j] = g_i . g_j of a K x D gradient matrix, in float32 (one dot product per pair).

    K is tiny and D huge, so K(K+1)/2 dot products stream the rows faster than a K x D x K
    matrix product does on a CPU.
    """
    k = grads.shape[0]
    gram = torch.empty(k, k, dtype=torch.float32, device=grads.device)
    for i in range(k):
        for j in range(i, k):
            gram[i, j] = gram[j, i] = torch.dot(grads[i], grads[j]).float()
    return gram


def cosine_matrix(grads: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of K task gradients (K x K); 0 where a gradient is zero."""
    gram = gram_matrix(grads)
    norms = gram.diagonal().clamp(min=0).sqrt()
    denom = norms[:, None] * norms[None, :]
    return torch.where(denom > 0, gram / denom.clamp(min=1e-30), torch.zeros_like(gram))


def combine(weights: torch.Tensor, grads: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i weights[i] * grads[i] (a D vector) as one matrix-vector product, into ``out`` if given.

    Writing into a D vector that is reused step after step (``TaskGradients.result``) is faster than
    into a fresh one on a CPU: a fresh vector of tens of MB is new memory whose every page faults on first write."""
    return torch.mv(grads.t(), weights.to(grads.dtype), out=out)
