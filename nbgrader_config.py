"""nbgrader's configuration for the lab: the notebooks/ folder is the assignment source (``nbgrader <command> notebooks``).

The settings and the preprocessors nbgrader lacks live in ``mtl_lab/course/engine.py`` (shared with
``python -m mtl_lab course release|autograde``). nbgrader's working folders (release/, submitted/,
autograded/, feedback/, gradebook.db) go under course/, which git ignores. See docs/teaching.md.
"""

from mtl_lab.course.engine import configure

c = get_config()  # noqa: F821 (nbgrader provides it)
configure(c)
c.CourseDirectory.root = "course"
