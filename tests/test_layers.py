"""The package's import direction: course -> study -> training / evaluate -> models -> the base modules.

A module may import from its own layer and the layers below it, never from a layer above: the model
code knows nothing of training, training nothing of the study, the study nothing of the course tools.
Imports inside functions count too.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtl_lab"

# lower number = lower layer; __main__ (the command line) may import everything
BASE = ("data", "tasks", "runtime", "threads", "runs", "records", "checkpoint")
LAYERS = {**dict.fromkeys(BASE, 0), "models": 1, "training": 2, "evaluate": 2, "study": 3, "course": 4}


def _layer(module: str) -> int | None:
    """The layer of ``mtl_lab.<module...>`` by its first component (None: the package itself or __main__)."""
    return LAYERS.get(module.split(".")[0])


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported mtl_lab module relative to the package) of every import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtl_lab"):
            base = node.module.removeprefix("mtl_lab").lstrip(".")
            names = [base] if base else [a.name for a in node.names]  # from mtl_lab import data, runs
            out += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (the package imports absolutely)")
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.removeprefix("mtl_lab.")) for a in node.names if a.name.startswith("mtl_lab.")]
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_imports_upward(path):
    own = _layer(".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    if own is None:  # mtl_lab/__init__.py: resolves names lazily, imports nothing at import time
        return
    upward = [f"line {line}: {module}" for line, module in _imports(path) if (_layer(module) or 0) > own]
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {own}) imports from a higher layer: {upward}"


def test_every_module_has_a_layer():
    for path in MODULES:
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts != ("__init__",):
            assert _layer(".".join(parts)) is not None, f"{path}: add its folder or module to LAYERS"


def test_the_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mtl_lab.study import compare\n")
    assert _imports(bad) == [(2, "study")]
    assert _layer("study") > _layer("models")
