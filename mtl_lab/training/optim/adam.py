"""AdamW, written by hand (Loshchilov & Hutter, 2019), vectorised with ``torch._foreach_*``.

For each parameter p with gradient g at step t (starting at 1)::

    m = beta1 * m + (1 - beta1) * g                 # first moment
    v = beta2 * v + (1 - beta2) * g * g             # second moment
    p = p - lr * weight_decay * p                   # decoupled weight decay (not added to g)
    p = p - alpha_t * m / (sqrt(v) + eps_t)         # Adam step, bias-corrected
    with alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t) and eps_t = eps * sqrt(1 - beta2^t)

Conventions, and how they relate to the references:

- The "efficient" bias-correction form above (Kingma & Ba, section 2, and the CS224N minBERT
  handout) folds both corrections into ``alpha_t``. Scaling eps by ``sqrt(1 - beta2^t)`` makes it
  *exactly* ``torch.optim.AdamW``'s update ``lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)``
  while saving one pass over the moments. The CS224N reference adds the raw eps instead
  (``eps_t = eps``); the difference is at most eps-sized, but it would stop this implementation from
  matching PyTorch to tight tolerance, so we keep PyTorch's meaning of eps.
- Weight decay is applied before the Adam step, to the pre-update weights, as in PyTorch. The
  CS224N reference decays after the step (``p -= lr * wd * p_new``); the two differ by a term of
  order ``lr^2 * wd``.
- ``correct_bias=False`` (as in the original BERT optimizer and CS224N's option) drops the bias
  correction: ``alpha_t = lr`` and ``eps_t = eps``.

All parameters of a group are updated with a handful of multi-tensor (``_foreach``) kernels
instead of a Python loop of small per-tensor operations (``AdamW._update``, the readable version).

The fast path, ``AdamW._fused_update``, hands the same update to PyTorch's fused AdamW kernel: one
pass over each tensor instead of seven, several times faster on a CPU (``benchmarks/bench_adamw.py``).
Its formula and its eps convention are the ones above, and ``tests/training/test_adamw.py`` holds the two
paths together. It runs where the kernel exists (contiguous float tensors on a CPU or CUDA device, one
device and dtype a group) and bias correction is on; ``fused=False`` keeps the readable path everywhere (the
exercise's checker compares with that one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay; drop-in for ``torch.optim.AdamW`` (see module docstring)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        correct_bias: bool = True,
        fused: bool = True,
    ):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps}: must be >= 0")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay}: must be >= 0")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias)
        super().__init__(params, defaults)
        self.fused = fused
        self.paths: set[str] = set()  # the paths its updates took since it was built: "fused", "readable"

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One AdamW update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, ms, vs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            # a subclass with its own _update (a student's) keeps it: the fused kernel is AdamW's own update
            own_update = type(self)._update is AdamW._update
            fast = self.fused and own_update and group["correct_bias"] and _fusable(params, grads, ms, vs)
            (self._fused_update if fast else self._update)(group, params, grads, ms, vs, steps)
            self.paths.add("fused" if fast else "readable")
        return loss

    @staticmethod
    def _update(group: dict, params: list, grads: list, ms: list, vs: list, steps: list[int]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        # moments: m <- beta1 m + (1 - beta1) g ; v <- beta2 v + (1 - beta2) g^2
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)
        # decoupled weight decay on the pre-update weights
        if wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        if group["correct_bias"]:
            c2 = [math.sqrt(1.0 - beta2**t) for t in steps]
            alphas = [-lr * s / (1.0 - beta1**t) for s, t in zip(c2, steps)]
            eps_t = [eps * s for s in c2]
        else:
            alphas = [-lr] * len(steps)
            eps_t = [eps] * len(steps)
        denom = torch._foreach_sqrt(vs)
        if len(set(eps_t)) == 1:
            torch._foreach_add_(denom, eps_t[0])
        else:
            torch._foreach_add_(denom, eps_t)
        if len(set(alphas)) == 1:
            torch._foreach_addcdiv_(params, ms, denom, value=alphas[0])
        else:
            torch._foreach_addcdiv_(params, ms, denom, alphas)

    @staticmethod
    def _fused_update(group: dict, params: list, grads: list, ms: list, vs: list, steps: list[int]) -> None:
        """``_update`` (with bias correction) in one pass over each tensor: PyTorch's fused AdamW kernel."""
        beta1, beta2 = group["betas"]
        counts = {t: torch.tensor(float(t), dtype=torch.float32, device=params[0].device) for t in set(steps)}
        torch._fused_adamw_(
            params,
            grads,
            ms,
            vs,
            [],
            [counts[t] for t in steps],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )


def _fusable(*lists: list[torch.Tensor]) -> bool:
    """Whether a group's tensors meet the fused kernel's terms: one CPU or CUDA device, one floating dtype, and
    contiguous memory (the kernel walks each tensor's memory in order)."""
    first = lists[0][0]
    if first.device.type not in ("cpu", "cuda") or not first.is_floating_point():
        return False
    return all(t.device == first.device and t.dtype == first.dtype and t.is_contiguous() for ts in lists for t in ts)
