"""Checkpoint files: written atomically, read safely.

Every checkpoint the lab writes (``best.pt``, ``checkpoint.pt``) holds only tensors and plain
Python values (dicts, lists, tuples, str, int, float, bool, None), so it is read with
``torch.load(..., weights_only=True)``: a file passed around by a classmate cannot run code on
load. A file that needs arbitrary code to unpickle is refused with one message naming it; a
checkpoint you trust that an older version wrote can be converted with
``python -m mtl_lab convert-checkpoint PATH``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch


class UnsafeCheckpointError(ValueError):
    """A checkpoint file needs arbitrary code to unpickle (or is no checkpoint at all)."""


def plain(obj):
    """``obj`` with NumPy scalars/arrays turned into Python values and tensors (what weights_only accepts)."""
    if isinstance(obj, dict):  # dict or OrderedDict (a state_dict keeps its type and _metadata)
        out = type(obj)((k, plain(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    return obj


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(plain(obj), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def safe_load(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a file that needs code to unpickle is refused, naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it is not a plain-weights checkpoint ({first[:160]}). "
            "Loading it could run code it carries. If you trust the file (an older mtl-lab checkpoint of "
            f"your own), convert it once with: python -m mtl_lab convert-checkpoint {path}"
        ) from None


def convert(path: str | os.PathLike) -> Path:
    """Re-save a TRUSTED old checkpoint in the plain form ``safe_load`` reads (unpickles it fully: trusted files only)."""
    path = Path(path)
    obj = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for this file
    atomic_save(obj, path)
    safe_load(path)  # proves the converted file loads safely
    return path
