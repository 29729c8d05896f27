"""PCGrad gradient surgery (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning"), by hand.

Algorithm 1 of the paper, for K task gradients g_1..g_K of the shared parameters::

    for each task i:
        g_i' = g_i
        for each other task j, in a random order:
            if g_i' . g_j < 0:                      # conflict
                g_i' = g_i' - (g_i' . g_j) / |g_j|^2 * g_j   # project onto g_j's normal plane
    update = sum_i g_i'   (or the mean)

Note the projection uses the ORIGINAL g_j, not its projected version, and the dot product uses
the already-projected g_i'. ``project_conflicting`` is a pure function of a K x D tensor; the
Gram matrix G = g g^T is computed once (K(K+1)/2 dot products), and each projection only updates
the K coefficients that express g_i' in the basis of the original gradients, so the K x D
tensor is touched twice in all, not K^2 times.
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


def combine(weights: torch.Tensor, grads: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i weights[i] * grads[i] (a D vector) as one matrix-vector product, into ``out`` if given.

    Writing into a D vector that is reused step after step (``TaskGradients.result``) is faster than
    into a fresh one on a CPU: a fresh vector of tens of MB is new memory whose every page faults on first write."""
    return torch.mv(grads.t(), weights.to(grads.dtype), out=out)


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


def project_conflicting_reference(grads: torch.Tensor, order: list[list[int]], reduction: str = "mean") -> torch.Tensor:
    """Algorithm 1 written literally on vectors, with a given order of other tasks per task (for tests)."""
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


def sum_gradients(
    grads: torch.Tensor,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain multi-task aggregation: the mean (or sum) of the task gradients, no surgery (into ``out`` if given)."""
    return torch.mean(grads, 0, out=out) if reduction == "mean" else torch.sum(grads, 0, out=out)


def cosine_matrix(grads: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of K task gradients (K x K); 0 where a gradient is zero."""
    gram = gram_matrix(grads)
    norms = gram.diagonal().clamp(min=0).sqrt()
    denom = norms[:, None] * norms[None, :]
    return torch.where(denom > 0, gram / denom.clamp(min=1e-30), torch.zeros_like(gram))


class TaskGradients:
    """Per-task gradients of a list of parameters, written by autograd straight into one K x D buffer.

    ``backward(losses)`` points every parameter's ``.grad`` at row k of the buffer before
    back-propagating loss k, so autograd accumulates task k's gradient there with no copy.
    ``assign(vector)`` then makes ``.grad`` a view of the aggregated D-vector.
    """

    def __init__(self, params: list[torch.nn.Parameter]):
        self.params = list(params)
        self.numels = [p.numel() for p in self.params]
        self.dim = sum(self.numels)
        self.buffer: torch.Tensor | None = None
        self._result: torch.Tensor | None = None

    def _point(self, flat: torch.Tensor) -> None:
        for p, view in zip(self.params, torch.split(flat, self.numels)):
            p.grad = view.view_as(p)

    def backward(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """Back-propagate each loss on its own; return the K x D matrix of their gradients."""
        k = len(losses)
        p0 = self.params[0]
        if self.buffer is None or self.buffer.shape[0] < k:
            self.buffer = torch.empty(k, self.dim, dtype=p0.dtype, device=p0.device)
        grads = self.buffer[:k]
        grads.zero_()
        for i, loss in enumerate(losses):
            self._point(grads[i])
            loss.backward()
        return grads

    @property
    def result(self) -> torch.Tensor:
        """A D vector reused every step for the aggregated gradient (``out=`` of the built-in aggregators)."""
        if self._result is None:
            p0 = self.params[0]
            self._result = torch.zeros(self.dim, dtype=p0.dtype, device=p0.device)
        return self._result

    def assign(self, vector: torch.Tensor) -> None:
        """Set the parameters' ``.grad`` to (views of) the aggregated gradient."""
        self._point(vector)


def imtl_g(
    grads: torch.Tensor,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """IMTL-G (Liu et al., 2021): the combination g = sum_i a_i g_i, sum_i a_i = 1, whose projection
    onto every task's unit gradient u_i is the same -- no task dominates the update.

    Closed form with D_i = g_i - g_K and U_i = u_i - u_K (i < K): a_{<K} = -(U D^T)^{-1} U g_K.
    Everything is computed from the K x K Gram matrix; zero gradients get weight 0. ``reduction``
    "sum" scales the result by the number of tasks (the weights of "mean" sum to one). ``out``: as in PCGrad.
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


AGGREGATORS = {"sum": sum_gradients, "pcgrad": project_conflicting, "imtl_g": imtl_g}
"""Gradient aggregation methods by name: pure functions (K x D grads, reduction, generator) -> D; each also takes
``out=`` (a D vector to write into), which the training loop passes to any aggregator whose signature has it."""
