"""The one piece of the student edition nbgrader cannot express: a stub that names what to write.

The committed notebooks hold each exercise's reference solution between marker lines::

    ### BEGIN SOLUTION: the AdamW update
    ...
    ### END SOLUTION

(nbgrader's own markers, with the lab's ``: <what>``), so papermill and nbval run them end to end.
nbgrader's generate_assignment (``python -m mtl_lab course release``, see ``mtl_lab.course``) makes
the student edition; its ClearSolutions replaces every region with one fixed stub. The lab's
replaces it with ``raise NotImplementedError("write the AdamW update here")`` at the region's
indentation, so the checker's "not written yet" message says which exercise is missing, and it
refuses unpaired markers with the cell and line.
"""

from __future__ import annotations

import re

BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION(?::\s*(?P<what>.*))?$")
END = re.compile(r"^\s*### END SOLUTION\s*$")


class ExerciseMarkupError(ValueError):
    """A notebook's solution markers do not pair up."""


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """``source`` with each solution region replaced by a NotImplementedError stub, and how many regions there were."""
    out, inside, regions = [], False, 0
    for n, line in enumerate(source.splitlines(), start=1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ExerciseMarkupError(f"{where}, line {n}: BEGIN SOLUTION inside another solution region")
            inside, regions = True, regions + 1
            what = (begin.group("what") or "your solution").strip()
            out.append(f'{begin.group("indent")}raise NotImplementedError("write {what} here")')
        elif END.match(line):
            if not inside:
                raise ExerciseMarkupError(f"{where}, line {n}: END SOLUTION without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ExerciseMarkupError(f"{where}: a solution region is not closed (### END SOLUTION missing)")
    return "\n".join(out), regions
