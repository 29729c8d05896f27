"""The course engine end to end: nbgrader release, four fake submissions made from it, autograde, CSV and feedback.

The submissions carry implementations written for this test (not the notebooks' reference
solutions): one all correct; one AdamW without bias correction (which also deleted its notebook's
set-up cell); one PCGrad that never projects (which also deleted its checker cell); and one whose
pair-features answer cell raises and whose InfoNCE answer cell sleeps past the per-cell timeout.
To keep the test short, only the first student submits every notebook; the others submit the
notebooks their case needs, and the rest count as not submitted.
"""

from __future__ import annotations

import csv
import textwrap

import nbformat
import pytest

from mtl_lab.course import grading

TIMEOUT_S = 8  # per answer/checker cell: the sleeping submission costs this much

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
# what each exercise of the fake students should score, and a phrase its feedback must hold
EXPECTED = {
    "alice": {"adamw": 4, "mean-pooling": 2, "pair-features": 2, "info-nce": 3, "pcgrad": 4},
    "bob": {"adamw": 0, "mean-pooling": 0, "pair-features": 0, "info-nce": 0, "pcgrad": 0},
    "carol": {"adamw": 0, "mean-pooling": 0, "pair-features": 0, "info-nce": 0, "pcgrad": 0},
    "dave": {"adamw": 0, "mean-pooling": 2, "pair-features": 0, "info-nce": 0, "pcgrad": 0},
}
SUBMITTED = {
    "alice": ["01", "02", "03", "04"],
    "bob": ["01"],
    "carol": ["04"],
    "dave": ["02", "03"],
}
MISTAKES = {
    ("bob", "adamw"): "no bias correction",
    ("carol", "pcgrad"): "no projection",
    ("dave", "pair-features"): "the answer cell raised ModuleNotFoundError",
    ("dave", "info-nce"): f"the answer cell ran past the {TIMEOUT_S} s limit",
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


def drop(nb, grade_id: str) -> None:
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]


def make_submissions(release, root) -> None:
    """SUBMISSIONS/<student>/<notebook>.ipynb for the four fake students, from the release."""
    students = {
        "alice": (CORRECT, {}, {}),
        "bob": ({**CORRECT, "adamw-answer": ADAMW_NO_BIAS_CORRECTION}, {}, {"01_bert_baselines": "setup"}),
        "carol": ({**CORRECT, "pcgrad-answer": PCGRAD_NEVER_PROJECTS}, {}, {"04_pcgrad": "pcgrad"}),
        "dave": (
            CORRECT,
            {"pair-features-answer": "import my_helpers  # a module only on the student's laptop\n\n"},
            {},
        ),
    }
    for student, (answers, prefix, deleted) in students.items():
        folder = root / student
        folder.mkdir(parents=True)
        for path in sorted(release.glob("0[1-4]_*.ipynb")):
            if path.name[:2] not in SUBMITTED[student]:
                continue
            nb = nbformat.read(path, as_version=4)
            fill(nb, answers, prefix)
            if student == "dave" and path.stem == "03_simcse":  # sleeps far past the per-cell timeout
                fill_sleep(nb)
            if path.stem in deleted:
                drop(nb, deleted[path.stem])
            nbformat.write(nb, folder / path.name)


def fill_sleep(nb) -> None:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "info-nce-answer":
            cell.source = "import time\n\ntime.sleep(3600)  # waiting for a GPU\n\n" + cell.source


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    counts = grading.release(root / "release")
    make_submissions(root / "release", root / "submissions")
    results = grading.autograde(root / "submissions", root / "grades.csv", timeout=TIMEOUT_S, log=lambda *_: None)
    with (root / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    return root, counts, results, rows


@pytest.mark.slow
def test_release_has_every_exercise_stubbed_and_no_solution(graded):
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
        assert "SOLUTION" not in code and "widgets" not in nb.metadata
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert code.count('raise NotImplementedError("write ') == counts[name]


@pytest.mark.slow
def test_the_csv_holds_exactly_the_expected_scores(graded):
    _, _, _, rows = graded
    assert list(rows[0]) == grading.COLUMNS
    got = {(r["student"], r["exercise"]): float(r["score"]) for r in rows}
    want = {(s, e): float(v) for s, ex in EXPECTED.items() for e, v in ex.items()}
    assert got == want
    points = {"adamw": 4, "mean-pooling": 2, "pair-features": 2, "info-nce": 3, "pcgrad": 4}
    assert all(float(r["max_score"]) == points[r["exercise"]] for r in rows)


@pytest.mark.slow
def test_feedback_names_each_mistake_and_each_pass(graded):
    _, _, _, rows = graded
    for r in rows:
        key = (r["student"], r["exercise"])
        assert "\n" not in r["feedback"]
        if key in MISTAKES:
            assert MISTAKES[key] in r["feedback"], (key, r["feedback"])
        elif r["notebook"][:2] not in SUBMITTED[r["student"]]:
            assert r["feedback"] == "not submitted"
        elif float(r["score"]):
            assert "match the reference" in r["feedback"], (key, r["feedback"])
    dave = {r["exercise"]: r["feedback"] for r in rows if r["student"] == "dave"}
    assert "name 'student_info_nce' is not defined" in dave["info-nce"]


@pytest.mark.slow
def test_the_summary_names_what_happened_and_feedback_files_exist(graded):
    root, _, results, _ = graded
    table = grading.summary(results)
    assert "dave / 02_sbert_cnn_bilstm: pair-features: the answer cell raised ModuleNotFoundError" in table
    assert f"dave / 03_simcse: info-nce: the answer cell ran past the {TIMEOUT_S} s limit" in table
    assert "bob / 01_bert_baselines: set-up cell 'setup' deleted (restored by the grader)" in table
    assert "carol / 04_pcgrad: checker cell 'pcgrad' deleted (restored by the grader)" in table
    assert "dave / 01_bert_baselines: not submitted" in table and "alice /" not in table
    totals = {row.split()[0]: row.split()[-1] for row in table.split("\n\n")[0].splitlines()[1:]}
    assert totals == {"alice": "15/15", "bob": "0/15", "carol": "0/15", "dave": "2/15"}
    for student, books in SUBMITTED.items():
        for book in books:
            (html,) = (root / "feedback" / student).glob(f"{book}_*.html")
            assert "<html" in html.read_text()[:2000].lower(), html
    assert "no bias correction" in (root / "feedback" / "bob" / "01_bert_baselines.html").read_text()


def test_submissions_may_use_nbgraders_collect_layout(tmp_path):
    """``<student>/<notebook>.ipynb``, or ``<student>/notebooks/<notebook>.ipynb`` as ``nbgrader collect`` leaves them."""
    flat, nested = tmp_path / "ann", tmp_path / "ben"
    flat.mkdir()
    (flat / "01_bert_baselines.ipynb").write_text("{}")
    (nested / "notebooks").mkdir(parents=True)
    assert grading.notebook_folder(flat) == flat
    assert grading.notebook_folder(nested) == nested / "notebooks"
