"""The notebooks as a student opens them: JupyterLab in a real browser (Playwright driving Debian's Chromium).

- opened without running anything, 04 and 06 show their saved widget views (trusted, as
  ``notebooks run`` / ``notebooks trust`` leave them), and an untrusted copy shows the widgets'
  pictures, never a text repr like ``VBox(children=...)``;
- opening and saving a committed notebook leaves its file byte for byte as it was (git stays clean);
- run live, the PCGrad slider redraws the figure and typing in the playground changes its answer;
- Run All, save, close (the kernel shut down), reopen 04 and 06: the widgets or their pictures show, never
  "Error displaying widget: model not found" (the progress bars leave no widget behind);
- from a server rooted at the repository or at ``notebooks/``, every image of every notebook loads; each
  output figure is screenshotted (into ``$MTL_LAB_SCREENSHOTS`` when set) and shown at its full size in a
  1280 px window with the file browser open; no printed line wraps mid-word.

Skips (saying why) only where Playwright or a Chromium executable is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from mtl_lab.course.notebooks import NOTEBOOK_DIR
from mtl_lab.course.runner import jupyterlab_form

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = next(
    (p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium executable (Debian: apt-get install chromium; or set CHROMIUM=path)"
)
BOOKS = ("04_pcgrad.ipynb", "06_error_analysis.ipynb")
ALL_BOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
TOKEN = "mtl-lab-test"
BROKEN = ("model not found", "Error displaying widget")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(root: Path, home: Path, **env_extra):
    """A JupyterLab server on ``root`` with its own Jupyter config/data (trust database, settings) under ``home``;
    every notebook cell kept in the page (no windowing), so that the whole notebook can be checked."""
    env = dict(
        os.environ,
        JUPYTER_DATA_DIR=str(home / ".jupyter-data"),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        **env_extra,
    )
    settings = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    (settings / "notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
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
        stdout=(home / f"server-{port}.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield {"root": root, "env": env, "url": f"http://127.0.0.1:{port}"}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, frozen_runs, browser):
    """A JupyterLab server on a folder of notebook copies."""
    root = tmp_path_factory.mktemp("lab")
    # the frozen playground model's heads are fitted once per test session; the runs of Run All go there too
    with _server(root, root, MTL_LAB_RUNS=str(frozen_runs)) as server:
        yield {**server, "browser": browser}


def _trust(lab, path: Path) -> None:
    """Sign a notebook in the lab server's trust database, as ``python -m mtl_lab notebooks trust`` does."""
    code = "import sys; from pathlib import Path; from mtl_lab.course.runner import trust; trust([Path(sys.argv[1])])"
    subprocess.run([sys.executable, "-c", code, str(path)], env=lab["env"], check=True)


def _page(lab, name: str, workspace: str | None = None, width: int = 1400):
    """A browser page ``width`` px wide with JupyterLab showing notebook ``name`` (of the lab's folder) in its only
    tab."""
    page = lab["browser"].new_page(viewport={"width": width, "height": 1000})
    workspace = workspace or re.sub(r"\W", "-", Path(name).stem)
    url = f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?token={TOKEN}&reset"  # one tab, no restored ones
    for _ in range(120):  # the server may still be starting
        try:
            page.goto(url)
            break
        except playwright.Error:
            time.sleep(0.5)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=60_000)
    return page


def _open(lab, name: str, workspace: str | None = None, widgets: bool = True, width: int = 1400):
    """A notebook opened without running anything, all its saved outputs rendered."""
    page = _page(lab, name, workspace, width)
    page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output').length > 5", timeout=60_000)
    if widgets:
        page.wait_for_timeout(3000)  # widget views are restored asynchronously from the notebook's metadata
    return page


LOADED = "[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) img')].every(i => i.complete)"


def _images(page) -> list[dict]:
    """Every image of the shown notebook, once each has loaded or failed."""
    try:
        page.wait_for_function(LOADED, timeout=20_000)
    except playwright.Error:
        pass  # reported below as images that do not load
    return page.evaluate(IMAGES)


def _broken_images(page) -> list[str]:
    images = _images(page)
    assert images, "no image at all"
    return [i["src"] for i in images if not i["complete"] or i["natural"] == 0]


def _widget_outputs(page) -> list[str]:
    """The visible text of every output area (where a widget shown as text would appear)."""
    return page.locator(".jp-OutputArea-output").all_inner_texts()


# widget views that show ipywidgets' red broken-link icon (a view without a kernel draws one per control)
ICONS = """[...document.querySelectorAll('.jupyter-widgets-disconnected')].filter(e => {
    const icon = getComputedStyle(e, '::before');
    return icon.display !== 'none' && icon.content !== 'none' && icon.content !== 'normal';
}).length"""


def _broken_widgets(page) -> list[str]:
    return [t[:80] for t in _widget_outputs(page) if any(b in t for b in BROKEN)]


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
        assert not _broken_widgets(page), f"{name}: {_broken_widgets(page)}"
        assert page.locator(".jp-OutputArea-output .jupyter-widgets").count() > 0, f"{name}: no widget view rendered"
        # the Output widget's saved figure is part of the saved view, with the hint on how to read it
        assert page.locator(".jp-OutputArea-output .jupyter-widgets img").count() > 0
        hint = page.locator(".mtl-lab-saved-hint").first
        assert hint.inner_text().startswith("A saved view"), "the saved view says what it is"
        line = float(hint.evaluate("e => parseFloat(getComputedStyle(e.querySelector('i') || e).lineHeight)"))
        assert hint.bounding_box()["height"] < 2 * line, "the hint is one line"
        assert page.evaluate(ICONS) == 0, f"{name}: broken-link icons stacked over the saved controls"
        assert page.locator(".jp-OutputArea-output .jupyter-widgets input:disabled, "
                            ".jp-OutputArea-output .jupyter-widgets select:disabled, "
                            ".jp-OutputArea-output .widget-slider.mod-disabled, "
                            ".jp-OutputArea-output .jupyter-widgets [disabled]").count() > 0  # fmt: skip
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


PROMPTS = "[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent.trim())"


def _run_all(page) -> None:
    """Run > Run All Cells, once the kernel is up (clicked again if the first click came too early)."""
    page.get_by_text("| Idle").first.wait_for(timeout=120_000)
    before = page.evaluate(PROMPTS)
    for _ in range(4):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:  # a code cell is queued or running ([*]) or has a new number once the kernel took it
            page.wait_for_function(
                f"(before => {{ const now = {PROMPTS}; return now.some((p, i) => p.includes('*') || p !== before[i]); }})",
                arg=before,
                timeout=20_000,
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
        assert page.locator(".mtl-lab-saved-hint").first.inner_text().strip() == ""  # live: no saved-view hint
    finally:
        page.close()


def test_typing_into_the_playground_changes_its_answer(lab):
    name = "live_06.ipynb"
    setup = (
        "from mtl_lab.course import notebooks, widgets\nfrom mtl_lab.models import frozen\n"
        "from mtl_lab.study import experiments\nfrom mtl_lab.models.backbone import load_tokenizer\n"
        "tokenizer = load_tokenizer()\n"
        "compared = {}  # no trained checkpoints here: the frozen model alone"
    )
    _live_copy(BOOKS[1], setup, "with notebooks.working(", lab["root"] / name)
    page = _open_live(lab, name)
    try:
        first = _widget_picture(page, timeout_ms=300_000)  # fits the frozen model's heads (a minute or two)
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


# ----------------------------------------------------------------------------- Run All, save, reopen


def _api(lab, method: str, path: str):
    request = urllib.request.Request(f"{lab['url']}{path}", method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def _shut_down_kernels(lab) -> None:
    """Close every session and its kernel, as a student does at the end of the day."""
    for session in _api(lab, "GET", "/api/sessions"):
        _api(lab, "DELETE", f"/api/sessions/{session['id']}")
    for kernel in _api(lab, "GET", "/api/kernels"):
        _api(lab, "DELETE", f"/api/kernels/{kernel['id']}")


def _wait_all_ran(page, name: str, timeout_s: float = 2400) -> None:
    """Wait until every code cell has run (a number in its prompt); fail at once on an error output."""
    end = time.time() + timeout_s
    while time.time() < end:
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        if errors.count():
            raise AssertionError(f"{name}: a cell failed: {errors.first.inner_text()[-600:]}")
        pending = page.evaluate(
            "[...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
            ".filter(p => !/\\[\\d+\\]/.test(p.textContent)).length"
        )
        if pending == 0:
            return
        page.wait_for_timeout(5000)
    raise AssertionError(f"{name}: Run All did not finish in {timeout_s:.0f} s")


@pytest.mark.parametrize("name", BOOKS)
def test_run_all_save_close_reopen_keeps_the_widgets(lab, name):
    """The student's day: open, Run All (smoke), save, close, reopen: the widgets (or their pictures) show, and
    nothing says "model not found" -- neither the widgets nor the progress bars of the training cells."""
    copy = f"day_{name}"
    path = lab["root"] / copy
    shutil.copy(NOTEBOOK_DIR / name, path)
    _trust(lab, path)
    page = _page(lab, copy)
    try:
        _run_all(page)
        _wait_all_ran(page, copy)
        page.get_by_text("| Idle").first.wait_for(timeout=120_000)
        assert not _broken_widgets(page), f"{copy} (live): {_broken_widgets(page)}"
        page.keyboard.press("Control+s")
        page.wait_for_function("document.querySelectorAll('.jp-mod-dirty').length === 0", timeout=30_000)
    finally:
        page.close()
    _shut_down_kernels(lab)
    saved = json.loads(path.read_text())
    state = saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for c in saved["cells"]
             for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]  # fmt: skip
    assert views and all(v in state for v in views), f"{copy}: a saved output points at a model not saved"
    page = _open(lab, copy, workspace=f"reopen-{Path(name).stem}")
    try:
        assert not _broken_widgets(page), f"{copy} (reopened): {_broken_widgets(page)}"
        shown = page.locator(".jp-OutputArea-output .jupyter-widgets img, .jp-OutputArea-output img")
        assert shown.count() > 0, f"{copy} (reopened): neither the widget nor its picture shows"
        assert page.locator(".jp-OutputArea-output .jupyter-widgets").count() > 0
    finally:
        page.close()
    _shut_down_kernels(lab)


# ----------------------------------------------------------------------------- images, figure sizes, text


@pytest.fixture(scope="module")
def repo_lab(tmp_path_factory, browser):
    """A server rooted at the repository, as `jupyter lab` started in the clone."""
    home = tmp_path_factory.mktemp("repo-lab")
    with _server(NOTEBOOK_DIR.parent, home) as server:
        yield {**server, "browser": browser}


@pytest.fixture(scope="module")
def notebooks_lab(tmp_path_factory, browser):
    """A server rooted at notebooks/, as the README's `jupyter lab notebooks/` starts it."""
    home = tmp_path_factory.mktemp("notebooks-lab")
    with _server(NOTEBOOK_DIR, home) as server:
        yield {**server, "browser": browser}


IMAGES = """[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) img')].map(i => ({
    src: i.getAttribute('src').slice(0, 60), complete: i.complete, natural: i.naturalWidth, client: i.clientWidth,
    output: !!i.closest('.jp-OutputArea-output')}))"""
WRAPPED = """(() => {
    const ctx = document.createElement('canvas').getContext('2d');
    return [...document.querySelectorAll('.jp-OutputArea-output pre')].flatMap(p => {
        const style = getComputedStyle(p);
        ctx.font = `${style.fontSize} ${style.fontFamily}`;
        const room = p.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return p.textContent.split('\\n').filter(line => ctx.measureText(line).width > room + 1);
    });
})()"""


FILE_BROWSER_OPEN = "!!document.querySelector('#jp-left-stack:not(.lm-mod-hidden) #filebrowser:not(.lm-mod-hidden)')"


def _without_saving(page):
    """Close a page of a committed notebook without letting anything be saved (nothing is edited anyway)."""
    assert page.locator(".jp-mod-dirty").count() == 0
    page.close()


def test_images_load_when_jupyterlab_is_rooted_at_notebooks(notebooks_lab):
    """Notebook 03 showed its embedding maps as ``../docs/figures/*.png``: outside a server rooted at
    ``notebooks/`` (the README's `jupyter lab notebooks/`), a 404. Every image of every notebook loads there; the
    next test checks them from a server rooted at the repository."""
    for name in ALL_BOOKS:
        page = _open(notebooks_lab, name, workspace=f"notebooks-{Path(name).stem}", widgets=False)
        try:
            broken = _broken_images(page)
            assert not broken, f"{name} (rooted at notebooks/): images that do not load: {broken}"
        finally:
            _without_saving(page)


@pytest.mark.parametrize("name", ALL_BOOKS)
def test_figures_are_shown_at_their_size_and_text_does_not_wrap(name, repo_lab, tmp_path):
    """From a server rooted at the repository (`jupyter lab` in the clone), in a 1280 px window with the file
    browser open: every image loads; each output figure is screenshotted and shown at its full size (JupyterLab
    shrinks a wider one, its labels with it). At 1400 px no printed line wraps (JupyterLab breaks a too-long line
    mid-word; the printed tables keep to 120 characters)."""
    shots = Path(os.environ.get("MTL_LAB_SCREENSHOTS", tmp_path)) / Path(name).stem
    shots.mkdir(parents=True, exist_ok=True)
    page = _open(repo_lab, "notebooks/" + name, workspace=f"sizes-{Path(name).stem}", width=1280)
    try:
        assert page.evaluate(FILE_BROWSER_OPEN), "the file browser should be open, as a student has it"
        broken = _broken_images(page)
        assert not broken, f"{name} (rooted at the repository): images that do not load: {broken}"
        figures = page.locator(".jp-OutputArea-output img")
        small = []
        for k in range(figures.count()):
            figure = figures.nth(k)
            figure.scroll_into_view_if_needed()
            figure.screenshot(path=str(shots / f"figure-{k:02d}.png"))
            natural, client = figure.evaluate("i => [i.naturalWidth, i.clientWidth]")
            if client < natural:
                small.append(f"figure {k}: {natural} px shown at {client} px")
        assert not small, f"{name}: figures shrunk to fit (screenshots in {shots}): {small}"
        page.set_viewport_size({"width": 1400, "height": 1000})  # printed tables are kept to 120 characters
        page.wait_for_timeout(500)
        wrapped = [line[:80] for line in page.evaluate(WRAPPED)]
        assert not wrapped, f"{name}: printed lines wider than the output area (JupyterLab wraps them): {wrapped[:3]}"
    finally:
        _without_saving(page)


@pytest.mark.parametrize("mode", ["student", "instructor"])
def test_the_students_jupyterlab_has_no_instructor_tools(browser, tmp_path, mode):
    """A student's JupyterLab (``course jupyter student``, what ``notebooks run`` sets up) shows no Nbgrader menu and
    no Validate button; ``course jupyter instructor`` brings them back (so the check can fail)."""
    from mtl_lab.course import jupyter_mode

    jupyter_mode.apply(mode, tmp_path / "prefix")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK_DIR / "00_setup_and_data.ipynb", root)
    with _server(root, tmp_path, JUPYTER_CONFIG_PATH=str(tmp_path / "prefix" / "etc" / "jupyter")) as server:
        page = _page({**server, "browser": browser}, "00_setup_and_data.ipynb")
        page.wait_for_timeout(2000)
        menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
        validate = page.locator("button:has-text('Validate'), [title*='Validate']").count()
        page.close()
    if mode == "student":
        assert "Nbgrader" not in menus and validate == 0, menus
    else:
        assert "Nbgrader" in menus, menus
