"""Tables and figures for the notebooks: data statistics, results tables, learning curves.

Everything here reads data files or results dicts (``results.json``) and returns a pandas
DataFrame or a matplotlib Figure; nothing trains.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from mtl_lab import data
from mtl_lab.evaluate import prediction_path, read_predictions
from mtl_lab.study.paper import paper_frame

TASK_LABELS = {"sst": "SST-5 (acc)", "qqp": "Quora (acc)", "sts": "STS-B (Pearson r)"}
METRIC_COLUMNS = {"sst_acc": "SST", "qqp_acc": "QQP", "sts_pearson": "STS", "overall": "overall"}


def savefig(fig: plt.Figure, out_dir: str | os.PathLike | None, name: str) -> Path | None:
    """Save a figure as ``<out_dir>/figures/<name>.png`` (nothing when out_dir is None)."""
    if out_dir is None:
        return None
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# ----------------------------------------------------------------------------- data


def load_quietly(task: str, split: str, data_dir=None) -> pd.DataFrame:
    """load_split without the malformed-row warning (notebooks show the counts as a table)."""
    return data.load_split(task, split, data_dir, warn=False)


def malformed_rows(data_dir=None) -> pd.DataFrame:
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


def plot_label_distributions(data_dir=None) -> plt.Figure:
    """Label distributions of the train and dev splits of the three tasks."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, task in zip(axes, data.TASKS):
        frames = [load_quietly(task, s, data_dir).assign(split=s) for s in ("train", "dev")]
        df = pd.concat(frames, ignore_index=True)
        if data.TASKS[task].kind == "regression":
            sns.histplot(
                df,
                x="label",
                hue="split",
                hue_order=["train", "dev"],
                stat="density",
                common_norm=False,
                bins=20,
                ax=ax,
                element="step",
            )
        else:
            counts = df.groupby("split")["label"].value_counts(normalize=True).rename("share").reset_index()
            sns.barplot(counts, x="label", y="share", hue="split", hue_order=["train", "dev"], ax=ax)
        ax.set_title(TASK_LABELS[task].split(" (")[0])
    fig.tight_layout()
    return fig


def token_lengths(tokenizer, data_dir=None, split: str = "train") -> pd.DataFrame:
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
    return fig


def tokenization_table(tokenizer, texts: list[str]) -> pd.DataFrame:
    """WordPiece tokens of each text (how the model actually sees it)."""
    return pd.DataFrame({"text": texts, "wordpieces": [" ".join(tokenizer.tokenize(t)) for t in texts]})


# ----------------------------------------------------------------------------- results


def results_row(res: dict) -> dict:
    """The best-epoch dev metrics, wall time and throughput of one run's results dict."""
    best = res["best"]
    row = {col: best.get(key, np.nan) for key, col in METRIC_COLUMNS.items()}
    if len(res["config"]["train"]["tasks"]) < 3:
        row["overall"] = np.nan  # a score over fewer tasks is not comparable
    row["STS spearman"] = best.get("sts_spearman", np.nan)
    row["best epoch"] = best.get("epoch")
    row["minutes"] = res["wall_time_s"] / 60
    row["examples/s"] = res.get("examples_per_s")
    return row


def results_table(results: dict[str, dict], paper: dict[str, str] | None = None, decimals: int = 3) -> pd.DataFrame:
    """One row per run (best epoch on dev); with ``paper`` (run -> paper row), the paper's numbers beside."""
    table = pd.DataFrame({name: results_row(res) for name, res in results.items()}).T
    if paper:
        ref = paper_frame()
        for col in ("SST", "QQP", "STS", "overall"):
            table[f"paper {col}"] = [ref.loc[paper[n], col] if n in paper else np.nan for n in table.index]
    numeric = table.drop(columns=["best epoch"]).astype(float)
    table[numeric.columns] = numeric.round(decimals)
    table["minutes"] = numeric["minutes"].round(1)
    table["examples/s"] = numeric["examples/s"].round(0)
    return table


def single_task_ensemble(results: dict[str, dict]) -> dict:
    """A pseudo-run combining the single-task runs ``single-<task>``: each task by its own model."""
    from mtl_lab.evaluate import overall_score

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


def parameter_table(model) -> pd.DataFrame:
    """Parameter counts of a MultitaskModel's parts: backbone, sentence encoder, each head."""
    parts = {
        "backbone": model.backbone,
        "sentence encoder": model.encoder,
        **{f"head {k}": v for k, v in model.heads.items()},
    }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    table = pd.DataFrame({"parameters": counts})
    table.loc["total"] = table["parameters"].sum()
    return table


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


def plot_learning_curves(
    results: dict[str, dict], metrics: tuple[str, ...] = ("SST", "QQP", "STS", "overall")
) -> plt.Figure:
    """Dev metric per epoch for each run, one panel per metric."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, res in results.items():
            h = history_frame(res)
            if metric in h:
                ax.plot(h.index, h[metric], marker="o", label=name)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        epochs = max((len(r["history"]) for r in results.values()), default=1)
        ax.set_xlim(0.5, epochs + 0.5)  # one epoch: a point in a sensible frame, not an axis from 0.96 to 1.04
        ax.set_xticks(range(1, epochs + 1))
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_results(table: pd.DataFrame, metrics: tuple[str, ...] = ("SST", "QQP", "STS", "overall")) -> plt.Figure:
    """Grouped bars of a results table (runs x metrics), with the paper's values as markers."""
    present = [m for m in metrics if m in table and table[m].notna().any()]
    long = table[present].reset_index(names="run").melt(id_vars="run", var_name="metric", value_name="dev")
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(present) * max(1, len(table)) / 2), 3.4))
    sns.barplot(long, x="metric", y="dev", hue="run", ax=ax)
    for i, m in enumerate(present):
        col = f"paper {m}"
        if col in table and table[col].notna().any():
            ax.scatter([i] * table[col].notna().sum(), table[col].dropna(), marker="_", s=400, color="k", zorder=3)
    ax.set_ylim(max(0.0, float(long["dev"].min()) - 0.1), 1.0)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("dev results (black ticks: the paper)" if any(c.startswith("paper") for c in table) else "dev results")
    fig.tight_layout()
    return fig


def plot_forgetting(res: dict) -> plt.Figure:
    """Dev metrics of a sequential run after each epoch, with the stage (task trained) shaded."""
    h = history_frame(res)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for metric in ("SST", "QQP", "STS"):
        if metric in h:
            ax.plot(h.index, h[metric], marker="o", label=metric)
    for i, (stage, grp) in enumerate(h.groupby("stage", sort=False)):
        ax.axvspan(grp.index.min() - 0.5, grp.index.max() + 0.5, alpha=0.08 * (i + 1), color="gray")
        ax.text(grp.index.min() - 0.4, ax.get_ylim()[0] + 0.02, f"training {stage}", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev")
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- seeds


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
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = summary.loc[task]
        x = np.arange(len(part))
        ax.bar(x, part["mean"], yerr=part["std"].fillna(0), capsize=4, color=sns.color_palette()[: len(part)])
        if long is not None:
            for i, run in enumerate(part.index):
                pts = long[(long.task == task) & (long.run == run)]["dev"]
                ax.scatter(np.full(len(pts), i), pts, color="k", s=12, zorder=3)
        labels = [r.split("-", 2)[-1] for r in part.index]
        ax.set_xticks(x, labels, rotation=20)
        lo = float((part["mean"] - part["std"].fillna(0)).min())
        ax.set_ylim(max(0.0, lo - 0.05), min(1.0, float((part["mean"] + part["std"].fillna(0)).max()) + 0.03))
        ax.set_title(f"{task} (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- gradients


def conflict_frame(res: dict) -> pd.DataFrame:
    """The gradient-conflict monitor of a run: cosine of each task pair's shared-parameter gradients, by step."""
    rows = res.get("gradient_conflicts") or []
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("step")


def conflict_summary(results: dict[str, dict]) -> pd.DataFrame:
    """Per run and task pair: mean cosine of the task gradients and how often they conflict (cosine < 0)."""
    rows = []
    for name, res in results.items():
        frame = conflict_frame(res)
        for pair in [c for c in frame.columns if c != "epoch"]:
            cos = frame[pair]
            rows.append(
                {
                    "run": name,
                    "pair": pair,
                    "mean cosine": cos.mean(),
                    "conflicting (cos < 0)": (cos < 0).mean(),
                    "probes": len(cos),
                }
            )
    return pd.DataFrame(rows, columns=["run", "pair", "mean cosine", "conflicting (cos < 0)", "probes"]).set_index(
        ["run", "pair"]
    )


def plot_gradient_conflicts(results: dict[str, dict]) -> plt.Figure:
    """Cosine similarity of each task pair's gradients over training, one panel per run (below 0 = conflict)."""
    runs = {n: conflict_frame(r) for n, r in results.items() if not conflict_frame(r).empty}
    fig, axes = plt.subplots(1, max(1, len(runs)), figsize=(4.2 * max(1, len(runs)), 3.2), squeeze=False, sharey=True)
    for ax, (name, frame) in zip(axes[0], runs.items()):
        for pair in [c for c in frame.columns if c != "epoch"]:
            ax.plot(frame.index, frame[pair], marker=".", label=pair)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhspan(-1, 0, color="tab:red", alpha=0.06)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel("cosine of task gradients")
    axes[0][0].set_ylim(-1, 1)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_toy_trajectories(paths: dict[str, torch.Tensor]) -> plt.Figure:
    """The PCGrad toy objective's total loss as contours, with each optimizer's trajectory on it."""
    from mtl_lab.training.optim.toy import toy_losses

    xs, ys = np.linspace(-10, 10, 161), np.linspace(-10, 10, 161)
    grid = toy_losses(torch.tensor(np.stack(np.meshgrid(xs, ys), axis=-1))).sum(-1).numpy()  # rows: y, columns: x
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    cs = ax.contourf(xs, ys, grid, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="L1 + L2")
    colors = {"sum": "deeppink", "pcgrad": "tab:red", "imtl_g": "tab:orange"}  # visible on the map and the legend
    for name, path in paths.items():
        method = name.split(" ")[0]
        p = path.numpy()
        ax.plot(p[:, 0], p[:, 1], color=colors.get(method, "k"), lw=2, label=name)
        ax.scatter(p[-1, 0], p[-1, 1], color=colors.get(method, "k"), edgecolor="k", zorder=3)
        ax.scatter(p[0, 0], p[0, 1], color="k", marker="x", zorder=3)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- model anatomy


@torch.no_grad()
def encoder_walkthrough(model, tokenizer, sentences: list[str]) -> pd.DataFrame:
    """Tensor shapes at each stage of an SBERT + CNN-BiLSTM model, for a batch of sentences (eval mode)."""
    from mtl_lab.models.encoders import masked_max, masked_mean

    enc = model.encoder
    if not hasattr(enc, "cnn") or not hasattr(enc, "lstm"):
        raise ValueError("encoder_walkthrough needs the sbert_cnn_bilstm encoder")
    model.eval()
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    hidden, _ = model._states(ids, mask)
    feats = enc.cnn.features(hidden, mask)
    u = model.embed(ids, mask)
    rows = [
        ("wordpiece ids (padded)", ids, "tokenizer"),
        ("backbone token states", hidden, f"{model.num_layers}-layer backbone, last layer"),
        ("SBERT mean pool", masked_mean(hidden, mask), "mean over real tokens"),
        ("CNN n-gram features", feats, f"Conv1d k=1..4, {enc.cnn.convs[0].out_channels} filters each, ReLU"),
        ("CNN max pool", masked_max(feats, mask), "max over real tokens"),
        ("BiLSTM over n-grams", enc.lstm(feats, mask), "final forward + backward states"),
        ("sentence embedding u", u, "concat of the three"),
        ("QQP bi features [u; v; |u-v|]", torch.cat([u, u, u], -1), "-> Linear -> 1 logit"),
    ]
    return pd.DataFrame(
        [{"stage": s, "shape": " x ".join(map(str, t.shape)), "how": how} for s, t, how in rows]
    ).set_index("stage")


# ----------------------------------------------------------------------------- embedding geometry

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
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for i, run in enumerate(dict.fromkeys(table.index.get_level_values("run"))):
        part = table.loc[run]
        color = sns.color_palette()[i % 10]
        if "before" in part.index and "after" in part.index:
            (x0, y0), (x1, y1) = (
                part.loc["before", ["uniformity", "alignment"]],
                part.loc["after", ["uniformity", "alignment"]],
            )
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": color})
            ax.scatter([x0], [y0], color=color, marker="o", facecolors="none")
        after = part.loc["after"] if "after" in part.index else part.iloc[-1]
        ax.scatter([after["uniformity"]], [after["alignment"]], color=color, label=run)
    ax.set_xlabel("uniformity (lower = more spread out)")
    ax.set_ylabel("alignment (lower = positives closer)")
    ax.set_title("STS dev embeddings, before (o) -> after pre-training", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def embedding_maps(models: dict[str, torch.nn.Module], sts_dev, max_pairs: int = 400) -> plt.Figure:
    """2-D PCA of each model's STS-dev sentence embeddings (unit-normalised), one panel per model.

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
    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.4), squeeze=False)
    for ax, (label, model) in zip(axes[0], models.items()):
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
    fig.colorbar(points, ax=axes[0].tolist(), label="gold similarity of the pair", shrink=0.85, pad=0.01)
    return fig


@torch.no_grad()
def in_batch_similarities(model, tokenizer, pairs: pd.DataFrame, temperature: float = 0.05) -> pd.DataFrame:
    """The SimCSE logit matrix of a small batch: cos(anchor_i, positive_j) / temperature (eval mode).

    Row i's target is column i (its positive); every other column is an in-batch negative.
    """
    model.eval()
    emb = []
    for column in ("anchor", "positive"):
        enc = tokenizer(pairs[column].tolist(), padding=True, truncation=True, return_tensors="pt")
        emb.append(torch.nn.functional.normalize(model.embed(enc["input_ids"], enc["attention_mask"]), dim=-1))
    short = lambda s: s if len(s) <= 32 else s[:30] + "…"  # noqa: E731
    return pd.DataFrame(
        (emb[0] @ emb[1].T / temperature).numpy(),
        index=[short(s) for s in pairs["anchor"]],
        columns=[short(s) for s in pairs["positive"]],
    )


def plot_in_batch_similarities(logits: pd.DataFrame) -> plt.Figure:
    """Heat map of a SimCSE logit matrix with the positives (diagonal) boxed, and each row's softmax target."""
    fig, ax = plt.subplots(figsize=(1.1 * len(logits) + 3, 0.6 * len(logits) + 1.5))
    sns.heatmap(logits, annot=True, fmt=".0f", cmap="rocket_r", cbar_kws={"label": "cos / τ"}, ax=ax)
    for i in range(len(logits)):
        ax.add_patch(plt.Rectangle((i, i), 1, 1, fill=False, edgecolor="tab:green", lw=2.5))
    ax.set_xlabel("positives of the batch (column j)")
    ax.set_ylabel("anchors (row i)")
    ax.set_title(
        "row i: softmax over the row, target = the boxed positive; the rest are in-batch negatives", fontsize=9
    )
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- ablation grid


def ablation_table(results: dict[str, dict], grid: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The grid as the paper's Table 2: one row per (model, strategy), mean over its seeds, the paper beside.

    ``grid`` maps a sentence model (``cls``/``sbert``) to its rows, strategy label -> run name
    (``experiments.ablation_grid``); runs ``<name>-s<k>`` are further seeds of a row.
    """
    from mtl_lab.study.paper import PAPER_MODELS, paper_rows

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
            row.update({col: values[col].mean() for col in ("SST", "QQP", "STS", "overall")})
            row["overall std"] = values["overall"].std() if len(runs) > 1 else np.nan
            row["minutes"] = values["minutes"].mean()
            for col in ("SST", "QQP", "STS", "overall"):
                row[f"paper {col}"] = ref.loc[paper[label], col] if label in paper else np.nan
            rows.append(row)
    columns = ["model", "strategy", "run", "seeds", "SST", "QQP", "STS", "overall", "overall std", "minutes"]
    columns += [f"paper {c}" for c in ("SST", "QQP", "STS", "overall")]
    return pd.DataFrame(rows, columns=columns).set_index(["model", "strategy"])


def seed_check(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of an ablation table that ran over several seeds, best first, with each row's gap to the best."""
    part = table[table["seeds"] > 1][["run", "seeds", "SST", "QQP", "STS", "overall", "overall std"]]
    part = part.sort_values("overall", ascending=False)
    return part.assign(**{"gap to best": part["overall"] - part["overall"].max()})


def style_ablation(table: pd.DataFrame):
    """The ablation table with the best value of each metric column in bold (a pandas Styler)."""
    metrics = ["SST", "QQP", "STS", "overall"]
    # element ids from the table's content, not pandas' random uuid: the same table renders the same HTML (no
    # churn in committed notebooks), two different tables on one page keep apart
    uuid = hashlib.sha1(table.to_csv().encode()).hexdigest()[:8]
    return (
        table.style.set_uuid(uuid)
        .format(precision=3, na_rep="")
        .format({"minutes": "{:.1f}"})
        .highlight_max(subset=metrics, props="font-weight: bold; background-color: #d8f0d8")
    )


def plot_ablation(table: pd.DataFrame) -> plt.Figure:
    """Overall dev score of every strategy, one panel per model; the paper's overall as a black tick."""
    models = list(dict.fromkeys(table.index.get_level_values("model")))
    fig, axes = plt.subplots(
        1, len(models), figsize=(5.5 * len(models), 0.35 * len(table) / len(models) + 1.8), squeeze=False
    )
    lo = float(table["overall"].min()) - 0.02
    for ax, model in zip(axes[0], models):
        part = table.loc[model]
        y = np.arange(len(part))[::-1]
        best = part["overall"].idxmax()
        colors = ["tab:green" if s == best else "tab:blue" for s in part.index]
        ax.barh(y, part["overall"], xerr=part["overall std"].fillna(0), color=colors)
        ax.scatter(part["paper overall"], y, marker="|", s=200, color="k", label="paper (BERT-base, GPU)", zorder=3)
        ax.set_yticks(y, part.index, fontsize=8)
        ax.set_xlim(
            lo,
            max(float(table["overall"].max()), float(np.nanmax(table["paper overall"].to_numpy(float), initial=0)))
            + 0.01,
        )
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("dev overall")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- error analysis

SST_CLASSES = ["negative", "somewhat neg.", "neutral", "somewhat pos.", "positive"]
QQP_CLASSES = ["not paraphrase", "paraphrase"]


def dev_predictions(pred_dir: str | os.PathLike, data_dir=None, limit: int | None = None) -> dict[str, pd.DataFrame]:
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
    run_folder: str | os.PathLike, data_dir=None, limit: int | None = None
) -> dict[str, pd.DataFrame]:
    """dev_predictions of a run folder's ``predictions/``, first written from its ``best.pt`` if missing.

    With ``limit`` (e.g. the smoke profile's 100), only that many dev examples a task, in ``predictions-dev<limit>/``.
    """
    from mtl_lab.evaluate import predict_files

    folder = Path(run_folder) / ("predictions" if limit is None else f"predictions-dev{limit}")
    if not (folder / f"{data.TASKS['sst'].pred_file}-dev-output.csv").is_file():
        predict_files(Path(run_folder) / "best.pt", folder, data_dir=data_dir, splits=("dev",), limit=limit)
    return dev_predictions(folder, data_dir, limit)


def plot_confusion_matrices(runs: dict[str, dict[str, pd.DataFrame]], task: str) -> plt.Figure:
    """Row-normalised confusion matrices of one classification task, one panel per run (side by side)."""
    from sklearn.metrics import confusion_matrix

    classes = SST_CLASSES if task == "sst" else QQP_CLASSES
    fig, axes = plt.subplots(1, len(runs), figsize=(1.0 * len(classes) * len(runs) + 2.5, len(classes) * 0.8 + 1.6))
    for ax, (label, preds) in zip(np.atleast_1d(axes), runs.items()):
        df = preds[task]
        cm = confusion_matrix(
            df["gold"].astype(int), df["pred"].astype(int), labels=range(len(classes)), normalize="true"
        )
        accuracy = float((df["gold"].astype(int) == df["pred"].astype(int)).mean())
        sns.heatmap(cm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    xticklabels=classes, yticklabels=classes)  # fmt: skip
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{label}: {task.upper()} accuracy {accuracy:.3f}", fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=7)
        ax.tick_params(axis="y", rotation=0, labelsize=7)
    fig.tight_layout()
    return fig


def per_class_accuracy(runs: dict[str, dict[str, pd.DataFrame]], task: str) -> pd.DataFrame:
    """Accuracy within each gold class (recall) of a classification task, one column per run."""
    classes = SST_CLASSES if task == "sst" else QQP_CLASSES
    table = {}
    for label, preds in runs.items():
        df = preds[task]
        hit = df["gold"].astype(int) == df["pred"].astype(int)
        table[label] = hit.groupby(df["gold"].astype(int)).mean().reindex(range(len(classes)))
    table = pd.DataFrame(table)
    table.index = [f"{i} {c}" for i, c in enumerate(classes)]
    table["examples"] = (
        runs[next(iter(runs))][task]["gold"].astype(int).value_counts().reindex(range(len(classes))).to_numpy()
    )
    return table


def plot_sts_scatter(runs: dict[str, dict[str, pd.DataFrame]]) -> plt.Figure:
    """Predicted vs gold STS scores, one panel per run, with the Pearson r and the diagonal."""
    from scipy.stats import pearsonr

    fig, axes = plt.subplots(1, len(runs), figsize=(4.0 * len(runs), 3.8), squeeze=False)
    for ax, (label, preds) in zip(axes[0], runs.items()):
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


def worst_errors(preds: dict[str, pd.DataFrame], task: str, n: int = 5) -> dict[str, pd.DataFrame]:
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


def misclassified_wordpieces(preds: dict[str, pd.DataFrame], tokenizer, n: int = 6) -> pd.DataFrame:
    """WordPiece tokens of the SST sentences missed by the most classes (where "n't" or rare words split)."""
    df = preds["sst"].assign(miss=lambda d: (d["pred"].astype(int) - d["gold"].astype(int)).abs())
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
    import textwrap

    def wrap(text: str, first: str) -> str:
        return textwrap.fill(
            text,
            width,
            initial_indent=first,
            subsequent_indent=" " * len(first),
            break_long_words=False,
            break_on_hyphens=False,
        )

    blocks = []
    for row in table.itertuples(index=False):
        label = f"gold {SST_CLASSES[row.gold]} ({row.gold}), predicted {SST_CLASSES[row.pred]} ({row.pred})"
        blocks.append("\n".join([label, wrap(row.sentence, "  sentence:   "), wrap(row.wordpieces, "  wordpieces: ")]))
    return "\n\n".join(blocks)


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


def plot_loss_curves(runs: dict[str, dict], title: str = "training loss (sum over tasks)"):
    """Training-loss curves of several runs on one axis (each run's per-epoch ``loss_curve`` blocks, joined)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, res in runs.items():
        curve = []
        for h in res["history"]:
            parts = h.get("loss_curve") or {t: [v] for t, v in h["train_loss"].items()}
            n = min(len(v) for v in parts.values())
            curve += [sum(v[i] for v in parts.values()) for i in range(n)]
        x = np.linspace(0, len(res["history"]), len(curve) + 1)[1:]
        ax.plot(x, curve, marker="o" if len(curve) < 4 else None, label=label)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def full_budget_table(
    results: dict[str, dict], rows: dict[str, list[str]], baseline_row: str | None = None
) -> pd.DataFrame:
    """The full-budget study: per row, the finished seeds' mean ± std of each metric, the per-seed paired
    difference of the overall score against the baseline row's run of the same seed, minutes (mean over the
    runs timed on a quiet machine: a run with a ``timing_note`` is left out), CPU and dropout masks.

    A run's seed is its ``config.train.seed`` (else its place in the row): a row of other seeds than the
    baseline's has no paired difference."""
    baseline_row = baseline_row or next(iter(rows))

    def seed(k: int, r: dict) -> int:
        return r.get("config", {}).get("train", {}).get("seed", k)

    base = {seed(k, results[n]): results[n] for k, n in enumerate(rows[baseline_row]) if n in results}
    out = []
    for label, names in rows.items():
        done = [(k, results[n]) for k, n in enumerate(names) if n in results]
        if not done:
            out.append({"row": label, "seeds": 0})
            continue
        m = pd.DataFrame(
            [
                # a wall time measured under contention (its results.json says so in timing_note) is left out
                {**_metric_row(r["best"]), "minutes": float("nan") if r.get("timing_note") else r["wall_time_s"] / 60}
                for _, r in done
            ]
        )
        paired = [r["best"]["overall"] - base[seed(k, r)]["best"]["overall"] for k, r in done if seed(k, r) in base]
        cpus = sorted({r.get("environment", {}).get("cpu", "?") for _, r in done})
        # runs before mtl_lab.models.fast.dropout existed trained with PyTorch's (an ensemble record: its members')
        drops = sorted({_dropout_of(r, results) for _, r in done})
        out.append(
            {
                "row": label,
                "seeds": len(done),
                **{c: m[c].mean() for c in ("SST", "QQP", "STS", "overall")},
                "overall std": m["overall"].std(ddof=1) if len(done) > 1 else float("nan"),
                # a difference is stated only with its interval: a t interval over 2+ paired seeds
                **_paired_columns(paired if label != baseline_row else []),
                "minutes": m["minutes"].mean(),
                "CPU": ", ".join(c for c in cpus if c != "?") or "not recorded",
                "dropout": ", ".join(drops),
            }
        )
    return pd.DataFrame(out).set_index("row")


def _paired_columns(paired: list[float]) -> dict:
    """The mean paired difference and its 95 % t interval over seeds (blank with fewer than 2 seeds)."""
    from mtl_lab.study.compare import seed_interval

    if len(paired) < 2:
        return {"paired diff vs baseline": float("nan"), "95% interval (seeds)": ""}
    mean, low, high = seed_interval(paired)
    return {"paired diff vs baseline": mean, "95% interval (seeds)": f"[{low:+.3f}, {high:+.3f}]"}


def _dropout_of(run: dict, results: dict[str, dict]) -> str:
    """Which dropout masks a run trained with: ``torch`` (PyTorch's) or ``16-bit`` (``mtl_lab.models.fast.dropout``)."""
    members = run.get("config", {}).get("members")
    if members:  # an ensemble record: what its members trained with (those in ``results``)
        return ", ".join(sorted({_dropout_of(results[m], results) for m in members if m in results})) or "?"
    return "16-bit" if run.get("environment", {}).get("dropout") == "mtl_lab.models.fast.dropout" else "torch"


def plot_full_budget(results: dict[str, dict], rows: dict[str, list[str]], ax=None):
    """Each full-budget row's seeds as dots (dev overall) and their mean as a bar; the baseline's seed range shaded."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.7 + 0.6 * len(rows)))
    labels = list(rows)
    base = [results[n]["best"]["overall"] for n in rows[labels[0]] if n in results]
    if base:
        ax.axvspan(min(base), max(base), color="tab:blue", alpha=0.12, label="baseline's seed range")
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
    ax.legend(loc="lower right", fontsize=8)
    return ax.figure


def _metric_row(best: dict) -> dict:
    return {"SST": best["sst_acc"], "QQP": best["qqp_acc"], "STS": best["sts_pearson"], "overall": best["overall"]}


def plot_paired_differences(comparisons) -> plt.Figure:
    """Each comparison's overall difference: its seeds as dots, the t interval over seeds (thick) and the bootstrap
    interval over dev examples of seed 0 (thin); 0 marked, so an interval that holds it reads at a glance."""
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.8 * max(1, len(comparisons))))
    for y, c in enumerate(comparisons):
        o = c.overall
        if o is None:  # no per-example predictions of seed 0: the seeds alone
            o = {"low": float("nan"), "high": float("nan")}
        ax.plot(
            [o["low"], o["high"]],
            [y + 0.12] * 2,
            color="tab:blue",
            lw=1.5,
            label="95% over dev examples" if y == 0 else None,
        )
        if c.seed_row is not None:
            s = c.seed_row
            ax.plot(
                [s["low"], s["high"]],
                [y - 0.12] * 2,
                color="tab:orange",
                lw=5,
                alpha=0.7,
                label="95% over seeds" if y == 0 else None,
            )
        if c.seeds is not None and len(c.seeds):
            ax.plot(
                c.seeds["diff"], [y - 0.12] * len(c.seeds), "o", color="black", ms=4, label="a seed" if y == 0 else None
            )
    ax.axvline(0, color="gray", lw=1, ls="--")
    ax.set_yticks(range(len(comparisons)), [f"{c.a}\nvs {c.b}" for c in comparisons], fontsize=9)
    ax.set_ylim(len(comparisons) - 0.5, -0.5)
    ax.set_xlabel("paired difference in dev overall (A - B)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
