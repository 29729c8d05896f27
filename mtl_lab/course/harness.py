"""The only grading code that runs student code: define the answer, call it on the checker's inputs, keep the outputs.

It imports torch and the standard library only, never the lab, so that it runs inside the grading sandbox,
where neither the lab nor its references are visible (``mtl_lab.course.sandbox``). The checker's inputs come
in and the student's outputs go out as plain tensors; comparing them with the reference happens in the
grader's own process (``mtl_lab.course.checks``), where the student's code cannot reach. In a notebook,
``checks.check_*`` calls the same functions in the student's kernel.

``python harness.py JOB_DIR`` reads ``job.json`` (the answer cell, the set-up imports, the name to call, the
kind of call) and ``inputs.pt``, and writes ``outputs.pt``: per case the output or a one-line error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import torch

ANSWER_FILE = "<your answer cell>"
LIBRARY_DIRS = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(__file__))})


class NotWritten(Exception):
    """The answer still raises NotImplementedError."""


class StudentError(Exception):
    """The student's code raised: the message is one line with the exception and the student's own line."""


def _own_line(exc: BaseException) -> str:
    """' (your line N: `code`)' for the deepest frame of the student's code, or '' when there is none."""
    import linecache

    own = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        name = frame.f_code.co_filename
        if name == ANSWER_FILE or not os.path.realpath(name).startswith(LIBRARY_DIRS):
            own = (name, lineno)
    if own is None:
        return ""
    text = linecache.getline(own[0], own[1]).strip()
    return f" (your line {own[1]}: `{text[:70]}`)" if text else f" (your line {own[1]})"


def describe(exc: BaseException) -> str:
    """An exception as one short line: its type, its message's first line, and the student's line that raised it."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}" + (f": {message[0][:160]}" if message else "") + _own_line(exc)


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with NotImplementedError as :class:`NotWritten` and any other error as :class:`StudentError`."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise NotWritten(str(exc) or "NotImplementedError") from None
    except Exception as exc:  # the student's code: any error becomes one line
        raise StudentError(describe(exc)) from None


def _materialise(value):
    """Inputs arrive as tensors, numbers and dicts; ``{"generator": seed}`` becomes a seeded torch.Generator."""
    if isinstance(value, dict) and set(value) == {"generator"}:
        return torch.Generator().manual_seed(int(value["generator"]))
    if torch.is_tensor(value):
        return value.clone()
    return value


def run_optimizer(optimizer_cls, params0: list, grads: list, options: dict) -> list[torch.Tensor]:
    """Build the optimizer on copies of ``params0`` and take one step per entry of ``grads``; return the parameters."""
    params = [torch.nn.Parameter(p.clone()) for p in params0]
    opt = call(optimizer_cls, params, **options)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        call(opt.step)
    return [p.detach().clone() for p in params]


def run_case(kind: str, obj, case: dict):
    """One checker case: an optimizer run (``kind == "optimizer"``) or a function call."""
    if kind == "optimizer":
        return run_optimizer(obj, case["params"], case["grads"], case["options"])
    args = [_materialise(a) for a in case.get("args", [])]
    kwargs = {k: _materialise(v) for k, v in case.get("kwargs", {}).items()}
    return call(obj, *args, **kwargs)


def _plain(out):
    """What the grader may load back with ``weights_only=True``: tensors (detached, on the CPU), lists and numbers."""
    if torch.is_tensor(out):
        return out.detach().cpu().clone()
    if isinstance(out, (list, tuple)):
        return [_plain(o) for o in out]
    if isinstance(out, (int, float, bool)) or out is None:
        return out
    return f"<{type(out).__name__}>"


def run_cases(kind: str, obj, cases: dict[str, dict]) -> dict[str, dict]:
    """Every case: ``{"out": ...}`` or ``{"error": one line}`` / ``{"not_written": text}``."""
    results = {}
    for name, case in cases.items():
        try:
            results[name] = {"out": _plain(run_case(kind, obj, case))}
        except NotWritten as exc:
            results[name] = {"not_written": str(exc)}
        except StudentError as exc:
            results[name] = {"error": str(exc)}
    return results


def _watched() -> dict[str, object]:
    """The functions a cheat would replace (torch's, F's, Tensor's), compared by identity before and after the answer.

    torch itself re-wraps its seeding functions on first use of an optimizer: those are not watched."""
    import torch.nn.functional as F

    watched = {}
    for label, owner in (("torch", torch), ("torch.nn.functional", F), ("torch.Tensor", torch.Tensor)):
        for name in dir(owner):
            if (
                "seed" in name
                or "Storage" in name
                or (name.startswith("__") and name not in ("__eq__", "__sub__", "__lt__"))
            ):
                continue
            try:
                watched[f"{label}.{name}"] = getattr(owner, name)
            except Exception:  # some attributes raise on access
                continue
    return watched


class _Refuse:
    """An import hook that refuses the modules an exercise asks the student to write."""

    def __init__(self, names: list[str]):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name in self.names:
            raise ImportError(f"{name} is not available while this exercise is graded: write it yourself")
        return None


def hide(names: list[str]) -> None:
    """Remove the library's own implementation of the exercise (``torch.optim.AdamW``, ...) before the answer runs."""
    for dotted in names:
        owner_name, _, attr = dotted.rpartition(".")
        owner = sys.modules.get(owner_name)
        if owner is not None and hasattr(owner, attr):
            delattr(owner, attr)
        sys.modules.pop(dotted, None)
    sys.meta_path.insert(0, _Refuse(names))


def grade_job(job_dir: Path) -> None:
    """The sandboxed process: define the answer cell after the set-up imports, run the cases, write the outputs."""
    job = json.loads((job_dir / "job.json").read_text())
    cases = torch.load(job_dir / "inputs.pt", weights_only=True)
    namespace: dict = {"__name__": "__student__"}
    exec(compile(job["preamble"], "<set-up imports>", "exec"), namespace)
    hide(job.get("hide", []))
    before = _watched()
    (job_dir / "started").write_text("")
    result: dict = {"answer_error": None, "cases": {}, "replaced": []}
    try:
        exec(compile(job["answer"], ANSWER_FILE, "exec"), namespace)
    except NotImplementedError as exc:
        result["answer_error"] = f"not written yet ({exc or 'NotImplementedError'})"
    except BaseException as exc:  # noqa: BLE001 - the student's cell: report whatever it raised
        import linecache

        linecache.cache[ANSWER_FILE] = (len(job["answer"]), None, job["answer"].splitlines(True), ANSWER_FILE)
        result["answer_error"] = describe(exc)
    (job_dir / "answer-ran").write_text("")
    if result["answer_error"] is None:
        import linecache

        linecache.cache[ANSWER_FILE] = (len(job["answer"]), None, job["answer"].splitlines(True), ANSWER_FILE)
        if job["symbol"] not in namespace:
            result["answer_error"] = f"NameError: the answer cell does not define {job['symbol']}"
        else:
            result["cases"] = run_cases(job["kind"], namespace[job["symbol"]], cases)
    after = _watched()
    result["replaced"] = sorted(k for k in before if after.get(k) is not before[k])
    torch.save(result, job_dir / "outputs.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    grade_job(Path(sys.argv[1]))
