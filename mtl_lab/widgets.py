"""ipywidgets for the notebooks: the 2-D geometry of PCGrad."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .optim.pcgrad import project_conflicting


def pcgrad_2d(angle_deg: float, ratio: float = 1.0) -> dict[str, np.ndarray]:
    """Two task gradients in the plane (g1 along x, g2 at ``angle_deg``, |g2| = ratio) and both updates."""
    g1 = np.array([1.0, 0.0])
    a = math.radians(angle_deg)
    g2 = ratio * np.array([math.cos(a), math.sin(a)])
    grads = torch.tensor(np.stack([g1, g2]))
    proj = project_conflicting(grads, "sum", orders=[[1], [0]]).numpy()
    g1p = g1 - min(0.0, g1 @ g2) / (g2 @ g2) * g2
    g2p = g2 - min(0.0, g1 @ g2) / (g1 @ g1) * g1
    return {"g1": g1, "g2": g2, "plain": g1 + g2, "pcgrad": proj, "g1'": g1p, "g2'": g2p}


def plot_pcgrad_2d(angle_deg: float, ratio: float = 1.0, ax=None):
    """Draw the two gradients, their projections and the plain vs PCGrad update."""
    v = pcgrad_2d(angle_deg, ratio)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.6))
    style = {
        "g1": ("tab:blue", "-"),
        "g2": ("tab:orange", "-"),
        "g1'": ("tab:blue", ":"),
        "g2'": ("tab:orange", ":"),
        "plain": ("gray", "-"),
        "pcgrad": ("tab:green", "-"),
    }
    for name, (color, ls) in style.items():
        x, y = v[name]
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=color, ls=ls, lw=2))
        ax.text(x * 1.05, y * 1.05, name, color=color, fontsize=9)
    lim = 1.2 * max(1.0, ratio, *(np.abs(np.concatenate(list(v.values())))))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    cos = v["g1"] @ v["g2"] / (np.linalg.norm(v["g1"]) * np.linalg.norm(v["g2"]))
    state = "conflict: both projected" if cos < 0 else "no conflict: PCGrad = plain"
    ax.set_title(f"angle {angle_deg:.0f} deg, cos {cos:+.2f} ({state})", fontsize=9)
    return ax


def pcgrad_playground():
    """A slider for the angle between two task gradients (and one for |g2|), redrawing the updates."""
    import ipywidgets as w
    from IPython.display import display

    angle = w.FloatSlider(value=135, min=0, max=180, step=5, description="angle (deg)")
    ratio = w.FloatSlider(value=1.0, min=0.2, max=3.0, step=0.1, description="|g2| / |g1|")
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(4.6, 4.6))
            plot_pcgrad_2d(angle.value, ratio.value, ax)
            plt.show()

    angle.observe(redraw, "value")
    ratio.observe(redraw, "value")
    box = w.VBox([w.HBox([angle, ratio]), out])
    redraw()
    display(box)
    return box
