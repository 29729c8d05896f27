"""Per-example records, cross-fitted scores and paired bootstrap intervals (mtl_lab.records, mtl_lab.study.compare)."""

import json

import numpy as np
import pandas as pd
import pytest

from mtl_lab.records import DevRecords, read_records, write_epoch
from mtl_lab.study.compare import (
    DevPredictions,
    compare_pair,
    crossfit,
    dev_predictions,
    epoch_predictions,
    half_of,
    overall_interval,
    paired_interval,
    score,
    seed_interval,
    seed_pairs,
    verdict,
)


def _ids(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def _labels(rng: np.random.Generator, n: int = 400) -> dict[str, pd.Series]:
    return {
        "sst": pd.Series(rng.integers(0, 5, n), index=_ids(n, "s")),
        "qqp": pd.Series(rng.integers(0, 2, n), index=_ids(n, "q")),
        "sts": pd.Series(rng.uniform(0, 5, n), index=_ids(n, "t")),
    }


def _noisy(labels: dict[str, pd.Series], rng: np.random.Generator, keep: float, noise: float) -> DevPredictions:
    """Predictions that copy the gold label with probability ``keep`` (STS: gold plus Gaussian noise)."""
    preds = {}
    for task, gold in labels.items():
        if task == "sts":
            preds[task] = gold + rng.normal(0, noise, len(gold))
        else:
            k = 5 if task == "sst" else 2
            wrong = (gold + rng.integers(1, k, len(gold))) % k
            preds[task] = gold.where(rng.uniform(size=len(gold)) < keep, wrong)
    return DevPredictions("x", preds, "test")


def test_halves_are_stable_disjoint_and_balanced():
    # the halves are a fixed function of the id: these values must never change (published scores use them)
    assert half_of(["a", "b", "c", "d", "e", "f"]).tolist() == [0, 0, 1, 1, 1, 0]
    assert half_of([" a ", "b"]).tolist() == [0, 0]  # ids are stripped, as the data files are read
    ids = _ids(4000, "id")
    h = half_of(ids)
    assert set(h) == {0, 1}
    first, second = {i for i, x in zip(ids, h) if x == 0}, {i for i, x in zip(ids, h) if x == 1}
    assert not first & second and len(first | second) == 4000
    assert 0.45 < h.mean() < 0.55
    assert (half_of(ids[::-1])[::-1] == h).all()  # per id, not per position


def test_identical_predictions_give_exactly_zero():
    rng = np.random.default_rng(0)
    labels = _labels(rng)
    a = _noisy(labels, rng, 0.6, 1.0)
    table = compare_pair(a, DevPredictions("y", dict(a.predictions), "test"), labels, n_resamples=500)
    assert (table[["diff", "low", "high"]].to_numpy(dtype=float) == 0).all()
    assert set(table["verdict"]) == {"inconclusive: [+0.0000, +0.0000]"}


def test_a_constant_difference_gives_a_degenerate_interval():
    gold = np.arange(200) % 5
    right, wrong = gold.copy(), (gold + 1) % 5
    assert paired_interval("sst", right, wrong, gold, 500) == (1.0, 1.0, 1.0)  # +1 on every example
    g = np.linspace(0, 5, 200)
    a = g + np.sin(np.arange(200))
    diff, low, high = paired_interval("sts", a, a + 0.7, g, 500)  # a shifted score keeps its Pearson r
    assert abs(diff) < 1e-12 and abs(low) < 1e-12 and abs(high) < 1e-12


def _independent_bootstrap(a, b, labels, n=4000, seed=1):
    """A plain resampler written apart from mtl_lab.study.compare: per task, resample examples with replacement."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        total = 0.0
        for task, gold in labels.items():
            idx = rng.integers(0, len(gold), len(gold))
            pa, pb, g = (x.to_numpy(dtype=float)[idx] for x in (a.predictions[task], b.predictions[task], gold))
            if task == "sts":
                total += (np.corrcoef(pa, g)[0, 1] - np.corrcoef(pb, g)[0, 1]) / 2
            else:
                total += np.mean(pa == g) - np.mean(pb == g)
        out.append(total / 3)
    return np.percentile(out, [2.5, 97.5])


def test_overall_interval_agrees_with_an_independent_bootstrap():
    rng = np.random.default_rng(3)
    labels = _labels(rng, 500)
    a, b = _noisy(labels, rng, 0.62, 1.0), _noisy(labels, rng, 0.58, 1.1)
    table = compare_pair(a, b, labels, n_resamples=4000)
    low, high = _independent_bootstrap(a, b, labels)
    assert abs(table.loc["overall", "low"] - low) < 0.003
    assert abs(table.loc["overall", "high"] - high) < 0.003
    m_a, m_b = score(a.predictions, labels), score(b.predictions, labels)
    assert table.loc["overall", "diff"] == pytest.approx(m_a["overall"] - m_b["overall"], abs=1e-12)
    assert table.loc["SST acc", "A"] == pytest.approx(m_a["sst_acc"])


def test_overall_interval_weighs_tasks_equally_whatever_their_sizes():
    gold_small, gold_big = np.zeros(50), np.zeros(5000)
    samples = {"sst": (gold_small, gold_small + 1, gold_small), "qqp": (gold_big, gold_big, gold_big)}
    diff, low, high = overall_interval(samples, 200)
    assert diff == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)


def test_verdicts_and_the_interval_over_seeds():
    assert verdict(0.001, 0.01) == "better"
    assert verdict(-0.01, -0.001) == "worse"
    assert verdict(-0.001, 0.01) == "inconclusive: [-0.0010, +0.0100]"
    mean, low, high = seed_interval([0.004, 0.006, 0.005])
    assert mean == pytest.approx(0.005) and 0 < low < mean < high
    assert seed_interval([0.01, -0.01, 0.003])[1] < 0 < seed_interval([0.01, -0.01, 0.003])[2]


def test_records_round_trip_and_an_epoch_rewritten_on_resume(tmp_path):
    ids = ["a", "b", "c"]
    write_epoch(tmp_path, 1, {"sst": (ids, np.eye(5)[:3]), "sts": (ids, np.array([1.0, 2.0, 6.0]))})
    write_epoch(tmp_path, 2, {"sst": (ids, np.eye(5)[1:4]), "sts": (ids, np.array([0.5, 2.0, 3.0]))})
    write_epoch(tmp_path, 2, {"sst": (ids, np.eye(5)[2:5]), "sts": (ids, np.array([0.5, 2.0, 3.0]))})
    rec = read_records(tmp_path)
    assert rec.epochs == [1, 2] and rec.tasks == ("sst", "sts")
    assert epoch_predictions(rec, 2)["sst"].tolist() == [2, 3, 4]
    assert epoch_predictions(rec, 1)["sts"].tolist() == [1.0, 2.0, 5.0]  # STS predictions clipped to 0..5
    with pytest.raises(ValueError, match="differ from the earlier epochs"):
        write_epoch(tmp_path, 3, {"sst": (["a", "b", "x"], np.eye(5)[:3])})
    assert read_records(tmp_path / "none") is None


def test_crossfit_picks_each_halfs_epoch_on_the_other_half():
    ids = np.array(_ids(400, "q"))
    half = half_of(ids)
    gold = np.arange(400) % 2
    # epoch 1 is right on half 0 only, epoch 2 on half 1 only: each looks perfect where it was chosen
    e1 = np.where(half == 0, gold, 1 - gold).astype(float)
    e2 = np.where(half == 1, gold, 1 - gold).astype(float)
    rec = DevRecords({"qqp": ids}, {"qqp": {1: e1, 2: e2}})
    labels = {"qqp": pd.Series(gold, index=ids)}
    preds, chosen = crossfit(rec, labels)
    assert chosen == {0: 1, 1: 2}
    # every example is predicted by the epoch chosen on the other half: all wrong, where the best epoch looks half right
    assert score(preds, labels)["qqp_acc"] == 0.0
    assert max(score(epoch_predictions(rec, e), labels)["qqp_acc"] for e in (1, 2)) == pytest.approx(0.5, abs=0.06)


def test_seeds_are_paired_by_seed_not_by_place_in_the_row():
    def run(seed=None):
        return {"config": {"train": {} if seed is None else {"seed": seed}}}

    results = {"base": run(0), "base-s1": run(1), "base-s2": run(2), "x-s3": run(3), "x-s1": run(1)}
    results.update({"recipe": run(), "recipe-s2": run()})  # recipe records: no seed of their own, their place
    base = ["base", "base-s1", "base-s2"]
    assert seed_pairs(["x-s3", "x-s1"], base, results) == [(1, "x-s1", "base-s1")]
    assert seed_pairs(["recipe", "recipe-s1", "recipe-s2"], base, results) == [
        (0, "recipe", "base"),
        (2, "recipe-s2", "base-s2"),  # recipe-s1 is not trained yet
    ]


def test_a_recipe_record_at_its_best_epoch_takes_its_members_best_not_its_last(tmp_path, monkeypatch):
    ids = np.array(_ids(200, "q"))
    gold = np.arange(200) % 2
    member = tmp_path / "cpu" / "member"
    member.mkdir(parents=True)
    # epoch 2 is right everywhere, the last epoch (3) only half the time
    for epoch, right in ((1, 0.5), (2, 1.0), (3, 0.5)):
        pred = np.where(np.arange(200) < right * 200, gold, 1 - gold).astype(float)
        write_epoch(member, epoch, {"qqp": (list(ids), pred)})
    (member / "results.json").write_text(json.dumps({"best": {"epoch": 2, "overall": 1.0}}))
    recipe = tmp_path / "cpu" / "recipe"
    recipe.mkdir(parents=True)
    (recipe / "results.json").write_text(json.dumps({"config": {"members": ["member"]}, "best": {"overall": 1.0}}))
    labels = {"qqp": pd.Series(gold, index=ids)}
    monkeypatch.setattr("mtl_lab.study.compare.dev_labels", lambda tasks, data_dir=None: labels)
    got = dev_predictions(recipe, honest=False)
    assert got.epochs == {"best": 2}
    assert score(got.predictions, labels)["qqp_acc"] == 1.0
