"""Weight averaging: an exponential moving average (EMA) of the weights during training -- a recipe candidate.

Training keeps updating the model as usual; beside it, a copy of every trained weight follows the
model slowly:

    averaged <- decay * averaged + (1 - decay) * weight        (after every optimizer step)

With ``decay`` 0.999 the average spans roughly the last 1,000 steps (about a third of a cpu-profile
run). The averaged weights sit in a flatter, wider part of the loss surface than the last step's
weights, which wander with the noise of their last batches (Polyak & Juditsky, 1992; the same idea as
stochastic weight averaging, Izmailov et al., 2018). Dev scoring and ``best.pt`` use the averaged
weights; training itself never sees them. Early on, the decay is lowered to ``(1 + n) / (10 + n)``
after ``n`` updates, so the average does not remember the untrained start for long. Cost: one
multiply-add per trained weight a step (a few ms against a ~1 s step) and one more copy of the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    """The moving average of a model's trained weights (``requires_grad``), kept in float32."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must lie strictly between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.averaged = [p.detach().float().clone() for p in self._weights(model)]

    def _weights(self, model: nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[name] for name in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (call after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.averaged, [p.detach().float() for p in self._weights(model)], 1.0 - decay)

    @contextmanager
    @torch.no_grad()
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """The model with the averaged weights in place (for dev scoring and ``best.pt``), restored afterwards."""
        weights = self._weights(model)
        current = [p.detach().clone() for p in weights]
        for p, avg in zip(weights, self.averaged):
            p.copy_(avg)
        try:
            yield model
        finally:
            for p, cur in zip(weights, current):
                p.copy_(cur)

    def state_dict(self) -> dict:
        """What a resumable checkpoint keeps."""
        return {"decay": self.decay, "updates": self.updates, "names": self.names, "averaged": self.averaged}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (the same model's trained weights, in the same order)."""
        if state["names"] != self.names:
            raise ValueError("the checkpoint's weight average holds other weights than this model trains")
        self.decay, self.updates = state["decay"], state["updates"]
        self.averaged = [t.float().clone() for t in state["averaged"]]
