"""The set-up helpers the notebooks call (the papermill runner is ``course.runner``).

What a notebook shows a student, set up here: progress bars in every long cell (:func:`working`,
:func:`quiet_progress_bars`), tables of three decimals that never wrap mid-word (:func:`text_table`), the
published cpu-profile results beside the run just made (:func:`beside_published`), and executed notebooks
whose saved widgets JupyterLab can always show again (:func:`tidy_widgets`).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_lab.data import REPO_ROOT, DataWarning
from mtl_lab.runs import runs_root

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "cpu", "gpu")
TABLE_WIDTH = 100  # characters: a printed table this wide fits JupyterLab's output area without wrapping


@dataclass
class Lab:
    """What a notebook needs after its parameters cell: its output folder and profile."""

    name: str
    profile: str
    seed: int
    out_dir: Path
    progress: bool = True  # progress bars in every profile: a smoke run on a slow laptop takes minutes too

    def headline(self, text: str) -> str:
        """Record the notebook's headline result (shown in the runner's summary table)."""
        (self.out_dir / "headline.txt").write_text(text)
        return text


def setup(name: str, profile: str = "smoke", seed: int = 0, out_dir: str | None = None) -> Lab:
    """Prepare a notebook: check the profile, seed everything, quiet library noise, make its folder.

    Tables print with three decimals (pandas' ``display.precision``), wrap their columns at
    ``TABLE_WIDTH`` characters instead of mid-word, and numpy scalars print as numbers (``0.262``, not
    ``np.float64(0.262)``).
    """
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mtl_lab.models.backbone import quiet_transformers

    quiet_transformers()
    warnings.filterwarnings("ignore", category=DataWarning)  # the notebooks show skipped rows as tables
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3})
    import pandas as pd

    pd.set_option("display.max_colwidth", None)  # sentences in error tables are read whole, never cut with "..."
    pd.set_option("display.precision", 3)
    pd.set_option("display.width", TABLE_WIDTH)
    np.set_printoptions(legacy="1.25")  # repr of a numpy scalar: 0.262, not np.float64(0.262)
    quiet_progress_bars()
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)
    folder = Path(out_dir) if out_dir else notebooks_root(profile) / name
    folder.mkdir(parents=True, exist_ok=True)
    return Lab(name, profile, seed, folder)


def notebooks_root(profile: str) -> Path:
    """Where ``notebooks run`` writes the executed notebooks and their figures: ``<runs>/notebooks/<profile>``."""
    return runs_root() / "notebooks" / profile


def short_path(path: str | os.PathLike) -> str:
    """A path as a notebook shows it: inside the repository relative to it, inside an environment from its
    ``site-packages``, else as it is."""
    text = str(path)
    if "site-packages/" in text:
        return "site-packages/" + text.split("site-packages/", 1)[1]
    for root, shown in ((str(runs_root()), "runs"), (str(REPO_ROOT), ".")):
        if text == root or text.startswith(root + os.sep):
            return shown + text[len(root) :]
    return text


def environment() -> dict:
    """Versions, device and backbone of this machine (for the set-up notebook)."""
    import torch
    import transformers

    from mtl_lab.models.backbone import backbone_path
    from mtl_lab.runtime import precision_choice, resolve_device

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
        "torch threads": torch.get_num_threads(),
        "precision (auto)": "{} ({})".format(*precision_choice("auto", resolve_device("auto"))),
        "backbone": short_path(backbone_path()),
    }


# ----------------------------------------------------------------------------- progress

_OPEN_BARS: list = []  # (container, display handle) of the notebook bars shown by the cell now running


def quiet_progress_bars() -> None:
    """Make tqdm's notebook bars (what ``tqdm.auto`` shows in JupyterLab) leave no widget behind.

    A bar is a widget: once its cell has run, its model is closed or gone with the kernel, and a saved
    output that points at it reads "Error displaying widget: model not found" when the notebook is opened
    again. So each bar is displayed under a display id, and when its cell has finished the output becomes
    plain text: nothing for a bar closed without ``leave`` (the training loop's), the bar's last line for the
    others (an interrupted run shows where it stopped). Installed once per kernel, by :func:`setup`.
    """
    try:
        import tqdm.notebook as tn
        from IPython import get_ipython
        from IPython.display import display as show
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(tn, "_mtl_lab_quiet", False):
        return

    def display(obj, *args, **kwargs):
        if isinstance(obj, tn.TqdmHBox) and not args and not kwargs:
            handle = show(obj, display_id=True)
            _OPEN_BARS.append((obj, handle))
            return handle
        return show(obj, *args, **kwargs)

    original_close = tn.tqdm_notebook.close

    def close(self):
        original_close(self)
        container = getattr(self, "container", None)
        if container is not None and not self.leave:
            container._mtl_lab_text = ""  # gone, as tqdm's leave=False means

    def as_text(*_):
        while _OPEN_BARS:
            container, handle = _OPEN_BARS.pop()
            text = getattr(container, "_mtl_lab_text", None)
            if text is None:
                try:
                    text = repr(container)  # the bar's last line
                except Exception:  # its tqdm object is gone
                    text = ""
            handle.update({"text/plain": text}, raw=True)

    tn.display = display
    tn.tqdm_notebook.close = close
    shell.events.register("post_run_cell", as_text)
    tn._mtl_lab_quiet = True


@contextmanager
def working(desc: str):
    """A progress bar for a long call that has none of its own: the time it has taken so far, ticking every
    second, gone when the call returns (``tqdm.auto``: a bar in JupyterLab, a line on stderr elsewhere)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", leave=False)
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()
        bar.close()


# ----------------------------------------------------------------------------- tables


def _cell(value, column, decimals: int = 3) -> str:
    """One number as a table shows it (the study's ``format_cell``), a gap as a dash (never "nan")."""
    from mtl_lab.study.analysis.tables import format_cell

    name = column[0] if isinstance(column, tuple) else column
    value = float(value) if isinstance(value, np.floating) else value
    return format_cell(value, str(name), decimals) or "—"


def text_table(table, width: int = TABLE_WIDTH, decimals: int = 3) -> str:
    """A table as text to print: ``decimals`` decimals, dashes for gaps, columns wrapped into blocks at
    ``width`` characters (a line that long fits JupyterLab's output area: nothing wraps mid-word)."""
    import pandas as pd

    columns = [[_cell(v, column, decimals) for v in table.iloc[:, k]] for k, column in enumerate(table.columns)]
    text = pd.DataFrame(dict(enumerate(columns)), index=table.index)
    text.columns = table.columns
    return text.to_string(line_width=width)


class Table:
    """A table displayed as HTML (pandas' Styler: three decimals, dashes for gaps, the best values in bold)
    with its text form as its plain-text repr (what a text reader and nbval see, never "<Styler at 0x...>")."""

    def __init__(self, table, best=()):
        self.table = table
        uid = hashlib.sha1(table.to_csv().encode()).hexdigest()[:8]  # the same table renders the same HTML
        self.styler = table.style.set_uuid(uid).format({c: (lambda v, c=c: _cell(v, c)) for c in table.columns})
        if best:
            self.styler = self.styler.highlight_max(
                subset=list(best), props="font-weight: bold; background-color: #d8f0d8"
            )

    def _repr_html_(self) -> str:
        return self.styler.to_html()

    def __repr__(self) -> str:
        return text_table(self.table)


def show_table(table, best=()) -> Table:
    """A table to display as a cell's result: see :class:`Table` (``best``: columns whose maximum is in bold)."""
    return Table(table, best)


# ----------------------------------------------------------------------------- published results beside yours

ENSEMBLE = "3 single-task models"  # notebook 01's pseudo-run: each task by its single-task model
METRICS = ("SST", "QQP", "STS", "overall")


def published(names, profile: str = "cpu") -> dict[str, dict]:
    """The published results (``results/<profile>/``) of runs, by label: ``names`` is a list of run names, a
    dict label -> run name, or your results by run name; :data:`ENSEMBLE` is built from the published
    ``single-<task>`` runs. Runs not published are left out."""
    from mtl_lab.study import analysis, experiments

    if isinstance(names, dict):  # label -> run name, or label -> your results (the label is the run's name)
        labels = {label: name if isinstance(name, str) else label for label, name in names.items()}
    else:
        labels = {n: n for n in names}
    singles = [f"single-{t}" for t in ("sst", "qqp", "sts")]
    found = experiments.finished_results(profile, [*labels.values(), *singles])
    out = {}
    for label, name in labels.items():
        if name == ENSEMBLE and all(s in found for s in singles):
            out[label] = analysis.single_task_ensemble(found)
        elif name in found:
            out[label] = found[name]
    return out


def with_ensemble(runs: dict[str, dict]) -> dict[str, dict]:
    """``runs`` with :data:`ENSEMBLE` first when all three single-task runs are among them."""
    from mtl_lab.study import analysis

    if all(f"single-{t}" in runs for t in ("sst", "qqp", "sts")):
        return {ENSEMBLE: analysis.single_task_ensemble(runs), **runs}
    return dict(runs)


def beside(mine, cpu, profile: str, columns=None):
    """Two tables with the same rows side by side, column by column: the published cpu profile's (``cpu``)
    and yours (``you``); the rows are yours, a row nobody published shows dashes."""
    import pandas as pd

    columns = list(columns or [c for c in mine.columns if c in cpu.columns])
    cpu = cpu.reindex(mine.index)
    parts = {(c, s): (cpu if s == "cpu" else mine)[c] for c in columns for s in ("cpu", "you")}
    table = pd.DataFrame(parts, index=mine.index)
    table.attrs["profile"] = profile
    return table


def beside_published(yours: dict[str, dict], cpu: dict[str, dict], profile: str, columns=(*METRICS, "minutes")):
    """Your runs' best-epoch dev scores (and minutes) beside the published cpu-profile runs of the same labels."""
    from mtl_lab.study import analysis

    if not yours:
        raise ValueError("no runs of yours to show")
    from mtl_lab.study.full_budget import row_minutes

    mine = analysis.results_table(yours)
    theirs = analysis.results_table(cpu) if cpu else mine.iloc[:0]
    from_seeds = []
    if "minutes" in theirs:  # a paused seed shows its row's quietly timed seeds, as the README's headline does
        for label in theirs.index[theirs["minutes"].isna() & theirs.index.isin(mine.index)]:
            minutes = row_minutes(str(label))
            if not math.isnan(minutes):
                theirs.loc[label, "minutes"] = round(minutes, 1)
                from_seeds.append(str(label))
    table = beside(mine, theirs, profile, [c for c in columns if c in mine.columns])
    table.attrs["minutes_from_seeds"] = from_seeds
    return table


def caption(table) -> str:
    """The line above a table of :func:`beside`: what its two columns per metric are."""
    profile = table.attrs.get("profile", "smoke")
    return (
        "cpu: the published run of the cpu profile (results/cpu/, trained on 2 CPU cores) | "
        f"you: your {profile} run, just now"
        + (" (tiny subsets: only the machinery shows)" if profile == "smoke" else "")
    )


def show_beside(table) -> None:
    """Print a table of :func:`beside` under its caption (wrapped at ``TABLE_WIDTH``)."""
    import textwrap

    print(textwrap.fill(caption(table), TABLE_WIDTH))
    print(text_table(table))
    minutes = table.get(("minutes", "cpu"))
    for label in table.attrs.get("minutes_from_seeds", []):
        print(
            f"minutes of {label}: the mean of its seeds timed on a quiet machine, as in the README (this one was not)"
        )
    if minutes is not None and minutes.isna().any():
        print("minutes —: that run was paused or shared the cores (results.json says so in its timing_note)")


def plot_beside(table, value: str | None = None, error: str | None = None, title: str = ""):
    """A table of :func:`beside` as horizontal bars, the published cpu run (solid) above yours (hatched).

    Without ``value``: one panel per metric (the first column level), a pair of bars per row. With ``value``
    (e.g. ``"mean"`` of a seed summary, ``error="std"``): one panel per first index level (the task).
    """
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(s for _, s in table.columns))
    names = {"cpu": "published cpu", "you": f"you ({table.attrs.get('profile', 'smoke')})"}
    if value is None:
        panels = {m: table.xs(m, axis=1, level=0) for m in dict.fromkeys(c for c, _ in table.columns) if m != "minutes"}
        errors = {m: None for m in panels}
        labels = [" · ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
        rows = {m: labels for m in panels}
    else:
        groups = list(dict.fromkeys(table.index.get_level_values(0)))
        panels = {g: table.loc[g].xs(value, axis=1, level=0) for g in groups}
        errors = {g: table.loc[g].xs(error, axis=1, level=0) if error else None for g in groups}
        rows = {g: [str(i) for i in table.loc[g].index] for g in groups}
    n_rows = max(len(r) for r in rows.values())
    from mtl_lab.study import analysis

    width = min(analysis.MAX_WIDTH, 2.6 * len(panels) + 2.4)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 0.42 * n_rows + 1.5), squeeze=False, sharey=value is None)
    for ax, (name, values) in zip(axes[0], panels.items()):
        y = np.arange(len(values))[::-1]
        for k, source in enumerate(sources):
            err = errors[name][source].fillna(0).to_numpy(float) if errors[name] is not None else None
            bars = ax.barh(y + (0.2 if k == 0 else -0.2), values[source].to_numpy(float), height=0.38, xerr=err,
                           color="tab:blue" if k == 0 else "white", edgecolor="tab:blue",
                           hatch=None if k == 0 else "///", label=names.get(source, source))  # fmt: skip
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        finite = values.to_numpy(float)[np.isfinite(values.to_numpy(float))]
        if finite.size:  # room for the labels at the bars' ends
            lo, hi = min(0.0, float(finite.min())), max(0.0, float(finite.max()))
            ax.set_xlim(lo - 0.25 * (hi - lo) * (lo < 0), hi + 0.25 * (hi - lo))
        ax.set_yticks(y, rows[name], fontsize=8)
        ax.set_title(str(name), fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return analysis.fit_width(fig)


def beside_seed_summary(study: dict[str, dict], profile: str):
    """Notebook 02's single-task study over seeds (mean, std, count of each variant) beside the published one."""
    from mtl_lab.study import analysis, experiments

    mine = analysis.seed_summary(study)
    cpu = {n: r for n, r in experiments.finished_results("cpu").items() if n.startswith("enc-")}
    return beside(mine, analysis.seed_summary(cpu) if cpu else mine.iloc[:0], profile, ["mean", "std", "count"])


def beside_ablation(results: dict[str, dict], models, profile: str):
    """Notebook 05's grid (one row per strategy, mean over seeds) beside the published cpu grid."""
    from mtl_lab.study import analysis, experiments

    grid = experiments.ablation_grid(models)
    mine = analysis.ablation_table(results, grid)
    theirs = analysis.ablation_table(experiments.finished_results("cpu", experiments.ablation_names(models)), grid)
    table = beside(mine, theirs, profile, list(METRICS))  # its minutes: in the table after it
    if len(models) == 1:  # one sentence model: its name on every row says nothing
        table = table.droplevel("model")
        table.attrs["profile"] = profile
    return table


def per_class_beside(cpu_preds: dict, preds: dict, task: str):
    """Notebook 06's accuracy per gold class of the published runs and of yours, with each side's examples."""
    import pandas as pd

    from mtl_lab.study import analysis

    parts = [analysis.per_class_accuracy(p, task).rename(columns={"examples": f"n ({side})"})
             for side, p in (("cpu", cpu_preds), ("yours", preds)) if p]  # fmt: skip
    return pd.concat(parts, axis=1)


# ----------------------------------------------------------------------------- notebook 06's runs


class MissingRuns(RuntimeError):
    """A run a notebook needs is not trained; IPython shows the message alone (one line, no traceback)."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


SMOKE_STAND_IN = "ft-cls-nli_qqp_sts-pcgrad"  # the smoke grid's best, trained when 05 left nothing to compare


def error_analysis_runs(
    profile: str, baseline: str = "agg-cls-sum", best: str | None = None, backbone=None, progress: bool = True
) -> dict[str, str]:
    """The two runs notebook 06 compares, ``{"baseline": ..., "best": ...}``: never the same run twice.

    ``best=None``: your best finished run of notebook 05's grid (with its weights) by dev overall, the baseline
    left out. A run that is missing is trained in the smoke profile (with nothing else finished, the smoke
    grid's best, ``SMOKE_STAND_IN``: about a minute); in the cpu and gpu profiles (an hour or more) the notebook
    stops with one line that says what to run first.
    """
    from mtl_lab.study import experiments

    names = experiments.ablation_names(experiments.ABLATION_MODELS[profile])
    own = experiments.finished_results(profile, names, source="own")
    done = {n: r for n, r in own.items() if experiments.has_weights(profile, n)}
    if best is None:
        others = {n: r for n, r in done.items() if n != baseline and len(r["config"]["train"]["tasks"]) == 3}
        best = experiments.best_run(others) if others else SMOKE_STAND_IN if profile == "smoke" else None
    if best is None or best == baseline:
        why = "BEST names the baseline" if best == baseline else "no other run of notebook 05's grid is finished"
        raise MissingRuns(
            f"{why}: run notebook 05 first (python -m mtl_lab sweep --profile {profile}), or set BEST to a finished run"
        )
    missing = [n for n in (baseline, best) if n not in done]
    if missing and profile != "smoke":
        raise MissingRuns(
            f"notebook 06 compares your trained runs: train {' and '.join(missing)} first "
            f"(python -m mtl_lab run {' '.join(missing)} --profile {profile}, or run notebook 05)"
        )
    for name in missing:
        print(f"{name}: not trained yet, training it now at smoke cost", flush=True)
        experiments.run_experiment(name, profile, backbone, progress=progress)
    score = {
        n: experiments.finished_results(profile, [n], source="own")[n]["best"]["overall"] for n in (baseline, best)
    }
    print(f"comparing {baseline} (dev overall {score[baseline]:.3f}) with {best} ({score[best]:.3f})")
    return {"baseline": baseline, "best": best}


def published_predictions(profile: str = "cpu", baseline: str = "baseline") -> dict[str, dict]:
    """The dev predictions of the published full-budget baseline and of the best published full-budget run
    that has them (``results/<profile>/<run>/predictions/``), labelled ``cpu baseline`` / ``cpu best`` (the
    run names printed)."""
    from mtl_lab.study import analysis, experiments

    best = experiments.best_published_with_predictions(profile, exclude=(baseline,))
    out, names = {}, []
    for label, name in (("baseline", baseline), ("best", best)):
        folder = experiments.published_dir(profile, name) / "predictions" if name else None
        if folder is not None and (folder / "sst-dev-output.csv").is_file():
            out[f"{profile} {label}"] = analysis.dev_predictions(folder)
            names.append(f"{profile} {label} = {name}")
    print(("published full-budget runs, whole dev set: " + ", ".join(names)) if names else "no published predictions")
    return out


# ----------------------------------------------------------------------------- figures of docs/


def fold_wide(png: bytes, max_width: int | None = None) -> list[bytes]:
    """A picture wider than ``max_width`` pixels (None: an output's width, ``analysis.figures.OUTPUT_PX``) cut into
    strips at white gaps between its panels (so that JupyterLab shows it at full size, not scaled down); a picture
    without such a gap is returned whole."""
    from PIL import Image

    from mtl_lab.study.analysis.figures import OUTPUT_PX

    max_width = max_width or OUTPUT_PX
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width = image.width
    if width <= max_width:
        return [png]
    pixels = np.asarray(image.convert("L"))
    blank = (pixels > 245).all(axis=0)  # columns without ink
    cuts, start = [], 0
    while width - start > max_width:
        gaps = [x for x in range(start + max_width // 3, start + max_width) if blank[x]]
        if not gaps:
            return [png]
        cuts.append(gaps[-1])
        start = gaps[-1]
    out = []
    for left, right in zip([0, *cuts], [*cuts, width]):
        buf = io.BytesIO()
        # a palette of 256 colours holds a plot's few colours and keeps the notebook a third the size
        image.crop((left, 0, right, image.height)).quantize(256).save(buf, format="PNG", optimize=True)
        out.append(buf.getvalue())
    return out


def show_docs_figure(name: str, title: str) -> None:
    """Show a figure of ``docs/figures/`` as an output of the cell: it is stored in the notebook, so it shows
    wherever JupyterLab is started (a markdown link to ``../docs/`` breaks when the server's root is
    ``notebooks/``); a wide one is folded into strips shown at full size."""
    from IPython.display import Image, Markdown, display

    path = REPO_ROOT / "docs" / "figures" / name
    if not path.is_file():
        print(f"{title}: not drawn yet (python -m mtl_lab figures --profile cpu writes docs/figures/{name})")
        return
    display(Markdown(f"**{title}** (`docs/figures/{name}`)"))
    for part in fold_wide(path.read_bytes()):
        display(Image(data=part, format="png"))
