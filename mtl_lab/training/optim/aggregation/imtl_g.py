"""IMTL-G (Liu et al., 2021, "Towards Impartial Multi-task Learning"): an update no task dominates.

The update g = sum_i a_i g_i, with sum_i a_i = 1, whose projection onto every task's unit
gradient u_i is the same. Closed form with D_i = g_i - g_K and U_i = u_i - u_K (i < K):
a_{<K} = -(U D^T)^{-1} U g_K, all of it computed from the K x K Gram matrix.
"""

from __future__ import annotations

import torch

from mtl_lab.training.optim.aggregation.matrix import combine, gram_matrix


def imtl_g(
    grads: torch.Tensor,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """IMTL-G's combination of the K x D task gradients, a D vector (into ``out`` if given).

    Zero gradients get weight 0. The weights of ``reduction`` "mean" sum to one; "sum" scales
    them by the number of tasks. ``generator`` is unused (IMTL-G draws nothing).
    """
    gram = gram_matrix(grads)
    norms = gram.diagonal().clamp(min=0).sqrt()
    live = (norms > 0).nonzero().flatten()
    weights = torch.zeros(grads.shape[0], dtype=gram.dtype, device=gram.device)
    if len(live) == 1:
        weights[live] = 1.0
    elif len(live) > 1:
        gm, n = gram[live][:, live], norms[live]
        proj = gm / n[:, None]  # proj[i, j] = u_i . g_j
        last = len(live) - 1
        ud = (proj[:last, :last] - proj[last, :last]) - (proj[:last, last:] - proj[last, last])
        ug = proj[:last, last] - proj[last, last]
        alpha = -torch.linalg.lstsq(ud, ug.unsqueeze(-1)).solution.squeeze(-1)
        weights[live] = torch.cat([alpha, 1.0 - alpha.sum(0, keepdim=True)])
    if reduction == "sum":
        weights = weights * grads.shape[0]
    return combine(weights, grads, out)
