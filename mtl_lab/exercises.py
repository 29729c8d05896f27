"""Two editions of the notebooks from one source: the instructor's (committed) and the student's.

The committed notebooks hold each exercise's reference solution between marker lines::

    ### BEGIN SOLUTION: the AdamW update
    ...
    ### END SOLUTION

so papermill and nbval run them end to end. ``python -m mtl_lab exercises --out DIR`` writes the
student edition: every such region replaced by one line,
``raise NotImplementedError("write the AdamW update here")`` at the region's indentation, and
every output, execution count and saved widget state cleared.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat

from .notebooks import NOTEBOOK_DIR

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?::\s*(?P<what>.*))?$")
END = re.compile(r"^\s*### END SOLUTION\s*$")


class ExerciseMarkupError(ValueError):
    """A notebook's solution markers do not pair up."""


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """``source`` with each solution region replaced by a NotImplementedError stub, and how many regions there were."""
    out, inside, regions = [], False, 0
    for n, line in enumerate(source.splitlines(), start=1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ExerciseMarkupError(f"{where}, line {n}: BEGIN SOLUTION inside another solution region")
            inside, regions = True, regions + 1
            what = (begin.group("what") or "your solution").strip()
            out.append(f'{begin.group("indent")}raise NotImplementedError("write {what} here")')
        elif END.match(line):
            if not inside:
                raise ExerciseMarkupError(f"{where}, line {n}: END SOLUTION without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ExerciseMarkupError(f"{where}: a solution region is not closed (### END SOLUTION missing)")
    return "\n".join(out), regions


def student_notebook(nb: nbformat.NotebookNode, where: str = "notebook") -> tuple[nbformat.NotebookNode, int]:
    """A copy of a notebook with its solutions stubbed and every output cleared."""
    nb = nbformat.from_dict(nb)
    total = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source, n = strip_solutions(cell.source, f"{where}, cell {i}")
            total += n
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    return nb, total


def write_student_edition(out_dir: str | os.PathLike, source_dir: str | os.PathLike = NOTEBOOK_DIR) -> dict[str, int]:
    """Write every numbered notebook's student edition into ``out_dir``; return the number of exercises per notebook."""
    out = Path(out_dir)
    if out.resolve() == Path(source_dir).resolve():
        raise ValueError(f"{out}: the student edition must not overwrite the instructor's notebooks")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path in sorted(Path(source_dir).glob("[0-9][0-9]_*.ipynb")):
        nb, n = student_notebook(nbformat.read(path, as_version=4), path.name)
        nbformat.write(nb, out / path.name)
        counts[path.name] = n
    return counts
