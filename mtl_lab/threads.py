"""How many threads, and whether they spin: chosen from the cores this process may use and how busy they are.

Imports nothing heavy (no torch): ``mtl_lab/__init__.py`` calls :func:`wait_policy_before_torch` before torch loads
its OpenMP, which reads OMP_WAIT_POLICY once. ``mtl_lab.runtime.apply_threads`` sets torch's threads for a run
and records the choice in results.json.
"""

from __future__ import annotations

import os
import sys

THREADS_ENV = "MTL_LAB_THREADS"
MARK_ENV = "MTL_LAB_SET_OMP"  # the lab set OMP_WAIT_POLICY: a child process (a kernel, a Slurm job) decides again


def usable_cores() -> int:
    """The cores this process may run on (its affinity; every core where a system cannot tell)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average (0 where a system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return 0.0


def fixed_threads() -> int | None:
    """$MTL_LAB_THREADS as a thread count (None when unset or not a whole number of at least 1)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def thread_choice(load: float | None = None) -> tuple[str, str]:
    """OpenMP's wait policy for how busy the machine is, and why.

    On a quiet machine OpenMP's default (a short spin, then sleep); beside other CPU-bound work (a 1-minute load
    average of one core or more) PASSIVE, threads that sleep at once while they wait, so no core is burnt spinning
    against a neighbour. The thread count is torch's own (or $MTL_LAB_THREADS): changing it would change the order of
    float sums, and so a run's numbers."""
    load = load_average() if load is None else load
    busy = round(load) >= 1
    why = f"{usable_cores()} usable cores, 1-min load {load:.1f}: " + (
        "OpenMP threads sleep while they wait (others use the cores)" if busy else "OpenMP's default waiting"
    )
    return ("PASSIVE" if busy else "default"), why


def wait_policy_before_torch() -> None:
    """Set OMP_WAIT_POLICY before torch (and its OpenMP) is loaded: OpenMP reads it once, when it starts.

    Nothing changes when torch is loaded already or the user set it; a value the lab set in a parent process (this
    machine then, maybe another now) is decided again."""
    if os.environ.pop(MARK_ENV, None):
        os.environ.pop("OMP_WAIT_POLICY", None)
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return
    policy = thread_choice()[0]
    if policy != "default":
        os.environ["OMP_WAIT_POLICY"] = policy
        os.environ[MARK_ENV] = "1"
