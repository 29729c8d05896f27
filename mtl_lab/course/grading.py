"""``course release`` and ``course autograde``: thin wrappers over nbgrader with the lab's settings.

- :func:`release` runs nbgrader's generate_assignment on ``notebooks/`` and copies the student
  notebooks (no solutions, no outputs) into a folder.
- :func:`autograde` grades ``SUBMISSIONS/<student>/<notebook>.ipynb``: every submitted notebook in
  its own temporary nbgrader course folder and its own process (nbgrader's autograde, then its
  generate_feedback), under a per-cell timeout and a per-notebook deadline. It writes one CSV row
  per student, notebook and exercise (the checker's one-line message as feedback), the HTML
  feedback per student and notebook, and returns what happened to each submission (a crash, a
  timeout, a deleted cell) for the summary table.

Everything nbgrader records is nbgrader's: a course can run ``nbgrader autograde notebooks`` from
the repository root with the same settings (``nbgrader_config.py``) and use its formgrader.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from mtl_lab.course.engine import ASSIGNMENT, CELL_TIMEOUT_S, NOTEBOOK_DIR, SETUP_TIMEOUT_S

COLUMNS = ["student", "notebook", "exercise", "score", "max_score", "feedback"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIMEOUT_NAMES = {"CellTimeoutError", "KeyboardInterrupt"}


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: its checker cell (the test cell with points) and the answer cell before it."""

    notebook: str
    name: str
    points: float
    answer: str | None


@dataclass
class Graded:
    """One submitted notebook's outcome: the CSV rows, what happened (for the summary) and the time taken."""

    student: str
    notebook: str
    rows: list[dict] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0


def exercises(source_dir: Path = NOTEBOOK_DIR) -> list[Exercise]:
    """The graded exercises of the assignment source, in notebook order."""
    out = []
    for path in sorted(Path(source_dir).glob("[0-9][0-9]_*.ipynb")):
        answer = None
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution"):
                answer = meta["grade_id"]
            if meta.get("grade") and not meta.get("solution"):
                out.append(Exercise(path.stem, meta["grade_id"], float(meta["points"]), answer))
                answer = None
    return out


def _api(root: Path, timeout: int = CELL_TIMEOUT_S):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from mtl_lab.course.engine import configure

    c = Config()
    configure(c, timeout=timeout, root=str(root))
    return NbGraderAPI(coursedir=CourseDirectory(config=c), config=c)


def _generate_assignment(root: Path) -> Path:
    """nbgrader generate_assignment of notebooks/ in the course folder ``root``; returns the release folder."""
    result = _api(root).generate_assignment(ASSIGNMENT, force=True, create=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{result.get('error') or result.get('log')}")
    return root / "release" / ASSIGNMENT


def release(out: str | os.PathLike) -> dict[str, int]:
    """Write the student notebooks into ``out`` (nbgrader's release); return the graded exercises per notebook."""
    out = Path(out)
    if out.resolve() == NOTEBOOK_DIR.resolve():
        raise ValueError(f"{out}: the student notebooks must not overwrite the instructor's notebooks")
    counts = {}
    with tempfile.TemporaryDirectory(prefix="mtl-release-") as tmp:
        released = _generate_assignment(Path(tmp))
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(released.iterdir()):
            if path.is_file():
                shutil.copy(path, out / path.name)
    for ex in exercises():
        counts[ex.notebook + ".ipynb"] = counts.get(ex.notebook + ".ipynb", 0) + 1
    return {p.name: counts.get(p.name, 0) for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))}


def _text(outputs: list) -> str:
    return ANSI.sub("", "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream"))


def _errors(cell) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _what_failed(cell, timeout: int, role: str) -> str | None:
    """One line on why a cell failed (None if it ran cleanly)."""
    errors = _errors(cell)
    if not errors:
        return None
    if any(e.get("ename") in TIMEOUT_NAMES for e in errors):
        return f"{role} ran past the {timeout} s limit per cell and was stopped"
    e = errors[0]
    message = ANSI.sub("", str(e.get("evalue", ""))).strip().splitlines()
    return f"{role} raised {e.get('ename')}" + (f": {message[0]}" if message else "")


def _feedback(test_cell, answer_cell, answer_deleted: bool, timeout: int) -> str:
    """The exercise's feedback line: the checker's message, and why the answer cell did not run if it did not."""
    if test_cell is None:
        return "the checker cell is missing from the graded notebook"
    errors = _errors(test_cell)
    if not errors:
        lines = [line for line in _text(test_cell.get("outputs", [])).splitlines() if line.strip()]
        passed = next((line for line in lines if line.startswith("✓")), lines[0] if lines else "passed")
        return passed.lstrip("✓ ").strip()
    why = []
    if answer_deleted:
        why.append("the answer cell was deleted")
    elif answer_cell is not None and (answer := _what_failed(answer_cell, timeout, "the answer cell")):
        why.append(answer)
    e = errors[0]
    if e.get("ename") in ("CheckFailed", "ExerciseNotDone"):
        why.append(ANSI.sub("", str(e.get("evalue", ""))).strip())
    else:
        why.append(_what_failed(test_cell, timeout, "the checker"))
    return "; ".join(why)


def _grade_cells(nb) -> dict[str, dict]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "grade_id" in c.metadata.get("nbgrader", {})}


def _run_job(root: Path, student: str, timeout: int, deadline: float) -> tuple[int, str]:
    """nbgrader autograde + generate_feedback of one student in ``root``, in its own process group."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtl_lab.course.engine", student, str(timeout)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the kernel too: a submission that hangs is killed with its group
    )
    try:
        log, _ = proc.communicate(timeout=deadline)
        return proc.returncode, log
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        return -9, log


def grade_notebook(
    path: Path,
    student: str,
    template_db: Path,
    feedback_dir: Path | None = None,
    timeout: int = CELL_TIMEOUT_S,
    work_dir: Path | None = None,
) -> Graded:
    """Autograde one submitted notebook in a fresh temporary course folder; return its rows and events."""
    notebook = path.stem
    graded = Graded(student, notebook)
    wanted = [ex for ex in exercises() if ex.notebook == notebook]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"grade-{student}-{notebook}-", dir=work_dir) as tmp:
        root = Path(tmp)
        shutil.copy(template_db, root / "gradebook.db")
        submitted = root / "submitted" / student / ASSIGNMENT
        submitted.mkdir(parents=True)
        shutil.copy(path, submitted / path.name)
        try:
            nb_in = nbformat.read(path, as_version=4)
        except Exception as exc:  # not a notebook: nothing to run
            nb_in = None
            graded.events.append(f"not a readable notebook ({exc.__class__.__name__})")
        code, log = -1, ""
        if nb_in is not None:
            ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb_in.cells}
            source = _grade_cells(nbformat.read(NOTEBOOK_DIR / path.name, as_version=4))
            for name, cell in source.items():
                if name not in ids:
                    kind = "checker" if cell.metadata["nbgrader"].get("grade") else "answer"
                    if cell.metadata["nbgrader"].get("locked") and not cell.metadata["nbgrader"].get("grade"):
                        kind = "set-up"
                    restored = " (restored by the grader)" if kind != "answer" else ""
                    graded.events.append(f"{kind} cell '{name}' deleted{restored}")
            # the set-up cells have their own limit; a kernel that ignores interrupts is killed at the deadline
            deadline = 60 + 2 * SETUP_TIMEOUT_S + timeout * len(source)
            code, log = _run_job(root, student, timeout, deadline)
            if code == -9:
                graded.events.append(f"grading stopped after {deadline} s (the per-notebook deadline)")
            elif code:
                last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["?"]
                graded.events.append(f"nbgrader failed: {last[0][:160]}")
        autograded = root / "autograded" / student / ASSIGNMENT / path.name
        out_nb = nbformat.read(autograded, as_version=4) if autograded.is_file() and code in (0, 3) else None
        cells = _grade_cells(out_nb) if out_nb is not None else {}
        if out_nb is not None:
            for name in ("parameters", "setup"):
                if name in cells and (why := _what_failed(cells[name], timeout, f"the set-up cell '{name}'")):
                    graded.events.append(why)
        for ex in wanted:
            test = cells.get(ex.name)
            answer = cells.get(ex.answer) if ex.answer else None
            if out_nb is None:
                score, feedback = 0.0, "not graded: " + "; ".join(graded.events or ["no graded notebook"])
            else:
                errors = _errors(test) if test is not None else [{}]
                score = 0.0 if errors else ex.points
                deleted = nb_in is not None and ex.answer not in {
                    c.metadata.get("nbgrader", {}).get("grade_id") for c in nb_in.cells
                }
                feedback = _feedback(test, answer, deleted, timeout)
                if answer is not None and (why := _what_failed(answer, timeout, "the answer cell")):
                    graded.events.append(f"{ex.name}: {why}")
                elif errors and test is not None and any(e.get("ename") in TIMEOUT_NAMES for e in errors):
                    graded.events.append(f"{ex.name}: the checker ran past the {timeout} s limit")
            graded.rows.append(
                dict(
                    student=student,
                    notebook=notebook,
                    exercise=ex.name,
                    score=score,
                    max_score=ex.points,
                    feedback=feedback,
                )
            )
        html = root / "feedback" / student / ASSIGNMENT / f"{notebook}.html"
        if feedback_dir is not None and html.is_file():
            (feedback_dir / student).mkdir(parents=True, exist_ok=True)
            shutil.copy(html, feedback_dir / student / html.name)
    graded.seconds = time.perf_counter() - t0
    return graded


def notebook_folder(student: Path) -> Path:
    """A student's notebooks: ``<student>/`` itself, or ``<student>/notebooks/`` as nbgrader's collect lays them out."""
    nested = student / ASSIGNMENT
    return nested if nested.is_dir() and not any(student.glob("*.ipynb")) else student


def autograde(
    submissions: str | os.PathLike,
    out_csv: str | os.PathLike,
    feedback_dir: str | os.PathLike | None = None,
    timeout: int = CELL_TIMEOUT_S,
    log=print,
) -> list[Graded]:
    """Grade every ``<student>/<notebook>.ipynb`` (or ``<student>/notebooks/<notebook>.ipynb``) under ``submissions``;
    write the CSV and the HTML feedback."""
    submissions, out_csv = Path(submissions), Path(out_csv)
    feedback_dir = Path(feedback_dir) if feedback_dir else out_csv.parent / "feedback"
    graded_books = sorted({ex.notebook for ex in exercises()})
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"{submissions}: no <student>/ folders with notebooks in them")
    results = []
    with tempfile.TemporaryDirectory(prefix="mtl-grading-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        _generate_assignment(template)
        for student in students:
            folder = notebook_folder(student)
            names = {p.stem for p in folder.glob("*.ipynb")}
            for stray in sorted(names - set(graded_books)):
                log(f"{student.name}: {stray}.ipynb ignored (no graded exercise in it)")
            for notebook in graded_books:
                path = folder / f"{notebook}.ipynb"
                if not path.is_file():
                    g = Graded(student.name, notebook, events=["not submitted"])
                    g.rows = [
                        dict(
                            student=student.name,
                            notebook=notebook,
                            exercise=ex.name,
                            score=0.0,
                            max_score=ex.points,
                            feedback="not submitted",
                        )
                        for ex in exercises()
                        if ex.notebook == notebook
                    ]
                else:
                    g = grade_notebook(
                        path, student.name, template / "gradebook.db", feedback_dir, timeout, work_dir=Path(tmp)
                    )
                score = sum(r["score"] for r in g.rows)
                top = sum(r["max_score"] for r in g.rows)
                log(
                    f"{student.name} / {notebook}: {score:g}/{top:g} in {g.seconds:.1f} s"
                    + (f" ({'; '.join(g.events)})" if g.events else "")
                )
                results.append(g)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for g in results:
            for row in g.rows:
                writer.writerow({**row, "score": f"{row['score']:g}", "max_score": f"{row['max_score']:g}"})
    return results


def summary(results: list[Graded]) -> str:
    """The summary: a row per student (a column per notebook, the total), then what happened, a line each."""
    import pandas as pd

    table: dict[str, dict] = {}
    for g in results:
        row = table.setdefault(g.student, {"student": g.student, "_score": 0.0, "_top": 0.0})
        score, top = sum(r["score"] for r in g.rows), sum(r["max_score"] for r in g.rows)
        row[g.notebook] = f"{score:g}/{top:g}"
        row["_score"] += score
        row["_top"] += top
    books = list(dict.fromkeys(g.notebook for g in results))
    frame = pd.DataFrame(
        [
            {
                "student": row["student"],
                **{b: row.get(b, "-") for b in books},
                "total": f"{row['_score']:g}/{row['_top']:g}",
            }
            for row in table.values()
        ]
    )
    events = [f"  {g.student} / {g.notebook}: {e}" for g in results for e in g.events]
    return frame.to_string(index=False) + "\n\nwhat happened:\n" + ("\n".join(events) or "  nothing unusual")
