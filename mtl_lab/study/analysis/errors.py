"""Error analysis (notebook 06): a run's dev predictions beside the gold labels, confusion matrices, the worst
errors, and how WordPiece cut the sentences a model missed."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mtl_lab import data
from mtl_lab.evaluate import prediction_path, read_predictions
from mtl_lab.study.analysis.datasets import DataDir, load_quietly
from mtl_lab.study.analysis.figures import panels

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SST_CLASSES = ["negative", "somewhat neg.", "neutral", "somewhat pos.", "positive"]
QQP_CLASSES = ["not paraphrase", "paraphrase"]
Predictions = dict[str, pd.DataFrame]  # task -> the dev examples with their ``gold`` and ``pred`` columns


def dev_predictions(pred_dir: str | os.PathLike, data_dir: DataDir = None, limit: int | None = None) -> Predictions:
    """A run's dev prediction files (as ``predict`` writes them) joined with the dev data: texts, ``gold``, ``pred``.

    ``limit``: the files cover only that many dev examples a task (the subset a profile's ``dev_limit`` scores).
    """
    out = {}
    for task in data.TASKS:
        path = prediction_path(pred_dir, task, "dev")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no dev predictions (run `python -m mtl_lab predict ... --splits dev`)")
        preds = read_predictions(pred_dir, task).rename_axis("id").reset_index()
        dev = data.subsample(load_quietly(task, "dev", data_dir), limit, 0).rename(columns={"label": "gold"})
        dev["id"] = dev["id"].str.replace(" ", "")
        merged = dev.merge(preds, on="id", how="inner", validate="one_to_one")
        if len(merged) != len(dev):
            raise ValueError(f"{path}: {len(dev) - len(merged)} dev examples have no prediction")
        out[task] = merged
    return out


def run_dev_predictions(
    run_folder: str | os.PathLike, data_dir: DataDir = None, limit: int | None = None
) -> Predictions:
    """dev_predictions of a run folder's ``predictions/``, first written from its ``best.pt`` if missing.

    With ``limit`` (e.g. the smoke profile's 100), only that many dev examples a task, in ``predictions-dev<limit>/``.
    """
    from mtl_lab.evaluate import predict_files

    folder = Path(run_folder) / ("predictions" if limit is None else f"predictions-dev{limit}")
    if not (folder / f"{data.TASKS['sst'].pred_file}-dev-output.csv").is_file():
        predict_files(Path(run_folder) / "best.pt", folder, data_dir=data_dir, splits=("dev",), limit=limit)
    return dev_predictions(folder, data_dir, limit)


def _classes(task: str) -> list[str]:
    """The class names of a classification task, in label order."""
    return SST_CLASSES if task == "sst" else QQP_CLASSES


def _gold_pred(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """A classification task's gold and predicted labels as integers."""
    return df["gold"].astype(int), df["pred"].astype(int)


def plot_confusion_matrices(runs: dict[str, Predictions], task: str) -> plt.Figure:
    """Row-normalised confusion matrices of one classification task, one panel per run (side by side)."""
    from sklearn.metrics import confusion_matrix

    classes = _classes(task)
    fig, axes = panels(len(runs), 0.8 * len(classes) + 1.4, 0.8 * len(classes) + 1.6)
    for ax, (label, preds) in zip(axes, runs.items()):
        gold, pred = _gold_pred(preds[task])
        cm = confusion_matrix(gold, pred, labels=range(len(classes)), normalize="true")
        sns.heatmap(cm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    xticklabels=classes, yticklabels=classes)  # fmt: skip
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{label}: {task.upper()} accuracy {float((gold == pred).mean()):.3f}", fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
        ax.tick_params(axis="y", rotation=0, labelsize=7)
    fig.tight_layout()
    return fig


def per_class_accuracy(runs: dict[str, Predictions], task: str) -> pd.DataFrame:
    """Accuracy within each gold class (recall) of a classification task, one column per run."""
    classes = _classes(task)
    table = {}
    for label, preds in runs.items():
        gold, pred = _gold_pred(preds[task])
        table[label] = (gold == pred).groupby(gold).mean().reindex(range(len(classes)))
    table = pd.DataFrame(table)
    table.index = [f"{i} {c}" for i, c in enumerate(classes)]
    gold = _gold_pred(next(iter(runs.values()))[task])[0]
    table["examples"] = gold.value_counts().reindex(range(len(classes))).to_numpy()
    return table


def plot_sts_scatter(runs: dict[str, Predictions]) -> plt.Figure:
    """Predicted vs gold STS scores, one panel per run, with the Pearson r and the diagonal."""
    from scipy.stats import pearsonr

    fig, axes = panels(len(runs), 4.0, 3.8)
    for ax, (label, preds) in zip(axes, runs.items()):
        df = preds["sts"]
        r = pearsonr(df["gold"], df["pred"]).statistic
        ax.scatter(df["gold"], df["pred"], s=6, alpha=0.5)
        ax.plot([0, 5], [0, 5], color="k", lw=0.8, ls="--")
        ax.set_xlim(-0.2, 5.2)
        ax.set_ylim(-0.2, 5.2)
        ax.set_xlabel("gold similarity")
        ax.set_ylabel("predicted")
        ax.set_title(f"{label}: STS Pearson r {r:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def worst_errors(preds: Predictions, task: str, n: int = 5) -> dict[str, pd.DataFrame]:
    """The largest over- and under-estimations of a task (the paper's appendix tables).

    SST / STS: sorted by predicted - gold (ties: by id); QQP: false paraphrases and missed ones.
    """
    df = preds[task].copy()
    df["error"] = df["pred"].astype(float) - df["gold"].astype(float)
    texts = [c for c in ("sentence", "sentence1", "sentence2") if c in df]
    cols = [*texts, "gold", "pred", "error"]
    over = df[df["error"] > 0].sort_values(["error", "id"], ascending=[False, True]).head(n)
    under = df[df["error"] < 0].sort_values(["error", "id"], ascending=[True, True]).head(n)
    return {"over-estimated": over[cols].reset_index(drop=True), "under-estimated": under[cols].reset_index(drop=True)}


def misclassified_wordpieces(preds: Predictions, tokenizer: PreTrainedTokenizerBase, n: int = 6) -> pd.DataFrame:
    """WordPiece tokens of the SST sentences missed by the most classes (where "n't" or rare words split)."""
    gold, pred = _gold_pred(preds["sst"])
    df = preds["sst"].assign(miss=(pred - gold).abs())
    worst = df[df["miss"] > 0].sort_values(["miss", "id"], ascending=[False, True]).head(n)
    return pd.DataFrame(
        {
            "sentence": worst["sentence"].to_numpy(),
            "gold": worst["gold"].astype(int).to_numpy(),
            "pred": worst["pred"].astype(int).to_numpy(),
            "wordpieces": [" ".join(tokenizer.tokenize(s)) for s in worst["sentence"]],
        }
    )


def format_wordpieces(table: pd.DataFrame, width: int = 100) -> str:
    """The wordpiece table as text blocks (gold, pred, sentence, its wordpieces), wrapped between words, never cut."""

    def wrap(text: str, first: str) -> str:
        return textwrap.fill(text, width, initial_indent=first, subsequent_indent=" " * len(first),
                             break_long_words=False, break_on_hyphens=False)  # fmt: skip

    blocks = []
    for row in table.itertuples(index=False):
        label = f"gold {SST_CLASSES[row.gold]} ({row.gold}), predicted {SST_CLASSES[row.pred]} ({row.pred})"
        blocks.append("\n".join([label, wrap(row.sentence, "  sentence:   "), wrap(row.wordpieces, "  wordpieces: ")]))
    return "\n\n".join(blocks)
