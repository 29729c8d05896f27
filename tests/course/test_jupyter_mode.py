"""The student JupyterLab: nbgrader's instructor tools and the news prompt off; one command switches them on."""

import json
import subprocess
import sys

from mtl_lab.course import jupyter_mode


def test_student_then_instructor(tmp_path):
    assert jupyter_mode.student_by_default(tmp_path)
    paths = jupyter_mode._paths(tmp_path)
    disabled = json.loads(paths["page"].read_text())["disabledExtensions"]
    assert all(disabled[e] for e in jupyter_mode.INSTRUCTOR_LAB_EXTENSIONS)
    server = json.loads(paths["server"].read_text())["ServerApp"]["jpserver_extensions"]
    assert server == dict.fromkeys(jupyter_mode.INSTRUCTOR_SERVER_EXTENSIONS, False)
    assert json.loads(paths["overrides"].read_text()) == jupyter_mode.NO_NEWS
    assert not jupyter_mode.student_by_default(tmp_path)  # a chosen mode stays
    jupyter_mode.apply("instructor", tmp_path)
    assert json.loads(paths["page"].read_text())["disabledExtensions"] == {}
    assert all(json.loads(paths["server"].read_text())["ServerApp"]["jpserver_extensions"].values())
    assert jupyter_mode.current(tmp_path) == "instructor"


def test_jupyterlab_reads_the_student_settings(tmp_path):
    """`jupyter labextension list` of an environment whose prefix holds the student settings."""
    jupyter_mode.apply("student", tmp_path)
    env_dirs = {"JUPYTER_CONFIG_PATH": str(tmp_path / "etc" / "jupyter")}
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        env={**__import__("os").environ, **env_dirs},
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert "Disabled extensions:" in text, text
    disabled = text.split("Disabled extensions:")[1].split()
    assert set(jupyter_mode.INSTRUCTOR_LAB_EXTENSIONS) <= set(disabled)
