"""Runs over several seeds: a family's mean and spread, the full-budget study's rows, paired differences.

Further seeds of a run are named ``<run>-s<k>``; the full-budget study (``full_budget.full_budget_rows``) lists
each row's seeds, and pairs seed k of a row with seed k of the baseline's (``compare.seed_pairs``).
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mtl_lab.study.analysis.figures import legend_right, panels
from mtl_lab.study.analysis.results import METRIC_COLUMNS, METRICS, metric_row, quiet_minutes
from mtl_lab.study.compare import Comparison, seed_interval, seed_pairs

# what ``environment.dropout`` of a run trained with the 16-bit masks says (the module's name then and now)
LAB_DROPOUT = ("mtl_lab.models.fast.dropout", "mtl_lab.dropout")


def split_seed(name: str) -> tuple[str, int | None]:
    """A run name and its seed suffix: ``agg-cls-sum-s2`` -> (``agg-cls-sum``, 2), ``agg-cls-sum`` -> (itself, None)."""
    match = re.fullmatch(r"(.+)-s(\d+)", name)
    return (match[1], int(match[2])) if match else (name, None)


def seed_summary(results: dict[str, dict]) -> pd.DataFrame:
    """Mean, std and count over seeds of each run family (names ``<family>-s<seed>``), per task metric.

    Single-task runs report their own task's metric (SST/QQP accuracy, STS Pearson r).
    """
    rows = []
    for name, res in results.items():
        family, seed = split_seed(name)
        tasks = res["config"]["train"]["tasks"]
        for key, col in METRIC_COLUMNS.items():
            if key == "overall" or key.split("_")[0] not in tasks:
                continue
            rows.append({"run": family, "task": col, "seed": seed, "dev": res["best"][key]})
    long = pd.DataFrame(rows, columns=["run", "task", "seed", "dev"])
    table = long.groupby(["task", "run"], sort=False)["dev"].agg(["mean", "std", "count"])
    table.attrs["long"] = long
    return table


def plot_seed_summary(summary: pd.DataFrame) -> plt.Figure:
    """One panel per task: mean dev metric of each variant (bar), its std (error bar) and every seed (dots)."""
    long = summary.attrs.get("long")
    tasks = list(dict.fromkeys(summary.index.get_level_values("task")))
    fig, axes = panels(len(tasks), 3.6, 3.2)
    for ax, task in zip(axes, tasks):
        part = summary.loc[task]
        x = np.arange(len(part))
        std = part["std"].fillna(0)
        ax.bar(x, part["mean"], yerr=std, capsize=4, color=sns.color_palette()[: len(part)])
        if long is not None:
            for i, run in enumerate(part.index):
                pts = long[(long.task == task) & (long.run == run)]["dev"]
                ax.scatter(np.full(len(pts), i), pts, color="k", s=12, zorder=3)
        ax.set_xticks(x, [r.split("-", 2)[-1] for r in part.index], rotation=20)
        low, high = float((part["mean"] - std).min()), float((part["mean"] + std).max())
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.03))
        ax.set_title(f"{task} (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def full_budget_table(
    results: dict[str, dict], rows: dict[str, list[str]], baseline_row: str | None = None
) -> pd.DataFrame:
    """The full-budget study, a row per study row: its finished seeds' metrics, paired against the baseline's.

    Per row: the finished seeds' mean ± std of each metric, the per-seed paired difference of the overall
    score against the baseline row's run of the same seed, minutes (mean over the runs timed on a quiet
    machine: a run with a ``timing_note`` is left out), CPU and dropout masks.

    A run's seed is its ``config.train.seed`` (else its place in the row): a row of other seeds than the
    baseline's has no paired difference."""
    baseline_row = baseline_row or next(iter(rows))
    out = []
    for label, names in rows.items():
        done = [results[n] for n in names if n in results]
        if not done:
            out.append({"row": label, "seeds": 0})
            continue
        minutes = [quiet_minutes(r) for r in done]
        m = pd.DataFrame([metric_row(r["best"]) for r in done]).assign(minutes=minutes)
        pairs = seed_pairs(names, rows[baseline_row], results) if label != baseline_row else []
        paired = [results[a]["best"]["overall"] - results[b]["best"]["overall"] for _, a, b in pairs]
        cpus = sorted({r.get("environment", {}).get("cpu", "?") for r in done})
        out.append(
            {
                "row": label,
                "seeds": len(done),
                **{c: float(m[c].mean()) for c in METRICS},
                "overall std": float(m["overall"].std(ddof=1)) if len(done) > 1 else np.nan,
                # the mean paired difference, with a t interval (descriptive) from 3 seeds on
                **_paired_columns(paired),
                "minutes": float(m["minutes"].mean()),
                "CPU": ", ".join(c for c in cpus if c != "?") or "not recorded",
                "dropout": ", ".join(sorted({_dropout_of(r, results) for r in done})),
            }
        )
    return pd.DataFrame(out).set_index("row")


def _paired_columns(paired: list[float]) -> dict:
    """The mean paired difference and its 95 % t interval over seeds: a description of training noise only (the
    verdict is the two-way interval of ``compare``), and blank with fewer than 3 seeds."""
    if len(paired) < 3:
        return {"paired diff vs baseline": np.mean(paired) if paired else np.nan, "t interval (seeds, descriptive)": ""}
    mean, low, high = seed_interval(paired)
    return {"paired diff vs baseline": mean, "t interval (seeds, descriptive)": f"[{low:+.3f}, {high:+.3f}]"}


def _dropout_of(run: dict, results: dict[str, dict]) -> str:
    """Which dropout masks a run trained with: ``torch`` (PyTorch's) or ``16-bit`` (``mtl_lab.models.fast.dropout``)."""
    members = run.get("config", {}).get("members")
    if members:  # an ensemble record: what its members trained with (those in ``results``)
        return ", ".join(sorted({_dropout_of(results[m], results) for m in members if m in results})) or "?"
    return "16-bit" if run.get("environment", {}).get("dropout") in LAB_DROPOUT else "torch"


def plot_full_budget(results: dict[str, dict], rows: dict[str, list[str]], ax: plt.Axes | None = None) -> plt.Figure:
    """Each full-budget row's seeds as dots (dev overall) and their mean as a bar; the baseline's seed range shaded."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 0.7 + 0.6 * len(rows)))
    labels = list(rows)
    base = [results[n]["best"]["overall"] for n in rows[labels[0]] if n in results]
    if base:
        ax.axvspan(min(base), max(base), color="tab:blue", alpha=0.12, label="baseline's\nseed range")
    for y, label in enumerate(labels):
        scores = [results[n]["best"]["overall"] for n in rows[label] if n in results]
        if scores:
            ax.barh(y, np.mean(scores), color="lightgray", height=0.6)
            ax.plot(scores, [y] * len(scores), "o", color="black", ms=5)
        else:
            ax.text(0.705, y, "not trained yet", va="center", fontsize=8, color="gray")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first row on top, every row whole
    ax.set_xlim(0.70, 0.78)
    ax.set_xlabel("dev overall (dots: seeds, bar: mean)")
    legend_right(ax)
    return ax.figure


def plot_paired_differences(comparisons: list[Comparison]) -> plt.Figure:
    """Each comparison's overall difference: the verdict interval (thick), the last-epoch one (thin), the seeds (dots).

    The verdict interval is the two-way bootstrap over seeds and dev examples with the epoch chosen inside every
    resample; 0 is marked, so an interval that holds it reads at a glance.
    """
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.8 * max(1, len(comparisons))))
    for y, c in enumerate(comparisons):
        first = y == 0
        if c.two_way is not None:
            t = c.two_way
            ax.plot([t.low, t.high], [y - 0.12] * 2, color="tab:orange", lw=5, alpha=0.7,
                    label="cross-fitted: seeds x examples" if first else None)  # fmt: skip
            ax.plot([t.diff], [y - 0.12], "|", color="black", ms=12)
        if c.last is not None:
            ax.plot([c.last.low, c.last.high], [y + 0.12] * 2, color="tab:blue", lw=1.5,
                    label="last epoch: seeds x examples" if first else None)  # fmt: skip
        if c.seeds is not None and len(c.seeds):
            ax.plot(c.seeds["diff"], [y - 0.12] * len(c.seeds), "o", color="black", ms=4,
                    label="a seed pair" if first else None)  # fmt: skip
    ax.axvline(0, color="gray", lw=1, ls="--")
    ax.set_yticks(range(len(comparisons)), [f"{c.a}\nvs {c.b}" for c in comparisons], fontsize=9)
    ax.set_ylim(len(comparisons) - 0.5, -0.5)
    ax.set_xlabel("difference in dev overall (A - B), 95% intervals")
    legend_right(ax)
    fig.tight_layout()
    return fig
