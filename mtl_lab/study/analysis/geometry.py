"""Sentence-embedding geometry (notebook 03): alignment and uniformity before / after contrastive pre-training,
PCA maps of the STS-dev embeddings, and SimCSE's in-batch logits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from mtl_lab.study.analysis.figures import MAX_WIDTH, legend_right, panels

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from mtl_lab.data import EncodedTask

GEOMETRY_COLUMNS = {"sts_cos_spearman": "STS cos Spearman", "alignment": "alignment", "uniformity": "uniformity"}


def geometry_table(results: dict[str, dict]) -> pd.DataFrame:
    """Before / after of each pre-training run: STS-dev cosine Spearman, alignment and uniformity."""
    rows = {}
    for name, res in results.items():
        for when, metrics in (("before", res.get("initial")), ("after", res["best"])):
            if metrics:
                rows[(name, when)] = {col: metrics[key] for key, col in GEOMETRY_COLUMNS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["run", "when"])
    return table


def plot_alignment_uniformity(table: pd.DataFrame) -> plt.Figure:
    """Wang & Isola's plane: each pre-training run as an arrow from before to after (lower-left = better)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for i, run in enumerate(dict.fromkeys(table.index.get_level_values("run"))):
        part = table.loc[run]
        color = sns.color_palette()[i % 10]
        if "before" in part.index and "after" in part.index:
            (x0, y0), (x1, y1) = (part.loc[w, ["uniformity", "alignment"]] for w in ("before", "after"))
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": color})
            ax.scatter([x0], [y0], color=color, marker="o", facecolors="none")
        after = part.loc["after"] if "after" in part.index else part.iloc[-1]
        ax.scatter([after["uniformity"]], [after["alignment"]], color=color, label=run)
    ax.set_xlabel("uniformity (lower = more spread out)")
    ax.set_ylabel("alignment (lower = positives closer)")
    ax.set_title("STS dev embeddings, before (o) -> after pre-training", fontsize=9)
    legend_right(ax)
    fig.tight_layout()
    return fig


def embedding_maps(models: dict[str, torch.nn.Module], sts_dev: EncodedTask, max_pairs: int = 400) -> plt.Figure:
    """2-D PCA of each model's STS-dev sentence embeddings (unit-normalised), one panel per model, three a row.

    Dots are sentences, coloured by the gold similarity of their pair; a red segment joins the two
    sentences of each pair scored above 4 (short = aligned). The title gives the mean pairwise
    cosine of all the sentences: near 1 is a narrow cone, near 0 is spread over the sphere (the
    "uniformity" SimCSE is after).
    """
    from matplotlib.collections import LineCollection
    from sklearn.decomposition import PCA

    from mtl_lab.training.simcse import STS_POSITIVE_ABOVE, pair_embeddings

    n = min(max_pairs, len(sts_dev))
    gold = np.asarray(sts_dev.labels, dtype=float)[:n]
    positive = gold > STS_POSITIVE_ABOVE
    fig, axes = panels(len(models), 3.4, 3.4, room=1.0)
    for ax, (label, model) in zip(axes, models.items()):
        u, v = pair_embeddings(model, sts_dev)
        x = torch.nn.functional.normalize(torch.cat([u[:n], v[:n]]), dim=-1)
        mean_cos = float((x @ x.T).sum() - 2 * n) / (2 * n * (2 * n - 1))
        xy = PCA(n_components=2, random_state=0).fit_transform(x.numpy())
        points = ax.scatter(xy[:, 0], xy[:, 1], s=6, c=np.concatenate([gold, gold]), cmap="viridis", vmin=0, vmax=5)
        segments = np.stack([xy[:n][positive], xy[n:][positive]], axis=1)
        ax.add_collection(LineCollection(segments, colors="tab:red", linewidths=0.8))
        ax.set_title(f"{label}\nmean pairwise cos {mean_cos:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.colorbar(points, ax=axes, label="gold similarity of the pair", shrink=0.85, pad=0.01)
    return fig


@torch.no_grad()
def in_batch_similarities(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pairs: pd.DataFrame, temperature: float = 0.05
) -> pd.DataFrame:
    """The SimCSE logit matrix of a small batch: cos(anchor_i, positive_j) / temperature (eval mode).

    Row i's target is column i (its positive); every other column is an in-batch negative.
    """
    model.eval()
    emb = []
    for column in ("anchor", "positive"):
        enc = tokenizer(pairs[column].tolist(), padding=True, truncation=True, return_tensors="pt")
        emb.append(torch.nn.functional.normalize(model.embed(enc["input_ids"], enc["attention_mask"]), dim=-1))

    def short(s: str) -> str:
        return s if len(s) <= 32 else s[:30] + "…"

    return pd.DataFrame(
        (emb[0] @ emb[1].T / temperature).numpy(),
        index=[short(s) for s in pairs["anchor"]],
        columns=[short(s) for s in pairs["positive"]],
    )


def plot_in_batch_similarities(logits: pd.DataFrame) -> plt.Figure:
    """Heat map of a SimCSE logit matrix with the positives (diagonal) boxed, and each row's softmax target."""
    n = len(logits)
    cell = min(1.1, (MAX_WIDTH - 4.5) / max(1, n))  # the row labels and the colour bar take about 4.5 inches
    fig, ax = plt.subplots(figsize=(cell * n + 3, 0.6 * n + 1.5))
    sns.heatmap(logits, annot=True, fmt=".0f", cmap="rocket_r", cbar_kws={"label": "cos / τ"}, ax=ax)
    for i in range(n):
        ax.add_patch(plt.Rectangle((i, i), 1, 1, fill=False, edgecolor="tab:green", lw=2.5))
    ax.set_xlabel("positives of the batch (column j)")
    ax.set_ylabel("anchors (row i)")
    ax.set_title(
        "row i: softmax over the row, target = the boxed positive; the rest are in-batch negatives", fontsize=9
    )
    fig.tight_layout()
    return fig
