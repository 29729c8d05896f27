"""Per-task gradients of the shared parameters as one K x D matrix, the input of every aggregator."""

from __future__ import annotations

import torch


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
