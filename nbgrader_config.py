"""nbgrader's configuration for the lab: the notebooks/ folder is the assignment source (``nbgrader <command> notebooks``).

The settings and the preprocessors nbgrader lacks live in ``mtl_lab/course/engine.py`` (shared with
``python -m mtl_lab course release|autograde``). nbgrader's working folders (release/, submitted/,
autograded/, feedback/, gradebook.db) go under course/, which git ignores. See docs/teaching.md.
"""

from pathlib import Path

from mtl_lab.course.engine import configure

root = Path(__file__).resolve().parent / "course"
root.mkdir(exist_ok=True)
configure(get_config(), root=str(root))  # noqa: F821 (nbgrader provides get_config)
