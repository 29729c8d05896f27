"""The JupyterLab a student meets, and the one an instructor switches on.

nbgrader installs its instructor tools into every JupyterLab of the environment: the Formgrader, the Create
Assignment panel, the Validate button and the Nbgrader menu. A student needs none of them, and JupyterLab's "get
notified about official Jupyter news?" prompt covers a corner of the notebook. ``python -m mtl_lab course
jupyter student`` (also applied by ``notebooks run`` until a mode is chosen) turns them off for this environment;
``python -m mtl_lab course jupyter instructor`` turns the nbgrader tools back on. Only files of this environment
(``sys.prefix``) are written, so a system-wide Jupyter is untouched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

INSTRUCTOR_LAB_EXTENSIONS = [
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:validate-assignment",
    "@jupyter/nbgrader:menu",
    "@jupyter/nbgrader:course-list",
]
INSTRUCTOR_SERVER_EXTENSIONS = [
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.course_list",
]
NO_NEWS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
MODES = ("student", "instructor")


def _paths(prefix: Path) -> dict[str, Path]:
    return {
        "page": prefix / "etc" / "jupyter" / "labconfig" / "page_config.json",
        "server": prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "zz-mtl-lab-mode.json",
        "overrides": prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json",
    }


def _merge(path: Path, update) -> None:
    """Read a JSON file (or {}), let ``update`` change it, write it back."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    update(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def current(prefix: str | Path = sys.prefix) -> str | None:
    """The mode chosen for this environment, or None when none was."""
    path = _paths(Path(prefix))["server"]
    return json.loads(path.read_text()).get("mtl_lab_mode") if path.is_file() else None


def apply(mode: str, prefix: str | Path = sys.prefix) -> dict[str, Path]:
    """Write this environment's JupyterLab settings for ``mode`` ('student' or 'instructor'); return the files."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    paths = _paths(Path(prefix))
    student = mode == "student"

    def page(data: dict) -> None:
        disabled = data.setdefault("disabledExtensions", {})
        for ext in INSTRUCTOR_LAB_EXTENSIONS:
            if student:
                disabled[ext] = True
            else:
                disabled.pop(ext, None)

    def server(data: dict) -> None:
        data["mtl_lab_mode"] = mode
        data.setdefault("ServerApp", {})["jpserver_extensions"] = {e: not student for e in INSTRUCTOR_SERVER_EXTENSIONS}

    _merge(paths["page"], page)
    _merge(paths["server"], server)
    _merge(paths["overrides"], lambda data: data.update(NO_NEWS))
    return paths


def student_by_default(prefix: str | Path = sys.prefix) -> bool:
    """Apply the student mode unless a mode was chosen already; True when it was applied now."""
    if current(prefix) is not None:
        return False
    apply("student", prefix)
    return True
