"""One interval for "is the difference real?": seeds and dev examples resampled together, the epoch choice redone inside.

A row of the study is a method trained over several seeds; its score on dev moves with both the training seed
and the dev examples that happen to score it. The **two-way bootstrap** draws both at once, B times:

1. the seeds, with replacement (seed k of row A stays paired with seed k of row B);
2. the dev examples, with replacement, per task (both rows scored on the same draw: paired);
3. for every drawn run, the score is recomputed on the drawn examples *including the choices made on dev*:
   ``crossfit`` chooses the epoch on each half of the drawn examples and predicts the other half with it;
   ``last`` takes the last epoch (a rule fixed in advance, nothing chosen);
4. the row's score is the mean over its drawn seeds; the statistic is A's minus B's.

The 2.5 and 97.5 percentiles of the B statistics are the interval (``confidence`` may be raised to adjust for
several comparisons: Bonferroni, ``adjusted``). Everything is vectorised: a resample of the examples is a vector
of counts, and every per-half, per-epoch metric is a matrix product with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtl_lab.data import TASKS
from mtl_lab.evaluate import outputs_to_predictions
from mtl_lab.records import DevRecords
from mtl_lab.study.compare import half_of

N_RESAMPLES = 10_000
SEED = 0
RULES = ("crossfit", "last")


@dataclass
class RunArrays:
    """One run's dev material, aligned to shared ids: per task a matrix epochs x examples."""

    correct: dict[str, np.ndarray]  # classification: 1.0 where the epoch's prediction is right
    pred: dict[str, np.ndarray]  # regression: the epoch's clipped score


@dataclass
class Material:
    """Gold labels, halves and every run's arrays, in one id order per task."""

    tasks: tuple[str, ...]
    gold: dict[str, np.ndarray]
    half: dict[str, np.ndarray]
    runs: list[RunArrays]


def adjusted(confidence: float, comparisons: int) -> float:
    """Bonferroni: the confidence of each of ``comparisons`` intervals so that all hold together at ``confidence``."""
    return 1 - (1 - confidence) / max(1, comparisons)


def material(records: list[DevRecords], labels: dict[str, pd.Series]) -> Material:
    """Align runs' records on the labelled dev ids they all share (sorted), task by task."""
    tasks = tuple(t for t in TASKS if all(t in r.ids for r in records))
    if not tasks:
        raise ValueError("the runs share no task with records")
    gold, half, ids = {}, {}, {}
    for t in tasks:
        common = pd.Index(labels[t].index)
        for r in records:
            common = common.intersection(pd.Index(r.ids[t]))
        ids[t] = common.sort_values()
        gold[t] = labels[t][ids[t]].to_numpy(dtype=float)
        half[t] = half_of(ids[t])
    runs = []
    for r in records:
        correct, pred = {}, {}
        for t in tasks:
            where = pd.Index(r.ids[t]).get_indexer(ids[t])
            per_epoch = np.stack(
                [outputs_to_predictions(t, r.outputs[t][e].astype(float))[where] for e in sorted(r.outputs[t])]
            )
            if TASKS[t].kind == "regression":
                pred[t] = per_epoch.astype(float)
            else:
                correct[t] = (per_epoch == gold[t]).astype(float)
        runs.append(RunArrays(correct, pred))
    return Material(tasks, gold, half, runs)


def _task_sums(m: Material, run: RunArrays, task: str, w: np.ndarray) -> dict[str, np.ndarray]:
    """Per half h, the weighted sums a metric needs, each B x E (or B): w is B x N example counts."""
    out = {}
    for h in (0, 1):
        wh = w * (m.half[task] == h)
        out[f"n{h}"] = wh.sum(1)
        if TASKS[task].kind == "regression":
            x, y = run.pred[task], m.gold[task]
            out[f"x{h}"], out[f"xx{h}"], out[f"xy{h}"] = wh @ x.T, wh @ (x * x).T, wh @ (x * y).T
            out[f"y{h}"], out[f"yy{h}"] = wh @ y, wh @ (y * y)
        else:
            out[f"c{h}"] = wh @ run.correct[task].T
    return out


def weighted_terms(kind: str, w: np.ndarray, values: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """A task's overall-score term for M models on B resamples: w is B x N example counts, values M x N (the
    predictions), gold N; accuracy, or (Pearson r + 1) / 2 for a regression task. Returns B x M."""
    n = w.sum(1)[:, None]
    if kind == "regression":
        sx, sxx, sxy = w @ values.T, w @ (values * values).T, w @ (values * gold).T
        sy, syy = (w @ gold)[:, None], (w @ (gold * gold))[:, None]
        return (_pearson(n, sx, sy, sxx, syy, sxy) + 1) / 2
    return (w @ (values == gold).astype(float).T) / np.maximum(n, 1)


def _pearson(n, sx, sy, sxx, syy, sxy) -> np.ndarray:
    cov = n * sxy - sx * sy
    den = np.sqrt(np.clip(n * sxx - sx * sx, 0, None) * np.clip(n * syy - sy * sy, 0, None))
    return np.divide(cov, den, out=np.zeros_like(cov, dtype=float), where=den > 0)


def _metric(task: str, s: dict, pick) -> np.ndarray:
    """The task's overall-score term ((r + 1) / 2 for STS) of the examples ``pick`` selects.

    ``pick(name, h)`` returns the sums of half h at the chosen epochs (B x E, or B x 1 for one epoch)."""
    n = sum(s[f"n{h}"][:, None] for h in (0, 1) if pick("n", h) is not None)
    if TASKS[task].kind == "regression":
        total = {k: sum(pick(k, h) for h in (0, 1) if pick(k, h) is not None) for k in ("x", "xx", "xy", "y", "yy")}
        return (_pearson(n, total["x"], total["y"], total["xx"], total["yy"], total["xy"]) + 1) / 2
    return sum(pick("c", h) for h in (0, 1) if pick("c", h) is not None) / np.maximum(n, 1)


def run_scores(m: Material, run: RunArrays, w: np.ndarray, rule: str) -> np.ndarray:
    """A run's overall score under ``rule`` on each resample of the examples (w: task -> B x N counts)."""
    sums = {t: _task_sums(m, run, t, w[t]) for t in m.tasks}

    def expand(v):
        return v if v.ndim == 2 else v[:, None]

    if rule == "last":

        def last(s, k, h):
            v = expand(s[f"{k}{h}"])
            return v[:, -1:] if v.shape[1] > 1 else v

        terms = [_metric(t, sums[t], lambda k, h, s=sums[t]: last(s, k, h)) for t in m.tasks]
        return np.mean(terms, axis=0)[:, 0]
    # the overall score of each epoch on each half alone, then the epoch each half chooses
    on_half = {}
    for h in (0, 1):
        terms = [
            _metric(t, sums[t], lambda k, hh, s=sums[t], h=h: expand(s[f"{k}{hh}"]) if hh == h else None)
            for t in m.tasks
        ]
        on_half[h] = np.mean(terms, axis=0)
    chosen = {h: np.argmax(on_half[h], axis=1) for h in (0, 1)}  # ties: the earlier epoch
    rows = np.arange(next(iter(w.values())).shape[0])

    def crossed(s, k, h):
        v = expand(s[f"{k}{h}"])
        if v.shape[1] == 1:
            return v
        return v[rows, chosen[1 - h]][:, None]  # half h is predicted by the epoch chosen on the other half

    terms = [_metric(t, sums[t], lambda k, h, s=sums[t]: crossed(s, k, h)) for t in m.tasks]
    return np.mean(terms, axis=0)[:, 0]


def point_scores(m: Material, rule: str) -> np.ndarray:
    """Every run's score on all of dev (each example once)."""
    w = {t: np.ones((1, len(m.gold[t]))) for t in m.tasks}
    return np.array([run_scores(m, r, w, rule)[0] for r in m.runs])


@dataclass
class TwoWay:
    """A two-way interval: the difference of row means, its interval, and how it was made."""

    diff: float
    low: float
    high: float
    rule: str
    seeds: int | str
    confidence: float
    a_scores: list[float]
    b_scores: list[float]

    def words(self) -> str:
        """'A better' / 'A worse' when the interval excludes 0, else 'inconclusive: [lo, hi]'."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return f"inconclusive: [{self.low:+.4f}, {self.high:+.4f}]"


def two_way(
    rows_a: list[DevRecords],
    rows_b: list[DevRecords],
    labels: dict[str, pd.Series],
    rule: str = "crossfit",
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    batch: int = 500,
) -> TwoWay:
    """Row A's mean score minus row B's over seeds, with the two-way bootstrap interval (module docstring).

    ``rows_a[k]`` and ``rows_b[k]`` are seed k of each row, drawn together; rows of different lengths (an ensemble
    against a row of seeds) are drawn apart. A row of one run keeps it in every resample.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: one of {RULES}")
    if not rows_a or not rows_b:
        raise ValueError("both rows need a run with records")
    m = material(rows_a + rows_b, labels)
    k, kb = len(rows_a), len(rows_b)
    points = point_scores(m, rule)
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_resamples, batch):
        b = min(batch, n_resamples - start)
        w = {
            t: rng.multinomial(len(m.gold[t]), np.full(len(m.gold[t]), 1 / len(m.gold[t])), size=b).astype(float)
            for t in m.tasks
        }
        per_run = np.stack([run_scores(m, r, w, rule) for r in m.runs])  # runs x b
        draw_a = rng.integers(0, k, size=(b, k))
        draw_b = draw_a if kb == k else rng.integers(0, kb, size=(b, kb))
        cols = np.arange(b)[:, None]
        a_mean = per_run[:k][draw_a, cols].mean(1)
        b_mean = per_run[k:][draw_b, cols].mean(1)
        stats.append(a_mean - b_mean)
    stats = np.concatenate(stats)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    diff = float(points[:k].mean() - points[k:].mean())
    return TwoWay(diff, float(low), float(high), rule, k, confidence, points[:k].tolist(), points[k:].tolist())
