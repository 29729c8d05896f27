"""What every figure of the study keeps to: a width JupyterLab shows whole, legends beside the data, saved files.

The notebooks draw at ``NOTEBOOK_DPI`` (``mtl_lab.course.notebooks`` sets matplotlib's ``figure.dpi``). In a 1280 px
JupyterLab window with the file browser open, an output is 848 px wide, and a wider picture is shrunk to fit:
``MAX_WIDTH`` inches, legends outside the axes included, is the most a figure takes (``fit_width``).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.layout_engine import TightLayoutEngine
from matplotlib.legend import Legend

OUTPUT_PX = 848  # an output's width in a 1280 px JupyterLab window with the file browser open
NOTEBOOK_DPI = 90
MAX_WIDTH = (OUTPUT_PX - 20) / NOTEBOOK_DPI  # inches: 828 px, the tight bounding box's padding left over


def _extent(fig: plt.Figure) -> float:
    """The width in inches the figure takes when drawn (its layout run, everything outside the axes counted)."""
    fig.draw_without_rendering()
    return fig.get_tightbbox().width


def _resize(fig: plt.Figure, width: float, height: float) -> None:
    fig.set_size_inches(width, height)
    if fig.get_layout_engine() is None or isinstance(fig.get_layout_engine(), TightLayoutEngine):
        fig.tight_layout()


def fit_width(fig: plt.Figure, max_width: float = MAX_WIDTH) -> plt.Figure:
    """Narrow a figure whose drawn extent (legends and labels outside the axes included) passes ``max_width``
    inches: the axes give up the width, the text keeps its size; a warning where text alone is wider."""
    extent = _extent(fig)
    for _ in range(4):  # a narrower figure may re-wrap its layout: a few rounds settle it
        if extent <= max_width + 0.01:
            return fig
        width, height = fig.get_size_inches()
        _resize(fig, max(1.5, width - (extent - max_width) - 0.05), height)
        before, extent = extent, _extent(fig)
        if before - extent < 0.5 * (width - fig.get_size_inches()[0]):  # text that does not shrink overflows
            _resize(fig, width, height)
            extent = _extent(fig)
            break
    if extent > max_width + 0.01:
        warnings.warn(f"a figure {extent:.1f} in wide does not fit {max_width:.1f} in: its text is wider", stacklevel=2)
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
