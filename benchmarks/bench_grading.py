"""Autograding cost per submitted notebook, measured in one run on this machine.

The submission is the instructor's notebooks themselves (every exercise solved, outputs included):
``course autograde`` grades each of the four exercise notebooks in its own temporary nbgrader
course folder and process (sanitize, run the set-up, answer and checker cells while skipping the
training cells, save the grades, write the HTML feedback). The budget is 1 minute a notebook.

Reported: the wall time of each notebook's grading, the scores, the CPU (``lscpu``) and the load
average while it ran (the machine may be shared; a busy one is slower).

Usage: python benchmarks/bench_grading.py [--out benchmarks/results/bench_grading_<cpu>_<date>.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mtl_lab.course import grading
from mtl_lab.course.engine import NOTEBOOK_DIR

BUDGET_S = 60


def cpu_name() -> str:
    """The CPU's model name from lscpu."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def main() -> None:
    """Grade the instructor's notebooks as one student's submission; print and write a table of times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="markdown file for the results")
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions" / "reference"
        subs.mkdir(parents=True)
        for ex in {ex.notebook for ex in grading.exercises()}:
            shutil.copy(NOTEBOOK_DIR / f"{ex}.ipynb", subs / f"{ex}.ipynb")
        t0 = time.perf_counter()
        results = grading.autograde(Path(tmp) / "submissions", Path(tmp) / "grades.csv")
        total = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    lines = [
        f"# Autograding cost per notebook ({datetime.date.today()}, {cpu_name()}, {os.cpu_count()} cores)",
        "",
        f"Load average (1 min) before / after: {load0:.1f} / {load1:.1f}. Budget: {BUDGET_S} s a notebook.",
        "",
        "| notebook | score | seconds | within budget |",
        "| --- | --- | --- | --- |",
    ]
    for g in results:
        score = f"{sum(r['score'] for r in g.rows):g}/{sum(r['max_score'] for r in g.rows):g}"
        lines.append(f"| {g.notebook} | {score} | {g.seconds:.1f} | {'yes' if g.seconds <= BUDGET_S else 'NO'} |")
    lines += ["", f"All four, with the release nbgrader builds once: {total:.1f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
