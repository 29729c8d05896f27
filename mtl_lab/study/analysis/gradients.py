"""Task gradients (notebook 04): how often two tasks' gradients conflict during training, and PCGrad's toy problem."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from mtl_lab.study.analysis.figures import legend_right, panels


def conflict_frame(res: dict) -> pd.DataFrame:
    """The gradient-conflict monitor of a run: cosine of each task pair's shared-parameter gradients, by step."""
    rows = res.get("gradient_conflicts") or []
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("step")


def _pairs(frame: pd.DataFrame) -> list[str]:
    """The task-pair columns of a conflict frame (``sst-qqp``, ...)."""
    return [c for c in frame.columns if c != "epoch"]


def conflict_summary(results: dict[str, dict]) -> pd.DataFrame:
    """Per run and task pair: mean cosine of the task gradients and how often they conflict (cosine < 0)."""
    rows = []
    for name, res in results.items():
        frame = conflict_frame(res)
        for pair in _pairs(frame):
            cos = frame[pair]
            rows.append(
                {
                    "run": name,
                    "pair": pair,
                    "mean cosine": float(cos.mean()),
                    "conflicting (cos < 0)": float((cos < 0).mean()),
                    "probes": len(cos),
                }
            )
    columns = ["run", "pair", "mean cosine", "conflicting (cos < 0)", "probes"]
    return pd.DataFrame(rows, columns=columns).set_index(["run", "pair"])


def plot_gradient_conflicts(results: dict[str, dict]) -> plt.Figure:
    """Cosine similarity of each task pair's gradients over training, one panel per run (below 0 = conflict)."""
    runs = {n: conflict_frame(r) for n, r in results.items()}
    runs = {n: f for n, f in runs.items() if not f.empty}
    fig, axes = panels(max(1, len(runs)), 3.4, 3.2, room=1.0, sharey=True)
    for ax, (name, frame) in zip(axes, runs.items()):
        for pair in _pairs(frame):
            ax.plot(frame.index, frame[pair], marker=".", label=pair)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhspan(-1, 0, color="tab:red", alpha=0.06)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("training step")
    axes[0].set_ylabel("cosine of task gradients")
    axes[0].set_ylim(-1, 1)
    legend_right(axes[-1])
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
    # colours and line styles that stay apart on the map and from each other where the paths overlap
    styles = {"sum": ("cyan", "-"), "pcgrad": ("tab:red", "--"), "imtl_g": ("tab:orange", ":")}
    for name, path in paths.items():
        color, line = styles.get(name.split(" ")[0], ("k", "-"))
        p = path.numpy()
        ax.plot(p[:, 0], p[:, 1], color=color, ls=line, lw=2, label=name)
        ax.scatter(p[-1, 0], p[-1, 1], color=color, edgecolor="k", zorder=3)
        ax.scatter(p[0, 0], p[0, 1], color="k", marker="x", zorder=3)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    fig.tight_layout()
    return fig
