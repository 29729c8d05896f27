"""The notebooks as a student opens them: JupyterLab in a real browser (Playwright driving Debian's Chromium).

- opened without running anything, 04 and 06 show their saved widget views (trusted, as
  ``notebooks run`` / ``notebooks trust`` leave them), and an untrusted copy shows the widgets'
  pictures, never a text repr like ``VBox(children=...)``;
- opening and saving a committed notebook leaves its file byte for byte as it was (git stays clean);
- run live, the PCGrad slider redraws the figure and typing in the playground changes its answer.

Skips (saying why) only where Playwright or a Chromium executable is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mtl_lab.course.notebooks import NOTEBOOK_DIR, jupyterlab_form

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = next(
    (p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium executable (Debian: apt-get install chromium; or set CHROMIUM=path)"
)
BOOKS = ("04_pcgrad.ipynb", "06_error_analysis.ipynb")
TOKEN = "mtl-lab-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, frozen_runs):
    """A JupyterLab server on a folder of notebook copies, with its own Jupyter config/data (trust database)."""
    root = tmp_path_factory.mktemp("lab")
    env = dict(
        os.environ,
        JUPYTER_DATA_DIR=str(root / ".jupyter-data"),
        JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(root / ".jupyter-runtime"),
        MTL_LAB_RUNS=str(frozen_runs),  # the frozen playground model's heads, fitted once per test session
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
        ],
        env=env,
        stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            yield {"root": root, "env": env, "url": f"http://127.0.0.1:{port}", "browser": browser}
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _trust(lab, path: Path) -> None:
    """Sign a notebook in the lab server's trust database, as ``python -m mtl_lab notebooks trust`` does."""
    code = (
        "import sys; from pathlib import Path; from mtl_lab.course.notebooks import trust; trust([Path(sys.argv[1])])"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], env=lab["env"], check=True)


def _page(lab, name: str):
    """A browser page with JupyterLab showing notebook ``name`` (of the lab's folder) in its only tab."""
    page = lab["browser"].new_page(viewport={"width": 1400, "height": 1000})
    url = f"{lab['url']}/lab/workspaces/{Path(name).stem}/tree/{name}?token={TOKEN}&reset"  # one tab, no restored ones
    for _ in range(120):  # the server may still be starting
        try:
            page.goto(url)
            break
        except playwright.Error:
            time.sleep(0.5)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=60_000)
    return page


def _open(lab, name: str):
    """A committed notebook opened without running anything, all its saved outputs rendered."""
    page = _page(lab, name)
    page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output').length > 5", timeout=60_000)
    page.wait_for_timeout(3000)  # widget views are restored asynchronously from the notebook's metadata
    return page


def _widget_outputs(page) -> list[str]:
    """The visible text of every output area (where a widget shown as text would appear)."""
    return page.locator(".jp-OutputArea-output").all_inner_texts()


@pytest.mark.parametrize("name", BOOKS)
def test_saved_widgets_render_without_a_kernel_and_saving_changes_nothing(lab, name):
    path = lab["root"] / name
    shutil.copy(NOTEBOOK_DIR / name, path)
    _trust(lab, path)
    before = path.read_bytes()
    page = _open(lab, name)
    try:
        texts = _widget_outputs(page)
        as_text = [t[:80] for t in texts if t.lstrip().startswith(("VBox(", "HBox(", "Output(", "Dropdown("))]
        assert not as_text, f"{name}: widgets shown as text: {as_text}"
        assert page.locator(".jp-OutputArea-output .jupyter-widgets").count() > 0, f"{name}: no widget view rendered"
        # the Output widget's saved figure is part of the saved view
        assert page.locator(".jp-OutputArea-output .jupyter-widgets img").count() > 0
        assert page.locator(".jp-mod-dirty").count() == 0, f"{name}: opening marked the notebook modified"
        page.keyboard.press("Control+s")
        page.wait_for_timeout(2000)
    finally:
        page.close()
    after = path.read_bytes()
    assert after == before, f"{name}: JupyterLab's save changed the file (git would show it modified)"


def test_untrusted_notebook_shows_pictures_not_widget_reprs(lab):
    name = "untrusted_04.ipynb"
    shutil.copy(NOTEBOOK_DIR / BOOKS[0], lab["root"] / name)
    page = _open(lab, name)
    try:
        texts = _widget_outputs(page)
        assert not [t for t in texts if t.lstrip().startswith(("VBox(", "HBox("))]
        pictures = page.locator(".jp-OutputArea-output img")
        assert pictures.count() >= 2  # the widget's picture and the static panels
    finally:
        page.close()


def _live_copy(name: str, setup: str, widget_cell: str, out: Path) -> None:
    """A notebook with the parameters cell of ``name``, a set-up cell, and ``name``'s cell that starts with ``widget_cell``."""
    nb = nbformat.read(str(NOTEBOOK_DIR / name), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    widget = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(widget_cell))
    cells = [nbformat.v4.new_code_cell(params.source), nbformat.v4.new_code_cell(setup)]
    cells.append(nbformat.v4.new_code_cell(widget.source))
    live = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    out.write_text(jupyterlab_form(nbformat.writes(live)))


def _run_all(page) -> None:
    """Run > Run All Cells, once the kernel is up (clicked again if the first click came too early)."""
    page.get_by_text("| Idle").first.wait_for(timeout=120_000)
    for _ in range(4):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:  # the first cell gets a prompt [*] or [1] once the kernel took it
            page.wait_for_function(
                "/\\[(\\*|\\d+)\\]/.test(document.querySelector('.jp-InputPrompt').textContent)", timeout=20_000
            )
            return
        except playwright.Error:
            continue
    raise AssertionError("Run All Cells did not start the kernel")


def _widget_picture(page, timeout_ms: int = 180_000):
    """The src of the (live) Output widget's figure, once it has one."""
    img = page.locator(".jp-OutputArea-output .jupyter-widgets .widget-output img").first
    img.wait_for(state="attached", timeout=timeout_ms)
    return img.get_attribute("src")


def _wait_changed(page, old: str, timeout_s: float = 60) -> str:
    end = time.time() + timeout_s
    while time.time() < end:
        page.wait_for_timeout(500)
        src = _widget_picture(page)
        if src != old:
            return src
    return old


def test_live_slider_redraws_the_pcgrad_figure(lab):
    name = "live_04.ipynb"
    setup = "from mtl_lab.course import widgets"
    _live_copy(BOOKS[0], setup, "playground = widgets.pcgrad_playground()", lab["root"] / name)
    page = _open_live(lab, name)
    try:
        first = _widget_picture(page)
        handle = page.locator(".widget-slider .noUi-handle").first
        handle.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        assert _wait_changed(page, first) != first, "moving the angle slider did not redraw the figure"
        value = page.locator(".widget-readout").first.inner_text()
        assert value.strip() != "135.00", f"the slider's readout did not move: {value}"
    finally:
        page.close()


def test_typing_into_the_playground_changes_its_answer(lab):
    name = "live_06.ipynb"
    setup = (
        "from mtl_lab.course import widgets\nfrom mtl_lab.models import frozen\nfrom mtl_lab.study import experiments\n"
        "from mtl_lab.models.backbone import load_tokenizer\n"
        "tokenizer = load_tokenizer()\n"
        "compared = {}  # no trained checkpoints here: the frozen model alone"
    )
    _live_copy(BOOKS[1], setup, "quick = frozen.frozen_model(", lab["root"] / name)
    page = _open_live(lab, name)
    try:
        first = _widget_picture(page, timeout_ms=300_000)  # fits the frozen model's heads (seconds to a minute)
        sentence = page.locator(".jp-OutputArea-output input[type='text']").first
        sentence.fill("")
        sentence.type("This film is a total disaster .", delay=20)
        assert _wait_changed(page, first) != first, "typing a sentence did not change the playground's answer"
        texts = _widget_outputs(page)
        assert not [t for t in texts if t.lstrip().startswith(("VBox(", "HBox("))]
    finally:
        page.close()


def _open_live(lab, name: str):
    """Open a notebook with no outputs yet and run all its cells in a kernel."""
    page = _page(lab, name)
    _run_all(page)
    return page
