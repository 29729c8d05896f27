"""The three tasks' data before any training (notebook 00): skipped rows, label distributions, token lengths."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mtl_lab import data
from mtl_lab.study.analysis.figures import MAX_WIDTH

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TASK_LABELS = {"sst": "SST-5 (acc)", "qqp": "Quora (acc)", "sts": "STS-B (Pearson r)"}
DataDir = str | os.PathLike | None


def load_quietly(task: str, split: str, data_dir: DataDir = None) -> pd.DataFrame:
    """load_split without the malformed-row warning (notebooks show the counts as a table)."""
    return data.load_split(task, split, data_dir, warn=False)


def malformed_rows(data_dir: DataDir = None) -> pd.DataFrame:
    """Every skipped row of the train/dev files: file, line, reason and the raw text."""
    rows = []
    folder = data.resolve_data_dir(data_dir)
    for task in data.TASKS:
        for split in ("train", "dev"):
            df = load_quietly(task, split, data_dir)
            if not df.attrs["skipped_lines"]:
                continue
            lines = (folder / data.task_file(task, split)).read_text(encoding="utf-8").splitlines()
            for line, reason in df.attrs["skipped_lines"]:
                raw = lines[line - 1].replace("\t", " <TAB> ")
                rows.append(
                    {"file": data.task_file(task, split), "line": line, "reason": reason, "raw text": raw[:120]}
                )
    return pd.DataFrame(rows, columns=["file", "line", "reason", "raw text"])


def plot_label_distributions(data_dir: DataDir = None) -> plt.Figure:
    """Label distributions of the train and dev splits of the three tasks (one legend, right of the last panel)."""
    fig, axes = plt.subplots(1, 3, figsize=(MAX_WIDTH, 3.2))
    for ax, task in zip(axes, data.TASKS):
        frames = [load_quietly(task, s, data_dir).assign(split=s) for s in ("train", "dev")]
        df = pd.concat(frames, ignore_index=True)
        if data.TASKS[task].kind == "regression":
            sns.histplot(df, x="label", hue="split", hue_order=["train", "dev"], stat="density", common_norm=False,
                         bins=20, ax=ax, element="step")  # fmt: skip
        else:
            counts = df.groupby("split")["label"].value_counts(normalize=True).rename("share").reset_index()
            sns.barplot(counts, x="label", y="share", hue="split", hue_order=["train", "dev"], ax=ax)
        ax.set_title(TASK_LABELS[task].split(" (")[0])
    for ax in axes[:-1]:
        ax.get_legend().remove()
    sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=None)
    fig.tight_layout()
    return fig


def token_lengths(tokenizer: PreTrainedTokenizerBase, data_dir: DataDir = None, split: str = "train") -> pd.DataFrame:
    """Joint token length (with special tokens) of every example of a split of each task."""
    frames = []
    for task in data.TASKS:
        enc = data.encode(load_quietly(task, split, data_dir), task, tokenizer, max_length=10_000)
        frames.append(pd.DataFrame({"task": task, "tokens": enc.lengths}))
    return pd.concat(frames, ignore_index=True)


def length_percentiles(lengths: pd.DataFrame) -> pd.DataFrame:
    """Median, 90th, 99th percentile and maximum token length per task, and the share over 128."""
    g = lengths.groupby("task", sort=False)["tokens"]
    return pd.DataFrame(
        {
            "median": g.median().astype(int),
            "p90": g.quantile(0.9).astype(int),
            "p99": g.quantile(0.99).astype(int),
            "max": g.max(),
            "% over 128": (g.apply(lambda s: (s > 128).mean() * 100)).round(2),
        }
    )


def plot_token_lengths(lengths: pd.DataFrame) -> plt.Figure:
    """Histogram of token lengths per task, with the 128-token cut marked."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    sns.histplot(lengths, x="tokens", hue="task", bins=60, element="step", stat="density", common_norm=False, ax=ax)
    ax.axvline(128, color="k", ls="--", lw=1)
    ax.text(130, ax.get_ylim()[1] * 0.9, "max_length 128", fontsize=8)
    ax.set_xlim(0, min(200, lengths["tokens"].max() + 5))
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def tokenization_table(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> pd.DataFrame:
    """WordPiece tokens of each text (how the model actually sees it)."""
    return pd.DataFrame({"text": texts, "wordpieces": [" ".join(tokenizer.tokenize(t)) for t in texts]})
