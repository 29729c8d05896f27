"""The notebook series: set-up helpers the notebooks call, and the papermill runner.

``python -m mtl_lab notebooks run --profile smoke|cpu|gpu [--only 01 ...]`` executes the numbered
notebooks in order into ``runs/notebooks/<profile>/``, keeps going after a failure, prints a
summary table (notebook, status, minutes, headline metric) and exits non-zero if any failed.
``--inplace`` (smoke profile) writes the executed notebooks back into ``notebooks/``: that is
how the committed notebooks get their outputs, which nbval then checks. ``notebooks trust``
signs the committed notebooks as trusted, so JupyterLab shows their saved widgets (see :func:`trust`).
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_lab.data import REPO_ROOT, DataWarning, runs_root

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "cpu", "gpu")


@dataclass
class Lab:
    """What a notebook needs after its parameters cell: its output folder and profile."""

    name: str
    profile: str
    seed: int
    out_dir: Path
    progress: bool

    def headline(self, text: str) -> str:
        """Record the notebook's headline result (shown in the runner's summary table)."""
        (self.out_dir / "headline.txt").write_text(text)
        return text


def setup(name: str, profile: str = "smoke", seed: int = 0, out_dir: str | None = None) -> Lab:
    """Prepare a notebook: check the profile, seed everything, quiet library noise, make its folder."""
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
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)
    folder = Path(out_dir) if out_dir else notebooks_root(profile) / name
    folder.mkdir(parents=True, exist_ok=True)
    return Lab(name, profile, seed, folder, progress=profile != "smoke")


def notebooks_root(profile: str) -> Path:
    """Where ``notebooks run`` writes the executed notebooks and their figures: ``<runs>/notebooks/<profile>``."""
    return runs_root() / "notebooks" / profile


def environment() -> dict:
    """Versions, device and backbone of this machine (for the set-up notebook)."""
    import torch
    import transformers

    from mtl_lab.evaluate import precision_choice, resolve_device
    from mtl_lab.models.backbone import backbone_path

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
        "torch threads": torch.get_num_threads(),
        "precision (auto)": "{} ({})".format(*precision_choice("auto", resolve_device("auto"))),
        "backbone": backbone_path(),
    }


KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


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
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]

# The cells of each committed notebook that show PUBLISHED results (results/cpu/): (setup cells, those
# cells, prelude). ``notebooks refresh`` re-runs them after ``publish`` (their nbval-checked outputs
# would otherwise compare against the previous results); tests/test_notebook_form.py checks the indices.
PUBLISHED_SECTIONS = {
    "01_bert_baselines": ([1, 2], [26, 27, 28], ""),
    "02_sbert_cnn_bilstm": ([1, 2], [21, 22, 23], ""),
    "05_ablations": ([1, 2], [12, 13, 14, 16, 19], ""),
    "06_error_analysis": (  # its set-up cell reads your smoke runs: only what the cpu section needs
        [1],
        [20, 21, 22, 23],
        "from mtl_lab.course import notebooks\n"
        "from mtl_lab.study import analysis, experiments\n"
        "from mtl_lab.models.backbone import load_tokenizer\n"
        'lab = notebooks.setup("06_error_analysis", PROFILE, SEED, OUT_DIR)\n'
        "tokenizer = load_tokenizer(MODEL)",
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
        path.write_text(jupyterlab_form(nbformat.writes(nb)))
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
    if device != "auto":
        os.environ["MTL_LAB_DEVICE"] = device
    rows = []
    books = notebook_paths(only)
    for i, book in enumerate(books, 1):
        print(f"[{i}/{len(books)}] {book.name}", flush=True)
        target = book if inplace else run_root / book.name
        folder = run_root / book.stem
        t0 = time.perf_counter()
        status, headline = "ok", ""
        try:
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
        if inplace and status == "ok":
            book.write_text(jupyterlab_form(book.read_text()))
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
    print(f"\nexecuted notebooks and figures: {run_root if not inplace else NOTEBOOK_DIR}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
