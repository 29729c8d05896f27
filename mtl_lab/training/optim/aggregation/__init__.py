"""Multi-task gradient aggregation: K task gradients of the shared parameters -> one update.

Every aggregator is a pure function of the K x D task-gradient matrix (one flattened gradient
per task), one module each:

- ``aggregation.sum.sum_gradients``: the plain mean (or sum), no surgery;
- ``aggregation.pcgrad.project_conflicting``: PCGrad (Yu et al., 2020), beside
  ``project_conflicting_reference``, Algorithm 1 written literally;
- ``aggregation.imtl_g.imtl_g``: IMTL-G (Liu et al., 2021);
- ``aggregation.task_gradients.TaskGradients``: collects the K x D matrix, one backward per task;
- ``aggregation.matrix``: the Gram matrix, pairwise cosines and the weighted sum of rows they share.

A built-in aggregator is ``(grads, reduction, generator, out=None) -> D``: it can write into ``out``,
a D vector reused step after step. One of your own is ``(grads, reduction, generator) -> D``.
``as_aggregator`` turns either (or a name in ``AGGREGATORS``) into the one call the training step
makes, ``(grads, generator, out) -> D``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# private names: each function is imported from its own module (``aggregation.imtl_g`` stays the module)
from mtl_lab.training.optim.aggregation.imtl_g import imtl_g as _imtl_g
from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting as _project_conflicting
from mtl_lab.training.optim.aggregation.sum import sum_gradients as _sum_gradients

AGGREGATORS: dict[str, Callable[..., torch.Tensor]] = {
    "sum": _sum_gradients,
    "pcgrad": _project_conflicting,
    "imtl_g": _imtl_g,
}
"""Gradient aggregation methods by name (``--aggregation``); add your own ``(grads, reduction, generator) -> D``."""

_WRITE_INTO_OUT = (_sum_gradients, _project_conflicting, _imtl_g)  # the built-in ones take ``out=``


@dataclass(frozen=True, eq=False)
class Aggregator:
    """An aggregation as the training step calls it: ``(grads K x D, generator, out) -> D``.

    ``fn`` is a built-in aggregator, which writes into ``out``, or one of your own
    ``(grads, reduction, generator) -> D``, which never sees ``out`` (its result is checked to be a D vector).
    """

    fn: Callable[..., torch.Tensor]
    reduction: str = "sum"
    writes_into_out: bool = False

    def __call__(
        self, grads: torch.Tensor, generator: torch.Generator | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The aggregated D vector of the K x D ``grads`` (written into ``out`` by a built-in aggregator)."""
        if self.writes_into_out:
            return self.fn(grads, self.reduction, generator, out=out)
        result = self.fn(grads, self.reduction, generator)
        if not torch.is_tensor(result) or tuple(result.shape) != (grads.shape[1],):
            got = tuple(result.shape) if torch.is_tensor(result) else type(result).__name__
            name = getattr(self.fn, "__name__", type(self.fn).__name__)
            raise ValueError(f"aggregator {name} returned {got}, expected a vector of {grads.shape[1]}")
        return result


def as_aggregator(spec: str | Callable[..., torch.Tensor], reduction: str = "sum") -> Aggregator:
    """The aggregation ``spec`` names (a key of ``AGGREGATORS``) or is (a function), as one ``Aggregator``.

    ``reduction`` is what the function is told ("sum" in the training step, whose loss weights already
    took the mean). An ``Aggregator`` is returned as it is.
    """
    if isinstance(spec, Aggregator):
        return spec
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if isinstance(spec, str):
        if spec not in AGGREGATORS:
            raise ValueError(f"aggregation must be one of {tuple(AGGREGATORS)}, got {spec!r}")
        spec = AGGREGATORS[spec]
    if not callable(spec):
        raise TypeError(f"an aggregator is a name in {tuple(AGGREGATORS)} or a function, got {type(spec).__name__}")
    # identity, not equality or hashing: a student's callable object may be unhashable
    return Aggregator(spec, reduction, any(spec is fn for fn in _WRITE_INTO_OUT))


__all__ = ["AGGREGATORS", "Aggregator", "as_aggregator"]
