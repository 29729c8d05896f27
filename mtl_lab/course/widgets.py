"""ipywidgets for the notebooks: the 2-D geometry of PCGrad, and a playground for trained checkpoints.

Each widget is displayed with a picture of its current view in the same output (``image/png``
beside the widget's own MIME type): JupyterLab shows the live widget -- or, in a trusted notebook
opened without a kernel, its saved view -- and every renderer that cannot show widgets (an
untrusted notebook, GitHub, an HTML export) shows the picture instead of the widget's text repr.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from mtl_lab.training.optim.pcgrad import project_conflicting


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
    cos = v["g1"] @ v["g2"] / (np.linalg.norm(v["g1"]) * np.linalg.norm(v["g2"]))
    conflict = cos < 0
    labels = {"plain": "plain" if conflict else "plain = pcgrad"}
    for name, (color, ls) in style.items():
        if not conflict and name in ("g1'", "g2'", "pcgrad"):  # they coincide with g1, g2, plain: no overprint
            continue
        x, y = v[name]
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=color, ls=ls, lw=2))
        ax.plot([], [], color=color, ls=ls, lw=2, label=labels.get(name, name))  # a legend entry, never an overprint
    lim = 1.15 * (1.0 + ratio)  # fixed by |g2| alone: the arrows keep their scale while the angle moves
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=8, ncol=2, frameon=True)
    state = "conflict: both projected" if conflict else "no conflict: PCGrad = plain"
    ax.set_title(f"angle {angle_deg:.0f}°, cos {cos:+.2f}\n{state}", fontsize=9)
    return ax


def figure_png(draw, figsize=(4.6, 4.6)) -> bytes:
    """PNG bytes of a figure drawn by ``draw(ax)`` (off pyplot: nothing is shown twice in a notebook)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="tight")
    draw(fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def snapshot_box(children: list, snapshot, describe: str):
    """A VBox whose display also carries a PNG of its current view (``snapshot()`` -> PNG bytes).

    ``describe`` replaces the widget's text repr: it is what a plain-text reader sees.
    """
    import ipywidgets as w

    class SnapshotBox(w.VBox):
        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs) or {}
            data["text/plain"] = describe
            data["image/png"] = base64.b64encode(snapshot()).decode("ascii")
            return data

    return SnapshotBox(children)


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
    box = snapshot_box(
        [w.HBox([angle, ratio]), out],
        lambda: figure_png(lambda ax: plot_pcgrad_2d(angle.value, ratio.value, ax)),
        "PCGrad in 2-D: sliders for the angle between g1 and g2 and for |g2| / |g1| (live in JupyterLab)",
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


def playground(models: dict, tokenizer, sentence: str = "it is n't funny .", pair=None):
    """Type a sentence and a pair; see the chosen model's sentiment, paraphrase and similarity, live.

    ``models`` maps a label to a MultitaskModel, a run folder / best.pt, or an object with
    ``answer(sentence, pair)`` (e.g. :class:`mtl_lab.models.frozen.FrozenSentenceModel`); the first is
    shown first. The returned box keeps the latest answers in ``box.result`` (what the display shows).
    """
    import ipywidgets as w
    from IPython.display import display

    from mtl_lab.models.model import load_model

    models = {
        k: v if isinstance(v, torch.nn.Module) or hasattr(v, "answer") else load_model(v) for k, v in models.items()
    }
    pair = pair or ("How do I learn to cook?", "What is the best way to learn cooking?")
    which = w.Dropdown(options=list(models), description="model", layout=w.Layout(width="95%"))
    text = w.Text(value=sentence, description="sentence", layout=w.Layout(width="95%"))
    first = w.Text(value=pair[0], description="pair: a", layout=w.Layout(width="95%"))
    second = w.Text(value=pair[1], description="pair: b", layout=w.Layout(width="95%"))
    out = w.Output()
    box = snapshot_box(
        [which, text, first, second, out],
        lambda: figure_png(lambda ax: plot_prediction(box.result, ax, f"{which.value}: {text.value!r}"), (6.5, 3.0)),
        "Playground: a sentence and a pair, answered by the chosen model (live in JupyterLab)",
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
