"""Where a run stands (``RunState``), and the checkpoint that saves it so a resumed run ends as an uninterrupted one.

The checkpoint holds the weights, the optimizer (and GradScaler, weight average) state, the RNG
state and the ``RunState``. Epoch plans are functions of (seed, epoch), so restoring these is
enough for a resumed run to take exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtl_lab.checkpoint import atomic_save, safe_load
from mtl_lab.models.model import checkpoint_path
from mtl_lab.runs import check_data, file_fingerprint, init_summary, load_results
from mtl_lab.training.config import check_same

# The position fields of the checkpoint's "state" (the rest of RunState is stored beside it).
_POSITION = ("stage", "epoch", "step", "global_step", "elapsed")
_OPTIONAL = ("skipped_steps", "partial", "init_run", "initial")


@dataclass
class RunState:
    """A run's progress: position (stage, epoch, step), elapsed seconds, per-epoch history, the best epoch."""

    stage: int = 0
    epoch: int = 0
    step: int = 0  # steps done in the current epoch
    global_step: int = 0
    elapsed: float = 0.0
    skipped_steps: int = 0  # fp16 steps the GradScaler skipped (inf/NaN gradients)
    # mid-epoch only: the epoch's losses, R-Drop terms, examples and seconds so far
    partial: dict | None = None
    init_run: dict | None = None  # the pre-training run it started from (init_run_record)
    initial: dict | None = None  # pre-training: the embedding geometry before training
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"overall": -math.inf})
    conflicts: list[dict] = field(default_factory=list)

    def to_checkpoint(self) -> dict:
        """The checkpoint's ``state``, ``history``, ``best`` and ``conflicts`` entries."""
        state = {k: getattr(self, k) for k in _POSITION}
        state.update({k: getattr(self, k) for k in _OPTIONAL if getattr(self, k)})
        return {"state": state, "history": self.history, "best": self.best, "conflicts": self.conflicts}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> RunState:
        """The RunState a checkpoint saved."""
        state = ckpt["state"]
        return cls(
            **{k: state[k] for k in _POSITION},
            **{k: state[k] for k in _OPTIONAL if k in state},
            history=ckpt["history"],
            best=ckpt["best"],
            conflicts=ckpt.get("conflicts", []),
        )


def init_run_record(init: str | Path) -> dict:
    """What a run starts from, recorded as it starts: :func:`init_summary` of the pre-training run and the
    sha256 (first 16 hex digits) of the ``best.pt`` it loads."""
    path = checkpoint_path(init, "no pre-trained checkpoint (run the pre-training first)")
    return {**init_summary(init, load_results(path.parent) or {}), "best_pt_sha256": file_fingerprint(path)["sha256"]}


def save_checkpoint(path: Path, config: dict, parts: dict, state: RunState, device: torch.device) -> None:
    """Write the checkpoint atomically: ``parts`` holds the model, optimizer, scaler and ema (any may be None)."""
    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}
    atomic_save(
        {
            "config": config,
            **{k: (v.state_dict() if v is not None else None) for k, v in parts.items()},
            "rng": rng,
            **state.to_checkpoint(),
        },
        path,
    )


def restore_checkpoint(path: Path, config: dict, parts: dict, device: torch.device) -> RunState:
    """Load a checkpoint into ``parts`` (refused if it holds another configuration or other data) and return its state."""
    ckpt = safe_load(path, map_location=device)
    check_same(path, ckpt["config"], config)
    check_data(path, ckpt["config"], config["data"])
    for name, part in parts.items():
        if part is not None and ckpt.get(name) is not None:
            part.load_state_dict(ckpt[name])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    return RunState.from_checkpoint(ckpt)
