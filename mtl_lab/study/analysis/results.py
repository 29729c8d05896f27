"""One run or several, as tables and figures: best-epoch dev metrics, learning curves, forgetting, loss curves.

A run is its results dict (``results.json``): its ``best`` epoch's dev metrics, its per-epoch ``history``, its
``config`` and timings.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mtl_lab import data
from mtl_lab.evaluate import overall_score
from mtl_lab.study.analysis.figures import MAX_WIDTH, legend_below, legend_right, panels
from mtl_lab.study.paper import paper_frame

METRIC_COLUMNS = {"sst_acc": "SST", "qqp_acc": "QQP", "sts_pearson": "STS", "overall": "overall"}
METRICS = ("SST", "QQP", "STS", "overall")


def metric_row(best: dict) -> dict[str, float]:
    """A best-epoch record's four dev metrics, by column name (NaN for a task the run did not train)."""
    return {col: float(best.get(key, np.nan)) for key, col in METRIC_COLUMNS.items()}


def timed_quietly(res: dict) -> bool:
    """Whether a run's timings were measured on a quiet machine (a paused or shared run says why in ``timing_note``)."""
    return not res.get("timing_note")


def quiet_minutes(res: dict) -> float:
    """A run's wall time in minutes, or NaN where it was not measured on a quiet machine."""
    return res["wall_time_s"] / 60 if timed_quietly(res) else np.nan


def results_row(res: dict) -> dict:
    """The best-epoch dev metrics, wall time and throughput of one run's results dict."""
    best = res["best"]
    row: dict = metric_row(best)
    if len(res["config"]["train"]["tasks"]) < 3:
        row["overall"] = np.nan  # a score over fewer tasks is not comparable
    row["STS spearman"] = best.get("sts_spearman", np.nan)
    row["best epoch"] = best.get("epoch")
    row["minutes"] = quiet_minutes(res)
    row["examples/s"] = res.get("examples_per_s") if timed_quietly(res) else np.nan
    return row


def results_table(results: dict[str, dict], paper: dict[str, str] | None = None, decimals: int = 3) -> pd.DataFrame:
    """One row per run (best epoch on dev); with ``paper`` (run -> paper row), the paper's numbers beside."""
    table = pd.DataFrame({name: results_row(res) for name, res in results.items()}).T
    if paper:
        ref = paper_frame()
        for col in METRICS:
            table[f"paper {col}"] = [ref.loc[paper[n], col] if n in paper else np.nan for n in table.index]
    numeric = table.drop(columns=["best epoch"]).astype(float)
    table[numeric.columns] = numeric.round(decimals)
    table["minutes"] = numeric["minutes"].round(1)
    table["examples/s"] = numeric["examples/s"].round(0)
    return table


def single_task_ensemble(results: dict[str, dict]) -> dict:
    """A pseudo-run combining the single-task runs ``single-<task>``: each task by its own model."""
    best, wall, epochs = {}, 0.0, []
    for task in data.TASKS:
        res = results[f"single-{task}"]
        best.update({k: v for k, v in res["best"].items() if k.startswith(task)})
        wall += res["wall_time_s"]
        epochs.append(res["best"]["epoch"])
    best["overall"] = overall_score(best)
    best["epoch"] = "/".join(map(str, epochs))
    return {
        "best": best,
        "wall_time_s": wall,
        "examples_per_s": None,
        "config": {"train": {"tasks": list(data.TASKS)}},
        "history": [],
    }


def own_vs_published(published: dict[str, dict], own: dict[str, dict]) -> pd.DataFrame:
    """Your finished runs beside the published runs of the same name: dev overall of each, the difference, times.

    Both arguments map run names to results.json contents (``experiments.finished_results`` with
    ``source="published"`` and ``"own"``); empty when you have trained none of them.
    """
    rows = []
    for name in sorted(own):
        mine, pub = own[name], published.get(name)
        rows.append(
            {
                "run": name,
                "published overall": pub["best"]["overall"] if pub else float("nan"),
                "your overall": mine["best"]["overall"],
                "difference": mine["best"]["overall"] - pub["best"]["overall"] if pub else float("nan"),
                "published minutes": pub["wall_time_s"] / 60 if pub and pub.get("wall_time_s") else float("nan"),
                "your minutes": mine["wall_time_s"] / 60 if mine.get("wall_time_s") else float("nan"),
                "your precision": mine.get("precision", ""),
                "your CPU / device": mine.get("environment", {}).get("cpu") or mine.get("device", ""),
            }
        )
    return pd.DataFrame(rows, columns=None if rows else ["run", "published overall", "your overall", "difference"])


def history_frame(res: dict) -> pd.DataFrame:
    """Per-epoch dev metrics (and stage, for sequential runs) of one run."""
    rows = [
        {
            "epoch": h["epoch"],
            "stage": h["stage"],
            **{METRIC_COLUMNS[k]: h["dev"][k] for k in METRIC_COLUMNS if k in h["dev"]},
        }
        for h in res["history"]
    ]
    return pd.DataFrame(rows).set_index("epoch")


def plot_results(table: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> plt.Figure:
    """Grouped bars of a results table (runs x metrics), the paper's values as black ticks, the legend at the right."""
    present = [m for m in metrics if m in table and table[m].notna().any()]
    long = table[present].reset_index(names="run").melt(id_vars="run", var_name="metric", value_name="dev")
    width = min(MAX_WIDTH - 0.5, 4.5 + 0.3 * len(present) * len(table))  # the legend's room included
    fig, ax = plt.subplots(figsize=(width, 3.4))
    sns.barplot(long, x="metric", y="dev", hue="run", ax=ax)
    for i, m in enumerate(present):
        col = f"paper {m}"
        if col in table and table[col].notna().any():
            ax.scatter([i] * table[col].notna().sum(), table[col].dropna(), marker="_", s=400, color="k", zorder=3)
    ax.set_ylim(max(0.0, float(long["dev"].min()) - 0.1), 1.0)
    legend_right(ax)
    ax.set_title("dev results (black ticks: the paper)" if any(c.startswith("paper") for c in table) else "dev results")
    fig.tight_layout()
    return fig


def plot_learning_curves(results: dict[str, dict], metrics: tuple[str, ...] = METRICS) -> plt.Figure:
    """Dev metric per epoch for each run, one panel per metric, the legend under the panels."""
    fig, axes = panels(len(metrics), 2.8, 3.0)
    epochs = max((len(r["history"]) for r in results.values()), default=1)
    colors = {name: f"C{k % 10}" for k, name in enumerate(results)}  # a run keeps its colour in every panel
    for ax, metric in zip(axes, metrics):
        for name, res in results.items():
            h = history_frame(res)
            if metric in h:
                ax.plot(h.index, h[metric], marker="o", color=colors[name], label=name)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, epochs + 0.5)  # one epoch: a point in a sensible frame, not an axis from 0.96 to 1.04
        ax.set_xticks(range(1, epochs + 1))
    legend_below(fig, axes[0])
    return fig


def plot_forgetting(res: dict) -> plt.Figure:
    """Dev metrics of a sequential run after each epoch, with the stage (task trained) shaded."""
    h = history_frame(res)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for metric in ("SST", "QQP", "STS"):
        if metric in h:
            ax.plot(h.index, h[metric], marker="o", label=metric)
    for i, (stage, grp) in enumerate(h.groupby("stage", sort=False)):
        ax.axvspan(grp.index.min() - 0.5, grp.index.max() + 0.5, alpha=0.08 * (i + 1), color="gray")
        ax.text(grp.index.min() - 0.4, ax.get_ylim()[0] + 0.02, f"training {stage}", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev")
    legend_right(ax)
    fig.tight_layout()
    return fig


def plot_loss_curves(runs: dict[str, dict], title: str = "training loss (sum over tasks)") -> plt.Figure:
    """Training-loss curves of several runs on one axis (each run's per-epoch ``loss_curve`` blocks, joined)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for label, res in runs.items():
        curve = []
        for h in res["history"]:
            parts = h.get("loss_curve") or {t: [v] for t, v in h["train_loss"].items()}
            n = min(len(v) for v in parts.values())
            curve += [sum(v[i] for v in parts.values()) for i in range(n)]
        x = np.linspace(0, len(res["history"]), len(curve) + 1)[1:]
        ax.plot(x, curve, marker="o" if len(curve) < 4 else None, label=label)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    legend_right(ax)
    fig.tight_layout()
    return fig
