"""The grading sandbox: bubblewrap (``bwrap``) around each run of a student's answer.

Inside, the process sees the operating system's libraries (``/usr``), the Python installation and the
virtual environment, read-only, and the harness file; it may write only its own job folder and a
private ``/tmp``. It has no network (a new, empty network namespace), no other processes (a new PID
namespace), no capabilities and the user ``nobody``. The lab itself, its notebooks (with the
solutions), the published results and every other submission are simply not there. bwrap needs no
root: it uses an unprivileged user namespace, which Debian and Ubuntu allow by default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

HARNESS = Path(__file__).resolve().with_name("harness.py")
LAB_ROOT = Path(__file__).resolve().parents[2]  # the repository: mtl_lab/, notebooks/, results/
INSIDE_HARNESS = "/grader/harness.py"
INSIDE_JOB = "/job"


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot create its namespaces here."""


def _python_roots() -> list[Path]:
    """The folders the sandboxed Python needs: the environment and the installation it was made from."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    # a root inside another is bound with it
    return sorted(r for r in roots if not any(o != r and o in r.parents for o in roots))


def command(job_dir: Path, env: dict[str, str]) -> list[str]:
    """The bwrap command line that runs the harness on ``job_dir``."""
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--uid", "65534", "--gid", "65534", "--hostname", "sandbox"]
    # a private /tmp first: an environment that lives under /tmp is bound on top of it, not hidden by it
    argv += ["--size", str(64 * 2**20), "--tmpfs", "/tmp"]
    for top in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        path = Path(top)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            argv += ["--ro-bind", top, top]
    for root in _python_roots():
        argv += ["--ro-bind", str(root), str(root)]
        # the lab is never visible, even when it lives inside the environment (a non-editable install)
        for hidden in (LAB_ROOT / "mtl_lab", LAB_ROOT / "notebooks", LAB_ROOT / "results"):
            if root in hidden.parents and hidden.exists():
                argv += ["--tmpfs", str(hidden)]
        site_lab = (
            root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "mtl_lab"
        )
        if site_lab.exists():
            argv += ["--tmpfs", str(site_lab)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--ro-bind", str(HARNESS), INSIDE_HARNESS, "--bind", str(job_dir), INSIDE_JOB, "--chdir", INSIDE_JOB]
    argv += ["--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv + [sys.executable, "-I", INSIDE_HARNESS, INSIDE_JOB]


@lru_cache(maxsize=1)
def check() -> None:
    """Raise SandboxUnavailable with one line saying why, unless bwrap can run Python here."""
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable("no sandbox: bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    with __import__("tempfile").TemporaryDirectory(prefix="mtl-sandbox-probe-") as tmp:
        argv = command(Path(tmp), {"PATH": "/usr/bin:/bin"})
        argv[-3:] = ["-I", "-c", "import torch"]
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if probe.returncode:
        why = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise SandboxUnavailable(f"no sandbox: bwrap cannot start here ({why})")


def available() -> bool:
    """Whether the sandbox works on this machine."""
    try:
        check()
    except SandboxUnavailable:
        return False
    return True
