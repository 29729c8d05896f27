"""Figures and tables that read at a glance: a run keeps its colour across panels, methods stay apart, numbers
keep their meaning (a learning rate is not 0.000, a timing has one decimal, no negative zero)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mtl_lab.course import widgets  # noqa: E402
from mtl_lab.study import analysis  # noqa: E402
from mtl_lab.study.analysis.tables import format_cell  # noqa: E402


def _run(scores: dict[str, list[float]]) -> dict:
    epochs = len(next(iter(scores.values())))
    keys = {"SST": "sst_acc", "QQP": "qqp_acc", "STS": "sts_pearson"}
    history = [
        {"epoch": e + 1, "stage": "all", "dev": {keys[t]: v[e] for t, v in scores.items()}} for e in range(epochs)
    ]
    return {"history": history}


def test_learning_curves_keep_a_runs_colour_in_every_panel_and_list_every_run():
    runs = {
        "single-sst": _run({"SST": [0.3, 0.4]}),
        "single-qqp": _run({"QQP": [0.6, 0.7]}),
        "baseline": _run({"SST": [0.2, 0.3], "QQP": [0.5, 0.6], "STS": [0.1, 0.2]}),
    }
    fig = analysis.plot_learning_curves(runs, ("SST", "QQP", "STS"))
    colours: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(matplotlib.colors.to_hex(line.get_color()))
    assert all(len(c) == 1 for c in colours.values()) and len({c.pop() for c in colours.values()}) == 3
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["single-sst", "baseline", "single-qqp"]
    plt.close(fig)


def test_toy_trajectories_of_sum_and_pcgrad_differ_in_colour_and_line_style():
    path = torch.zeros(5, 2)
    fig = analysis.plot_toy_trajectories({"sum from (0, 0)": path, "pcgrad from (0, 0)": path + 1})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    a, b = lines["sum from (0, 0)"], lines["pcgrad from (0, 0)"]
    assert a.get_color() != b.get_color() and a.get_linestyle() != b.get_linestyle()
    plt.close(fig)


def test_the_pcgrad_picture_zooms_where_the_update_is_short_and_draws_projections_over_it():
    ax = widgets.plot_pcgrad_2d(170, 1.0, max_ratio=2.0)
    assert [c.get_title() for c in ax.child_axes] == ["zoom"]
    z = {a.arrow_patch.get_edgecolor()[:3]: a.get_zorder() for a in ax.texts if a.arrow_patch is not None}
    green, blue = matplotlib.colors.to_rgb("tab:green"), matplotlib.colors.to_rgb("tab:blue")
    assert z[blue] > z[green]  # g1' (dotted, blue) over PCGrad's translucent arrow
    plt.close(ax.figure)
    for angle in (45, 135):  # long updates: no inset
        ax = widgets.plot_pcgrad_2d(angle, 1.0, max_ratio=2.0)
        assert not ax.child_axes
        plt.close(ax.figure)


def test_cells_keep_small_numbers_whole_numbers_and_timings_readable():
    assert format_cell(2e-4, "lr") == "0.0002"
    assert format_cell(37.0, "examples/s") == "37.0" and format_cell(17.04, "minutes") == "17.0"
    assert format_cell(2.0, "best epoch") == "2"
    assert format_cell(-0.0001, "paired diff") == "0.000" and format_cell(-0.0004, "x", 2) == "0.00"
    assert format_cell(-0.012, "paired diff") == "-0.012" and format_cell(np.nan, "SST") == ""
