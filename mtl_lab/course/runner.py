"""The papermill runner of the notebook series, and the form in which executed notebooks are committed.

``python -m mtl_lab notebooks run --profile smoke|cpu|gpu [--only 01 ...]`` executes the numbered
notebooks in order into ``runs/notebooks/<profile>/``, keeps going after a failure, prints a
summary table (notebook, status, minutes, headline metric) and exits non-zero if any failed.
``--inplace`` (smoke profile) writes the executed notebooks back into ``notebooks/``: that is
how the committed notebooks get their outputs, which nbval then checks. ``notebooks trust``
signs the committed notebooks as trusted, so JupyterLab shows their saved widgets (see :func:`trust`).
``notebooks refresh`` re-runs only the cells that show published results (:func:`refresh_published`).
"""

import copy
import json
import os
import re
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from mtl_lab.course.notebooks import NOTEBOOK_DIR, notebooks_root
from mtl_lab.data import REPO_ROOT
from mtl_lab.runs import runs_root

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
# the minutes of the committed smoke series (``notebooks run --inplace``): the README's notebook table quotes them
TIMINGS = REPO_ROOT / "results" / "smoke-notebooks.json"


def _js_number(text: str) -> float | int:
    """A JSON number as JupyterLab hands it back: a browser prints 3.0 as 3."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def jupyterlab_form(text: str) -> str:
    """A notebook's JSON in the form JupyterLab saves it (its kernelspec, numbers as a browser prints them),
    so that opening and autosaving a committed notebook leaves git clean."""
    import nbformat

    nb = nbformat.from_dict(json.loads(text, parse_float=_js_number))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nbformat.writes(nb) + "\n"  # JupyterLab ends the file with a newline


def trust(paths: list[Path] | None = None) -> list[Path]:
    """Sign notebooks as trusted in this user's Jupyter trust database (``jupyter trust``); returns them.

    JupyterLab renders a saved widget view only in a trusted notebook: in an untrusted one its
    widget renderer is off and the output falls back to a picture (or, without one, to a text repr
    such as ``VBox(children=...)``). A fresh clone is untrusted on every machine, so ``notebooks
    run`` signs the lab's notebooks, and ``notebooks trust`` does it alone.
    """
    import nbformat
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary()
    paths = list(paths) if paths is not None else notebook_paths()
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        if not notary.check_signature(nb):
            notary.sign(nb)
    return paths


# the kernel's warning that its local TCP transport is unencrypted, once per notebook, is noise
# jupyter_client interrupts a kernel (SIGINT) before shutting it down; a kernel still in a message handler then
# logs "KeyboardInterrupt caught in kernel." at ERROR level after a successful run: that line alone is dropped
QUIET_SHUTDOWN = (
    "get_ipython().kernel.log.addFilter(lambda record: 'KeyboardInterrupt caught in kernel' not in record.getMessage())"
)
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR", f"--IPKernelApp.exec_lines={[QUIET_SHUTDOWN]!r}"]

# The cells of each committed notebook that show PUBLISHED results (results/cpu/) alone: (setup cells, those
# cells, prelude). ``notebooks refresh`` re-runs them after ``publish`` (their nbval-checked outputs
# would otherwise compare against the previous results); tests/course/test_notebook_form.py checks the indices.
# The first results of each notebook put the published runs beside the user's own (``beside_published``):
# those cells need the smoke runs, nbval does not check them, and ``notebooks run --inplace`` refreshes them.
PUBLISHED_SECTIONS = {
    "01_bert_baselines": ([1, 2], [27, 28, 29], ""),
    "02_sbert_cnn_bilstm": ([1, 2], [21, 22, 23], ""),
    "05_ablations": ([1, 2], [13, 14, 15, 17, 20, 25, 26], "from mtl_lab.study import compare, report"),
    "06_error_analysis": (  # its set-up cell reads (or trains) your smoke runs: only what the cpu section needs
        [1],
        [20, 21],
        "from IPython.display import display\n"
        "from mtl_lab.course import notebooks\n"
        "from mtl_lab.study import analysis, experiments, full_budget\n"
        "from mtl_lab.models.backbone import load_tokenizer\n"
        'lab = notebooks.setup("06_error_analysis", PROFILE, SEED, OUT_DIR)\n'
        "tokenizer = load_tokenizer(MODEL)\n"
        'cpu_preds = notebooks.published_predictions("cpu")',
    ),
}


def refresh_published(only: list[str] | None = None) -> dict[str, list[int]]:
    """Re-run the published-results cells of the committed notebooks (your own runs kept out of them)."""
    import tempfile
    from unittest import mock

    changed = {}
    with tempfile.TemporaryDirectory() as empty, mock.patch.dict(os.environ, {"MTL_LAB_RUNS": empty}):
        for book in notebook_paths(only):  # no runs of your own in the committed outputs
            if book.stem in PUBLISHED_SECTIONS:
                setup, cells, prelude = PUBLISHED_SECTIONS[book.stem]
                changed[book.name] = rerun_cells(book, cells, setup, prelude)
                print(f"{book.name}: cells {cells} re-run, {len(changed[book.name])} changed", flush=True)
    return changed


def _output_text(cell) -> str:
    """A cell's outputs as comparable text: object addresses (``<... at 0x7f...>``) differ on every run."""
    return re.sub(r" at 0x[0-9a-f]+", " at 0x", json.dumps(cell.outputs, sort_keys=True))


def rerun_cells(path: str | os.PathLike, cells: list[int], setup: list[int], prelude: str = "") -> list[int]:
    """Execute some cells of a committed notebook again and store their new outputs, the rest untouched.

    For the sections that show PUBLISHED results (``results/``): after ``publish`` they are stale,
    and re-running the whole smoke notebook would retrain everything above them. ``setup`` cells
    (parameters, imports) run first with their outputs kept; ``prelude`` is code run before
    ``cells`` (e.g. a definition a skipped training cell would have made). Indices count every
    cell of the notebook. Returns the cells whose outputs changed.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    before = {i: _output_text(nb.cells[i]) for i in cells}
    client = NotebookClient(
        nb,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        extra_arguments=KERNEL_ARGS,
    )
    with client.setup_kernel():
        for i in setup:
            kept = copy.deepcopy(nb.cells[i])
            client.execute_cell(nb.cells[i], i)
            nb.cells[i] = kept
        if prelude:  # a cell of its own, appended for the moment and removed again
            nb.cells.append(nbformat.v4.new_code_cell(prelude))
            client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
            nb.cells.pop()
        for i in cells:
            count = nb.cells[i].execution_count
            client.execute_cell(nb.cells[i], i)
            nb.cells[i].execution_count = count
    changed = [i for i in cells if _output_text(nb.cells[i]) != before[i]]
    if changed:  # else the file stays as it was (no new execution timestamps to commit)
        path.write_text(nbformat.writes(nb))
        saved_form(path)
        trust([path])
    return changed


def notebook_paths(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, optionally only those whose name starts with one of ``only``."""
    books = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if any(b.name.startswith(o) or b.stem == o for o in only)]
        if not books:
            raise ValueError(
                f"no notebook matches {only}; have {[b.name for b in sorted(NOTEBOOK_DIR.glob('*.ipynb'))]}"
            )
    return books


# ----------------------------------------------------------------------------- executed notebooks as committed

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_REF = re.compile(r"IPY_MODEL_([0-9a-f]{32})")


def _kernel_id(model_id: str) -> bool:
    """A model id the kernel drew at random (uuid4), not one of the fixed ids of :mod:`widgets` (uuid5)."""
    return len(model_id) == 32 and model_id[12] == "4"


def tidy_widgets(nb: dict, name: str) -> dict:
    """An executed notebook's widgets as the saved notebook needs them (``nb``: the notebook as JSON, changed
    in place and returned).

    - Widget outputs without a picture beside them (a progress bar that was not turned into text) go: their
      model is gone once the kernel is, and JupyterLab would say "model not found"; so do the empty outputs
      the closed bars became.
    - The saved state keeps the models the remaining outputs show, and nothing else.
    - Saved controls are greyed out and the box's hint says how to read the view (the live widget, made by
      running the cell, has neither).
    - Model ids the kernel drew at random get fixed ones, numbered in order, so that executing the notebook
      again rewrites the same ids (the displayed boxes keep theirs: a live run in JupyterLab makes them again).
    """
    from mtl_lab.course.widgets import HINT_CLASS, SAVED_HINT, WIDGET_NAMESPACE

    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    shown = []
    for cell in nb.get("cells", []):
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                if "image/png" not in data or data[WIDGET_VIEW].get("model_id") not in state:
                    continue
                shown.append(data[WIDGET_VIEW]["model_id"])
            if out.get("output_type") == "display_data" and not "".join(data.get("text/plain", "x")) and len(data) == 1:
                continue  # a progress bar that became nothing (quiet_progress_bars)
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    reachable, todo = [], list(shown)
    while todo:
        model = todo.pop(0)
        if model in reachable or model not in state:
            continue
        reachable.append(model)
        todo += _REF.findall(json.dumps(state[model], sort_keys=True))
    if not reachable:
        nb.get("metadata", {}).pop("widgets", None)
        return nb
    rename = {
        old: uuid.uuid5(WIDGET_NAMESPACE, f"{name}/{i}").hex
        for i, old in enumerate(m for m in reachable if _kernel_id(m))
    }
    saved = {}
    for model in reachable:
        text = json.dumps(state[model])
        for old, new in rename.items():
            text = text.replace(old, new)
        entry = json.loads(text)
        values = entry.get("state", {})
        if "disabled" in values:
            values["disabled"] = True
        if HINT_CLASS in values.get("_dom_classes", []):
            values["value"] = SAVED_HINT
        saved[rename.get(model, model)] = entry
    nb["metadata"]["widgets"][WIDGET_STATE]["state"] = saved
    return nb


def public_paths(nb: dict) -> dict:
    """Outputs without this machine's folders: the runs folder as ``runs``, the repository as ``.``, an
    environment from its ``site-packages`` (``nb`` as JSON, changed in place and returned)."""
    roots = [(str(runs_root()), "runs"), (str(REPO_ROOT), "."), (sys.prefix + "/lib/", "<env>/lib/")]

    def clean(text: str) -> str:
        for root, shown in roots:
            text = text.replace(root + "/", shown + "/").replace(root + ")", shown + ")")
        return text

    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = clean("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
            for mime in ("text/plain", "text/html", "text/markdown"):
                value = out.get("data", {}).get(mime)
                if value is not None:
                    out["data"][mime] = clean("".join(value) if isinstance(value, list) else value)
    return nb


def saved_form(path: Path) -> None:
    """Rewrite an executed notebook as it is kept: tidy widgets, no machine paths, JupyterLab's JSON form."""
    nb = json.loads(path.read_text())
    public_paths(tidy_widgets(nb, path.stem))
    path.write_text(jupyterlab_form(json.dumps(nb)))


PROGRESS_EVERY_S = 15


@contextmanager
def progress_lines(stem: str, every_s: float = PROGRESS_EVERY_S):
    """While a notebook runs, a line every ``every_s`` seconds: what the lab is doing inside the current cell.

    papermill's bar moves only when a cell ends; a training cell can take many minutes. The kernel inherits
    $MTL_LAB_PROGRESS and the training loop writes its step there (``runtime.progress_note``)."""
    import tempfile
    import threading

    from tqdm.auto import tqdm

    from mtl_lab.runtime import PROGRESS_ENV

    fd, name = tempfile.mkstemp(prefix="mtl-progress-")
    os.close(fd)
    note = Path(name)
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(note)
    stop, t0 = threading.Event(), time.perf_counter()

    def watch():
        while not stop.wait(every_s):
            text = note.read_text().strip() if note.is_file() else ""
            fresh = note.is_file() and time.time() - note.stat().st_mtime < 2 * every_s
            minutes, seconds = divmod(int(time.perf_counter() - t0), 60)
            line = f"  {stem} {minutes}:{seconds:02d}: " + (text if text and fresh else "a cell is running")
            tqdm.write(line[:100])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        note.unlink(missing_ok=True)
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous


def cpu_snapshot() -> tuple[float, float | None, float]:
    """(wall seconds, busy CPU seconds of the cores this process may use -- None where /proc/stat cannot be read --,
    CPU seconds of this process and its finished children)."""
    busy: float | None = None
    try:
        usable = os.sched_getaffinity(0)
        busy = 0.0
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in usable:
                ticks = [int(v) for v in values]
                busy += sum(ticks[:3]) + sum(ticks[5:7])  # user, nice, system, irq, softirq: not idle, iowait, steal
        busy /= os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        busy = None
    own = os.times()
    return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system


def others_share(start: tuple, end: tuple | None = None) -> float | None:
    """The share (0..1) of this process's usable cores that other processes kept busy between two ``cpu_snapshot``s;
    None where the machine's CPU time cannot be read."""
    end = end or cpu_snapshot()
    if start[1] is None or end[1] is None:
        return None
    from mtl_lab.threads import usable_cores

    wall = max(end[0] - start[0], 1e-9)
    return min(1.0, max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / (wall * usable_cores())))


def record_timings(rows: list[dict], start: tuple, path: Path = TIMINGS) -> dict:
    """Write the minutes of a whole smoke series on the CPU with its circumstances (CPU, precision, threads, how busy
    other processes kept the cores meanwhile) to ``path``: the one source of the durations the README quotes
    (``smoke_minutes_lines``)."""
    import datetime

    import torch

    from mtl_lab.runtime import cpu_name, precision_choice
    from mtl_lab.training.config import profile_config

    share = others_share(start)
    record = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_name(),
        "precision": precision_choice(profile_config("smoke").precision, torch.device("cpu"))[0],
        "threads": torch.get_num_threads(),
        "minutes": {r["notebook"].removesuffix(".ipynb"): r["minutes"] for r in rows},
        "total_minutes": round(sum(r["minutes"] for r in rows), 1),
    }
    if share is not None:
        record["others_cpu_share"] = round(share, 3)
    if share is None or share >= 0.1:
        record["timing_note"] = (
            "how busy other processes kept the cores was not measured (no /proc/stat)"
            if share is None
            else f"other processes kept {share:.0%} of the cores busy meanwhile"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


# the README's notebook table (its header names the ``smoke min`` column) and the line under it
_TABLE = re.compile(r"^\| notebook \|[^\n]*\| smoke min \|[^\n]*\n\|[- |]+\|\n(?:\|[^\n]*\|\n)+", re.MULTILINE)
_CAPTION = re.compile(r"^Smoke minutes: (?:[^\n]*?; \d+(?:\.\d+)? min in all\.|[^.;\n]*\.)", re.MULTILINE)


def smoke_minutes_lines(text: str, path: Path = TIMINGS) -> str:
    """The README ``text`` with its notebook table's ``smoke min`` column and the line under it (``Smoke minutes:
    ...``) taken from the recorded smoke series (``record_timings``); unchanged without a record."""
    if not path.is_file():
        return text
    record = json.loads(path.read_text())
    minutes = record["minutes"]
    table = _TABLE.search(text)
    if table:
        lines = table.group(0).splitlines()
        column = [c.strip() for c in lines[0].strip("|").split("|")].index("smoke min")
        for k, line in enumerate(lines[2:], 2):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            stem = cells[0].strip("`")
            if stem in minutes and len(cells) > column:
                cells[column] = f"{minutes[stem]:.1f}"
                lines[k] = "| " + " | ".join(cells) + " |"
        text = text[: table.start()] + "\n".join(lines) + "\n" + text[table.end() :]
    shared = ", shared cores" if record.get("timing_note") else ""
    caption = (
        f"Smoke minutes: {record['cpu']}, {record['threads']} threads, {record['precision']}, {record['date']}{shared}; "
        f"{record['total_minutes']:.1f} min in all."
    )
    return _CAPTION.sub(lambda _: caption, text, count=1)


def update_readme_minutes(readme: Path = REPO_ROOT / "README.md", path: Path = TIMINGS) -> bool:
    """Rewrite the README's smoke minutes from the recorded series (``smoke_minutes_lines``); True if they changed."""
    text = readme.read_text()
    new = smoke_minutes_lines(text, path)
    if new != text:
        readme.write_text(new)
    return new != text


def run_notebooks(
    profile: str = "smoke",
    only: list[str] | None = None,
    out: str | None = None,
    device: str = "auto",
    inplace: bool = False,
) -> int:
    """Execute notebooks with papermill; print a summary table; return 0 if all succeeded else 1."""
    import pandas as pd
    import papermill
    import torch

    if profile == "gpu" and not torch.cuda.is_available():
        if device == "auto":
            print(
                "error: --profile gpu needs a CUDA GPU and none is visible to torch here "
                "(torch.cuda.is_available() is False). Use --profile cpu on this machine, or pass "
                "--device cpu to run the gpu settings on the CPU anyway (many hours).",
                file=sys.stderr,
            )
            return 2
    if inplace and profile != "smoke":
        print("error: --inplace refreshes the committed notebooks, which hold smoke-profile outputs", file=sys.stderr)
        return 2
    run_root = Path(out) if out else notebooks_root(profile)
    run_root.mkdir(parents=True, exist_ok=True)
    from mtl_lab.course import jupyter_mode

    if jupyter_mode.student_by_default():
        print(
            "JupyterLab set up for students (python -m mtl_lab course jupyter instructor switches nbgrader's tools on)"
        )
    if device != "auto":
        os.environ["MTL_LAB_DEVICE"] = device
    rows = []
    books = notebook_paths(only)
    start = cpu_snapshot()
    for i, book in enumerate(books, 1):
        print(f"[{i}/{len(books)}] {book.name}", flush=True)
        target = book if inplace else run_root / book.name
        folder = run_root / book.stem
        t0 = time.perf_counter()
        status, headline = "ok", ""
        try:
            with progress_lines(book.stem):
                papermill.execute_notebook(
                    str(book),
                    str(target),
                    # the committed copies keep their own parameters cell (smoke, default folders)
                    parameters={} if inplace else {"PROFILE": profile, "OUT_DIR": str(folder)},
                    cwd=str(NOTEBOOK_DIR),
                    progress_bar=True,  # cells done of total, per notebook
                    kernel_name="python3",
                    extra_arguments=KERNEL_ARGS,
                )
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
            status = "FAILED"
            headline = str(exc).strip().splitlines()[-1][:100] if str(exc).strip() else exc.__class__.__name__
        if target.is_file() and (status == "ok" or not inplace):
            saved_form(target)  # widgets JupyterLab can show again, no paths of this machine
        minutes = (time.perf_counter() - t0) / 60
        if status == "ok" and (folder / "headline.txt").is_file():
            headline = (folder / "headline.txt").read_text().strip()
        rows.append({"notebook": book.name, "status": status, "minutes": round(minutes, 1), "headline": headline})
        print(f"{book.name}: {status} in {minutes:.1f} min  {headline}", flush=True)
    signed = trust(
        notebook_paths() + [run_root / b.name for b in notebook_paths(only) if (run_root / b.name).is_file()]
    )
    print(f"signed {len(signed)} notebooks as trusted (JupyterLab shows their saved widgets without a kernel)")
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False))
    (run_root / "summary.json").write_text(json.dumps(rows, indent=2))
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if inplace and only is None and on_cpu and all(r["status"] == "ok" for r in rows):
        record_timings(rows, start)
        if update_readme_minutes():
            print("README.md: the notebook table's smoke minutes rewritten from results/smoke-notebooks.json")
    print(f"\nexecuted notebooks and figures: {run_root if not inplace else NOTEBOOK_DIR}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
