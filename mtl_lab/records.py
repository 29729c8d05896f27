"""Per-example dev records: what a run predicted for every dev example at every epoch.

A run folder holds ``dev-records.npz`` beside its results.json: per task the dev example ids and,
per epoch, the model's outputs (SST: the five class probabilities; QQP: P(paraphrase); STS: the raw
score). Every comparison of runs (``mtl_lab.study.compare``) is recomputed from these, without the weights.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECORDS_FILE = "dev-records.npz"
_KEY = re.compile(r"^(?P<task>[a-z]+)_e(?P<epoch>\d+)$")


@dataclass
class DevRecords:
    """A run's dev outputs: ``ids[task]`` (the examples' order) and ``outputs[task][epoch]`` (1-based epochs)."""

    ids: dict[str, np.ndarray]
    outputs: dict[str, dict[int, np.ndarray]]

    @property
    def epochs(self) -> list[int]:
        """The epochs recorded for every task."""
        per_task = [set(by_epoch) for by_epoch in self.outputs.values()]
        return sorted(set.intersection(*per_task)) if per_task else []

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks recorded."""
        return tuple(self.ids)


def read_records(folder: str | os.PathLike) -> DevRecords | None:
    """The run folder's dev records, or None when it has none (runs published before records existed)."""
    path = Path(folder) / RECORDS_FILE
    if not path.is_file():
        return None
    ids: dict[str, np.ndarray] = {}
    outputs: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            if key.startswith("ids_"):
                ids[key[4:]] = npz[key].astype(str)
            elif m := _KEY.match(key):
                outputs.setdefault(m["task"], {})[int(m["epoch"])] = npz[key]
            else:
                raise ValueError(f"{path}: unexpected array {key!r} (expected ids_<task> or <task>_e<epoch>)")
    missing = set(outputs) ^ set(ids)
    if missing:
        raise ValueError(f"{path}: ids and outputs name different tasks ({sorted(missing)})")
    return DevRecords(ids, outputs)


def write_epoch(folder: str | os.PathLike, epoch: int, outputs: dict[str, tuple[list[str], np.ndarray]]) -> Path:
    """Add (or replace) one epoch's outputs, ``{task: (ids, outputs)}``, to the run's records; written atomically."""
    folder = Path(folder)
    old = read_records(folder) or DevRecords({}, {})
    arrays: dict[str, np.ndarray] = {}
    for task, (ids, values) in outputs.items():
        ids = np.asarray(ids, dtype=str)
        if task in old.ids and not np.array_equal(old.ids[task], ids):
            raise ValueError(
                f"{folder / RECORDS_FILE}: epoch {epoch}'s {task} dev examples differ from the earlier epochs'"
            )
        old.ids[task] = ids
        old.outputs.setdefault(task, {})[epoch] = np.asarray(values, dtype=np.float32)
    for task, ids in old.ids.items():
        arrays[f"ids_{task}"] = ids
        for e, values in old.outputs[task].items():
            arrays[f"{task}_e{e}"] = values
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = folder / RECORDS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path
