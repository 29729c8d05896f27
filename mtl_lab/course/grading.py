"""``course release`` and ``course autograde``: the student edition through nbgrader, and grading that holds.

- :func:`release` runs nbgrader's generate_assignment on ``notebooks/`` and copies the student
  notebooks (no solutions, no outputs, no nbval markers) into a folder.
- :func:`autograde` grades every notebook under ``SUBMISSIONS/<student>/``. A notebook is matched to its
  assignment notebook by its graded cells' ids (nbgrader's ``grade_id``), whatever its file name. For
  each exercise only the student's answer cell is taken, read for forbidden constructs
  (``mtl_lab.course.integrity``), and run in a sandbox (``mtl_lab.course.sandbox``) by the harness, which
  calls it on the checker's inputs, one of them drawn afresh per student. The outputs come back and are
  judged here, against the reference, by the checker (``mtl_lab.course.checks``): nothing the student
  writes can reach the checker, the reference or the other students. One CSV row per student, notebook
  and exercise, one HTML page per student and notebook made from the same rows, and a summary that
  accounts for every file.

nbgrader stays the release engine and, for a course that wants its formgrader, ``nbgrader autograde
notebooks`` works from the repository root with the same settings; it runs the checkers in the student's
own kernel, so its scores are not proof against a student who replaces them (docs/teaching.md).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from mtl_lab.course.engine import ASSIGNMENT, CELL_TIMEOUT_S, NOTEBOOK_DIR

COLUMNS = ["student", "notebook", "exercise", "score", "max_score", "flag", "feedback"]
STARTUP_S = 120  # the sandboxed Python's start and its imports, on a busy machine
MEMORY_LIMIT = 4 * 2**30  # address space of an answer's process
FILE_LIMIT = 64 * 2**20  # largest file it may write
OUTPUTS_LIMIT = 32 * 2**20  # largest outputs file the grader reads back
MAX_VALUES = 100_000  # largest tensor an answer may return for a case


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: its checker cell (the test cell with points), its answer cell and the name it checks."""

    notebook: str
    name: str
    points: float
    answer: str | None
    checker: str
    symbol: str


@dataclass
class Graded:
    """One assignment notebook of one student: the CSV rows, what happened (for the summary), the time taken."""

    student: str
    notebook: str
    rows: list[dict] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0
    source: str = ""  # the submitted file, relative to the student's folder
    answers: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(
        default_factory=list
    )  # the student's files not graded as released (on their first notebook)


def _checker_call(source: str) -> tuple[str, str]:
    """``checks.check_adamw(StudentAdamW)`` -> ("check_adamw", "StudentAdamW")."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("check_"):
            if node.args and isinstance(node.args[0], ast.Name):
                return node.func.attr, node.args[0].id
    raise ValueError(f"no checks.check_*(name) call in the checker cell:\n{source}")


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
                checker, symbol = _checker_call(cell.source)
                out.append(Exercise(path.stem, meta["grade_id"], float(meta["points"]), answer, checker, symbol))
                answer = None
    return out


def preamble(notebook: str) -> str:
    """The library imports of a notebook's set-up cells (torch, F, ...), without the lab: what an answer may use."""
    keep = []
    for cell in nbformat.read(NOTEBOOK_DIR / f"{notebook}.ipynb", as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("locked") or meta.get("grade") or meta.get("solution"):
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Import) and all(not a.name.startswith("mtl_lab") for a in node.names):
                keep.append(ast.unparse(node))
            elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("mtl_lab"):
                keep.append(ast.unparse(node))
    return "\n".join(dict.fromkeys(["import torch", *keep]))


# ----------------------------------------------------------------------------- release


def _nbgrader_cause(text: str) -> str:
    """The real cause in nbgrader's log: its last 'SomethingError: ...' line, not 'see the above traceback'."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    causes = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", ln) and "above traceback" not in ln]
    return (causes or lines or ["no log"])[-1][:300]


def _api(root: Path):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from mtl_lab.course.engine import configure

    # nbgrader runs `alembic` by name: the environment's bin/ must be on PATH even when it is not activated
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    c = Config()
    configure(c, root=str(root))
    return NbGraderAPI(coursedir=CourseDirectory(config=c), config=c)


def _generate_assignment(root: Path) -> Path:
    """nbgrader generate_assignment of notebooks/ in the course folder ``root``; returns the release folder."""
    result = _api(root).generate_assignment(ASSIGNMENT, force=True, create=True)
    if not result["success"]:
        cause = _nbgrader_cause(f"{result.get('log') or ''}\n{result.get('error') or ''}")
        raise RuntimeError(f"nbgrader generate_assignment failed: {cause}")
    return root / "release" / ASSIGNMENT


def release(out: str | os.PathLike) -> dict[str, int]:
    """Write the student notebooks into ``out`` (nbgrader's release); return the graded exercises per notebook."""
    out = Path(out)
    if out.resolve() == NOTEBOOK_DIR.resolve():
        raise ValueError(f"{out}: the student notebooks must not overwrite the instructor's notebooks")
    with tempfile.TemporaryDirectory(prefix="mtl-release-") as tmp:
        released = _generate_assignment(Path(tmp))
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(released.iterdir()):
            if path.is_file():
                shutil.copy(path, out / path.name)
    counts: dict[str, int] = {}
    for ex in exercises():
        counts[ex.notebook + ".ipynb"] = counts.get(ex.notebook + ".ipynb", 0) + 1
    return {p.name: counts.get(p.name, 0) for p in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))}


# ----------------------------------------------------------------------------- which file is which notebook


def read_notebook(path: Path):
    """A submitted notebook, validated: its cells' sources are text and their nbgrader metadata well formed."""
    nb = nbformat.read(path, as_version=4)
    for k, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not isinstance(cell.get("source", ""), str) or not isinstance(meta, dict):
            raise ValueError(f"{path.name}: cell {k + 1} is malformed")
        if not isinstance(meta.get("grade_id", ""), str):
            raise ValueError(f"{path.name}: cell {k + 1}'s grade_id is not text")
    return nb


def _grade_ids(nb) -> list[str]:
    return [
        c.metadata.get("nbgrader", {}).get("grade_id")
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id")
    ]


def match(nb, books: dict[str, set[str]]) -> str | None:
    """The assignment notebook a submitted notebook is, by its graded cells' ids (its file name plays no part)."""
    ids = set(_grade_ids(nb))
    overlap = {book: len(ids & wanted) for book, wanted in books.items()}
    best = max(overlap, key=lambda b: (overlap[b], b), default=None)
    return best if best is not None and overlap[best] else None


def collect(folder: Path, books: dict[str, set[str]], released: set[str]) -> tuple[dict[str, Path], list[str]]:
    """A student's files: the notebook graded for each assignment notebook, and a line for every other file."""
    notes, found = [], {}
    root = folder.resolve()
    files = sorted(
        p for p in folder.rglob("*") if (p.is_file() or p.is_symlink()) and ".ipynb_checkpoints" not in p.parts
    )
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink() or root not in path.resolve().parents:
            notes.append(f"{rel}: a link (to {path.resolve()}), ignored: only the student's own files are graded")
            continue
        if path.suffix != ".ipynb":
            notes.append(f"{rel}: not a notebook, ignored")
            continue
        try:
            nb = read_notebook(path)
            book = match(nb, books)
        except Exception as exc:  # a broken or non-notebook file: say so and go on
            notes.append(f"{rel}: not a readable notebook ({exc.__class__.__name__}), ignored")
            continue
        if book is None:
            named = next((b for b in sorted(released) if b in path.stem), None)
            if named and named not in books:
                notes.append(f"{rel}: {named} has no graded exercise, nothing to grade")
            elif named:
                notes.append(
                    f"{rel}: named like {named} but holds none of its graded cells (made outside the release?), ignored"
                )
            else:
                notes.append(f"{rel}: matches no assignment notebook, ignored")
            continue
        found.setdefault(book, []).append(path)
    chosen = {}
    for book, paths in found.items():
        # the exact released name first, then the latest file
        paths.sort(key=lambda p: (p.name == f"{book}.ipynb", p.stat().st_mtime, p.name), reverse=True)
        chosen[book] = paths[0]
        rel = paths[0].relative_to(folder).as_posix()
        if paths[0].name != f"{book}.ipynb":
            notes.append(f"{rel}: graded as {book} (matched by its graded cells)")
        for dup in paths[1:]:
            notes.append(f"{dup.relative_to(folder).as_posix()}: a second copy of {book}, not graded ({rel} was)")
    return chosen, notes


# ----------------------------------------------------------------------------- one exercise


def _fresh_seed(secret: str, student: str, ex: Exercise) -> int:
    """The seed of the fresh case: per student and exercise, stable across re-grades, unguessable with a secret."""
    digest = hashlib.sha256(f"{secret}|{student}|{ex.notebook}|{ex.name}".encode()).hexdigest()
    return int(digest[:8], 16)


def _wait(proc: subprocess.Popen, job: Path, timeout: int) -> str | None:
    """Wait for the harness phase by phase; kill its process group and say which limit it passed, or None."""
    phases = [
        ("started", STARTUP_S, "the sandboxed Python did not start within {s} s"),
        ("answer-ran", timeout, "the answer cell ran past the {s} s limit and was stopped"),
        (None, timeout, "the checker's cases ran past the {s} s limit and were stopped"),
    ]
    for marker, limit, message in phases:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if proc.poll() is not None:
                return None
            if marker and (job / marker).exists():
                break
            time.sleep(0.02)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return message.format(s=limit)
    return None


def _limits() -> list[str]:
    """A prefix for the answer's command: caps on its memory, the size of a file it writes, and core dumps.

    ``prlimit`` sets them in the new process itself (a ``preexec_fn`` is not safe beside the grader's threads)."""
    if shutil.which("prlimit") is None:
        return []
    return ["prlimit", f"--as={MEMORY_LIMIT}", f"--fsize={FILE_LIMIT}", "--core=0", "--"]


def _checked(result, cases: dict) -> tuple[dict | None, str]:
    """The harness's outputs if they are what it was asked for (every case, plain dense tensors), else why not.

    The harness shares its process with the student's code, so its report is untrusted: the cases must be exactly
    those sent, and every output a small plain tensor (or a list of them)."""
    import torch

    if not isinstance(result, dict) or not isinstance(result.get("cases", {}), dict):
        return None, "its process reported something other than outputs"
    if result.get("answer_error") is not None:
        return (result, "") if isinstance(result["answer_error"], str) else (None, "a malformed report")
    if set(result.get("cases", {})) != set(cases):
        return None, "its process reported other cases than the checker sent (the harness was tampered with)"

    def plain(t) -> bool:
        if isinstance(t, list):
            return all(plain(x) for x in t) and len(t) < 100
        return (
            torch.is_tensor(t)
            and t.layout == torch.strided
            and not t.is_quantized
            and not t.is_nested
            and (t.is_floating_point() or t.dtype in (torch.int64, torch.int32, torch.bool))
            and t.numel() <= MAX_VALUES
        )

    for name, case in result["cases"].items():
        if not isinstance(case, dict) or len(case) != 1 or next(iter(case)) not in ("out", "error", "not_written"):
            return None, f"case '{name}': a malformed report"
        ((key, value),) = case.items()
        if key == "out" and not plain(value):
            case["out"] = f"<{type(value).__name__}>"  # the checker says it is not a tensor
        elif key != "out" and not isinstance(value, str):
            return None, f"case '{name}': a malformed report"
    return result, ""


def run_answer(ex: Exercise, answer: str, cases: dict, sandboxed: bool, timeout: int) -> dict:
    """Run one answer cell on the checker's cases in a fresh process (in the sandbox); return the harness's outputs."""
    import torch

    from mtl_lab.course import sandbox

    with tempfile.TemporaryDirectory(prefix="mtl-grade-") as tmp:
        job = Path(tmp)
        os.chmod(job, 0o777)  # the sandbox's user (nobody) writes its outputs here
        from mtl_lab.course.checks import CHECKERS
        from mtl_lab.course.integrity import HIDDEN

        job_spec = {"answer": answer, "preamble": preamble(ex.notebook), "symbol": ex.symbol,
                    "kind": CHECKERS[ex.checker].kind, "hide": HIDDEN.get(ex.name, [])}  # fmt: skip
        (job / "job.json").write_text(json.dumps(job_spec))
        torch.save(cases, job / "inputs.pt")
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HF_HUB_OFFLINE": "1",
            "LC_ALL": "C.UTF-8",
        }
        if sandboxed:
            argv = _limits() + sandbox.command(job, env)
        else:
            argv = _limits() + [sys.executable, "-I", str(sandbox.HARNESS), str(job)]
            env = {**env, "PATH": os.environ.get("PATH", ""), "HOME": str(job)}
        # stderr goes to a file outside the job folder: a pipe would fill up and stall a chatty answer
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                argv,
                cwd=job,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # a submission that hangs is killed with its whole group
            )
            stopped = _wait(proc, job, timeout)
            proc.wait()
            err.seek(0)
            stderr = err.read()[-4000:].decode(errors="replace")
        if stopped:
            return {"stopped": stopped}
        outputs = job / "outputs.pt"
        if outputs.is_file() and (outputs.is_symlink() or outputs.stat().st_size > OUTPUTS_LIMIT):
            return {"crashed": "its outputs file is too large or not a plain file"}
        if not outputs.is_file():
            last = [ln for ln in stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit status {proc.returncode}"]
            return {"crashed": last[0][:200]}
        try:
            return torch.load(outputs, weights_only=True)
        except Exception as exc:  # the student's process wrote something that is not plain tensors
            return {"crashed": f"its outputs could not be read ({exc.__class__.__name__})"}


def grade_exercise(ex: Exercise, answer: str | None, student: str, sandboxed: bool, timeout: int, secret: str) -> dict:
    """One exercise's CSV row: the points only when the checker passes the outputs and nothing is flagged.

    A failure of the grader itself on a strange answer becomes a flagged row, never a crash of the class's grading."""
    row = dict(student=student, notebook=ex.notebook, exercise=ex.name, score=0.0, max_score=ex.points, flag="")
    if answer is None:
        return {**row, "feedback": "the answer cell was deleted"}
    try:
        return _grade_exercise(ex, answer, student, sandboxed, timeout, secret, row)
    except Exception as exc:  # the grader failed on this answer: a person looks at it
        return {**row, "flag": f"the grader failed on this answer ({exc.__class__.__name__}: {str(exc)[:120]})",
                "feedback": "flagged for review, 0 points until a person looks"}  # fmt: skip


def _grade_exercise(
    ex: Exercise, answer: str, student: str, sandboxed: bool, timeout: int, secret: str, row: dict
) -> dict:
    from mtl_lab.course import checks, integrity

    flags = [str(f) for f in integrity.scan(answer, ex.name)]
    checker = checks.CHECKERS[ex.checker]
    cases = checker.cases(_fresh_seed(secret, student, ex))
    result = run_answer(ex, answer, cases, sandboxed, timeout)
    if "stopped" in result or "crashed" in result:
        verdict, passed = result.get("stopped") or f"the answer's process died: {result['crashed']}", False
    else:
        result, why = _checked(result, cases)
        if result is None:
            flags.append(why)
            verdict, passed = why, False
        elif result["answer_error"]:
            err = result["answer_error"]
            verdict, passed = (err if err.startswith("not written") else f"the answer cell raised {err}"), False
        else:
            try:
                verdict, passed = checks.judge(checker, cases, result["cases"]).lstrip("✓ "), True
            except checks.CheckFailed as failed:
                verdict, passed = str(failed), False
    flags += [f"replaced {name} while it ran" for name in (result or {}).get("replaced", [])[:3]]
    feedback = " | ".join(line.strip() for line in verdict.splitlines() if line.strip())
    if flags:
        return {
            **row,
            "flag": "; ".join(flags),
            "feedback": f"flagged for review, 0 points until a person looks: {feedback}",
        }
    return {**row, "score": ex.points if passed else 0.0, "feedback": feedback}


def grade_notebook(path: Path | None, book: str, student: str, sandboxed: bool, timeout: int, secret: str) -> Graded:
    """Every exercise of one assignment notebook of one student (``path`` None: not submitted)."""
    graded = Graded(student, book)
    wanted = [ex for ex in exercises() if ex.notebook == book]
    t0 = time.perf_counter()
    if path is None:
        graded.events.append("not submitted")
        graded.rows = [
            dict(
                student=student,
                notebook=book,
                exercise=ex.name,
                score=0.0,
                max_score=ex.points,
                flag="",
                feedback="not submitted",
            )
            for ex in wanted
        ]
        return graded
    nb = read_notebook(path)
    cells = {}
    for cell in nb.cells:
        name = cell.metadata.get("nbgrader", {}).get("grade_id")
        if name and cell.cell_type == "code":
            cells.setdefault(name, cell.source)
    for ex in wanted:
        answer = cells.get(ex.answer)
        graded.answers[ex.name] = answer or ""
        row = grade_exercise(ex, answer, student, sandboxed, timeout, secret)
        graded.rows.append(row)
        if answer is None:
            graded.events.append(f"{ex.name}: answer cell '{ex.answer}' deleted")
        elif row["flag"]:
            graded.events.append(f"{ex.name}: flagged: {row['flag']}")
        elif any(w in row["feedback"] for w in ("ran past", "raised", "died")):
            graded.events.append(f"{ex.name}: {row['feedback'][:200]}")
    graded.seconds = time.perf_counter() - t0
    return graded


# ----------------------------------------------------------------------------- the class


def autograde(
    submissions: str | os.PathLike,
    out_csv: str | os.PathLike,
    feedback_dir: str | os.PathLike | None = None,
    timeout: int = CELL_TIMEOUT_S,
    log=print,
    jobs: int | None = None,
    sandboxed: bool = True,
    secret: str | None = None,
) -> list[Graded]:
    """Grade every ``<student>/`` folder under ``submissions``; write the CSV and the HTML feedback; return the results.

    ``sandboxed`` False runs student code with the grader's rights (``--no-sandbox``); ``secret`` (default
    ``$MTL_LAB_GRADING_SECRET``) makes each student's fresh case unpredictable to them.
    """
    from mtl_lab.course import sandbox

    submissions, out_csv = Path(submissions), Path(out_csv)
    if not submissions.is_dir():
        raise ValueError(f"{submissions}: no such folder")
    if sandboxed:
        sandbox.check()
    secret = secret if secret is not None else os.environ.get("MTL_LAB_GRADING_SECRET") or course_secret(out_csv)
    feedback_dir = Path(feedback_dir) if feedback_dir else out_csv.parent / "feedback"
    all_ex = exercises()
    books = {}
    for ex in all_ex:
        books.setdefault(ex.notebook, set()).update({ex.name, *([ex.answer] if ex.answer else [])})
    released = {p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")}
    students = sorted(
        p for p in submissions.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    if not students:
        raise ValueError(f"{submissions}: no <student>/ folders with notebooks in them")
    strays = sorted(p.name for p in submissions.iterdir() if p.is_file())
    tasks, files = [], {}
    for student in students:
        chosen, notes = collect(student, books, released)
        files[student.name] = notes
        for book in sorted(books):
            tasks.append((student.name, book, chosen.get(book)))
    jobs = jobs or len(os.sched_getaffinity(0))

    def work(task):
        student, book, path = task
        g = grade_notebook(path, book, student, sandboxed, timeout, secret)
        if path is not None:
            g.source = path.relative_to(submissions / student).as_posix()
        score, top = sum(r["score"] for r in g.rows), sum(r["max_score"] for r in g.rows)
        log(
            f"{student} / {book}: {score:g}/{top:g} in {g.seconds:.1f} s"
            + (f" ({'; '.join(g.events)})" if g.events else "")
        )
        return g

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(work, tasks))
    for student, notes in files.items():
        next(g for g in results if g.student == student).files = notes
    results[0].files = [f"../{name}: not in a student folder, ignored" for name in strays] + results[0].files
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for g in results:
            for row in g.rows:
                safe = {k: _cell(v) for k, v in row.items()}
                writer.writerow({**safe, "score": f"{row['score']:g}", "max_score": f"{row['max_score']:g}"})
    for g in results:
        if g.source:
            (feedback_dir / g.student).mkdir(parents=True, exist_ok=True)
            (feedback_dir / g.student / f"{g.notebook}.html").write_text(feedback_page(g))
    return results


def course_secret(out_csv: Path) -> str:
    """The secret behind each student's fresh case: kept beside the CSV (``<csv>.secret``), made once at random."""
    import secrets

    path = out_csv.with_suffix(".secret")
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(16)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _cell(value):
    """A CSV cell a spreadsheet will not run as a formula (a student's folder may be named '=HYPERLINK(...')."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def feedback_page(g: Graded) -> str:
    """A student's HTML page for one notebook: made from the CSV's rows, so it shows exactly their points."""
    score, top = sum(r["score"] for r in g.rows), sum(r["max_score"] for r in g.rows)
    rows = []
    for r in g.rows:
        flag = f"<p class='flag'>flagged for review: {html.escape(r['flag'])}</p>" if r["flag"] else ""
        code = g.answers.get(r["exercise"], "")
        rows.append(
            f"<h2>{html.escape(r['exercise'])}: {r['score']:g} / {r['max_score']:g}</h2>{flag}"
            f"<pre class='msg'>{html.escape(r['feedback'].replace(' | ', chr(10)))}</pre>"
            + (f"<details><summary>your answer</summary><pre>{html.escape(code)}</pre></details>" if code else "")
        )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(g.student)}: {html.escape(g.notebook)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f6f6f6;padding:.6em;"
        "white-space:pre-wrap}.flag{color:#a00}</style></head><body>"
        f"<h1>{html.escape(g.notebook)}: {score:g} / {top:g}</h1>"
        f"<p>{html.escape(g.student)}, graded from {html.escape(g.source)}</p>" + "".join(rows) + "</body></html>\n"
    )


def summary(results: list[Graded]) -> str:
    """The summary: a row per student (a column per notebook, the total), what happened, flags, and every file."""
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
    events = [f"  {g.student} / {g.notebook}: {e}" for g in results for e in g.events if "flagged" not in e]
    flags = [f"  {r['student']} / {r['exercise']}: {r['flag']}" for g in results for r in g.rows if r["flag"]]
    file_lines = [f"  {g.student}/{line}" for g in results for line in g.files]
    return (
        frame.to_string(index=False)
        + "\n\nwhat happened:\n"
        + ("\n".join(events) or "  nothing unusual")
        + "\n\nflagged for review (0 points until a person looks):\n"
        + ("\n".join(flags) or "  none")
        + "\n\nfiles not graded as released:\n"
        + ("\n".join(file_lines) or "  none")
    )
