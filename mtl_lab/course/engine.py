"""The lab's nbgrader settings and the few preprocessors nbgrader lacks; ``nbgrader_config.py`` applies them.

nbgrader is the course engine: the notebooks in ``notebooks/`` are the assignment source (one
assignment, named ``notebooks``), each exercise an answer cell (``solution``) followed by its
checker (an autograded test cell with points), and the parameters and imports cells read-only
set-up cells. What the lab adds:

- :class:`NamedClearSolutions`: each solution region becomes the student's stub ``raise NotImplementedError("write
  <what> here")``, naming what to write (nbgrader's stub is one fixed text), so the checker's
  "not written yet" message says which exercise.
- :class:`ClearLabMetadata`: saved widget state and papermill/execution timings leave the release.
- :class:`ClearNbvalMarkers`: the ``# NBVAL_...`` lines (for the lab's regression tests) leave the release.
- :class:`RestoreLockedCells`: a deleted set-up cell comes back from the gradebook before grading
  (nbgrader restores deleted test cells, not read-only ones), so deleting it costs nothing more.
- :class:`GradingExecute`: grading runs only nbgrader's cells (set-up, answers, checkers), never the
  training, figure and results cells between them, and sets the grading parameters after the
  parameters cell (outputs into the submission's folder, warnings on stdout: nbgrader gives 0 to a
  test cell that writes to stderr).

``python -m mtl_lab.course.engine STUDENT`` (run inside a course folder by :mod:`.grading`, one
process per submitted notebook) autogrades a student and writes the feedback.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    DeduplicateIds,
    Execute,
    IgnorePattern,
    IncludeHeaderFooter,
    InstantiateTests,
    LimitOutput,
    LockCells,
    NbGraderPreprocessor,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
    SaveCells,
)
from traitlets import Bool, Integer, Unicode

from mtl_lab.course.exercises import strip_solutions

# not imported from mtl_lab.course.notebooks: nbgrader's processes start without torch
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"

COURSE_ID = "mtl-lab"
ASSIGNMENT = NOTEBOOK_DIR.name  # the notebooks folder is the assignment source: nbgrader <command> notebooks
CELL_TIMEOUT_S = 30  # an answer or checker cell
SETUP_TIMEOUT_S = 300  # the set-up cells: imports, a tokenizer

# run after the parameters cell when grading: outputs into the submission's own folder; warnings on
# stdout (nbgrader scores a test cell that writes to stderr 0, and a correct answer may warn)
NBVAL_LINE = re.compile(r"^\s*# NBVAL_[A-Z_]+\s*$")

GRADING_PRELUDE = """\
OUT_DIR = "grading-out"
import warnings as _w
_w.showwarning = lambda message, category, *_, **__: print(f"warning: {category.__name__}: {message}")
"""


class NamedClearSolutions(ClearSolutions):
    """nbgrader's ClearSolutions with the student's stub: ``raise NotImplementedError("write <what> here")``."""

    def _replace_solution_region(self, cell, language: str) -> bool:
        if cell.cell_type != "code":
            return super()._replace_solution_region(cell, language)
        cell.source, regions = strip_solutions(cell.source, cell.metadata.get("nbgrader", {}).get("grade_id", "cell"))
        return regions > 0


class ClearLabMetadata(NbGraderPreprocessor):
    """Drop saved widget state and papermill/execution records (they describe the instructor's run)."""

    def preprocess(self, nb, resources):
        for key in ("widgets", "papermill"):
            nb.metadata.pop(key, None)
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
        return nb, resources


class ClearNbvalMarkers(NbGraderPreprocessor):
    """Drop the ``# NBVAL_...`` lines: they tell the lab's regression tests what to compare, nothing a student needs."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "code" and "# NBVAL_" in cell.source:
                cell.source = "\n".join(ln for ln in cell.source.splitlines() if not NBVAL_LINE.match(ln))
        return nb, resources


class RestoreLockedCells(NbGraderPreprocessor):
    """Put back the read-only set-up cells a submission deleted, from the gradebook's source cells."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            graded = {c.name for c in notebook.grade_cells}
            cells = [
                (c.name, c.cell_type, c.source, c.checksum, c.locked, c.name in graded) for c in notebook.source_cells
            ]
        present = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
        for k, (name, cell_type, text, checksum, locked, graded) in enumerate(cells):
            if name in present or not locked or graded:
                continue
            cell = nbformat.v4.new_code_cell(text) if cell_type == "code" else nbformat.v4.new_markdown_cell(text)
            cell.metadata["nbgrader"] = {
                "grade": False,
                "grade_id": name,
                "locked": True,
                "schema_version": 3,
                "solution": False,
                "task": False,
                "checksum": checksum,
            }
            later = [n for n, *_ in cells[k + 1 :] if n in present]
            at = next((i for i, c in enumerate(nb.cells) if _grade_id(c) in later), len(nb.cells))
            nb.cells.insert(at, cell)
            present.add(name)
            self.log.warning("Read-only cell %s was missing from the submission; restored", name)
        return nb, resources


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


class GradingExecute(Execute):
    """nbgrader's Execute running only nbgrader's cells; the grading prelude follows the parameters cell."""

    skip_ungraded_cells = Bool(
        True,
        help="Run only the set-up, answer and checker cells: the training, figure and results cells are skipped",
    ).tag(config=True)
    prelude = Unicode(GRADING_PRELUDE, help="Code run (unseen) right after the parameters cell").tag(config=True)
    setup_timeout = Integer(
        SETUP_TIMEOUT_S, help="Time limit of the read-only set-up cells (imports), which the student cannot change"
    ).tag(config=True)

    def _get_timeout(self, cell):
        meta = cell.metadata.get("nbgrader", {}) if cell is not None else {}
        # a grade_id survives OverwriteCells only on the gradebook's own cells: a student's "locked" cell is not set-up
        if meta.get("grade_id") and meta.get("locked") and not meta.get("grade") and not meta.get("solution"):
            return self.setup_timeout
        return super()._get_timeout(cell)

    def preprocess_cell(self, cell, resources, index):
        """Execute a cell unless grading skips it; run the prelude after the parameters cell."""
        graded = "nbgrader" in cell.metadata and (
            utils.is_grade(cell) or utils.is_solution(cell) or utils.is_locked(cell)
        )
        if cell.cell_type == "code" and self.skip_ungraded_cells and not graded:
            return cell, resources
        cell, resources = super().preprocess_cell(cell, resources, index)
        if self.prelude and _grade_id(cell) == "parameters":
            self.execute_cell(nbformat.v4.new_code_cell(self.prelude), index, store_history=False)
        return cell, resources


def configure(c, timeout: int = CELL_TIMEOUT_S, root: str | None = None) -> None:
    """Apply the lab's nbgrader settings to a traitlets config ``c`` (nbgrader_config.py calls this)."""
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.source_directory = str(NOTEBOOK_DIR.parent)  # absolute: <root>/<this>/notebooks
    if root is not None:
        c.CourseDirectory.root = str(root)
    c.GenerateAssignment.preprocessors = [
        IncludeHeaderFooter,
        InstantiateTests,
        LockCells,
        NamedClearSolutions,
        ClearOutput,
        ClearLabMetadata,
        ClearNbvalMarkers,
        CheckCellMetadata,
        ComputeChecksums,
        SaveCells,
        ClearHiddenTests,
        ClearMarkScheme,
        ComputeChecksums,
        CheckCellMetadata,
    ]
    # students may edit the parameters (PROFILE = "cpu" to train more); grading restores the set-up cells
    c.LockCells.lock_readonly_cells = False
    c.Autograde.sanitize_preprocessors = [
        ClearOutput,
        DeduplicateIds,
        OverwriteKernelspec,
        OverwriteCells,
        RestoreLockedCells,
        CheckCellMetadata,
    ]
    c.Autograde.autograde_preprocessors = [
        GradingExecute,
        IgnorePattern,
        ClearMetadataPreprocessor,
        LimitOutput,
        SaveAutoGrades,
        AssignLatePenalties,
        CheckCellMetadata,
    ]
    c.OverwriteCells.add_missing_cells = True  # a deleted checker cell comes back and is run
    c.Execute.timeout = timeout
    c.Execute.interrupt_on_timeout = True
    # a busy machine may deliver a cell's last output late: wait longer, and never fail the whole notebook for it
    # (an error still scores 0: nbgrader records it from the execute reply)
    c.Execute.iopub_timeout = 15
    c.Execute.raise_on_iopub_timeout = False


def _grade_one(student: str, timeout: int) -> int:
    """Autograde ``student`` in the course folder that is the working directory, then write the feedback."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    c = Config()
    configure(c, timeout=timeout, root=str(Path.cwd()))
    api = NbGraderAPI(coursedir=CourseDirectory(config=c), config=c)
    result = api.autograde(ASSIGNMENT, student, force=True, create=True)
    print(result.get("log", ""), file=sys.stderr)
    if not result["success"]:
        print(result.get("error", "autograde failed"), file=sys.stderr)
        return 1
    result = api.generate_feedback(ASSIGNMENT, student, force=True)
    if not result["success"]:
        print(result.get("error", "generate_feedback failed"), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(_grade_one(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else CELL_TIMEOUT_S))
