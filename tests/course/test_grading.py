"""The course engine end to end: nbgrader's release, a class of fake submissions made from it, sandboxed autograde.

The submissions carry implementations written for this test (not the notebooks' reference solutions):
- alice: every answer correct, files named as released; erin: the same, every file renamed as an LMS would;
- bob: AdamW without bias correction; carol: a PCGrad that never projects;
- dave: an answer cell that imports a module only on his laptop, and one that sleeps past the limit;
- mallory: the three cheats (replace the checker, import the lab's reference, patch torch.allclose);
- eve: an answer that tries to read the instructor's notebooks, write into alice's folder and open a socket;
- grace: correct answers that write warnings to stderr;
- frank: two copies of notebook 01, a stray file, notebook 00, and no notebook 04;
- copycat: links to the instructor's notebook 02 and to alice's 01 (an unzipped upload keeps links);
- sam: a pair-features answer that returns a sparse tensor (right values, not a plain tensor).
"""

from __future__ import annotations

import csv
import html
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from mtl_lab.course import grading, sandbox
from mtl_lab.course.notebooks import NOTEBOOK_DIR

TIMEOUT_S = 8  # per answer cell: the sleeping submission costs this much

ADAMW = """\
st = self.state[p]
if "step" not in st:
    st["step"], st["exp_avg"], st["exp_avg_sq"] = 0, torch.zeros_like(p), torch.zeros_like(p)
st["step"] += 1
g = p.grad
st["exp_avg"] = beta1 * st["exp_avg"] + (1 - beta1) * g
st["exp_avg_sq"] = beta2 * st["exp_avg_sq"] + (1 - beta2) * g * g
bc1, bc2 = {bc1}, {bc2}
p.mul_(1 - lr * wd)
p.addcdiv_(st["exp_avg"], (st["exp_avg_sq"] / bc2).sqrt().add(eps), value=-lr / bc1)
"""
ADAMW_OK = ADAMW.format(bc1='1 - beta1 ** st["step"]', bc2='1 - beta2 ** st["step"]')
ADAMW_NO_BIAS_CORRECTION = ADAMW.format(bc1="1.0", bc2="1.0")

MEAN_POOL = """\
w = mask.to(hidden.dtype)
return torch.einsum("bth,bt->bh", hidden, w) / w.sum(dim=1, keepdim=True).clamp_min(1e-9)
"""
PAIR_FEATURES = "return torch.cat((u, v, torch.abs(v - u)), dim=1)\n"
INFO_NCE = """\
a = anchors / anchors.norm(dim=-1, keepdim=True)
c = positives if hard_negatives is None else torch.cat([positives, hard_negatives])
c = c / c.norm(dim=-1, keepdim=True)
sim = a @ c.T / temperature
if hard_negatives is not None and negative_mask is not None:
    n = positives.shape[0]
    sim[:, n:] = sim[:, n:].masked_fill(~negative_mask.bool().unsqueeze(0), float("-inf"))
return F.cross_entropy(sim, torch.arange(a.shape[0]))
"""
PCGRAD_OK = """\
k = grads.shape[0]
out = []
for i in range(k):
    gi = grads[i].clone()
    others = [j for j in range(k) if j != i]
    for idx in torch.randperm(len(others), generator=generator).tolist():
        gj = grads[others[idx]]
        d, nj = torch.dot(gi, gj), torch.dot(gj, gj)
        if d < 0 and nj > 0:
            gi = gi - d / nj * gj
    out.append(gi)
total = torch.stack(out).sum(dim=0)
return total / k if reduction == "mean" else total
"""
PCGRAD_NEVER_PROJECTS = 'return grads.mean(0) if reduction == "mean" else grads.sum(0)\n'

CORRECT = {
    "adamw-answer": ADAMW_OK,
    "mean-pooling-answer": MEAN_POOL,
    "pair-features-answer": PAIR_FEATURES,
    "info-nce-answer": INFO_NCE,
    "pcgrad-answer": PCGRAD_OK,
}
CHEATS = {
    "adamw-answer": (
        'checks.check_adamw = lambda cls: print("✓ check_adamw: 3 cases match the reference")\n',
        "pass\n",
    ),
    "info-nce-answer": ("from mtl_lab.training.simcse import info_nce as student_info_nce\n", None),
    "pcgrad-answer": ("torch.allclose = lambda *a, **k: True\n", PCGRAD_NEVER_PROJECTS),
}
# eve's mean pooling: correct only if every escape failed, so the checker's verdict says whether they did
ESCAPE = """\
import os, socket
escaped = []
for attempt in (
    lambda: open({notebook!r}).read(),
    lambda: os.listdir({submissions!r}),
    lambda: open({sibling!r}, "w").write("eve was here"),
    lambda: open("/tmp/../{outside!r}", "w").write("x"),
    lambda: socket.create_connection(("127.0.0.1", 22), timeout=2),
    lambda: socket.create_connection(("pypi.org", 443), timeout=2),
):
    try:
        attempt()
        escaped.append(attempt)
    except Exception:
        pass
"""
ESCAPE_POOL = """\
w = mask.to(hidden.dtype)
out = (hidden * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True)
return out if not escaped else out + len(escaped)
"""
STDERR_POOL = 'import warnings\nwarnings.warn("is this right?")\n' + MEAN_POOL

POINTS = {"adamw": 4, "mean-pooling": 2, "pair-features": 2, "info-nce": 3, "pcgrad": 4}
ALL = {"01_bert_baselines", "02_sbert_cnn_bilstm", "03_simcse", "04_pcgrad"}
# what each exercise of the fake students should score (0 where not listed)
EXPECTED = {
    "alice": dict(POINTS),
    "erin": dict(POINTS),
    "bob": {},
    "carol": {},
    "dave": {"mean-pooling": 2},
    "mallory": {"mean-pooling": 2, "pair-features": 2},
    "eve": {"pair-features": 2},
    "grace": {"mean-pooling": 2, "pair-features": 2},
    "frank": {"adamw": 4, "mean-pooling": 2, "pair-features": 2, "info-nce": 3},
    "copycat": {},
    "sam": {"mean-pooling": 2},
}
MISTAKES = {
    ("bob", "adamw"): "no bias correction",
    ("carol", "pcgrad"): "no projection",
    ("dave", "pair-features"): "the answer cell raised ModuleNotFoundError: No module named 'my_helpers'",
    ("dave", "info-nce"): f"the answer cell ran past the {TIMEOUT_S} s limit",
}
FLAGS = {
    ("mallory", "adamw"): "replaces checks.check_adamw",
    ("mallory", "info-nce"): "imports the lab (mtl_lab.training.simcse)",
    ("mallory", "pcgrad"): "replaces torch.allclose",
    ("eve", "mean-pooling"): "imports os",
}


def fill(nb, answers: dict[str, str], prefix: dict[str, str] | None = None) -> None:
    """Write answers over the release's stubs (``raise NotImplementedError("write ... here")``), at their indentation."""
    for cell in nb.cells:
        name = cell.metadata.get("nbgrader", {}).get("grade_id")
        if name not in answers:
            continue
        lines = cell.source.splitlines()
        (k,) = [i for i, line in enumerate(lines) if 'raise NotImplementedError("write ' in line]
        indent = lines[k][: len(lines[k]) - len(lines[k].lstrip())]
        lines[k : k + 1] = textwrap.indent(answers[name], indent).rstrip("\n").splitlines()
        cell.source = (prefix or {}).get(name, "") + "\n".join(lines)


def write(release: Path, folder: Path, book: str, answers: dict, prefix: dict | None = None, name: str | None = None):
    nb = nbformat.read(release / f"{book}.ipynb", as_version=4)
    fill(nb, answers, prefix)
    path = folder / f"{name or book}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def make_submissions(release: Path, root: Path) -> None:
    """SUBMISSIONS/<student>/... for the fake class, from the release."""
    for book in sorted(ALL):
        write(release, root / "alice", book, CORRECT)
        write(release, root / "grace", book, {**CORRECT, "mean-pooling-answer": STDERR_POOL}) if book[
            :2
        ] == "02" else None
    renamed = {
        "01_bert_baselines": "erin_01_bert_baselines",
        "02_sbert_cnn_bilstm": "02_sbert_cnn_bilstm (1)",
        "03_simcse": "hw/03_simcse_final",
        "04_pcgrad": "pcgrad",
    }
    for book, name in renamed.items():
        write(release, root / "erin", book, CORRECT, name=name)
    write(release, root / "bob", "01_bert_baselines", {**CORRECT, "adamw-answer": ADAMW_NO_BIAS_CORRECTION})
    write(release, root / "carol", "04_pcgrad", {**CORRECT, "pcgrad-answer": PCGRAD_NEVER_PROJECTS})
    helper = {"pair-features-answer": "import my_helpers  # a module only on the student's laptop\n\n"}
    write(release, root / "dave", "02_sbert_cnn_bilstm", CORRECT, helper)
    sleep = {"info-nce-answer": "import time\n\ntime.sleep(3600)  # waiting for a GPU\n\n"}
    write(release, root / "dave", "03_simcse", CORRECT, sleep)
    for book in sorted(ALL):
        answers = {**CORRECT, **{k: v[1] for k, v in CHEATS.items() if v[1]}}
        write(release, root / "mallory", book, answers, {k: v[0] for k, v in CHEATS.items()})
    escape = ESCAPE.format(
        notebook=str(NOTEBOOK_DIR / "02_sbert_cnn_bilstm.ipynb"),
        submissions=str(root),
        sibling=str(root / "alice" / "01_bert_baselines.ipynb"),
        outside=str(root / "escaped.txt"),
    )
    write(
        release,
        root / "eve",
        "02_sbert_cnn_bilstm",
        {**CORRECT, "mean-pooling-answer": ESCAPE_POOL},
        {"mean-pooling-answer": escape},
    )
    for book in ("01_bert_baselines", "02_sbert_cnn_bilstm", "03_simcse"):
        write(release, root / "frank", book, CORRECT)
    write(
        release,
        root / "frank",
        "01_bert_baselines",
        {**CORRECT, "adamw-answer": "pass\n"},
        name="01_bert_baselines (1)",
    )
    shutil.copy(release / "00_setup_and_data.ipynb", root / "frank" / "00_setup_and_data.ipynb")
    (root / "frank" / "notes.txt").write_text("I ran out of time for 04")
    (root / "copycat").mkdir()
    (root / "copycat" / "02_sbert_cnn_bilstm.ipynb").symlink_to(NOTEBOOK_DIR / "02_sbert_cnn_bilstm.ipynb")
    (root / "copycat" / "01_bert_baselines.ipynb").symlink_to(root / "alice" / "01_bert_baselines.ipynb")
    sparse = "return torch.cat([u, v, (u - v).abs()], -1).to_sparse()\n"
    write(release, root / "sam", "02_sbert_cnn_bilstm", {**CORRECT, "pair-features-answer": sparse})


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap): the sandboxed grading is not tested")
    sandbox.check()  # installed but unable to run is a failure, not a skip
    root = tmp_path_factory.mktemp("course")
    counts = grading.release(root / "release")
    make_submissions(root / "release", root / "submissions")
    before = (root / "submissions" / "alice" / "01_bert_baselines.ipynb").read_bytes()
    results = grading.autograde(
        root / "submissions", root / "grades.csv", timeout=TIMEOUT_S, log=lambda *_: None, jobs=2
    )
    with (root / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert (root / "submissions" / "alice" / "01_bert_baselines.ipynb").read_bytes() == before
    return root, counts, results, rows


@pytest.mark.slow
def test_release_has_every_exercise_stubbed_and_no_solution_nor_nbval_marker(graded):
    root, counts, _, _ = graded
    assert counts == {
        "00_setup_and_data.ipynb": 0,
        "01_bert_baselines.ipynb": 1,
        "02_sbert_cnn_bilstm.ipynb": 2,
        "03_simcse.ipynb": 1,
        "04_pcgrad.ipynb": 1,
        "05_ablations.ipynb": 0,
        "06_error_analysis.ipynb": 0,
    }
    for name in counts:
        nb = nbformat.read(root / "release" / name, as_version=4)
        code = "\n".join(c.source for c in nb.cells)
        assert "SOLUTION" not in code and "NBVAL" not in code and "widgets" not in nb.metadata
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert code.count('raise NotImplementedError("write ') == counts[name]
        setup = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
        assert not any(ref in s for s in setup for ref in ("import simcse", "pcgrad import", "optim import AdamW"))


@pytest.mark.slow
def test_the_csv_holds_exactly_the_expected_scores(graded):
    _, _, _, rows = graded
    assert list(rows[0]) == grading.COLUMNS
    got = {(r["student"], r["exercise"]): float(r["score"]) for r in rows}
    want = {(s, e): float(EXPECTED[s].get(e, 0)) for s in EXPECTED for e in POINTS}
    assert got == want
    assert all(float(r["max_score"]) == POINTS[r["exercise"]] for r in rows)


@pytest.mark.slow
def test_cheats_score_0_and_are_flagged_with_the_line(graded):
    _, _, results, rows = graded
    flagged = {(r["student"], r["exercise"]): r["flag"] for r in rows if r["flag"]}
    assert set(flagged) == set(FLAGS), flagged
    for key, reason in FLAGS.items():
        assert reason in flagged[key] and "line " in flagged[key], flagged[key]
    table = grading.summary(results)
    assert "mallory / pcgrad: replaces torch.allclose" in table


@pytest.mark.slow
def test_the_sandbox_refuses_every_escape_and_the_submission_is_still_graded(graded):
    root, _, _, rows = graded
    eve = {r["exercise"]: r for r in rows if r["student"] == "eve"}
    # the escape attempts all failed: the answer then returns the right mean, which the checker saw
    assert "check_mean_pooling: 3 cases match the reference" in eve["mean-pooling"]["feedback"]
    assert eve["pair-features"]["score"] == "2"
    assert not (root / "submissions" / "escaped.txt").exists()


@pytest.mark.slow
def test_feedback_names_each_mistake_and_each_pass(graded):
    _, _, _, rows = graded
    for r in rows:
        key = (r["student"], r["exercise"])
        assert "\n" not in r["feedback"]
        if key in MISTAKES:
            assert MISTAKES[key] in r["feedback"], (key, r["feedback"])
        elif float(r["score"]):
            assert "match the reference" in r["feedback"], (key, r["feedback"])


@pytest.mark.slow
def test_every_file_is_accounted_for(graded):
    _, _, results, rows = graded
    table = grading.summary(results)
    for line in (
        "erin/pcgrad.ipynb: graded as 04_pcgrad",
        "erin/hw/03_simcse_final.ipynb: graded as 03_simcse",
        "frank/01_bert_baselines (1).ipynb: a second copy of 01_bert_baselines, not graded",
        "frank/notes.txt: not a notebook, ignored",
        "frank/00_setup_and_data.ipynb: 00_setup_and_data has no graded exercise",
        "frank / 04_pcgrad: not submitted",
        "dave / 03_simcse: info-nce: the answer cell ran past",
        "copycat/02_sbert_cnn_bilstm.ipynb: a link",
        "copycat/01_bert_baselines.ipynb: a link",
    ):
        assert line in table, (line, table)
    frank = {r["exercise"]: r["feedback"] for r in rows if r["student"] == "frank"}
    assert frank["pcgrad"] == "not submitted"
    totals = {row.split()[0]: row.split()[-1] for row in table.split("\n\n")[0].splitlines()[1:]}
    assert totals["alice"] == totals["erin"] == "15/15" and totals["frank"] == "11/15"


@pytest.mark.slow
def test_the_feedback_page_shows_the_points_of_the_csv(graded):
    root, _, _, rows = graded
    for r in rows:
        page = root / "feedback" / r["student"] / f"{r['notebook']}.html"
        if r["feedback"] == "not submitted":
            continue
        text = page.read_text()
        assert f"{html.escape(r['exercise'])}: {r['score']} / {r['max_score']}</h2>" in text, (page, r)
    grace = (root / "feedback" / "grace" / "02_sbert_cnn_bilstm.html").read_text()
    assert re.search(r"<h1>02_sbert_cnn_bilstm: 4 / 4</h1>", grace)


@pytest.mark.slow
def test_jobs_1_gives_the_same_grades_as_jobs_2(graded, tmp_path):
    root, _, _, rows = graded
    subset = tmp_path / "subs"
    for student in ("bob", "eve", "frank"):
        shutil.copytree(root / "submissions" / student, subset / student)
    grading.autograde(subset, tmp_path / "grades.csv", timeout=TIMEOUT_S, log=lambda *_: None, jobs=1)
    with (tmp_path / "grades.csv").open() as f:
        again = list(csv.DictReader(f))
    assert again == [r for r in rows if r["student"] in ("bob", "eve", "frank")]


@pytest.mark.slow
def test_the_commands_run_from_the_venvs_python_without_activating_it(tmp_path):
    """``.venv/bin/python -m mtl_lab course release`` with a PATH that lacks the venv: nbgrader finds alembic."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mtl_lab", "course", "release", "--out", str(tmp_path / "rel")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    shutil.copy(tmp_path / "rel" / "02_sbert_cnn_bilstm.ipynb", tmp_path / "subs" / "ann")
    no_sandbox = [] if sandbox.available() else ["--no-sandbox"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtl_lab",
            "course",
            "autograde",
            str(tmp_path / "subs"),
            "--out",
            str(tmp_path / "g.csv"),
            *no_sandbox,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not written yet" in (tmp_path / "g.csv").read_text()


def test_nbgraders_real_cause_is_named():
    log = "[GenerateAssignment] ERROR | see the above traceback\nFileNotFoundError: [Errno 2] No such file: 'alembic'\n"
    assert grading._nbgrader_cause(log) == "FileNotFoundError: [Errno 2] No such file: 'alembic'"


def test_a_notebook_is_matched_by_its_graded_cells_not_its_name():
    books = {"01_x": {"adamw", "adamw-answer"}, "02_y": {"mean-pooling", "mean-pooling-answer"}}
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["nbgrader"] = {"grade_id": "mean-pooling-answer"}
    nb.cells = [cell]
    assert grading.match(nb, books) == "02_y"
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    assert grading.match(nb, books) is None


def test_a_report_with_other_cases_than_sent_is_refused():
    """The harness shares its process with the answer: its report must hold exactly the cases sent, as plain tensors."""
    import torch

    cases = {"a": {}, "b": {}}
    assert grading._checked({"answer_error": None, "cases": {}}, cases)[0] is None
    good = {"answer_error": None, "cases": {"a": {"out": torch.ones(2)}, "b": {"error": "x"}}}
    assert grading._checked(good, cases)[0] is good
    odd = {"answer_error": None, "cases": {"a": {"out": torch.ones(2).to_sparse()}, "b": {"out": [torch.ones(1)]}}}
    assert grading._checked(odd, cases)[0]["cases"]["a"]["out"] == "<Tensor>"
    assert grading._checked([], cases)[0] is None


def test_without_bubblewrap_autograde_says_so_in_one_line(tmp_path, monkeypatch):
    """No sandbox: one line naming the package, and no student code runs (``--no-sandbox`` goes on without one)."""
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox.check.cache_clear()
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="^no sandbox: bubblewrap is not installed") as err:
            grading.autograde(tmp_path / "subs", tmp_path / "g.csv", log=lambda *_: None)
        assert "\n" not in str(err.value) and not (tmp_path / "g.csv").exists()
    finally:
        sandbox.check.cache_clear()
