"""What an answer cell may not do: read before it runs, each finding a reason and a line for a person to review.

An exercise's points must come from the student's own code. An answer that imports the lab (its
reference among it), replaces an attribute of torch, the checkers or the lab, reaches for the
interpreter's machinery (``exec``, ``__import__``, ``sys``, ``os``, frames, ``__globals__`` ...), or calls
a library's implementation of the very thing the exercise asks for (``torch.optim.AdamW`` for AdamW),
scores 0 for that exercise and is flagged in grades.csv. An honest answer uses none of these.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

# modules an answer has no business importing: the lab, the grader, and the interpreter's machinery
FORBIDDEN_MODULES = {
    "mtl_lab",
    "nbgrader",
    "os",
    "sys",
    "subprocess",
    "socket",
    "ctypes",
    "inspect",
    "gc",
    "importlib",
    "builtins",
    "pickle",
    "marshal",
    "shutil",
    "pathlib",
    "io",
    "urllib",
    "http",
    "requests",
    "multiprocessing",
    "threading",
    "signal",
    "site",
    "runpy",
    "code",
    "codeop",
    "types",
    "linecache",
    "traceback",
    "sentence_transformers",
    "torchjd",
    "operator",
}
FORBIDDEN_CALLS = {
    "exec",
    "eval",
    "compile",
    "__import__",
    "open",
    "globals",
    "locals",
    "vars",
    "setattr",
    "delattr",
    "breakpoint",
    "input",
}
FORBIDDEN_DUNDERS = {
    "__globals__",
    "__builtins__",
    "__subclasses__",
    "__code__",
    "__dict__",
    "__class__",
    "__bases__",
    "__mro__",
    "__closure__",
    "__getattribute__",
    "__setattr__",
    "__loader__",
    "__spec__",
    "__self__",
    "__func__",
    "__wrapped__",
    "__reduce__",
    "__reduce_ex__",
}
# names whose attributes an answer must never assign: torch, its modules, the checkers and the lab
PROTECTED_ROOTS = {"torch", "F", "nn", "checks", "mtl_lab", "np", "numpy", "math", "harness", "itertools", "functools"}
# per exercise (the checker's grade_id): the names of the library's own implementation of what it asks for; an
# attribute or an import of any of them is flagged (and the sandbox removes them: ``HIDDEN``)
LIBRARY_ANSWERS = {
    "adamw": {"AdamW", "Adam", "adamw", "adam", "_functional", "_fused_adamw_", "_fused_adam_", "_multi_tensor_adamw"},
    "info-nce": {"MultipleNegativesRankingLoss"},
}
# what the sandbox deletes from torch before an exercise's answer runs
HIDDEN = {
    "adamw": [
        "torch.optim.AdamW",
        "torch.optim.Adam",
        "torch.optim.adamw",
        "torch.optim.adam",
        "torch.optim._functional",
        "torch._fused_adamw_",
        "torch._fused_adam_",
    ],
}
# attributes that lead to the interpreter or the operating system, whatever they hang off (``torch.sys.modules``)
FORBIDDEN_ATTRIBUTES = {
    "sys",
    "os",
    "modules",
    "builtins",
    "subprocess",
    "importlib",
    "_getframe",
    "f_globals",
    "f_locals",
    "f_back",
    "f_builtins",
    "gi_frame",
    "cr_frame",
    "tb_frame",
}


@dataclass(frozen=True)
class Flag:
    """One finding: why the answer is not scored, and the line that shows it."""

    reason: str
    line: int
    code: str

    def __str__(self) -> str:
        return f"{self.reason} (line {self.line}: `{self.code[:60]}`)"


def _dotted(node: ast.AST) -> str:
    """``torch.nn.functional.normalize`` for an attribute chain, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _root(node: ast.AST) -> str:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def scan(source: str, exercise: str) -> list[Flag]:
    """Every forbidden construct in an answer cell's source (an empty list for an honest answer)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it will fail to run and score 0 on its own, with the syntax error as feedback
    lines = source.splitlines()
    flags: list[Flag] = []

    def flag(reason: str, node: ast.AST) -> None:
        n = getattr(node, "lineno", 1)
        flags.append(Flag(reason, n, lines[n - 1].strip() if 0 < n <= len(lines) else ""))

    aliases = set(PROTECTED_ROOTS)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top == "mtl_lab":
                    flag(f"imports the lab ({name}): an answer must be the student's own code", node)
                elif top in FORBIDDEN_MODULES:
                    flag(f"imports {name}, which an answer has no use for", node)
            aliases |= {(a.asname or a.name).split(".")[0] for a in node.names}
            for a in node.names:
                if a.name.split(".")[-1] in LIBRARY_ANSWERS.get(exercise, ()) or (
                    isinstance(node, ast.ImportFrom)
                    and (node.module or "").split(".")[-1] in LIBRARY_ANSWERS.get(exercise, ())
                ):
                    flag(f"uses the library's {a.name} instead of writing it", node)
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, (ast.Attribute, ast.Subscript)) and _root(t) in aliases:
                    what = _dotted(t) or _root(t)
                    flag(f"replaces {what}: an answer may not change torch, the checkers or the lab", node)
                    break
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS:
            flag(f"uses {node.id}, which an answer has no use for", node)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "type"
            and len(node.args) == 3
        ):
            flag("builds a class with type(name, bases, dict)", node)
        if isinstance(node, ast.Name) and node.id == "getattr":
            calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and c.func is node]
            if not calls or any(len(c.args) < 2 or not isinstance(c.args[1], ast.Constant) for c in calls):
                flag("getattr with a computed name, or passed around", node)
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_DUNDERS:
            flag(f"reaches for {node.attr}", node)
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            flag(f"reaches for .{node.attr}", node)
        if isinstance(node, ast.Name) and node.id in ("__builtins__", "__loader__", "__spec__"):
            flag(f"reaches for {node.id}", node)
        if isinstance(node, ast.Attribute) and node.attr in LIBRARY_ANSWERS.get(exercise, ()):
            flag(f"uses the library's {node.attr} instead of writing it", node)
        if isinstance(node, ast.Constant) and node.value in LIBRARY_ANSWERS.get(exercise, ()):
            flag(f"names the library's {node.value}", node)
    unique = {(f.reason, f.line): f for f in flags}
    return sorted(unique.values(), key=lambda f: (f.line, f.reason))
