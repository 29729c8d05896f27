"""What every figure of the study keeps to: a width JupyterLab shows whole, legends beside the data, saved files.

The notebooks draw at ``NOTEBOOK_DPI`` (``mtl_lab.course.notebooks`` sets matplotlib's ``figure.dpi``). In a 1280 px
JupyterLab window with the file browser open, an output is 848 px wide, and a wider picture is shrunk to fit:
``MAX_WIDTH`` inches, legends outside the axes included, is the most a figure takes (``fit_width``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.legend import Legend

NOTEBOOK_DPI = 90
MAX_WIDTH = 9.2  # inches: 828 px at NOTEBOOK_DPI


def fit_width(fig: plt.Figure, max_width: float = MAX_WIDTH) -> plt.Figure:
    """Narrow a figure whose drawn extent (legends and labels outside the axes included) passes ``max_width``
    inches: the axes give up the width, the text keeps its size."""
    for _ in range(4):  # a narrower figure may re-wrap its layout: a few rounds settle it
        extent = fig.get_tightbbox(fig.canvas.get_renderer()).width
        if extent <= max_width + 0.01:
            break
        width, height = fig.get_size_inches()
        fig.set_size_inches(max(1.5, width - (extent - max_width) - 0.05), height)
        if fig.get_layout_engine() is None or type(fig.get_layout_engine()).__name__ == "TightLayoutEngine":
            fig.tight_layout()
    return fig


def savefig(fig: plt.Figure, out_dir: str | os.PathLike | None, name: str) -> Path | None:
    """Fit a figure to ``MAX_WIDTH`` (``fit_width``), as the notebook shows it, and save it as
    ``<out_dir>/figures/<name>.png`` (not saved when out_dir is None)."""
    fit_width(fig)
    if out_dir is None:
        return None
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def panels(n: int, width: float, height: float, room: float = 0.0, **kw) -> tuple[plt.Figure, list[Axes]]:
    """``n`` panels of ``width`` x ``height`` inches, as many a row as fit ``MAX_WIDTH``; the rest hidden.

    ``room``: inches kept free beside the panels, for a legend or a colour bar.
    """
    cols = max(1, min(n, int((MAX_WIDTH - room) // width)))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kw)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend_right(ax: Axes, **kw) -> Legend | None:
    """The axes' legend outside, to the right of its top corner (never over the data); None without labels."""
    if not ax.get_legend_handles_labels()[0]:
        return None
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, **kw)


def legend_below(fig: plt.Figure, ax: Axes, ncol: int = 3) -> Legend | None:
    """One legend for the whole figure (the labels of ``ax``, then those only other panels have), centred under
    it; None without labels."""
    entries: dict[str, object] = {}
    for panel in [ax, *(a for a in fig.axes if a is not ax)]:
        for handle, label in zip(*panel.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    handles, labels = list(entries.values()), list(entries)
    if not handles:
        return None
    fig.tight_layout()
    return fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(ncol, len(labels)),
        fontsize=8,
        frameon=False,
    )
