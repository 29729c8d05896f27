"""The committed notebooks are stored in the form JupyterLab saves, so opening one leaves git clean."""

import pytest

from mtl_lab.notebooks import NOTEBOOK_DIR, jupyterlab_form

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
    assert jupyterlab_form(out) == out
