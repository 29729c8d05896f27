"""Notebook 05's ablation grid as the paper's Table 2: a row per (sentence model, strategy), the paper beside."""

from __future__ import annotations

import hashlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from mtl_lab.study.analysis.figures import MAX_WIDTH, legend_below
from mtl_lab.study.analysis.results import METRICS, results_row
from mtl_lab.study.analysis.seeds import split_seed
from mtl_lab.study.paper import PAPER_MODELS, paper_frame, paper_rows


def ablation_table(results: dict[str, dict], grid: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The grid as the paper's Table 2: one row per (model, strategy), mean over its seeds, the paper beside.

    ``grid`` maps a sentence model (``cls``/``sbert``) to its rows, strategy label -> run name
    (``experiments.ablation_grid``); runs ``<name>-s<k>`` are further seeds of a row.
    """
    rows = []
    ref = paper_frame()
    for model, strategies in grid.items():
        paper = paper_rows(model, list(strategies))
        for label, name in strategies.items():
            runs = [r for n, r in results.items() if split_seed(n)[0] == name]
            if not runs:
                continue
            values = pd.DataFrame([results_row(r) for r in runs])
            row = {"model": PAPER_MODELS[model], "strategy": label, "run": name, "seeds": len(runs)}
            row.update({col: values[col].mean() for col in METRICS})
            row["overall std"] = values["overall"].std() if len(runs) > 1 else np.nan
            row["minutes"] = values["minutes"].mean()
            row.update({f"paper {col}": ref.loc[paper[label], col] if label in paper else np.nan for col in METRICS})
            rows.append(row)
    columns = ["model", "strategy", "run", "seeds", *METRICS, "overall std", "minutes"]
    columns += [f"paper {c}" for c in METRICS]
    return pd.DataFrame(rows, columns=columns).set_index(["model", "strategy"])


def seed_check(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of an ablation table that ran over several seeds, best first, with each row's gap to the best."""
    part = table[table["seeds"] > 1][["run", "seeds", *METRICS, "overall std"]]
    part = part.sort_values("overall", ascending=False)
    return part.assign(**{"gap to best": part["overall"] - part["overall"].max()})


def style_ablation(table: pd.DataFrame) -> Styler:
    """The ablation table with the best value of each metric column in bold (a pandas Styler)."""
    # element ids from the table's content, not pandas' random uuid: the same table renders the same HTML (no
    # churn in committed notebooks), two different tables on one page keep apart
    uuid = hashlib.sha1(table.to_csv().encode()).hexdigest()[:8]
    return (
        table.style.set_uuid(uuid)
        .format(precision=3, na_rep="")
        .format({"minutes": "{:.1f}"})
        .highlight_max(subset=list(METRICS), props="font-weight: bold; background-color: #d8f0d8")
    )


def plot_ablation(table: pd.DataFrame) -> plt.Figure:
    """Overall dev score of every strategy, one panel per model; the paper's overall as a black tick."""
    models = list(dict.fromkeys(table.index.get_level_values("model")))
    height = 0.35 * len(table) / len(models) + 1.8
    fig, axes = plt.subplots(
        1, len(models), figsize=(min(5.5, MAX_WIDTH / len(models)) * len(models), height), squeeze=False
    )
    paper_max = float(np.nanmax(table["paper overall"].to_numpy(float), initial=0))
    xlim = (float(table["overall"].min()) - 0.02, max(float(table["overall"].max()), paper_max) + 0.01)
    for ax, model in zip(axes[0], models):
        part = table.loc[model]
        y = np.arange(len(part))[::-1]
        best = part["overall"].idxmax()
        colors = ["tab:green" if s == best else "tab:blue" for s in part.index]
        ax.barh(y, part["overall"], xerr=part["overall std"].fillna(0), color=colors)
        ax.scatter(part["paper overall"], y, marker="|", s=200, color="k", label="paper (BERT-base, GPU)", zorder=3)
        ax.set_yticks(y, part.index, fontsize=8)
        ax.set_xlim(*xlim)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("dev overall")
    legend_below(fig, axes[0][0])
    return fig
