"""Checkers for the lab's exercises: your implementation against the reference, with hints.

Each checker has fixed cases (the inputs), a reference and a list of known mistakes. Calling your code on
the inputs is ``mtl_lab.course.harness``'s job; judging the outputs is this module's. In a notebook,
``check_*`` does both in your kernel: it prints one ``✓`` line when every case matches, or raises
:class:`CheckFailed` with a few short lines (the case, expected vs got around the largest difference, and a
hint when your numbers match a known mistake) shown without a traceback. When grading, your code runs in a
sandbox and only its outputs come back here (``mtl_lab.course.grading``), with one more case drawn afresh.

- ``check_adamw(optimizer_cls)``: the AdamW step (notebook 01); ``torch.optim.AdamW`` passes in a notebook (grading
  removes and flags it: the answer must be your own).
- ``check_mean_pooling(fn)``: masked mean pooling, fn(hidden B x T x H, mask B x T) -> B x H (notebook 02).
- ``check_pair_features(fn)``: the paraphrase head's features [u; v; |u - v|], fn(u, v) -> B x 3D (notebook 02).
- ``check_info_nce(fn)``: the SimCSE loss, same signature as ``mtl_lab.training.simcse.info_nce`` (notebook 03).
- ``check_project_conflicting(fn)``: PCGrad, same signature as ``mtl_lab.training.optim.aggregation.pcgrad.project_conflicting`` (notebook 04).

The references are imported inside the judges, so ``checks`` itself holds none of them.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from mtl_lab.course import harness

WIDTH = 76  # message lines stay shorter than a notebook's output area


class CheckFailed(AssertionError):
    """An exercise's result differs from the reference; the message says where and, if it can, why."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        first, *rest = str(self).splitlines() or [""]
        return [f"\x1b[31m✗ {first}\x1b[0m", *rest]


class ExerciseNotDone(CheckFailed):
    """The exercise still raises NotImplementedError: nothing to check yet."""


@dataclass(frozen=True)
class Checker:
    """One exercise's checker: how its cases call your code, the cases, and the judge of the outputs."""

    name: str
    kind: str  # "optimizer": build the class and step it; "function": call it
    cases: Callable[[int | None], dict[str, dict]]  # seed None: the notebook's cases; a seed adds a fresh one
    expected: Callable[[dict], list[torch.Tensor]]  # a case -> every acceptable output
    mistakes: Callable[[dict], dict[str, list[torch.Tensor]]]  # a case -> hint -> what that mistake outputs
    to_tensor: Callable[[dict, object], torch.Tensor]
    atol: float
    rtol: float
    nan_hint: str = "your result holds NaN: a division by zero, or the log of 0?"


# ----------------------------------------------------------------------------- judging


def _close(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want.float(), atol=atol, rtol=rtol))


def _window(t: torch.Tensor, start: int, n: int = 4) -> str:
    flat = t.detach().flatten().tolist()
    shown = ", ".join(f"{x:.5g}" for x in flat[start : start + n])
    return "[" + ("..., " if start else "") + shown + (", ...]" if start + n < len(flat) else "]")


def _mismatch(name: str, case: str, expected: torch.Tensor, got: torch.Tensor, hint: str | None, alt: bool) -> str:
    """A few short lines: the case, expected vs got around the largest difference, the largest difference, the hint."""
    diff = (got - expected).abs().flatten().nan_to_num(nan=float("inf"))
    i, n = int(diff.argmax()), diff.numel()
    start = max(0, min(i - 1, n - 4))
    lines = [
        f"{name}, case '{case}':",
        f"  expected {_window(expected, start)}" + (" (or another visiting order)" if alt else ""),
        f"  got      {_window(got, start)}",
        f"  first NaN at value {i + 1} of {n}"
        if torch.isnan(got.flatten()[i])
        else f"  largest difference {float(diff[i]):.3g}, at value {i + 1} of {n}",
    ]
    if hint:
        lines += textwrap.wrap(f"hint: {hint}", WIDTH, initial_indent="  ", subsequent_indent="        ")
    return "\n".join(lines)


def judge(checker: Checker, cases: dict[str, dict], results: dict[str, dict]) -> str:
    """The ✓ line when every case matches; otherwise raise CheckFailed (ExerciseNotDone for a stub) with the message."""
    got: dict[str, torch.Tensor] = {}
    for case, result in results.items():
        if "not_written" in result:
            raise ExerciseNotDone(f"{checker.name}: not written yet ({result['not_written']})")
        if "error" in result:
            raise CheckFailed(f"{checker.name}, case '{case}': your code raised\n  {result['error']}")
        out = checker.to_tensor(cases[case], result["out"])
        want = checker.expected(cases[case])[0]
        if not torch.is_tensor(out):
            raise CheckFailed(f"{checker.name}, case '{case}': returned {out!r}, expected a tensor")
        if tuple(out.shape) != tuple(want.shape):
            hint = "concatenate along the last dimension" if out.dim() != want.dim() else None
            raise CheckFailed(
                f"{checker.name}, case '{case}': shape {tuple(out.shape)}, expected {tuple(want.shape)}"
                + (f"\n  hint: {hint}" if hint else "")
            )
        got[case] = out.detach().float()
    failing = [
        c for c in got if not any(_close(got[c], w, checker.atol, checker.rtol) for w in checker.expected(cases[c]))
    ]
    if not failing:
        return f"✓ {checker.name}: {len(got)} case{'s' if len(got) > 1 else ''} match the reference"
    first = failing[0]
    variants = {c: checker.mistakes(cases[c]) for c in got}

    def matches(hint: str, case: str) -> bool:
        return any(_close(got[case], w, checker.atol, checker.rtol) for w in variants[case].get(hint, []))

    hints = list(variants[first])
    # a mistake that explains every case beats one that only explains the first failing case
    hint = next((h for h in hints if all(matches(h, c) for c in got if h in variants[c])), None)
    hint = hint or next((h for h in hints if matches(h, first)), None)
    if hint is None and torch.isnan(got[first]).any():
        hint = checker.nan_hint
    candidates = checker.expected(cases[first])
    best = min(candidates, key=lambda w: float((got[first] - w).abs().nan_to_num(nan=float("inf")).max()))
    raise CheckFailed(_mismatch(checker.name, first, best, got[first], hint, alt=len(candidates) > 1))


def run_check(checker: Checker, obj) -> None:
    """In a notebook: call ``obj`` on the checker's cases here, in this kernel, and judge the outputs."""
    cases = checker.cases(None)
    print(judge(checker, cases, harness.run_cases(checker.kind, obj, cases)))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- (i) AdamW


def _adam_variant(case: dict, mistake: str | None = None) -> torch.Tensor:
    """Adam steps written out, with one known mistake switched on (for the hints)."""
    o = case["options"]
    (b1, b2), lr, eps, wd = o["betas"], o["lr"], o["eps"], o["weight_decay"]
    ps = [p.clone() for p in case["params"]]
    m = [torch.zeros_like(p) for p in ps]
    v = [torch.zeros_like(p) for p in ps]
    for t, step_grads in enumerate(case["grads"], start=1):
        tb = {"fixed_t": 1, "t_zero": 0, "t_behind": t - 1, "t_ahead": t + 1}.get(mistake, t)
        for i, (p, g) in enumerate(zip(ps, step_grads)):
            if mistake == "l2":
                g = g + wd * p
            if mistake == "swapped_betas":
                m[i] = (1 - b1) * m[i] + b1 * g
                v[i] = (1 - b2) * v[i] + b2 * g * g
            else:
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * (g.abs() if mistake == "v_of_g" else g * g)
            mh = m[i] / (1 - b1**tb) if mistake != "no_bias_correction" else m[i]
            vh = v[i] / (1 - b2**tb) if mistake != "no_bias_correction" else v[i]
            decay = {"l2": 0.0, "no_decay": 0.0, "decay_sign": -lr * wd, "decay_no_lr": wd}.get(mistake, lr * wd)
            p.mul_(1 - decay)
            step = lr * mh / (vh.sqrt() + eps)
            p.add_(step) if mistake == "ascent" else p.sub_(step)
    return torch.cat([p.flatten() for p in ps])


ADAMW_MISTAKES = {
    "no_bias_correction": "no bias correction: divide m by (1 - beta1^t) and v by (1 - beta2^t) before the update",
    "fixed_t": "the step counter never moves: t must grow by 1 at every step (keep it in self.state[p])",
    "t_ahead": "the bias correction is one step ahead: t is 1 at the first step",
    "l2": "L2 penalty added to the gradient (Adam + L2) instead of decoupled decay p -= lr * wd * p",
    "no_decay": "the weight decay is missing: AdamW shrinks every weight by lr * weight_decay * p each step",
    "decay_sign": "the decay has the wrong sign: p shrinks, p *= 1 - lr * weight_decay",
    "decay_no_lr": "the decay is not scaled by the learning rate: p *= 1 - lr * weight_decay",
    "swapped_betas": "beta and 1 - beta swapped: m = beta1 * m + (1 - beta1) * g (and likewise v)",
    "v_of_g": "v averages |g| instead of the squared gradient g * g",
    "ascent": "the update has the wrong sign: p -= lr * m_hat / (sqrt(v_hat) + eps)",
}


def _adamw_cases(seed: int | None) -> dict[str, dict]:
    gen = _generator(0)
    params0 = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(p.shape, generator=gen) * 0.5 for p in params0] for _ in range(5)]
    base = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    cases = {
        "one step, no weight decay": dict(params=params0, grads=grads[:1], options={**base, "weight_decay": 0.0}),
        "five steps, no weight decay": dict(params=params0, grads=grads, options={**base, "weight_decay": 0.0}),
        "five steps, weight decay 0.5": dict(params=params0, grads=grads, options={**base, "weight_decay": 0.5}),
    }
    if seed is not None:
        gen = _generator(seed)
        params = [torch.randn(3, 2, generator=gen), torch.randn(4, generator=gen)]
        steps = [[torch.randn(p.shape, generator=gen) for p in params] for _ in range(4)]
        wd = round(0.1 + 0.4 * float(torch.rand((), generator=gen)), 3)
        cases["a fresh case: four steps"] = dict(params=params, grads=steps, options={**base, "weight_decay": wd})
    return cases


def _adamw_expected(case: dict) -> list[torch.Tensor]:
    from mtl_lab.training.optim import AdamW

    reference = partial(AdamW, fused=False)  # the readable update, the one the exercise asks for
    params = harness.run_optimizer(reference, case["params"], case["grads"], case["options"])
    return [torch.cat([p.flatten() for p in params])]


def _adamw_mistakes(case: dict) -> dict[str, list[torch.Tensor]]:
    return {hint: [_adam_variant(case, key)] for key, hint in ADAMW_MISTAKES.items()}


ADAMW = Checker(
    "check_adamw",
    "optimizer",
    _adamw_cases,
    _adamw_expected,
    _adamw_mistakes,
    lambda case, out: torch.cat([p.flatten() for p in out]) if isinstance(out, list) else out,
    # the tolerance covers where eps goes (after or before the bias correction) and the decay's order
    atol=2e-5,
    rtol=1e-4,
    nan_hint="your parameters became NaN: 1 - beta^t is 0 when t is 0, so count the step (t += 1) "
    "before the bias correction divides by it",
)


def check_adamw(optimizer_cls: type) -> None:
    """Your AdamW class against the reference: a few steps on fixed gradients, with and without weight decay."""
    run_check(ADAMW, optimizer_cls)


# ----------------------------------------------------------------------------- (ii) pooling, pair head


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _pooling_cases(seed: int | None) -> dict[str, dict]:
    hidden = torch.randn(3, 5, 4, generator=_generator(1))
    padded = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.long)
    cases = {
        "no padding": dict(args=[hidden, torch.ones(3, 5, dtype=torch.long)]),
        "padded rows (attention-mask integers)": dict(args=[hidden, padded]),
    }
    if seed is not None:
        gen = _generator(seed)
        lengths = torch.randint(1, 7, (4,), generator=gen)
        mask = (torch.arange(6) < lengths[:, None]).long()
        cases["a fresh case: 4 rows of 1-6 tokens"] = dict(args=[torch.randn(4, 6, 3, generator=gen), mask])
    return cases


def _pooling_mistakes(case: dict) -> dict[str, list[torch.Tensor]]:
    hidden, mask = case["args"]
    m = mask.unsqueeze(-1).float()
    return {
        "padding included in the mean: multiply by the mask and divide by the number of real tokens": [hidden.mean(1)],
        "divided by the sequence length T instead of the number of real tokens": [
            (hidden * m).sum(1) / hidden.shape[1]
        ],
        "divided by the batch's mean length: each row divides by its own number of real tokens": [
            (hidden * m).sum(1) / mask.sum(1).float().mean()
        ],
        "the sum over real tokens: divide it by their number": [(hidden * m).sum(1)],
        "the [CLS] vector (position 0) instead of the mean": [hidden[:, 0]],
    }


MEAN_POOLING = Checker(
    "check_mean_pooling",
    "function",
    _pooling_cases,
    lambda case: [_mean_pool(*case["args"])],
    _pooling_mistakes,
    lambda case, out: out,
    atol=1e-5,
    rtol=1e-5,
)


def check_mean_pooling(fn: Callable) -> None:
    """Your masked mean pooling: fn(hidden B x T x H, mask B x T of 0/1, like an attention mask) -> B x H."""
    run_check(MEAN_POOLING, fn)


def _pair_cases(seed: int | None) -> dict[str, dict]:
    gen = _generator(2)
    u, v = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    cases = {"4 pairs, D = 3": dict(args=[u, v]), "the same pairs swapped": dict(args=[v, u])}
    if seed is not None:
        gen = _generator(seed)
        cases["a fresh case: 5 pairs, D = 4"] = dict(
            args=[torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)]
        )
    return cases


def _pair_mistakes(case: dict) -> dict[str, list[torch.Tensor]]:
    u, v = case["args"]
    return {
        "u - v without the absolute value: |u - v| makes the head symmetric in the two sentences": [
            torch.cat([u, v, u - v], -1),
            torch.cat([u, v, v - u], -1),
        ],
        "u * v instead of |u - v|": [torch.cat([u, v, u * v], -1)],
        "the parts in another order: [u; v; |u - v|] concatenated along the last dimension": [
            torch.cat([u, (u - v).abs(), v], -1),
            torch.cat([(u - v).abs(), u, v], -1),
            torch.cat([v, u, (u - v).abs()], -1),
        ],
    }


PAIR_FEATURES = Checker(
    "check_pair_features",
    "function",
    _pair_cases,
    lambda case: [torch.cat([case["args"][0], case["args"][1], (case["args"][0] - case["args"][1]).abs()], -1)],
    _pair_mistakes,
    lambda case, out: out,
    atol=1e-6,
    rtol=1e-6,
)


def check_pair_features(fn: Callable) -> None:
    """Your paraphrase-head features: fn(u B x D, v B x D) -> [u; v; |u - v|], B x 3D (a linear layer follows)."""
    run_check(PAIR_FEATURES, fn)


# ----------------------------------------------------------------------------- (iii) SimCSE


def _info_nce_cases(seed: int | None) -> dict[str, dict]:
    gen = _generator(3)
    a = torch.randn(6, 8, generator=gen) * 3
    p = a + torch.randn(6, 8, generator=gen) * 2
    h = torch.randn(6, 8, generator=gen) * 3
    mask = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    cases = {
        "in-batch negatives, temperature 0.05": dict(args=[a, p], kwargs=dict(temperature=0.05)),
        "in-batch negatives, temperature 0.5": dict(args=[a, p], kwargs=dict(temperature=0.5)),
        "with hard negatives": dict(args=[a, p], kwargs=dict(temperature=0.05, hard_negatives=h)),
        "with hard negatives, some masked out": dict(
            args=[a, p], kwargs=dict(temperature=0.05, hard_negatives=h, negative_mask=mask)
        ),
    }
    if seed is not None:
        gen = _generator(seed)
        a = torch.randn(5, 6, generator=gen) * 2
        p = a + torch.randn(5, 6, generator=gen)
        h = torch.randn(5, 6, generator=gen) * 2
        mask = torch.rand(5, generator=gen) > 0.4
        cases["a fresh case: 5 anchors, temperature 0.1"] = dict(
            args=[a, p], kwargs=dict(temperature=0.1, hard_negatives=h, negative_mask=mask)
        )
    return cases


def _info_nce_raw(anchors, positives, temperature=0.05, hard_negatives=None, negative_mask=None) -> torch.Tensor:
    """info_nce on dot products of unnormalised embeddings (a known mistake)."""
    candidates = [positives] if hard_negatives is None else [positives, hard_negatives]
    logits = anchors @ torch.cat(candidates).T / temperature
    if hard_negatives is not None and negative_mask is not None:
        keep = torch.cat([torch.ones_like(negative_mask, dtype=torch.bool), negative_mask.bool()])
        logits = logits.masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits, torch.arange(anchors.shape[0]))


def _info_nce_expected(case: dict) -> list[torch.Tensor]:
    from mtl_lab.training.simcse import info_nce

    return [info_nce(*case["args"], **case["kwargs"]).reshape(())]


def _info_nce_mistakes(case: dict) -> dict[str, list[torch.Tensor]]:
    from mtl_lab.training.simcse import info_nce

    a, p = case["args"]
    kw = case["kwargs"]
    t = kw["temperature"]
    out = {
        "embeddings not normalised: cosine similarity needs F.normalize(x, dim=-1) on anchors and candidates": [
            _info_nce_raw(a, p, **kw)
        ],
        "temperature applied twice (divide the cosine similarities by it once)": [
            info_nce(a, p, **{**kw, "temperature": t * t})
        ],
        "temperature not applied: logits = cosine / temperature": [info_nce(a, p, **{**kw, "temperature": 1.0})],
        "the cosines multiplied by the temperature: divide by it, logits = cosine / temperature": [
            info_nce(a, p, **{**kw, "temperature": 1 / t})
        ],
        "the sum over anchors instead of the mean (F.cross_entropy's default reduction is the mean)": [
            info_nce(a, p, **kw) * a.shape[0]
        ],
    }
    if "negative_mask" in kw:
        out["negative_mask ignored: a hard negative whose mask is False must not count (its logit is -inf)"] = [
            info_nce(a, p, **{k: v for k, v in kw.items() if k != "negative_mask"})
        ]
    if "hard_negatives" in kw:
        out["hard negatives ignored: they join the positives as candidates, torch.cat([positives, hard_negatives])"] = [
            info_nce(a, p, temperature=t)
        ]
    return {hint: [w.reshape(())] for hint, (w,) in out.items()}


INFO_NCE = Checker(
    "check_info_nce",
    "function",
    _info_nce_cases,
    _info_nce_expected,
    _info_nce_mistakes,
    lambda case, out: torch.as_tensor(out).reshape(()) if torch.is_tensor(out) and out.numel() == 1 else out,
    atol=1e-4,
    rtol=1e-4,
)


def check_info_nce(fn: Callable) -> None:
    """Your SimCSE loss against ``mtl_lab.training.simcse.info_nce``: in-batch negatives, then hard negatives (+ mask)."""
    run_check(INFO_NCE, fn)


# ----------------------------------------------------------------------------- (iv) PCGrad


def _pcgrad_variant(grads: torch.Tensor, order: list[list[int]], reduction: str, mistake: str) -> torch.Tensor:
    """PCGrad with a known mistake switched on (for the hints)."""
    projected = [g.clone() for g in grads]
    for i in range(len(grads)):
        for j in order[i]:
            gj = projected[j] if mistake == "against_projected" else grads[j]
            dot = projected[i] @ gj
            conflict = {"always": True, "inverted": dot > 0}.get(mistake, dot < 0)
            if conflict and gj @ gj > 0:
                along = dot / (gj @ gj) * gj
                projected[i] = along if mistake == "kept_along" else projected[i] - along
    out = torch.stack(projected).sum(0)
    return out / len(grads) if reduction == "mean" else out


def _all_orders(k: int) -> list[list[list[int]]]:
    per_task = [list(itertools.permutations([j for j in range(k) if j != i])) for i in range(k)]
    return [[list(o) for o in combo] for combo in itertools.product(*per_task)]


def _pcgrad_cases(seed: int | None) -> dict[str, dict]:
    cases = {
        "two conflicting tasks": (torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), "mean"),
        "two agreeing tasks (nothing to project)": (torch.tensor([[1.0, 0.5], [0.5, 1.0]]), "mean"),
        "three tasks, all conflicting, sum": (
            torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.1], [-0.3, -0.9, 1.0]]),
            "sum",
        ),
        "a zero gradient among three": (torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]]), "mean"),
    }
    if seed is not None:
        cases["a fresh case: three tasks in 4-D"] = (torch.randn(3, 4, generator=_generator(seed)), "mean")
    return {name: dict(args=[g, r, {"generator": 0}]) for name, (g, r) in cases.items()}


def _pcgrad_expected(case: dict) -> list[torch.Tensor]:
    from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting_reference

    grads, reduction, _ = case["args"]
    return [project_conflicting_reference(grads, o, reduction) for o in _all_orders(grads.shape[0])]


def _pcgrad_mistakes(case: dict) -> dict[str, list[torch.Tensor]]:
    from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting_reference

    grads, reduction, _ = case["args"]
    orders = _all_orders(grads.shape[0])
    other = "sum" if reduction == "mean" else "mean"
    return {
        "projection against an already-projected gradient: project g_i off the ORIGINAL g_j": [
            _pcgrad_variant(grads, o, reduction, "against_projected") for o in orders
        ],
        f"the {other} of the projected gradients instead of the {reduction}": [
            project_conflicting_reference(grads, o, other) for o in orders
        ],
        "no projection: project g_i off g_j when g_i . g_j < 0": [
            grads.mean(0) if reduction == "mean" else grads.sum(0)
        ],
        "the condition is inverted: project only when g_i . g_j < 0 (a conflict), not when it is positive": [
            _pcgrad_variant(grads, o, reduction, "inverted") for o in orders
        ],
        "projected even without a conflict: only a negative dot product is a conflict": [
            _pcgrad_variant(grads, o, reduction, "always") for o in orders
        ],
        "kept the component along g_j: remove it, g_i - (g_i . g_j) / |g_j|^2 * g_j": [
            _pcgrad_variant(grads, o, reduction, "kept_along") for o in orders
        ],
    }


PCGRAD = Checker(
    "check_project_conflicting",
    "function",
    _pcgrad_cases,
    _pcgrad_expected,
    _pcgrad_mistakes,
    lambda case, out: out,
    atol=1e-5,
    rtol=1e-5,
)


def check_project_conflicting(fn: Callable) -> None:
    """Your PCGrad against Algorithm 1: fn(grads K x D, reduction, generator) -> D; every visiting order is accepted."""
    run_check(PCGRAD, fn)


CHECKERS = {c.name: c for c in (ADAMW, MEAN_POOLING, PAIR_FEATURES, INFO_NCE, PCGRAD)}
