"""ipywidgets for the notebooks: the 2-D geometry of PCGrad, and a playground for trained checkpoints.

Each widget is displayed with a picture of its current view in the same output (``image/png``
beside the widget's own MIME type): JupyterLab shows the live widget -- or, in a trusted notebook
opened without a kernel, its saved view -- and every renderer that cannot show widgets (an
untrusted notebook, GitHub, an HTML export) shows the picture instead of the widget's text repr.

Saved views survive a live run and a save. JupyterLab (``saveState`` off, its default) keeps the widget
state a notebook was committed with, while a live run writes outputs that point at the model its kernel
made. So the box a notebook displays has a fixed model id (:func:`stable_id`): the live box and the saved
one share it, and the saved state (the committed run's view) always has the model every output points at.
The box's first child is a hint that is empty while live; ``notebooks run`` fills it in the saved state
(see :func:`mtl_lab.course.runner.tidy_widgets`), which also greys out the saved controls.
"""

from __future__ import annotations

import base64
import io
import math
import os
import uuid
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting

# uuid5 ids (version 5) of the widgets the notebooks display; the kernel's own ids are uuid4
WIDGET_NAMESPACE = uuid.UUID("6f1c2f4e-9d1a-4b8e-8a7e-3c5d2b1a0f99")
HINT_CLASS = "mtl-lab-saved-hint"
BOX_CLASS = "mtl-lab-snapshot"
# ipywidgets marks every view without a kernel with a red broken-link icon, one per control: in a saved box the
# hint's one line says it instead (the style reaches only the boxes of this module)
SAVED_HINT = (
    f"<style>.{BOX_CLASS}.jupyter-widgets-disconnected::before, .{BOX_CLASS} .jupyter-widgets-disconnected::before"
    " {display: none}</style><i>A saved view, no kernel: the controls are greyed out. "
    "Run this cell to bring it to life.</i>"
)


def stable_id(name: str) -> str:
    """The fixed model id of a displayed widget: the same in every kernel, so saved outputs always find it."""
    return uuid.uuid5(WIDGET_NAMESPACE, f"mtl_lab.course.widgets/{name}").hex


def fixed_widget(cls, name: str, **kwargs):
    """``cls(**kwargs)`` with the model id ``stable_id(name)``; a widget of an earlier run of the cell that holds
    that id is closed first (two live models under one id would close each other's views)."""
    from ipywidgets.widgets.widget import _instances

    model_id = stable_id(name)
    old = _instances.get(model_id)
    if old is not None:
        old.close()
    return cls(model_id=model_id, **kwargs)


MAX_RATIO = 2.0  # the |g2| / |g1| slider's end: the widget's axes hold every vector up to it
STYLE = {  # name: (colour, line style, width, layer); the plain update is a broad band under PCGrad's arrow,
    # and the projected g1', g2' are drawn over PCGrad's translucent arrow (their sum), so both stay visible
    "plain": ("0.55", "-", 6.0, 1),
    "g1": ("tab:blue", "-", 2.0, 2),
    "g2": ("tab:orange", "-", 2.0, 2),
    "pcgrad": ("tab:green", "-", 3.5, 3),
    "g1'": ("tab:blue", ":", 2.5, 4),
    "g2'": ("tab:orange", ":", 2.5, 4),
}
PROJECTED = ("g1'", "g2'", "pcgrad")  # without a conflict they coincide with g1, g2 and the plain sum
ZOOM_BELOW = 0.25  # PCGrad's update shorter than this share of the axes' height gets a zoomed inset


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


def pcgrad_limits(max_ratio: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits that hold every vector of :func:`pcgrad_2d` for any angle and any |g2| up to ``max_ratio``.

    x runs from -|g2| (g2 at 180°) to 1 + |g2| (the plain sum at 0°); y up to the larger of |g2| and PCGrad's
    sin a (|g2| - cos a). Fixed limits keep g1 the same length on screen while the sliders move.
    """
    a = np.radians(np.linspace(90, 180, 181))
    top = max(max_ratio, float((np.sin(a) * (max_ratio - np.cos(a))).max()))
    pad = 0.08 * (1 + 2 * max_ratio)
    return (-max_ratio - pad, 1 + max_ratio + pad), (-pad, top + pad)


def _draw_vectors(ax, v: dict[str, np.ndarray], conflict: bool, names=tuple(STYLE)) -> None:
    """The vectors ``names`` of :func:`pcgrad_2d` as arrows from the origin, styled by :data:`STYLE`."""
    for name in names:
        color, ls, lw, z = STYLE[name]
        if not conflict and name in PROJECTED:  # no overprint
            continue
        x, y = v[name]
        if name == "plain":  # a band without a head, its tip a dot: visible under PCGrad's arrow
            ax.plot([0, x], [0, y], color=color, lw=lw, alpha=0.7, solid_capstyle="butt", zorder=z)
            ax.scatter([x], [y], s=30, color="0.3", zorder=z)
        else:
            alpha = 0.6 if name == "pcgrad" else 1.0
            props = dict(arrowstyle="-|>", color=color, ls=ls, lw=lw, shrinkA=0, shrinkB=0, mutation_scale=12)
            ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops={**props, "alpha": alpha}, zorder=z)


def plot_pcgrad_2d(angle_deg: float, ratio: float = 1.0, ax=None, max_ratio: float | None = None, legend: bool = True):
    """Draw the two gradients, their projections and the plain vs PCGrad update.

    The axes depend on ``max_ratio`` only (default: ``ratio``), not on the angle or ``ratio``: pass the
    slider's end to keep them fixed. The plain update is a broad grey band drawn under PCGrad's arrow, its tip
    a grey dot, so it stays visible where the two point the same way (near 180°). Where PCGrad's update is
    short (near 180°), an inset zooms on the origin so that g1', g2' and their sum can be told apart.
    """
    v = pcgrad_2d(angle_deg, ratio)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.8))
    cos = v["g1"] @ v["g2"] / (np.linalg.norm(v["g1"]) * np.linalg.norm(v["g2"]))
    conflict = cos < 0
    labels = {"plain": "plain sum" if conflict else "plain sum = PCGrad", "pcgrad": "PCGrad"}
    _draw_vectors(ax, v, conflict)
    for name, (color, ls, lw, _) in STYLE.items():  # legend entries, in the order of STYLE
        if conflict or name not in PROJECTED:
            marker = "o" if name == "plain" else None
            label = labels.get(name, name)
            ax.plot([], [], color=color, ls=ls, lw=lw, marker=marker, mfc="0.3", mec="0.3", label=label)
    (x0, x1), (y0, y1) = pcgrad_limits(max_ratio if max_ratio is not None else ratio)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    if conflict and np.linalg.norm(v["pcgrad"]) < ZOOM_BELOW * (y1 - y0):
        _zoom(ax, v)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    state = "conflict: both projected" if conflict else "no conflict: PCGrad = plain sum"
    ax.set_title(f"angle {angle_deg:.0f}°, |g2| / |g1| = {ratio:.1f}, cos {cos:+.2f}\n{state}", fontsize=9)
    return ax


def _zoom(ax, v: dict[str, np.ndarray]) -> None:
    """An inset (upper right, where no vector reaches near 180°) with the short vectors around the origin."""
    names = ("plain", "pcgrad", "g1'", "g2'")
    points = np.stack([np.zeros(2), *(v[n] for n in names)])
    centre, half = (points.min(0) + points.max(0)) / 2, 0.6 * (points.max(0) - points.min(0)).max() + 1e-3
    inset = ax.inset_axes([0.6, 0.42, 0.38, 0.55])
    _draw_vectors(inset, v, True, names)
    inset.set_xlim(centre[0] - half, centre[0] + half)
    inset.set_ylim(centre[1] - half, centre[1] + half)
    inset.set_aspect("equal")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_title("zoom", fontsize=7, pad=2)
    ax.indicate_inset_zoom(inset, edgecolor="0.5")


def pcgrad_panels(angles=(45, 90, 135, 170), ratio: float = 1.0):
    """Static panels of :func:`plot_pcgrad_2d` at a few angles (2 x 2, one legend), on the same axes."""
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 5.6), layout="constrained")
    for ax, angle in zip(axes.flat, angles):
        plot_pcgrad_2d(angle, ratio, ax, legend=False)
    handles, labels = axes.flat[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    return fig


def figure_png(draw, figsize=(7.0, 3.8)) -> bytes:
    """PNG bytes of a figure drawn by ``draw(ax)`` (off pyplot: nothing is shown twice in a notebook)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="tight")
    draw(fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def snapshot_box(name: str, children: list, snapshot, describe: str):
    """A VBox with the fixed model id ``stable_id(name)`` whose display also carries a PNG of its current view
    (``snapshot()`` -> PNG bytes).

    ``describe`` replaces the widget's text repr: it is what a plain-text reader sees. The box's first child
    is the saved-view hint (empty while live; ``notebooks run`` fills it in the saved state).
    """
    import ipywidgets as w

    class SnapshotBox(w.VBox):
        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs) or {}
            data["text/plain"] = describe
            data["image/png"] = base64.b64encode(snapshot()).decode("ascii")
            return data

    hint = fixed_widget(w.HTML, f"{name}/hint", value="")
    hint.add_class(HINT_CLASS)
    box = fixed_widget(SnapshotBox, name, children=[hint, *children])
    box.add_class(BOX_CLASS)
    return box


def pcgrad_playground():
    """A slider for the angle between two task gradients (and one for |g2|), redrawing the updates."""
    import ipywidgets as w
    from IPython.display import display

    angle = w.FloatSlider(value=135, min=0, max=180, step=5, description="angle (deg)")
    ratio = w.FloatSlider(value=1.0, min=0.2, max=MAX_RATIO, step=0.1, description="|g2| / |g1|")
    out = w.Output()

    def draw(ax):
        plot_pcgrad_2d(angle.value, ratio.value, ax, max_ratio=MAX_RATIO)

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7.0, 3.8))
            draw(ax)
            fig.tight_layout()
            plt.show()

    angle.observe(redraw, "value")
    ratio.observe(redraw, "value")
    box = snapshot_box(
        "pcgrad_playground",
        [w.HBox([angle, ratio]), out],
        lambda: figure_png(draw),
        "PCGrad in 2-D: sliders for the angle between g1 and g2 and for |g2| / |g1| (run the cell to use them)",
    )
    redraw()
    display(box)
    return box


# ----------------------------------------------------------------------------- playground


@torch.no_grad()
def predict_text(model, tokenizer, sentence: str, pair: tuple[str, str]) -> dict:
    """One model's answers: SST class probabilities of ``sentence``; paraphrase probability and similarity of ``pair``."""
    import pandas as pd

    from mtl_lab.data import collate, encode

    model.eval()
    device = next(model.parameters()).device
    out: dict = {}
    frames = {
        "sst": pd.DataFrame({"id": ["0"], "sentence": [sentence], "label": [np.nan]}),
        "qqp": pd.DataFrame({"id": ["0"], "sentence1": [pair[0]], "sentence2": [pair[1]], "label": [np.nan]}),
    }
    frames["sts"] = frames["qqp"]
    for task in model.config.tasks:
        if task not in frames:
            continue
        batch = collate(encode(frames[task], task, tokenizer), np.array([0]), model.views(task))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        value = model(batch).float()
        if task == "sst":
            out["sentiment"] = torch.softmax(value[0], -1).cpu().numpy()
        elif task == "qqp":
            out["paraphrase"] = float(torch.sigmoid(value[0]))
        else:
            out["similarity"] = float(value[0].clamp(0.0, 5.0))
    return out


def plot_prediction(result: dict, ax=None, heading: str | None = None):
    """The sentiment distribution as bars, with the pair's paraphrase probability and similarity in the title."""
    from mtl_lab.study.analysis import SST_CLASSES

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 2.6))
    probs = result.get("sentiment")
    if probs is not None:
        ax.bar(range(5), probs, color=plt.cm.RdYlGn(np.linspace(0.1, 0.9, 5)))
        ax.set_xticks(range(5), SST_CLASSES, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("P(class)")
    parts = []
    if "paraphrase" in result:
        parts.append(f"paraphrase probability {result['paraphrase']:.2f}")
    if "similarity" in result:
        parts.append(f"similarity {result['similarity']:.2f} / 5")
    title = "pair: " + ", ".join(parts) if parts else "sentence"
    ax.set_title(f"{heading}\n{title}" if heading else title, fontsize=9)
    return ax


def answer(model, tokenizer, sentence: str, pair: tuple[str, str]) -> dict:
    """A playground answer from a trained MultitaskModel or from anything with ``answer(sentence, pair)``."""
    if isinstance(model, torch.nn.Module):
        return predict_text(model, tokenizer, sentence, pair)
    return model.answer(sentence, pair)


def unique_models(models: dict) -> dict:
    """``models`` without repeats: a second label for a model already listed (the same object, or the same
    run folder / checkpoint file) is dropped, so the playground's menu never offers one model twice."""
    seen, out = set(), {}
    for label, model in models.items():
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            key = str((path.parent if path.suffix == ".pt" else path).resolve())
        else:
            key = id(model)
        if key not in seen:
            seen.add(key)
            out[label] = model
    return out


def playground(models: dict, tokenizer, sentence: str = "it is n't funny .", pair=None):
    """Type a sentence and a pair; see the chosen model's sentiment, paraphrase and similarity, live.

    ``models`` maps a label to a MultitaskModel, a run folder / best.pt, or an object with
    ``answer(sentence, pair)`` (e.g. :class:`mtl_lab.models.frozen.FrozenSentenceModel`); the first is
    shown first, a model listed twice only once. The returned box keeps the latest answers in ``box.result``
    (what the display shows).
    """
    import ipywidgets as w
    from IPython.display import display

    from mtl_lab.models.model import load_model

    models = {
        k: v if isinstance(v, torch.nn.Module) or hasattr(v, "answer") else load_model(v)
        for k, v in unique_models(models).items()
    }
    pair = pair or ("How do I learn to cook?", "What is the best way to learn cooking?")
    which = w.Dropdown(options=list(models), description="model", layout=w.Layout(width="95%"))
    text = w.Text(value=sentence, description="sentence", layout=w.Layout(width="95%"))
    first = w.Text(value=pair[0], description="pair: a", layout=w.Layout(width="95%"))
    second = w.Text(value=pair[1], description="pair: b", layout=w.Layout(width="95%"))
    out = w.Output()
    box = snapshot_box(
        "playground",
        [which, text, first, second, out],
        lambda: figure_png(lambda ax: plot_prediction(box.result, ax, f"{which.value}: {text.value!r}"), (6.5, 3.0)),
        "Playground: a sentence and a pair, answered by the chosen model (run the cell to type your own)",
    )

    def update(*_):
        box.result = answer(models[which.value], tokenizer, text.value, (first.value, second.value))
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6.5, 3.0))
            plot_prediction(box.result, ax)
            plt.show()

    for control in (which, text, first, second):
        control.observe(update, "value")
    update()
    display(box)
    return box
