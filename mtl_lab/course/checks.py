"""Checkers for the lab's exercises: your implementation against the reference, with hints.

Each ``check_*`` runs a few numerical cases against the lab's own implementation and prints one
line when all pass. When one fails it raises :class:`CheckFailed` (an ``AssertionError``) naming
the case, a few expected and actual numbers, and -- when your numbers match a known mistake --
a hint naming it. In a notebook the message is shown alone, without a traceback.

- ``check_adamw(optimizer_cls)``: the AdamW step (notebook 01); ``torch.optim.AdamW`` passes too.
- ``check_mean_pooling(fn)``: masked mean pooling, fn(hidden B x T x H, mask B x T) -> B x H (notebook 02).
- ``check_pair_features(fn)``: the paraphrase head's features [u; v; |u - v|], fn(u, v) -> B x 3D (notebook 02).
- ``check_info_nce(fn)``: the SimCSE loss, same signature as ``mtl_lab.training.simcse.info_nce`` (notebook 03).
- ``check_project_conflicting(fn)``: PCGrad, same signature as ``mtl_lab.training.optim.aggregation.pcgrad.project_conflicting`` (notebook 04).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting_reference
from mtl_lab.training.simcse import info_nce


class CheckFailed(AssertionError):
    """An exercise's result differs from the reference; the message says where and, if it can, why."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"\x1b[31m✗ {self}\x1b[0m"]


class ExerciseNotDone(CheckFailed):
    """The exercise still raises NotImplementedError: nothing to check yet."""


def _numbers(t: torch.Tensor, n: int = 4) -> str:
    return "[" + ", ".join(f"{x:.5g}" for x in t.detach().flatten()[:n].tolist()) + (", ...]" if t.numel() > n else "]")


def _call(what: str, fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise ExerciseNotDone(f"{what}: not written yet ({exc or 'NotImplementedError'})") from None


def _compare(what: str, case: str, got, expected: torch.Tensor, mistakes: dict, atol: float, rtol: float) -> None:
    """Pass, or raise with expected vs got and the hint of the first known mistake the result matches."""
    if not torch.is_tensor(got):
        raise CheckFailed(f"{what}, case '{case}': returned {type(got).__name__}, expected a tensor")
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailed(f"{what}, case '{case}': shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    got = got.detach().float()
    if torch.allclose(got, expected, atol=atol, rtol=rtol):
        return
    hint = next((h for h, wrong in mistakes.items() if torch.allclose(got, wrong, atol=atol, rtol=rtol)), None)
    i = int((got - expected).abs().flatten().argmax())
    raise CheckFailed(
        f"{what}, case '{case}': expected {_numbers(expected)}, got {_numbers(got)} "
        f"(largest difference at flat index {i}: {expected.flatten()[i]:.5g} vs {got.flatten()[i]:.5g})"
        + (f". Hint: {hint}" if hint else "")
    )


def _passed(what: str, cases: int) -> None:
    print(f"✓ {what}: {cases} case{'s' if cases > 1 else ''} match the reference")


# ----------------------------------------------------------------------------- (i) AdamW


def _adam_variant(params0, grads, lr, betas, eps, wd, *, l2=False, bias_correction=True) -> list[torch.Tensor]:
    """Adam steps written out, with a known mistake switched on (for the hints)."""
    ps = [p.clone() for p in params0]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    for t, step_grads in enumerate(grads, start=1):
        for i, (p, g) in enumerate(zip(ps, step_grads)):
            if l2:
                g = g + wd * p
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            mh = m[i] / (1 - betas[0] ** t) if bias_correction else m[i]
            vh = v[i] / (1 - betas[1] ** t) if bias_correction else v[i]
            if not l2:
                p.mul_(1 - lr * wd)
            p.sub_(lr * mh / (vh.sqrt() + eps))
    return ps


def _run_optimizer(optimizer_cls, params0, grads, **kw) -> list[torch.Tensor]:
    params = [torch.nn.Parameter(p.clone()) for p in params0]
    opt = _call("check_adamw", optimizer_cls, params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        _call("check_adamw", opt.step)
    return [p.detach() for p in params]


def check_adamw(optimizer_cls: type) -> None:
    """Your AdamW class against the reference: a few steps on fixed gradients, with and without weight decay."""
    gen = torch.Generator().manual_seed(0)
    params0 = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) * 0.5 for p in params0] for _ in range(5)]
    cases = {
        "one step, no weight decay": dict(steps=1, lr=1e-2, weight_decay=0.0),
        "five steps, no weight decay": dict(steps=5, lr=1e-2, weight_decay=0.0),
        "five steps, weight decay 0.5": dict(steps=5, lr=1e-2, weight_decay=0.5),
    }
    betas, eps = (0.9, 0.999), 1e-8
    for case, c in cases.items():
        g = grads[: c["steps"]]
        kw = dict(lr=c["lr"], betas=betas, eps=eps, weight_decay=c["weight_decay"])
        got = torch.cat([p.flatten() for p in _run_optimizer(optimizer_cls, params0, g, **kw)])
        expected = torch.cat([p.flatten() for p in _run_optimizer(AdamW, params0, g, **kw)])
        args = (params0, g, c["lr"], betas, eps, c["weight_decay"])
        mistakes = {
            "no bias correction: divide m by (1 - beta1^t) and v by (1 - beta2^t) before the update": torch.cat(
                [p.flatten() for p in _adam_variant(*args, bias_correction=False)]
            ),
        }
        if c["weight_decay"]:
            mistakes["L2 penalty added to the gradient (Adam + L2) instead of decoupled decay p -= lr * wd * p"] = (
                torch.cat([p.flatten() for p in _adam_variant(*args, l2=True)])
            )
            mistakes["the weight decay is missing: AdamW shrinks every weight by lr * weight_decay * p each step"] = (
                torch.cat([p.flatten() for p in _adam_variant(*args[:-1], 0.0)])
            )
        # the tolerance covers where eps goes (after or before the bias correction) and the decay's order
        _compare("check_adamw", case, got, expected, mistakes, atol=2e-5, rtol=1e-4)
    _passed("check_adamw", len(cases))


# ----------------------------------------------------------------------------- (ii) pooling, pair head


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def check_mean_pooling(fn: Callable) -> None:
    """Your masked mean pooling: fn(hidden B x T x H, mask B x T of 0/1, like an attention mask) -> B x H."""
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 5, 4, generator=gen)
    masks = {
        "no padding": torch.ones(3, 5, dtype=torch.long),
        "padded rows (attention-mask integers)": torch.tensor(
            [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.long
        ),
    }
    for case, mask in masks.items():
        got = _call("check_mean_pooling", fn, hidden.clone(), mask.clone())
        mistakes = {
            "padding included in the mean: multiply by the mask and divide by the number of real tokens": hidden.mean(
                1
            ),
            "divided by the sequence length T instead of the number of real tokens": (hidden * mask.unsqueeze(-1)).sum(
                1
            )
            / hidden.shape[1],
            "the [CLS] vector (position 0) instead of the mean": hidden[:, 0],
        }
        _compare("check_mean_pooling", case, got, _mean_pool(hidden, mask), mistakes, atol=1e-5, rtol=1e-5)
    _passed("check_mean_pooling", len(masks))


def check_pair_features(fn: Callable) -> None:
    """Your paraphrase-head features: fn(u B x D, v B x D) -> [u; v; |u - v|], B x 3D (a linear layer follows)."""
    gen = torch.Generator().manual_seed(2)
    u, v = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    got = _call("check_pair_features", fn, u.clone(), v.clone())
    mistakes = {
        "u - v without the absolute value: |u - v| makes the head symmetric in the two sentences": torch.cat(
            [u, v, u - v], -1
        ),
        "u * v instead of |u - v|": torch.cat([u, v, u * v], -1),
        "the parts in another order: [u; v; |u - v|] concatenated along the last dimension": torch.cat(
            [u, (u - v).abs(), v], -1
        ),
    }
    _compare("check_pair_features", "4 pairs, D = 3", got, torch.cat([u, v, (u - v).abs()], -1), mistakes, 1e-6, 1e-6)
    swapped = _call("check_pair_features", fn, v.clone(), u.clone())
    _compare(
        "check_pair_features", "the same pairs swapped", swapped, torch.cat([v, u, (u - v).abs()], -1), {}, 1e-6, 1e-6
    )
    _passed("check_pair_features", 2)


# ----------------------------------------------------------------------------- (iii) SimCSE


def check_info_nce(fn: Callable) -> None:
    """Your SimCSE loss against ``mtl_lab.training.simcse.info_nce``: in-batch negatives, then hard negatives (+ mask)."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 8, generator=gen) * 3
    p = a + torch.randn(6, 8, generator=gen) * 2
    h = torch.randn(6, 8, generator=gen) * 3
    mask = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    cases = {
        "in-batch negatives, temperature 0.05": dict(temperature=0.05),
        "in-batch negatives, temperature 0.5": dict(temperature=0.5),
        "with hard negatives": dict(temperature=0.05, hard_negatives=h),
        "with hard negatives, some masked out": dict(temperature=0.05, hard_negatives=h, negative_mask=mask),
    }
    for case, kw in cases.items():
        got = _call("check_info_nce", fn, a.clone(), p.clone(), **kw)
        expected = info_nce(a, p, **kw)
        t = kw["temperature"]
        raw = dict(kw)
        mistakes = {
            "embeddings not normalised: cosine similarity needs F.normalize(x, dim=-1) on anchors and candidates": _info_nce_raw(
                a, p, **raw
            ),
            "temperature applied twice (divide the cosine similarities by it once)": info_nce(
                a, p, **{**kw, "temperature": t * t}
            ),
            "temperature not applied: logits = cosine / temperature": info_nce(a, p, **{**kw, "temperature": 1.0}),
        }
        _compare("check_info_nce", case, torch.as_tensor(got).reshape(()), expected.reshape(()), mistakes, 1e-4, 1e-4)
    _passed("check_info_nce", len(cases))


def _info_nce_raw(anchors, positives, temperature=0.05, hard_negatives=None, negative_mask=None) -> torch.Tensor:
    """info_nce on dot products of unnormalised embeddings (a known mistake)."""
    candidates = [positives] if hard_negatives is None else [positives, hard_negatives]
    logits = anchors @ torch.cat(candidates).T / temperature
    if hard_negatives is not None and negative_mask is not None:
        keep = torch.cat([torch.ones_like(negative_mask, dtype=torch.bool), negative_mask.bool()])
        logits = logits.masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits, torch.arange(anchors.shape[0]))


# ----------------------------------------------------------------------------- (iv) PCGrad


def _pcgrad_variant(
    grads: torch.Tensor, order: list[list[int]], reduction: str, *, against_projected=False, always=False
) -> torch.Tensor:
    """PCGrad with a known mistake switched on (for the hints): ``against_projected`` projects g_i off the
    other tasks' already-projected gradients; ``always`` projects even when there is no conflict."""
    projected = [g.clone() for g in grads]
    for i in range(len(grads)):
        for j in order[i]:
            gj = projected[j] if against_projected else grads[j]
            dot = projected[i] @ gj
            if (always or dot < 0) and gj @ gj > 0:
                projected[i] = projected[i] - dot / (gj @ gj) * gj
    out = torch.stack(projected).sum(0)
    return out / len(grads) if reduction == "mean" else out


def _all_orders(k: int) -> list[list[list[int]]]:
    per_task = [list(itertools.permutations([j for j in range(k) if j != i])) for i in range(k)]
    return [[list(o) for o in combo] for combo in itertools.product(*per_task)]


def check_project_conflicting(fn: Callable) -> None:
    """Your PCGrad against Algorithm 1: fn(grads K x D, reduction, generator) -> D; every visiting order is accepted."""
    cases = {
        "two conflicting tasks": (torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), "mean"),
        "two agreeing tasks (nothing to project)": (torch.tensor([[1.0, 0.5], [0.5, 1.0]]), "mean"),
        "three tasks, all conflicting, sum": (
            torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.1], [-0.3, -0.9, 1.0]]),
            "sum",
        ),
        "a zero gradient among three": (torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]]), "mean"),
    }
    for case, (grads, reduction) in cases.items():
        got = _call("check_project_conflicting", fn, grads.clone(), reduction, torch.Generator().manual_seed(0))
        if not torch.is_tensor(got) or tuple(got.shape) != (grads.shape[1],):
            shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
            raise CheckFailed(
                f"check_project_conflicting, case '{case}': got {shape}, expected a vector of {grads.shape[1]}"
            )
        orders = _all_orders(grads.shape[0])
        candidates = [project_conflicting_reference(grads, o, reduction) for o in orders]
        if any(torch.allclose(got.float(), c, atol=1e-5) for c in candidates):
            continue
        other = "sum" if reduction == "mean" else "mean"
        mistakes = {
            "projection against an already-projected gradient: project g_i off the ORIGINAL g_j": [
                _pcgrad_variant(grads, o, reduction, against_projected=True) for o in orders
            ],
            f"the {other} of the projected gradients instead of the {reduction}": [
                project_conflicting_reference(grads, o, other) for o in orders
            ],
            "no projection: project g_i off g_j only when g_i . g_j < 0": [
                grads.mean(0) if reduction == "mean" else grads.sum(0)
            ],
            "projected even without a conflict: only a negative dot product is a conflict": [
                _pcgrad_variant(grads, o, reduction, always=True) for o in orders
            ],
        }
        hint = next(
            (h for h, outs in mistakes.items() if any(torch.allclose(got.float(), w, atol=1e-5) for w in outs)), None
        )
        raise CheckFailed(
            f"check_project_conflicting, case '{case}' (reduction {reduction!r}): expected {_numbers(candidates[0])}"
            f"{' (or another order)' if len(candidates) > 1 else ''}, got {_numbers(got)}"
            + (f". Hint: {hint}" if hint else "")
        )
    _passed("check_project_conflicting", len(cases))
