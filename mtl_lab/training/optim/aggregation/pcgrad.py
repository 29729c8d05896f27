"""PCGrad gradient surgery (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning"), by hand.

Algorithm 1 of the paper, for K task gradients g_1..g_K of the shared parameters::

    for each task i:
        g_i' = g_i
        for each other task j, in a random order:
            if g_i' . g_j < 0:                      # conflict
                g_i' = g_i' - (g_i' . g_j) / |g_j|^2 * g_j   # project onto g_j's normal plane
    update = sum_i g_i'   (or the mean)

Note the projection uses the ORIGINAL g_j, not its projected version, and the dot product uses
the already-projected g_i'. ``project_conflicting_reference`` is Algorithm 1 written literally on
vectors: read it first. ``project_conflicting``, the one the lab trains with, is the same maths as
a pure function of a K x D tensor: the Gram matrix G = g g^T is computed once (K(K+1)/2 dot
products), and each projection only updates the K coefficients that express g_i' in the basis of
the original gradients, so the K x D tensor is touched twice in all, not K^2 times.
"""

from __future__ import annotations

import torch

from mtl_lab.training.optim.aggregation.matrix import combine, gram_matrix


def project_conflicting_reference(grads: torch.Tensor, order: list[list[int]], reduction: str = "mean") -> torch.Tensor:
    """Algorithm 1 written literally on vectors, with a given order of the other tasks per task (the reference)."""
    projected = []
    for i in range(grads.shape[0]):
        gi = grads[i].clone()
        for j in order[i]:
            gj = grads[j]
            dot = gi @ gj
            if dot < 0 and gj @ gj > 0:
                gi = gi - dot / (gj @ gj) * gj
        projected.append(gi)
    out = torch.stack(projected).sum(0)
    return out / grads.shape[0] if reduction == "mean" else out


def project_conflicting(
    grads: torch.Tensor,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    orders: list[list[int]] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """PCGrad: project each task gradient off the others it conflicts with, then reduce.

    ``grads`` is K x D (one flattened gradient per task). Returns a D vector: the mean (default)
    or sum of the projected gradients. A zero gradient neither conflicts nor is divided by.
    The order in which task i visits the others is drawn from ``generator``, unless ``orders``
    (one list of the other task indices per task) fixes it. ``out``: a D vector to write the result into.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if grads.ndim != 2:
        raise ValueError(f"grads must be K x D, got shape {tuple(grads.shape)}")
    k = grads.shape[0]
    gram = gram_matrix(grads)  # gram[i, j] = g_i . g_j
    norms = gram.diagonal().clone()
    # coef[i] expresses g_i' = sum_m coef[i, m] g_m ; start with g_i' = g_i
    coef = torch.eye(k, dtype=gram.dtype, device=gram.device)
    for i in range(k):
        if orders is not None:
            others = orders[i]
        else:
            others = [j for j in torch.randperm(k, generator=generator).tolist() if j != i]
        for j in others:
            if norms[j] <= 0:
                continue
            dot = coef[i] @ gram[:, j]  # g_i' . g_j
            if dot < 0:
                coef[i, j] -= dot / norms[j]
    weights = coef.sum(0)
    if reduction == "mean":
        weights = weights / k
    return combine(weights, grads, out)
