"""Two editions from one source (nbgrader's release with the lab's stubs): no solution, and a stub answers with one clear message."""

import nbformat
import pytest

from mtl_lab.course.checks import ExerciseNotDone
from mtl_lab.course.exercises import ExerciseMarkupError, strip_solutions
from mtl_lab.course.grading import release
from mtl_lab.course.notebooks import NOTEBOOK_DIR


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return out, release(out)


def solution_lines(nb):
    lines, inside = [], False
    for cell in nb.cells:
        for line in cell.source.splitlines():
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif inside and len(line.strip()) > 12:
                lines.append(line.strip())
    return lines


@pytest.mark.slow  # nbgrader generate_assignment: ~10 s
def test_every_exercise_notebook_gets_its_stubs_and_no_solution_line(student):
    out, counts = student
    assert counts["01_bert_baselines.ipynb"] == 1 and counts["02_sbert_cnn_bilstm.ipynb"] == 2
    assert counts["03_simcse.ipynb"] == 1 and counts["04_pcgrad.ipynb"] == 1
    for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        teacher = nbformat.read(path, as_version=4)
        pupil = nbformat.read(out / path.name, as_version=4)
        code = "\n".join(c.source for c in pupil.cells)
        assert "SOLUTION" not in code
        assert code.count('raise NotImplementedError("write ') == counts[path.name]
        assert not [line for line in solution_lines(teacher) if line in code], path.name
        assert all(not c.get("outputs") for c in pupil.cells if c.cell_type == "code")
        assert "widgets" not in pupil.metadata
        assert len(pupil.cells) == len(teacher.cells)


@pytest.mark.slow
def test_running_a_stubbed_exercise_gives_one_clear_message(student):
    out, counts = student
    for name in (n for n, k in counts.items() if k):
        cells = [c.source for c in nbformat.read(out / name, as_version=4).cells if c.cell_type == "code"]
        stub = next(i for i, s in enumerate(cells) if 'raise NotImplementedError("write ' in s)
        check = next(i for i in range(stub, len(cells)) if "checks.check_" in cells[i])
        namespace: dict = {}
        exec("import torch\nimport torch.nn.functional as F\nfrom mtl_lab.course import checks", namespace)
        exec(cells[stub], namespace)
        with pytest.raises(ExerciseNotDone) as err:
            exec(cells[check], namespace)
        shown = err.value._render_traceback_()
        assert len(shown) == 1 and "not written yet (write " in shown[0], name


def test_solution_markers_must_pair_up():
    src = "x = 1\n    ### BEGIN SOLUTION: the answer\n    y = 2\n    ### END SOLUTION\nz = 3"
    assert strip_solutions(src) == ('x = 1\n    raise NotImplementedError("write the answer here")\nz = 3', 1)
    with pytest.raises(ExerciseMarkupError, match="not closed"):
        strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(ExerciseMarkupError, match="without a BEGIN"):
        strip_solutions("x = 1\n### END SOLUTION")


def test_the_student_edition_never_overwrites_the_instructors():
    with pytest.raises(ValueError, match="must not overwrite"):
        release(NOTEBOOK_DIR)
