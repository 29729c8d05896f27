"""The committed notebooks as a student meets them.

- stored in the form JupyterLab saves, so opening one leaves git clean;
- their saved widgets point at saved models (no "model not found"), which a live run in JupyterLab makes again
  under the same ids; no progress bar left behind as a widget;
- outputs without "nan", ``np.float64(...)`` or this machine's paths, printed lines that fit the output area;
- progress in every long cell, none in the cells nbval compares;
- the numbers the text quotes agree with the results they quote.
"""

import re

import pytest

from mtl_lab.course.notebooks import NOTEBOOK_DIR
from mtl_lab.course.runner import jupyterlab_form
from mtl_lab.study.analysis.figures import OUTPUT_PX  # an output's width at 1280 px, the file browser open

BOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_committed_notebook_is_in_jupyterlab_form(path):
    text = path.read_text()
    assert jupyterlab_form(text) == text, f"{path.name}: run python -m mtl_lab notebooks run --profile smoke --inplace"


def test_the_form_rewrites_what_jupyterlab_would():
    text = (
        '{"cells": [], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},'
        ' "widgets": {"state": {"value": 135.0, "step": 0.5}}}, "nbformat": 4, "nbformat_minor": 5}'
    )
    out = jupyterlab_form(text)
    assert '"display_name": "Python 3 (ipykernel)"' in out
    assert '"value": 135\n' in out and '"step": 0.5' in out
    assert out.endswith("}\n")  # JupyterLab ends the file with a newline
    assert jupyterlab_form(out) == out


def test_trust_signs_notebooks_in_the_users_trust_database(tmp_path, monkeypatch):
    """JupyterLab renders saved widget views only in trusted notebooks: ``notebooks trust`` signs them."""
    import nbformat
    from nbformat.sign import NotebookNotary

    from mtl_lab.course.runner import trust

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    copy = tmp_path / "04_pcgrad.ipynb"
    copy.write_text((NOTEBOOK_DIR / "04_pcgrad.ipynb").read_text())
    assert not NotebookNotary().check_signature(nbformat.read(str(copy), as_version=4))
    assert trust([copy]) == [copy]
    assert NotebookNotary().check_signature(nbformat.read(str(copy), as_version=4))


def test_widgets_carry_a_picture_of_their_view():
    """Where widgets cannot render (untrusted, GitHub, HTML export) the output shows a picture, not 'VBox(...)'."""
    from mtl_lab.course import widgets

    box = widgets.pcgrad_playground()
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] and not bundle["text/plain"].startswith("VBox(")
    before = bundle["image/png"]
    box.children[1].children[0].value = 45  # the picture follows the slider (children[0]: the saved-view hint)
    assert box._repr_mimebundle_()["image/png"] != before


def test_rerun_cells_refreshes_only_the_given_cells(tmp_path):
    import nbformat

    from mtl_lab.course.runner import rerun_cells

    nb = nbformat.v4.new_notebook()
    setup = nbformat.v4.new_code_cell("x = 1\nprint('setup ran')")
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept as committed\n")]
    stale = nbformat.v4.new_code_cell("print(x + y)")
    stale.outputs = [nbformat.v4.new_output("stream", name="stdout", text="99\n")]
    nb.cells = [setup, nbformat.v4.new_code_cell("raise RuntimeError('a training cell: never run')"), stale]
    path = tmp_path / "book.ipynb"
    path.write_text(nbformat.writes(nb))
    assert rerun_cells(path, [2], setup=[0], prelude="y = 2") == [2]
    again = nbformat.read(str(path), as_version=4)
    assert again.cells[0].outputs[0]["text"] == "kept as committed\n"
    assert again.cells[2].outputs[0]["text"] == "3\n" and len(again.cells) == 3
    written = path.read_text()
    assert rerun_cells(path, [2], setup=[0], prelude="y = 2") == []  # nothing changed: the file is left as it was
    assert path.read_text() == written


@pytest.mark.parametrize("stem", sorted(__import__("mtl_lab.course.runner").course.runner.PUBLISHED_SECTIONS))
def test_the_published_sections_name_the_cells_that_read_results(stem):
    import json
    import re

    from mtl_lab.course.runner import PUBLISHED_SECTIONS

    cells = json.loads((NOTEBOOK_DIR / f"{stem}.ipynb").read_text())["cells"]
    setup, shown, _ = PUBLISHED_SECTIONS[stem]
    source = {i: "".join(cells[i]["source"]) for i in setup + shown}
    assert all(cells[i]["cell_type"] == "code" for i in source)
    assert "PROFILE = " in source[setup[0]]  # the parameters cell comes first
    assert all('"cpu"' in source[i] or "cpu" in source[i] for i in shown)
    trains = re.compile(r"(?<![\w.])run\(|run_experiment\(|exercise_run\(|sweep\(")
    assert not any(trains.search(source[i]) for i in shown)  # nothing here trains


# ----------------------------------------------------------------------------- widgets

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _outputs(nb):
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            yield i, cell, out


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_saved_widgets_point_at_saved_models(path):
    """Every widget output shows a model of the saved state (with every model it refers to), carries a picture,
    and has the fixed id a live run makes again; saved controls are greyed out and say how to bring them to life."""
    import json
    import re

    from mtl_lab.course.widgets import HINT_CLASS, SAVED_HINT, stable_id

    nb = json.loads(path.read_text())
    state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    shown = [
        (i, out["data"][WIDGET_VIEW]["model_id"], out)
        for i, _, out in _outputs(nb)
        if WIDGET_VIEW in out.get("data", {})
    ]
    fixed = {stable_id(n) for n in ("pcgrad_playground", "playground")}
    for i, model, out in shown:
        assert model in state, f"{path.name} cell {i}: its widget's model is not saved (JupyterLab: model not found)"
        assert "image/png" in out["data"], f"{path.name} cell {i}: a widget without a picture (a progress bar?)"
        assert model in fixed, f"{path.name} cell {i}: a widget displayed under a random id"
    for model, entry in state.items():
        for ref in re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps(entry)):
            assert ref in state, f"{path.name}: model {model} refers to {ref}, which is not saved"
        values = entry["state"]
        assert values.get("disabled", True) is True, f"{path.name}: a saved control is not greyed out"
        if HINT_CLASS in values.get("_dom_classes", []):
            assert values["value"] == SAVED_HINT
    if shown:
        assert any(HINT_CLASS in e["state"].get("_dom_classes", []) for e in state.values())
    else:
        assert not state, f"{path.name}: saved widget state that no output shows"


def test_displayed_widgets_keep_their_id_across_runs():
    """The box a notebook displays has the same model id in every kernel; running the cell again closes the
    previous box (one live model an id) instead of leaving two."""
    from mtl_lab.course import widgets

    first = widgets.pcgrad_playground()
    assert first.model_id == widgets.stable_id("pcgrad_playground")
    second = widgets.pcgrad_playground()
    assert second.model_id == widgets.stable_id("pcgrad_playground")
    assert first.comm is None and second.comm is not None  # the first box was closed
    assert second.children[0].model_id == widgets.stable_id("pcgrad_playground/hint")
    assert second.children[0].value == ""  # the hint is for saved views only


def test_playground_lists_each_model_once(tmp_path):
    from mtl_lab.course.widgets import unique_models

    run = tmp_path / "agg-cls-sum"
    run.mkdir()
    frozen = object()
    models = {"frozen": frozen, "baseline": run / "best.pt", "best": run, "again": frozen, "other": tmp_path / "x"}
    assert list(unique_models(models)) == ["frozen", "baseline", "other"]


def _saved_notebook(bar_id="a" * 12 + "4" + "b" * 19):
    """An executed notebook as nbclient leaves it: a progress bar (no picture) and a snapshot box."""
    from mtl_lab.course.widgets import HINT_CLASS, stable_id

    box, hint = stable_id("pcgrad_playground"), stable_id("pcgrad_playground/hint")
    slider, layout, orphan = ("c" * 12 + "4" + "d" * 19), ("e" * 12 + "4" + "f" * 19), ("1" * 12 + "4" + "2" * 19)
    view = lambda m: {"model_id": m, "version_major": 2, "version_minor": 0}  # noqa: E731
    state = {
        box: {"model_name": "VBoxModel", "state": {"children": [f"IPY_MODEL_{hint}", f"IPY_MODEL_{slider}"]}},
        hint: {"model_name": "HTMLModel", "state": {"value": "", "_dom_classes": [HINT_CLASS], "disabled": False}},
        slider: {
            "model_name": "FloatSliderModel",
            "state": {"value": 135, "disabled": False, "layout": f"IPY_MODEL_{layout}"},
        },
        layout: {"model_name": "LayoutModel", "state": {}},
        bar_id: {"model_name": "HBoxModel", "state": {"children": [f"IPY_MODEL_{orphan}"]}},
        orphan: {"model_name": "FloatProgressModel", "state": {"value": 3}},
    }
    cells = [
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": [
            {"output_type": "display_data", "data": {WIDGET_VIEW: view(bar_id), "text/plain": "bar"}, "metadata": {}},
            {"output_type": "stream", "name": "stdout", "text": "epoch 1 done\n"}]},
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": [
            {"output_type": "display_data", "data": {WIDGET_VIEW: view(box), "image/png": "iVBOR", "text/plain": "box"}, "metadata": {}}]},
    ]  # fmt: skip
    meta = {"widgets": {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def test_tidy_widgets_keeps_what_a_reopened_notebook_can_show():
    import copy

    from mtl_lab.course.runner import tidy_widgets
    from mtl_lab.course.widgets import SAVED_HINT, stable_id

    nb = tidy_widgets(_saved_notebook(), "04_pcgrad")
    assert [o["output_type"] for o in nb["cells"][0]["outputs"]] == ["stream"]  # the bar's widget output went
    state = nb["metadata"]["widgets"][WIDGET_STATE]["state"]
    assert len(state) == 4  # box, hint, slider, its layout: the bar's models went
    assert stable_id("pcgrad_playground") in state and stable_id("pcgrad_playground/hint") in state
    assert state[stable_id("pcgrad_playground/hint")]["state"]["value"] == SAVED_HINT
    sliders = [e for e in state.values() if e["model_name"] == "FloatSliderModel"]
    assert sliders[0]["state"]["disabled"] is True
    assert all(m[12] == "5" for m in state)  # the kernel's random ids renamed: fixed ones, in order
    again = tidy_widgets(copy.deepcopy(nb), "04_pcgrad")
    assert again == nb  # a second pass changes nothing
    other = tidy_widgets(_saved_notebook(bar_id="9" * 12 + "4" + "8" * 19), "04_pcgrad")
    assert other["metadata"] == nb["metadata"]  # another execution, the same saved state


def test_public_paths_hide_this_machines_folders(monkeypatch, tmp_path):
    from mtl_lab.course.notebooks import REPO_ROOT
    from mtl_lab.course.runner import public_paths

    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "fresh-runs"))
    text = f"sampler-proportional: the same configuration as baseline ({tmp_path}/fresh-runs/smoke/baseline): reused\n"
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stdout", "text": text},
        {"output_type": "execute_result", "data": {"text/plain": f"{REPO_ROOT}/notebooks/x.png"}}]}]}  # fmt: skip
    public_paths(nb)
    assert "(runs/smoke/baseline)" in nb["cells"][0]["outputs"][0]["text"]
    assert nb["cells"][0]["outputs"][1]["data"]["text/plain"] == "./notebooks/x.png"


# ----------------------------------------------------------------------------- what the outputs show


def _texts(nb):
    """(cell, text) of every stream and every text/plain / text/html / text/markdown of a notebook's outputs."""
    for i, _, out in _outputs(nb):
        if "text" in out:
            yield i, "".join(out["text"])
        for mime in ("text/plain", "text/html", "text/markdown"):
            if mime in out.get("data", {}):
                yield i, "".join(out["data"][mime])


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_outputs_show_numbers_not_reprs_or_machine_paths(path):
    import json
    import re

    nb = json.loads(path.read_text())
    for i, text in _texts(nb):
        assert "np.float64(" not in text and "np.int64(" not in text, f"{path.name} cell {i}: a numpy repr"
        assert not re.search(r"\bnan\b", text, re.IGNORECASE), f"{path.name} cell {i}: 'nan' in an output"
        for machine in ("/tmp/", "/home/", "/root/", str(NOTEBOOK_DIR.parent)):
            assert machine not in text, f"{path.name} cell {i}: a path of this machine ({machine})"
        assert "<pandas.io.formats.style.Styler" not in text, f"{path.name} cell {i}: a Styler's repr"


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_printed_lines_fit_the_output_area(path):
    """JupyterLab wraps a printed line wider than its output area mid-word ("paper ove / rall"); at 1400 px
    (the browser test's window, the file browser open) about 120 characters fit."""
    import json

    nb = json.loads(path.read_text())
    for i, _, out in _outputs(nb):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            lines = "".join(out["text"]).splitlines()
            wide = [line for line in lines if len(line) > 120]
            assert not wide, f"{path.name} cell {i}: {len(wide[0])} characters: {wide[0][:60]}..."


def test_epoch_lines_fit_the_output_area():
    """The line printed after each epoch, multi-task and SimCSE alike, fits the 120 characters above."""
    from mtl_lab.training.loop import epoch_line

    tasks = {"sst_acc": 0.512, "qqp_acc": 0.845, "sts_pearson": -0.868, "sts_spearman": -0.866, "overall": 0.747}
    simcse = {"sts_cos_pearson": -0.753, "sts_cos_spearman": -0.733, "alignment": 0.174, "uniformity": -2.147}
    for desc, metrics in (("sst/qqp/sts", tasks), ("simcse", {**simcse, "overall": -0.733})):
        assert len(f"[{desc} epoch 10/10] dev: {epoch_line(metrics)} (12345s train)") <= 120


# ----------------------------------------------------------------------------- progress

TRAINS = re.compile(r"(?<![\w.])run\(|run_experiment\(|exercise_run\(|sweep\(|error_analysis_runs\(|frozen_model\(|"
                    r"predict_files\(|optimize_toys\(|run_dev_predictions\(")  # fmt: skip


def _code_cells(path):
    import json

    return [
        (i, "".join(c["source"]))
        for i, c in enumerate(json.loads(path.read_text())["cells"])
        if c["cell_type"] == "code"
    ]


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_long_cells_show_progress_and_nbval_compares_none(path):
    """A cell that trains or predicts shows a progress bar in every profile (``progress=lab.progress``, or inside
    ``notebooks.working``); no cell nbval compares does either (a bar is no stable output)."""
    for i, source in _code_cells(path):
        if not TRAINS.search(source):
            continue
        assert "NBVAL_CHECK_OUTPUT" not in source, f"{path.name} cell {i}: nbval would compare a training cell"
        for line in source.splitlines():
            if TRAINS.search(line) and "run = lambda" not in line:
                shown = "progress=lab.progress" in line or "notebooks.working(" in source or "run(" in line
                assert shown, f"{path.name} cell {i}: no progress bar for {line.strip()[:60]}"
        assert "progress=False" not in source and 'profile != "smoke"' not in source


def test_setup_shows_progress_in_every_profile(tmp_path):
    from mtl_lab.course import notebooks

    for profile in notebooks.PROFILES:
        assert notebooks.setup("00_setup_and_data", profile, out_dir=str(tmp_path)).progress is True
    assert str(__import__("numpy").float64(0.262)) == "0.262" and repr(__import__("numpy").float64(0.262)) == "0.262"


def test_text_tables_have_three_decimals_and_no_nan():
    import numpy as np
    import pandas as pd

    from mtl_lab.course.notebooks import TABLE_WIDTH, text_table

    table = pd.DataFrame(
        {
            "SST": [0.123456, np.nan],
            "minutes": [24.123, 1.0],
            "paper overall": [0.78551, np.nan],
            "best epoch": [2, np.nan],
        }
    )
    text = text_table(table)
    assert "0.123" in text and "24.1" in text and "0.786" in text and "nan" not in text.lower()
    assert " 2\n" in text and "2.000" not in text  # an epoch is a whole number, also in a column with a gap
    wide = pd.DataFrame({f"a long column name {k}": [0.5] for k in range(12)})
    assert max(len(line) for line in text_table(wide).splitlines()) <= TABLE_WIDTH


# ----------------------------------------------------------------------------- numbers in the text


def _markdown(stem: str) -> str:
    import json

    cells = json.loads((NOTEBOOK_DIR / f"{stem}.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_quoted_numbers_match_the_published_results():
    """The numbers the notebooks' text quotes from the published cpu study agree with it (rounded as quoted)."""
    import json

    from mtl_lab.study import analysis, experiments

    grid = analysis.ablation_table(experiments.finished_results("cpu", experiments.ablation_names()),
                                   experiments.ablation_grid())  # fmt: skip
    text05 = _markdown("05_ablations")
    multi = grid[~grid.index.get_level_values("strategy").str.startswith("sequential")]
    assert "within .675-.685 overall" in text05
    assert round(multi["overall"].min(), 3) >= 0.675 and round(multi["overall"].max(), 3) <= 0.685
    sbert = grid.loc["SBERT + CNN-BiLSTM"]
    pre = sbert[
        [s != "initial" and not s.startswith(("PCGrad", "sequential")) or s.startswith("PCGrad +") for s in sbert.index]
    ]
    assert "r .815 → .824-.833" in text05 and "Quora goes .732 → .717-.735" in text05
    assert f"{sbert.loc['initial', 'STS']:.3f}" == "0.815" and f"{sbert.loc['initial', 'QQP']:.3f}" == "0.732"
    assert (round(pre["STS"].min(), 3), round(pre["STS"].max(), 3)) == (0.824, 0.833)
    assert (round(pre["QQP"].min(), 3), round(pre["QQP"].max(), 3)) == (0.717, 0.735)
    assert "keeps an STS r of .365" in text05
    assert f"{grid.loc[('BERT [CLS] multi-task', 'sequential SST → STS → QQP'), 'STS']:.3f}" == "0.365"
    seeded = analysis.seed_check(
        analysis.ablation_table(experiments.finished_results("cpu"), experiments.ablation_grid())
    )
    assert "`ft-sbert-nli`, .6847) averages .683 over three seeds" in text05
    assert f"{sbert.loc['NLI', 'overall']:.4f}" == "0.6847"
    assert f"{seeded.set_index('run').loc['ft-sbert-nli', 'overall']:.3f}" == "0.683"
    assert "146 minutes of grid runs plus 19 minutes of pre-training" in text05
    pre_runs = experiments.finished_results(
        "cpu", [f"pre-{m}-{s}" for m in ("cls", "sbert") for s in experiments.PRETRAIN_STRATEGIES]
    )
    assert abs(grid["minutes"].sum() - 146) < 1 and abs(sum(r["wall_time_s"] for r in pre_runs.values()) / 60 - 19) < 1
    text04 = _markdown("04_pcgrad")
    agg = analysis.results_table(
        experiments.finished_results(
            "cpu", ["agg-cls-sum", "agg-cls-pcgrad", "agg-cls-imtl_g", "agg-sbert-sum", "agg-sbert-pcgrad"]
        )
    )
    assert "5 minutes a [CLS] run and 10 an SBERT + CNN-BiLSTM run" in text04
    assert ((agg.loc[[n for n in agg.index if "cls" in n], "minutes"] - 5).abs() <= 0.5).all()
    assert ((agg.loc[[n for n in agg.index if "sbert" in n], "minutes"] - 10).abs() <= 1).all()
    text03 = _markdown("03_simcse")
    cells = json.loads((NOTEBOOK_DIR / "03_simcse.ipynb").read_text())["cells"]
    mined = next(c for c in cells if 'counts.loc["total"]' in "".join(c["source"]))
    total = next(line for line in "".join(mined["outputs"][0]["text"]).splitlines() if line.startswith("total"))
    for number in ("1,274", "7,168", "15,712"):
        assert number in text03 and number.replace(",", "") in total.split()
    assert "69 minutes" not in _markdown("02_sbert_cnn_bilstm") and "one short epoch" not in _markdown(
        "01_bert_baselines"
    )


@pytest.mark.parametrize("path", BOOKS, ids=[p.stem for p in BOOKS])
def test_figures_fit_a_1280_px_window_with_the_file_browser_open(path):
    """A picture wider than the output area is shrunk by JupyterLab, its labels with it: none is wider."""
    import base64
    import io
    import json

    from PIL import Image

    nb = json.loads(path.read_text())
    wide = []
    for i, _, out in _outputs(nb):
        png = out.get("data", {}).get("image/png")
        if png:
            width = Image.open(io.BytesIO(base64.b64decode(png))).width
            if width > OUTPUT_PX:
                wide.append(f"cell {i}: {width} px")
    assert not wide, f"{path.name}: figures wider than {OUTPUT_PX} px: {wide}"


def test_fit_width_narrows_a_figure_with_its_legend_outside():
    """``analysis.fit_width`` (every notebook figure passes it in ``analysis.savefig``): a figure whose outside legend
    makes it wider than ``MAX_WIDTH`` gives up axes width, not text size."""
    import matplotlib.pyplot as plt

    from mtl_lab.study.analysis import MAX_WIDTH, fit_width
    from mtl_lab.study.analysis.figures import legend_right

    fig, ax = plt.subplots(figsize=(MAX_WIDTH, 3))
    for k in range(4):
        ax.plot(range(5), label=f"a rather long run name, number {k}")
    fig.tight_layout()
    legend_right(ax)  # placed after the layout: it hangs out of the figure
    extent = lambda: fig.get_tightbbox(fig.canvas.get_renderer()).width  # noqa: E731
    assert extent() > MAX_WIDTH + 1  # the legend hangs out: the check can fail
    fit_width(fig)
    assert extent() <= MAX_WIDTH + 0.02
    assert ax.get_legend().get_texts()[0].get_fontsize() == 8
    plt.close(fig)
    # text wider than the limit on its own (a title): a warning, and the axes are not squashed for nothing
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_title("a title far too long to fit any notebook output " * 3)
    with pytest.warns(UserWarning, match="its text is wider"):
        fit_width(fig)
    assert fig.get_size_inches()[0] > 4
    plt.close(fig)


def test_wide_docs_figures_fold_into_narrow_palette_strips():
    """A wide figure of docs/figures/ is cut at the white gaps between panels into strips that JupyterLab shows at
    full size, stored with a 256-colour palette (a plot has few colours; the notebook stays small)."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from mtl_lab.course.notebooks import fold_wide

    fig, axes = plt.subplots(1, 3, figsize=(18, 3), dpi=100)
    for ax in axes:
        ax.scatter(range(50), range(50), c=range(50))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    plt.close(fig)
    strips = [Image.open(io.BytesIO(part)) for part in fold_wide(buf.getvalue())]
    assert len(strips) >= 2 and all(s.width <= OUTPUT_PX and s.mode == "P" for s in strips)
    assert sum(s.width for s in strips) == 1800
