"""Run folders: where runs and published results live, results.json, data fingerprints, atomic writes.

A run folder holds ``results.json`` (configs, per-epoch metrics, timings), ``dev-records.npz``
(``mtl_lab.records``), ``best.pt`` and, while it trains, ``checkpoint.pt``. Every file is written
through a temporary file and a rename, so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mtl_lab.data import REPO_ROOT, DataError, resolve_data_dir

# The settings presets (``training.config.PROFILES``): a run folder is runs/<profile>/<name>.
PROFILE_NAMES = ("smoke", "cpu", "gpu")


class RunError(RuntimeError):
    """A run folder cannot be used as asked (another configuration, other data, a failed run, ...)."""


class StaleDataError(RunError):
    """A run folder holds a run trained on data files that have changed since."""


def runs_root() -> Path:
    """Where a user's own runs live (git-ignored): $MTL_LAB_RUNS, else ``runs/`` in the repository."""
    return Path(os.environ.get("MTL_LAB_RUNS", REPO_ROOT / "runs")).expanduser()


def results_root() -> Path:
    """Where the published results live (committed, read-only for training): $MTL_LAB_RESULTS, else ``results/``."""
    return Path(os.environ.get("MTL_LAB_RESULTS", REPO_ROOT / "results")).expanduser()


def atomic_write_json(obj, path: Path) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)


def load_results(out_dir: str | os.PathLike) -> dict | None:
    """The results.json of a run folder, or None."""
    path = Path(out_dir) / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------- data fingerprints


def file_fingerprint(path: Path) -> dict:
    """Size and a content hash (sha256, first 16 hex digits) of a file: a data file, a checkpoint (hashed once
    while it is unchanged)."""
    st = Path(path).stat()
    return dict(_hashed(str(Path(path).resolve()), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=256)
def _hashed(path: str, size: int, mtime_ns: int) -> tuple:
    """The fingerprint of a file as of (size, mtime): the cache key makes an edited file hash again."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return (("size", size), ("sha256", digest.hexdigest()[:16]))


def data_fingerprint(files: Sequence[str], data_dir: str | os.PathLike | None = None) -> dict[str, dict]:
    """``{file name: {size, sha256}}`` of the data files a run reads; a missing file is a DataError naming it."""
    folder = resolve_data_dir(data_dir)
    out = {}
    for name in sorted(set(files)):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: file not found (the run reads it)")
        out[name] = file_fingerprint(path)
    return out


def fingerprint_changes(stored: dict[str, dict], current: dict[str, dict]) -> list[str]:
    """Human-readable differences between two data fingerprints (empty when they match)."""
    changes = []
    for name in sorted(set(stored) | set(current)):
        old, new = stored.get(name), current.get(name)
        if old is None:
            changes.append(f"{name} is new to this run")
        elif new is None:
            changes.append(f"{name} is no longer read")
        elif old != new:
            changes.append(
                f"{name} changed (size {old['size']} -> {new['size']}, sha256 {old['sha256']} -> {new['sha256']})"
            )
    return changes


def check_data(where: Path, stored: dict, fingerprint: dict) -> None:
    """Refuse a stored run whose data files differ from today's (runs stored before fingerprints pass)."""
    if "data" not in stored:
        return
    changes = fingerprint_changes(stored["data"], fingerprint)
    if changes:
        raise StaleDataError(
            f"{where} was trained on other data: {'; '.join(changes)}. Its results do not describe today's "
            "files: train into another run folder (--out), or start over here (--no-resume / resume=False)"
        )


def stale_data(results: dict, data_dir=None) -> list[str]:
    """How the data files have changed since a stored run read them (empty: same data, or no fingerprint)."""
    stored = results.get("config", {})
    if "data" not in stored:
        return []
    try:
        current = data_fingerprint(list(stored["data"]), data_dir)  # the files it read, as they are today
    except DataError as exc:
        return [str(exc)]
    return fingerprint_changes(stored["data"], current)


INIT_RECORD_FIELDS = ("config", "best", "wall_time_s", "environment", "precision")


def init_summary(init: str | os.PathLike, theirs: dict) -> dict:
    """A pre-training run as the runs that start from it record it: its name, configuration, score, minutes, CPU."""
    return {"run": str(init), **{k: theirs[k] for k in INIT_RECORD_FIELDS if k in theirs}}
