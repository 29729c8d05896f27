"""The two-way interval: its vectorised scores equal a literal recomputation, and it holds both noises."""

import numpy as np
import pandas as pd
import pytest

from mtl_lab.data import TASKS
from mtl_lab.evaluate import outputs_to_predictions, task_metrics
from mtl_lab.records import DevRecords
from mtl_lab.study import compare, intervals


def fake_records(seed: int, n: int = 60, epochs: int = 3) -> tuple[DevRecords, dict[str, pd.Series]]:
    """A run's records on synthetic dev sets of the three tasks, with labels; better with each epoch, and noisy."""
    rng = np.random.default_rng(100)
    gold = {"sst": rng.integers(0, 5, n), "qqp": rng.integers(0, 2, n), "sts": rng.uniform(0, 5, n)}
    ids = {t: np.array([f"{t}{i:03d}" for i in range(n)]) for t in TASKS}  # sorted as made
    rng = np.random.default_rng(seed)
    outputs = {t: {} for t in TASKS}
    for e in range(1, epochs + 1):
        logits = rng.normal(size=(n, 5)) + 1.5 * e / epochs * np.eye(5)[gold["sst"]]
        outputs["sst"][e] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        outputs["qqp"][e] = np.clip(gold["qqp"] * 0.5 * e / epochs + rng.uniform(0, 0.7, n), 0, 1)
        outputs["sts"][e] = gold["sts"] + rng.normal(scale=2.0 / e, size=n)
    labels = {t: pd.Series(gold[t], index=ids[t]) for t in TASKS}
    return DevRecords(ids, outputs), labels


def literal_score(rec: DevRecords, labels, idx: dict[str, np.ndarray], rule: str) -> float:
    """A run's score on the examples ``idx`` (with repeats), the epoch chosen by literal loops: the reference."""
    halves = {t: compare.half_of(rec.ids[t][idx[t]]) for t in TASKS}

    def overall(epoch_of_half):
        terms = []
        for t in TASKS:
            gold = labels[t].to_numpy()[idx[t]]
            pred = np.concatenate(
                [
                    outputs_to_predictions(t, rec.outputs[t][epoch_of_half[h]].astype(float))[idx[t]][halves[t] == h]
                    for h in (0, 1)
                    if epoch_of_half[h] is not None
                ]
            )
            gold = np.concatenate([gold[halves[t] == h] for h in (0, 1) if epoch_of_half[h] is not None])
            m = task_metrics(t, pred, gold)
            terms.append(m["sts_pearson"] / 2 + 0.5 if t == "sts" else m[f"{t}_acc"])
        return np.mean(terms)

    if rule == "last":
        return overall({0: max(rec.epochs), 1: max(rec.epochs)})
    chosen = {}
    for h in (0, 1):
        scores = {e: overall({h: e, 1 - h: None}) for e in rec.epochs}
        chosen[h] = max(scores, key=lambda e: (scores[e], -e))
    return overall({0: chosen[1], 1: chosen[0]})


@pytest.mark.parametrize("rule", ["crossfit", "last"])
def test_vectorised_scores_equal_a_literal_recomputation_on_a_resample(rule):
    rec, labels = fake_records(1)
    m = intervals.material([rec], labels)
    rng = np.random.default_rng(5)
    for _ in range(5):
        idx = {t: rng.integers(0, len(m.gold[t]), len(m.gold[t])) for t in TASKS}
        w = {t: np.bincount(idx[t], minlength=len(m.gold[t]))[None, :].astype(float) for t in TASKS}
        got = intervals.run_scores(m, m.runs[0], w, rule)[0]
        assert got == pytest.approx(literal_score(rec, labels, idx, rule), abs=1e-9)


def test_the_point_score_is_the_labs_cross_fitted_score():
    rec, labels = fake_records(2)
    m = intervals.material([rec], labels)
    assert intervals.point_scores(m, "crossfit")[0] == pytest.approx(
        compare.score(compare.crossfit(rec, labels)[0], labels)["overall"]
    )


def test_identical_rows_give_zero_and_seeds_widen_the_interval():
    rows = [fake_records(s)[0] for s in range(3)]
    labels = fake_records(0)[1]
    same = intervals.two_way(rows, rows, labels, n_resamples=200)
    assert same.diff == 0 and same.low == 0 and same.high == 0
    other = [fake_records(s)[0] for s in range(10, 13)]
    one = intervals.two_way(rows[:1], other[:1], labels, n_resamples=400)
    three = intervals.two_way(rows, other, labels, n_resamples=400)
    assert three.low < three.diff < three.high and one.low < one.diff < one.high
    assert "inconclusive" in three.words() or three.words() in ("better", "worse")


def test_a_bonferroni_adjustment_widens():
    assert intervals.adjusted(0.95, 9) == pytest.approx(1 - 0.05 / 9)
    rows, labels = [fake_records(s)[0] for s in range(3)], fake_records(0)[1]
    other = [fake_records(s)[0] for s in range(10, 13)]
    plain = intervals.two_way(rows, other, labels, n_resamples=300)
    wide = intervals.two_way(rows, other, labels, confidence=intervals.adjusted(0.95, 9), n_resamples=300)
    assert wide.high - wide.low > plain.high - plain.low
