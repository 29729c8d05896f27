"""The committed notebooks are stored in the form JupyterLab saves, so opening one leaves git clean."""

import pytest

from mtl_lab.course.notebooks import NOTEBOOK_DIR, jupyterlab_form

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

    from mtl_lab.course.notebooks import trust

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
    box.children[0].children[0].value = 45  # the picture follows the slider
    assert box._repr_mimebundle_()["image/png"] != before


def test_rerun_cells_refreshes_only_the_given_cells(tmp_path):
    import nbformat

    from mtl_lab.course.notebooks import rerun_cells

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


@pytest.mark.parametrize("stem", sorted(__import__("mtl_lab.course.notebooks").course.notebooks.PUBLISHED_SECTIONS))
def test_the_published_sections_name_the_cells_that_read_results(stem):
    import json
    import re

    from mtl_lab.course.notebooks import PUBLISHED_SECTIONS

    cells = json.loads((NOTEBOOK_DIR / f"{stem}.ipynb").read_text())["cells"]
    setup, shown, _ = PUBLISHED_SECTIONS[stem]
    source = {i: "".join(cells[i]["source"]) for i in setup + shown}
    assert all(cells[i]["cell_type"] == "code" for i in source)
    assert "PROFILE = " in source[setup[0]]  # the parameters cell comes first
    assert all('"cpu"' in source[i] or "cpu" in source[i] for i in shown)
    trains = re.compile(r"(?<![\w.])run\(|run_experiment\(|exercise_run\(|sweep\(")
    assert not any(trains.search(source[i]) for i in shown)  # nothing here trains
