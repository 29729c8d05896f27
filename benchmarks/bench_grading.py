"""What autograding a class costs: N students x the 4 exercise notebooks at --jobs J, and the first K at --jobs 1 and J.

Every student submits the instructor's notebooks (every exercise solved, outputs included): each
exercise's answer cell runs in its own sandboxed process (bubblewrap), the checker judges its outputs.
Reported: wall time for the class at each --jobs, seconds per notebook, whether both gave the same grades,
the CPU (``lscpu``), and the load average (a shared machine is slower; pause other work for a fair number).

Usage: python benchmarks/bench_grading.py [--students 80] [--jobs 2] [--compare 10] [--out benchmarks/results/...md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import tempfile
import time
from pathlib import Path

from mtl_lab.course import grading, sandbox
from mtl_lab.course.engine import NOTEBOOK_DIR
from mtl_lab.runtime import cpu_name


def grade(subs: Path, out: Path, jobs: int) -> tuple[float, bytes]:
    """Grade the class once; the wall time and the CSV's bytes."""
    t0 = time.perf_counter()
    grading.autograde(subs, out / "grades.csv", out / "feedback", log=lambda *_: None, jobs=jobs)
    return time.perf_counter() - t0, (out / "grades.csv").read_bytes()


def main() -> None:
    """Grade a class of identical correct submissions at --jobs 1 and --jobs J; print and write a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=80)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--compare", type=int, default=10, help="students graded at --jobs 1 and --jobs J")
    parser.add_argument("--out", help="markdown file for the results")
    args = parser.parse_args()
    sandbox.check()
    books = sorted({ex.notebook for ex in grading.exercises()})
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions"
        for k in range(args.students):
            (subs / f"student{k:03d}").mkdir(parents=True)
            for book in books:
                shutil.copy(NOTEBOOK_DIR / f"{book}.ipynb", subs / f"student{k:03d}" / f"{book}.ipynb")
        few = Path(tmp) / "few"
        for k in range(min(args.compare, args.students)):
            shutil.copytree(subs / f"student{k:03d}", few / f"student{k:03d}")
        csvs = {}
        for jobs in (1, args.jobs):
            seconds, csvs[jobs] = grade(few, Path(tmp) / f"few-jobs{jobs}", jobs)
            rows.append((min(args.compare, args.students), jobs, seconds))
        seconds, _ = grade(subs, Path(tmp) / "all", args.jobs)
        rows.append((args.students, args.jobs, seconds))
    load1 = os.getloadavg()[0]
    lines = [
        f"# Autograding a class ({datetime.date.today()}, {cpu_name()}, {len(os.sched_getaffinity(0))} cores)",
        "",
        f"{len(books)} notebooks a student, every answer correct, sandboxed. Load average (1 min) before / after: "
        f"{load0:.1f} / {load1:.1f}. Same grades at --jobs 1 and {args.jobs}: {'yes' if len(set(csvs.values())) == 1 else 'NO'}.",
        "",
        "| students | --jobs | minutes | seconds a notebook |",
        "| --- | --- | --- | --- |",
        *(f"| {n} | {jobs} | {s / 60:.1f} | {s / (n * len(books)):.2f} |" for n, jobs, s in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
