"""Is the difference real? Paired comparisons of runs on the same dev examples, and honest scores.

Two questions, kept apart:

* **Selection.** The best epoch (or the best configuration) picked on dev and scored on that same
  dev set is optimistic. The *cross-fitted* score removes this: dev is split into two fixed halves
  by a hash of each example's id; every example is predicted by the epoch chosen on the *other*
  half, and the score is the dev metric of those predictions. Pooling the two halves (instead of
  averaging two half-set scores) keeps one prediction per example, so the same vector feeds the
  paired bootstrap below, and STS's Pearson r is computed on all pairs rather than on 430.
* **Noise.** Two methods scored on the same examples differ by chance twice over: the training seed and the dev
  examples. The verdict interval holds both: a two-way bootstrap (``mtl_lab.study.intervals``) resamples seeds and
  dev examples together and redoes the cross-fitted epoch choice inside every resample. It needs 3 or more seeds a
  row (or an ensemble of 3 or more seeds); with fewer there is no verdict. A last-epoch score (nothing chosen) is
  given beside. Per task, the paired example bootstrap (``scipy.stats.bootstrap``) of one seed pair describes
  those two runs, at a confidence adjusted for the three tasks; a t interval over the seeds' paired differences is
  shown as a description of training noise only. Words follow the verdict interval: *better* or *worse* only when
  it excludes 0, otherwise "inconclusive: [low, high]".
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mtl_lab.data import TASKS, load_split
from mtl_lab.evaluate import (
    METRIC_NAMES,
    outputs_to_predictions,
    overall_score,
    prediction_path,
    read_predictions,
    task_metrics,
)
from mtl_lab.records import RECORDS_FILE, DevRecords, read_records
from mtl_lab.runs import results_root, runs_root
from mtl_lab.study.full_budget import full_budget_rows

Labels = dict[str, pd.Series]  # task -> gold dev labels, indexed by id
DataDir = str | os.PathLike | None

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
TASK_LABELS = {"sst": "SST acc", "qqp": "QQP acc", "sts": "STS r"}


# ----------------------------------------------------------------------------- halves and labels


def half_of(ids: Iterable) -> np.ndarray:
    """Each id's half of dev (0 or 1): the parity of the first 8 hex digits of its sha256, fixed forever."""
    return np.array([int(hashlib.sha256(str(i).strip().encode()).hexdigest()[:8], 16) % 2 for i in ids], dtype=int)


def dev_labels(tasks: Iterable[str], data_dir: DataDir = None) -> Labels:
    """Gold dev labels per task, indexed by id (malformed rows are left out, as training scores them)."""
    out = {}
    for task in tasks:
        df = load_split(task, "dev", data_dir, warn=False)
        out[task] = pd.Series(df["label"].to_numpy(), index=[str(i).strip() for i in df["id"]])
    return out


# ----------------------------------------------------------------------------- a run's dev predictions


@dataclass
class DevPredictions:
    """One run's dev predictions per task (indexed by id), how they were chosen, and its epochs."""

    name: str
    predictions: dict[str, pd.Series]
    source: str
    epochs: dict = field(default_factory=dict)


def run_folder(name: str | os.PathLike, profile: str = "cpu") -> Path:
    """A run by name (published results first, then your own runs) or by folder."""
    path = Path(name)
    if path.is_dir():
        return path
    for root in (results_root(), runs_root()):
        if (root / profile / str(name) / "results.json").is_file():
            return root / profile / str(name)
    raise FileNotFoundError(
        f"no run {name!r}: looked in {results_root() / profile} and {runs_root() / profile} "
        "(give a published run's name, one of your runs, or a run folder)"
    )


def run_records(folder: Path) -> tuple[dict, DevRecords | None]:
    """A run folder's results.json and its dev records (None without): the one place it is read here.

    A recipe record of one member has no records of its own: its member's are returned.
    """
    res = json.loads((folder / "results.json").read_text())
    members = res.get("config", {}).get("members") or []
    if not (folder / RECORDS_FILE).is_file() and len(members) == 1:
        folder = folder.parent / members[0]
    return res, read_records(folder)


def epoch_predictions(records: DevRecords, epoch: int) -> dict[str, pd.Series]:
    """One epoch's predictions per task (SST class, QQP 0/1, STS score clipped to 0..5), indexed by id."""
    return {
        t: pd.Series(outputs_to_predictions(t, records.outputs[t][epoch].astype(float)), index=records.ids[t])
        for t in records.tasks
    }


def score(predictions: dict[str, pd.Series], labels: dict[str, pd.Series]) -> dict[str, float]:
    """Dev metrics (and the overall score) of predictions on the labelled ids they share with ``labels``."""
    metrics: dict[str, float] = {}
    for task, pred in predictions.items():
        common = pred.index.intersection(labels[task].index)
        metrics.update(task_metrics(task, pred[common].to_numpy(), labels[task][common].to_numpy()))
    metrics["overall"] = overall_score(metrics)
    return metrics


def choose_epoch(by_epoch: dict[int, dict[str, pd.Series]], labels: dict[str, pd.Series]) -> tuple[int, float]:
    """The epoch whose predictions score the best overall, and that score (a tie goes to the earlier epoch)."""
    scores = {e: score(preds, labels)["overall"] for e, preds in by_epoch.items()}
    best = max(scores, key=lambda e: (scores[e], -e))
    return best, scores[best]


def crossfit(records: DevRecords, labels: dict[str, pd.Series]) -> tuple[dict[str, pd.Series], dict[int, int]]:
    """Cross-fitted predictions: each dev example predicted by the epoch chosen on the other half of dev.

    The epoch is chosen by overall score. Returns the predictions and ``{half: epoch chosen on that half}``.
    """
    by_epoch = {e: epoch_predictions(records, e) for e in records.epochs}
    halves = {t: half_of(records.ids[t]) for t in records.tasks}
    chosen = {}
    for h in (0, 1):
        on_half = {e: {t: p[halves[t] == h] for t, p in preds.items()} for e, preds in by_epoch.items()}
        chosen[h] = choose_epoch(on_half, labels)[0]
    out = {}
    for t in records.tasks:
        # examples of half 0 take the epoch chosen on half 1, and the other way round
        pick = np.where(halves[t] == 0, by_epoch[chosen[1]][t].to_numpy(), by_epoch[chosen[0]][t].to_numpy())
        out[t] = pd.Series(pick, index=records.ids[t])
    return out, chosen


def _prediction_files(folder: Path) -> dict[str, pd.Series]:
    """The committed leaderboard dev files of a run (its best epoch), indexed by id."""
    found = [t for t in TASKS if prediction_path(folder / "predictions", t, "dev").is_file()]
    return {t: read_predictions(folder / "predictions", t) for t in found}


def dev_predictions(
    name: str | os.PathLike, profile: str = "cpu", honest: bool = True, data_dir: DataDir = None
) -> DevPredictions:
    """A run's dev predictions: cross-fitted from its records (``honest``), else its best epoch's.

    Runs without records fall back to their committed best-epoch prediction files.
    """
    folder = run_folder(name, profile)
    res, records = run_records(folder)
    if records is not None and records.epochs:
        if honest:
            preds, chosen = crossfit(records, dev_labels(records.tasks, data_dir))
            return DevPredictions(str(name), preds, "cross-fitted (records)", chosen)
        best = res.get("best", {}).get("epoch")
        if best not in records.epochs:  # a recipe record names no epoch: its member's best on all of dev
            by_epoch = {e: epoch_predictions(records, e) for e in records.epochs}
            best = choose_epoch(by_epoch, dev_labels(records.tasks, data_dir))[0]
        return DevPredictions(str(name), epoch_predictions(records, best), "best epoch (records)", {"best": best})
    files = _prediction_files(folder)
    if files:
        return DevPredictions(str(name), files, "best epoch (prediction files)")
    raise FileNotFoundError(
        f"{folder}: neither dev records (dev-records.npz) nor dev prediction files: nothing to compare "
        "(runs trained with this version of the lab write records; older ones need predictions/)"
    )


# ----------------------------------------------------------------------------- paired bootstrap


def _accuracy_difference(a, b, axis=-1):
    """Mean of correctness a minus b."""
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _pearson(x, y, axis=-1):
    """Pearson r along an axis (vectorized over the others)."""
    x = x - x.mean(axis=axis, keepdims=True)
    y = y - y.mean(axis=axis, keepdims=True)
    den = np.sqrt((x * x).sum(axis=axis) * (y * y).sum(axis=axis))
    return np.divide((x * y).sum(axis=axis), den, out=np.zeros_like(den), where=den > 0)


def _pearson_difference(a, b, gold, axis=-1):
    """Pearson r of a with gold minus that of b."""
    return _pearson(a, gold, axis) - _pearson(b, gold, axis)


def _task_rows(task: str, a: np.ndarray, b: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """A task's paired sample as rows [a, b, gold] (classification: correctness of a and b, gold unused)."""
    if TASKS[task].kind == "regression":
        return np.stack([a, b, gold]).astype(float)
    return np.stack([(a == gold), (b == gold), np.zeros_like(gold)]).astype(float)


def _task_difference(task: str, rows: np.ndarray) -> np.ndarray:
    """A task's contribution to the overall-score difference (STS: half the r difference) from its rows."""
    if TASKS[task].kind == "regression":
        return _pearson_difference(rows[0], rows[1], rows[2]) / 2
    return _accuracy_difference(rows[0], rows[1])


def paired_interval(
    task: str,
    a: np.ndarray,
    b: np.ndarray,
    gold: np.ndarray,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """One task's metric difference a - b on the same examples and its paired bootstrap interval."""
    if TASKS[task].kind == "regression":
        data, stat = (a, b, gold), _pearson_difference
    else:
        data, stat = ((a == gold).astype(float), (b == gold).astype(float)), _accuracy_difference
    return _bootstrap(data, stat, paired=True, n_resamples=n_resamples, confidence=confidence)


def overall_interval(samples: dict[str, tuple], n_resamples: int = N_RESAMPLES) -> tuple[float, float, float]:
    """The overall-score difference and its 95 % interval, each task's examples resampled apart.

    The score weighs tasks equally whatever their sizes; each example's a/b/gold stay together.
    """
    tasks = list(samples)
    rows = [_task_rows(t, *samples[t]) for t in tasks]

    def stat(*task_rows, axis=-1):
        return sum(_task_difference(t, r) for t, r in zip(tasks, task_rows)) / len(tasks)

    return _bootstrap(rows, stat, paired=False, n_resamples=n_resamples)


def _bootstrap(
    data, stat, paired: bool, n_resamples: int, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """The statistic on the data and its percentile interval (``scipy.stats.bootstrap``, fixed seed)."""
    res = stats.bootstrap(
        data,
        stat,
        paired=paired,
        vectorized=True,
        n_resamples=n_resamples,
        batch=500,
        confidence_level=confidence,
        method="percentile",
        random_state=BOOTSTRAP_SEED,
        axis=-1,
    )
    return float(stat(*data)), float(res.confidence_interval.low), float(res.confidence_interval.high)


def aligned(a: DevPredictions, b: DevPredictions, labels: dict[str, pd.Series]) -> dict[str, tuple]:
    """Per shared task, (a, b, gold) arrays over the labelled ids both runs predicted, in one order."""
    out = {}
    for task in [t for t in TASKS if t in a.predictions and t in b.predictions]:
        ids = a.predictions[task].index.intersection(b.predictions[task].index).intersection(labels[task].index)
        ids = ids.sort_values()
        out[task] = tuple(
            s[ids].to_numpy(dtype=float) for s in (a.predictions[task], b.predictions[task], labels[task])
        )
    if not out:
        raise ValueError(f"{a.name} and {b.name} share no task to compare")
    return out


# ----------------------------------------------------------------------------- the comparison


def verdict(low: float, high: float) -> str:
    """'better' or 'worse' only when the interval excludes 0; otherwise 'inconclusive: [low, high]'."""
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return f"inconclusive: [{low:+.4f}, {high:+.4f}]"


def seed_interval(differences: list[float]) -> tuple[float, float, float]:
    """Mean of per-seed paired differences and its 95 % t interval (scipy.stats.ttest_1samp): training noise only,
    shown as a description, never a verdict."""
    diffs = np.asarray(differences, dtype=float)
    if np.allclose(diffs, diffs[0]):
        return float(diffs[0]), float(diffs[0]), float(diffs[0])
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(CONFIDENCE)
    return float(diffs.mean()), float(ci.low), float(ci.high)


@dataclass
class Comparison:
    """Method A against method B: the verdict interval over seeds and examples (``two_way``, epochs cross-fitted inside
    each resample), the last-epoch interval beside it, and the per-task table of one seed pair."""

    a: str
    b: str
    table: pd.DataFrame | None
    sources: tuple[str, str]
    seeds: pd.DataFrame | None = None
    seed_row: dict | None = None  # the t interval over seeds: descriptive
    two_way: object | None = None  # intervals.TwoWay of the cross-fitted scores: the verdict
    last: object | None = None  # intervals.TwoWay of the last epoch's scores: nothing chosen
    candidates: int = 1  # rows A was chosen among (the verdict interval is adjusted for them)
    why_none: str = ""  # why there is no verdict interval
    note: str = ""  # what the verdict interval leaves out (an ensemble's own seed noise)

    @property
    def overall(self) -> dict | None:
        """The overall row of the one-seed-pair table as plain Python values (None without predictions)."""
        if self.table is None:
            return None
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in self.table.loc["overall"].items()}

    @property
    def selected(self) -> bool:
        """Whether a score compared is a best epoch, chosen on the same dev examples that score it."""
        return any(not s.startswith("cross-fitted") for s in self.sources)

    @property
    def verdict(self) -> str:
        """The two-way interval's words ('better', 'worse', 'inconclusive: [lo, hi]'), or why there is none."""
        if self.two_way is None:
            return f"no verdict ({self.why_none or 'needs 3 or more seeds with records in each row: --seeds'})"
        return self.two_way.words()

    def sentence(self) -> str:
        """One line: A vs B, the verdict interval and the last-epoch one, and the verdict."""
        if self.two_way is None:
            o = self.overall
            shown = (
                f"{o['diff']:+.4f} [{o['low']:+.4f}, {o['high']:+.4f}] for these two runs over dev examples"
                if o is not None
                else "no per-example dev predictions"
            )
            return f"{self.a} vs {self.b}, overall: {shown}: {self.verdict}"
        t, last = self.two_way, self.last
        level = f"{t.confidence:.1%}".replace(".0%", "%")
        adjusted = f"; {self.candidates} candidates" if self.candidates > 1 else ""
        seeds = f"{t.seeds} seeds" if isinstance(t.seeds, int) else t.seeds
        text = (
            f"{self.a} vs {self.b}: {t.diff:+.4f} [{t.low:+.4f}, {t.high:+.4f}] cross-fitted "
            f"({level} two-way bootstrap: {seeds} x dev examples{adjusted})"
        )
        if last is not None:
            text += f", last epoch {last.diff:+.4f} [{last.low:+.4f}, {last.high:+.4f}]"
        return f"{text}: {self.verdict.split(':')[0]}" + (f" ({self.note})" if self.note else "")


def compare_pair(
    a: DevPredictions, b: DevPredictions, labels: dict[str, pd.Series], n_resamples: int = N_RESAMPLES
) -> pd.DataFrame:
    """Per task and overall: A's and B's metric, the paired difference and its 95 % interval, and a verdict."""
    samples = aligned(a, b, labels)
    rows = {}
    task_confidence = 1 - (1 - CONFIDENCE) / len(samples)  # Bonferroni over the tasks
    for task, (pa, pb, gold) in samples.items():
        diff, low, high = paired_interval(task, pa, pb, gold, n_resamples, task_confidence)
        metric = METRIC_NAMES[task]
        ma, mb = (task_metrics(task, p, gold)[metric] for p in (pa, pb))
        rows[TASK_LABELS[task]] = {"A": ma, "B": mb, "diff": diff, "low": low, "high": high, "n": len(gold)}
    diff, low, high = overall_interval(samples, n_resamples)
    oa, ob = (overall_score(_merged(task_metrics(t, s[i], s[2]) for t, s in samples.items())) for i in (0, 1))
    n = sum(len(s[2]) for s in samples.values())
    rows["overall"] = {"A": oa, "B": ob, "diff": diff, "low": low, "high": high, "n": n}
    table = pd.DataFrame(rows).T
    table["n"] = table["n"].astype(int)
    table["verdict"] = [verdict(r.low, r.high) for r in table.itertuples()]
    return table


def _merged(dicts) -> dict:
    """One dict from several."""
    out: dict = {}
    for d in dicts:
        out.update(d)
    return out


def row_of(name: str) -> list[str] | None:
    """The seeds of the full-budget study row whose first run (or any run) is ``name``, else None."""
    for runs in full_budget_rows().values():
        if name in runs:
            return runs
    return None


def _row_records(name: str, profile: str) -> list[tuple[int, object]]:
    """A method's runs with records as (seed, records): its study row's seeds, or the run alone (an ensemble is one)."""
    found = []
    for k, n in enumerate(row_of(name) or [name]):
        try:
            res, rec = run_records(run_folder(n, profile))
        except FileNotFoundError:
            continue
        if rec is not None and rec.epochs:
            found.append((run_seed(res, k), rec))
    return found


def _seed_count(name: str, profile: str) -> int:
    """How many seeds a run stands for: 1, or its members for a seed ensemble."""
    try:
        res = run_records(run_folder(name, profile))[0]
    except FileNotFoundError:
        return 0
    return len(res.get("config", {}).get("members", [])) if res.get("config", {}).get("ensemble") else 1


def compare_runs(
    a: str,
    b: str,
    profile: str = "cpu",
    seeds: bool = False,
    honest: bool = True,
    data_dir: DataDir = None,
    n_resamples: int = N_RESAMPLES,
    candidates: int = 1,
) -> Comparison:
    """Compare method A with method B on the same dev examples.

    The table: one seed pair (cross-fitted where both have records), per task at a confidence adjusted for the tasks.
    With ``seeds``: the verdict interval, a two-way bootstrap over the rows' seeds and the dev examples with the
    epoch chosen inside every resample (``intervals.two_way``), adjusted for ``candidates`` rows when A was chosen
    among several; the last-epoch interval beside; the t interval over seeds as a description.
    """
    from mtl_lab.study import intervals

    labels = dev_labels(TASKS, data_dir)
    both = honest and has_records(a, profile) and has_records(b, profile)  # never cross-fitted against best epoch
    try:
        pa, pb = (dev_predictions(n, profile, both, data_dir) for n in (a, b))
    except FileNotFoundError:
        if not seeds:
            raise
        comparison = Comparison(a, b, None, ("results.json", "results.json"))  # seeds' scores only
    else:
        comparison = Comparison(a, b, compare_pair(pa, pb, labels, n_resamples), (pa.source, pb.source))
        if both:  # the pair's overall interval with the epoch choice redone inside each resample
            recs = [run_records(run_folder(n, profile))[1] for n in (a, b)]
            one = intervals.two_way(recs[:1], recs[1:], labels, "crossfit", n_resamples=n_resamples)
            comparison.table.loc["overall", ["diff", "low", "high"]] = [one.diff, one.low, one.high]
            comparison.table.loc["overall", "verdict"] = verdict(one.low, one.high)
    comparison.candidates = candidates
    if not seeds:
        comparison.why_none = "one run each describes those two runs, not the methods: compare their rows with --seeds"
        return comparison
    comparison.seeds, comparison.seed_row = seed_comparison(a, b, profile, honest, labels)
    row_a, row_b = _row_records(a, profile), _row_records(b, profile)
    ensembles = [n for n in (a, b) if _seed_count(n, profile) > 1]
    if len(row_a) > 1 and len(row_b) > 1:  # two rows of seeds: seed k with seed k
        b_by_seed = dict(row_b)
        pairs = [(rec, b_by_seed[seed]) for seed, rec in row_a if seed in b_by_seed]
        rec_a, rec_b = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        rec_a, rec_b = [rec for _, rec in row_a], [rec for _, rec in row_b]
    if max(len(rec_a), len(rec_b)) < 3 or min(len(rec_a), len(rec_b)) < 1:
        comparison.why_none = (
            f"{len(rec_a)} and {len(rec_b)} runs with records: a verdict needs 3 or more seeds on one side at least"
        )
        return comparison
    if any(len(r) == 1 and not ensembles for r in (rec_a, rec_b)):
        comparison.why_none = "one run on one side: a verdict needs 3 or more seeds (or a seed ensemble) on each"
        return comparison
    confidence = intervals.adjusted(CONFIDENCE, candidates)
    for rule in ("crossfit", "last"):
        result = intervals.two_way(rec_a, rec_b, labels, rule, confidence, n_resamples)
        if len(rec_a) != len(rec_b):
            result.seeds = f"{len(rec_a)} x {len(rec_b)} runs (unpaired)"
        setattr(comparison, "two_way" if rule == "crossfit" else "last", result)
    if ensembles:
        comparison.note = f"{' and '.join(ensembles)}: one vote of its seeds, its seed noise left out"
    return comparison


def run_score(name: str, profile: str = "cpu", honest: bool = True, labels: Labels | None = None) -> tuple[float, str]:
    """A run's dev overall score and where it comes from ("cross-fitted" or "best epoch").

    Cross-fitted from its records (``honest``, when it has them), else the best epoch's score its results.json
    records (selected on the same examples).
    """
    res, records = run_records(run_folder(name, profile))
    if honest and records is not None and records.epochs:
        labels = labels or dev_labels(records.tasks)
        return score(crossfit(records, labels)[0], labels)["overall"], "cross-fitted"
    return float(res["best"]["overall"]), "best epoch"


def has_records(name: str, profile: str = "cpu") -> bool:
    """Whether a run (published or yours) has its per-example dev records."""
    try:
        return run_records(run_folder(name, profile))[1] is not None
    except FileNotFoundError:
        return False


def run_seed(res: dict, place: int) -> int:
    """A run's seed: its ``config.train.seed``, else its place in its row (a recipe record has no seed of its own)."""
    return res.get("config", {}).get("train", {}).get("seed", place)


def seed_pairs(row_a: list[str], row_b: list[str], results: dict[str, dict]) -> list[tuple[int, str, str]]:
    """(seed, run of row A, run of row B) for every seed both rows have in ``results``, in row A's order.

    ``results``: run name -> results.json. The one pairing of seeds, for the full-budget table and for
    ``compare --seeds``.
    """
    b_by_seed = {run_seed(results[n], k): n for k, n in enumerate(row_b) if n in results}
    pairs = [(run_seed(results[n], k), n) for k, n in enumerate(row_a) if n in results]
    return [(seed, n, b_by_seed[seed]) for seed, n in pairs if seed in b_by_seed]


def _row_results(names: list[str], profile: str) -> dict[str, dict]:
    """results.json of each named run found (published first, then your own); runs not trained yet are left out."""
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = run_records(run_folder(name, profile))[0]
        except FileNotFoundError:
            continue  # a seed not trained (or published) yet
    return out


def seed_comparison(
    a: str, b: str, profile: str, honest: bool, labels: Labels | None
) -> tuple[pd.DataFrame, dict | None]:
    """Seed k of A's row against seed k of B's (``seed_pairs``), and the t interval over seeds.

    Each pair's overall scores (cross-fitted where both have records, else both best-epoch) and difference.
    """
    rows_a, rows_b = row_of(a) or [a], row_of(b) or [b]
    lines = []
    for seed, na, nb in seed_pairs(rows_a, rows_b, _row_results(rows_a + rows_b, profile)):
        both = honest and has_records(na, profile) and has_records(nb, profile)
        (sa, source), (sb, _) = (run_score(n, profile, both, labels) for n in (na, nb))
        lines.append({"seed": seed, "A run": na, "B run": nb, "A": sa, "B": sb, "diff": sa - sb, "scores": source})
    table = pd.DataFrame(lines)
    if len(table) < 3:
        return table, None
    diff, low, high = seed_interval(table["diff"].tolist())
    return table, {"diff": diff, "low": low, "high": high, "n": len(table)}


def selection_gap(names: list[str], profile: str = "cpu", data_dir: DataDir = None) -> pd.DataFrame:
    """Selection bias, run by run: the best epoch's score on the examples it was chosen on, against the cross-fitted.

    Cross-fitted: each half's epoch chosen on the other half. Runs without records are left out.
    """
    lines = []
    for name in names:
        if not has_records(name, profile):
            continue
        records = run_records(run_folder(name, profile))[1]
        labels = dev_labels(records.tasks, data_dir)
        by_epoch = {e: score(epoch_predictions(records, e), labels)["overall"] for e in records.epochs}
        honest = score(crossfit(records, labels)[0], labels)["overall"]
        best = max(by_epoch.values())
        lines.append(
            {
                "run": name,
                "epochs": len(by_epoch),
                "best epoch": best,
                "cross-fitted": honest,
                "optimism": best - honest,
            }
        )
    return pd.DataFrame(lines)


def selection_crossfit(rows: dict[str, list[str]], profile: str = "cpu", data_dir: DataDir = None) -> pd.DataFrame:
    """Choosing among candidate rows, honestly: chosen on one half of dev, scored on the other.

    On each half the row with the best mean (over its seeds) of best-epoch scores is chosen, and its seeds are
    scored on the other half with the epochs chosen on the first; the naive choice picks and scores on all of
    dev. Rows whose runs lack records are left out.
    """
    candidates = {
        row: [run_records(run_folder(n, profile))[1] for n in names]
        for row, names in rows.items()
        if names and all(has_records(n, profile) for n in names)
    }
    if not candidates:
        return pd.DataFrame()
    labels = dev_labels(TASKS, data_dir)
    per_epoch = {
        row: [{e: epoch_predictions(r, e) for e in r.epochs} for r in recs] for row, recs in candidates.items()
    }

    def on_half(preds: dict[str, pd.Series], h: int | None) -> dict[str, pd.Series]:
        return preds if h is None else {t: p[half_of(p.index) == h] for t, p in preds.items()}

    def best_epoch(by_epoch: dict, h: int | None) -> tuple[int, float]:
        return choose_epoch({e: on_half(p, h) for e, p in by_epoch.items()}, labels)

    lines = []
    for h in (None, 0, 1):  # None: the naive choice on all of dev
        chosen = max(candidates, key=lambda row: np.mean([best_epoch(b, h)[1] for b in per_epoch[row]]))
        report_on = None if h is None else 1 - h
        scores = [score(on_half(b[best_epoch(b, h)[0]], report_on), labels)["overall"] for b in per_epoch[chosen]]
        lines.append(
            {
                "chosen on": "all of dev" if h is None else f"half {h}",
                "scored on": "all of dev" if h is None else f"half {1 - h}",
                "row chosen": chosen,
                "overall (mean over seeds)": float(np.mean(scores)),
            }
        )
    halves = [line["overall (mean over seeds)"] for line in lines[1:]]
    lines.append(
        {
            "chosen on": "each half",
            "scored on": "the other",
            "row chosen": "(as above)",
            "overall (mean over seeds)": float(np.mean(halves)),
        }
    )
    return pd.DataFrame(lines)


def format_comparison(c: Comparison) -> str:
    """The comparison as printed by ``python -m mtl_lab compare``."""
    if c.table is None:
        shown = pd.DataFrame({"": ["no per-example dev predictions of one of the runs: seeds only"]})
        return _format_seeds(c, [f"A = {c.a}, B = {c.b}", shown.to_string(index=False, header=False)])
    shown = c.table.copy()
    tasks = len(shown) - 1  # the rows: each task, then overall
    for col in ("A", "B"):
        shown[col] = shown[col].map("{:.4f}".format)
    for col in ("diff", "low", "high"):
        shown[col] = shown[col].map("{:+.4f}".format)
    lines = [
        f"A = {c.a} ({c.sources[0]}), B = {c.b} ({c.sources[1]})",
        f"one seed pair, paired differences A - B on the same dev examples: per task {1 - (1 - CONFIDENCE) / tasks:.1%} "
        f"bootstrap intervals (adjusted for {tasks} tasks; {N_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}); overall "
        f"{CONFIDENCE:.0%}, the epoch chosen inside each resample where both runs have records:",
        shown.to_string(),
    ]
    return _format_seeds(c, lines)


def _format_seeds(c: Comparison, lines: list[str]) -> str:
    """The seed-by-seed lines and the verdict sentence under a comparison's table."""
    if c.seeds is not None and len(c.seeds):
        seeds = c.seeds[["seed", "A run", "B run", "A", "B", "diff"]].to_string(index=False, float_format="%.4f")
        lines += ["", "seed by seed (overall):", seeds]
        if c.seed_row is not None:
            s = c.seed_row
            lines.append(
                f"t interval over the {s['n']} seeds' differences (training noise only, a description, not the "
                f"verdict): {s['diff']:+.4f} [{s['low']:+.4f}, {s['high']:+.4f}]"
            )
    lines += ["", c.sentence()]
    return "\n".join(lines)
