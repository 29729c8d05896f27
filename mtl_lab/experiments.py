"""Named experiments: the runs the notebooks (and sweeps) train, per profile, in one place.

An experiment is a (ModelConfig, TrainConfig) pair with a stable name; it trains into
``runs/<profile>/<name>/``. A finished run there is reused (its results.json is returned
without training), so notebooks and sweeps can be re-run and resumed freely, and the small
results.json files of the cpu profile are committed for the results pages.
"""

from __future__ import annotations

import os
from pathlib import Path

from .data import REPO_ROOT
from .model import ModelConfig
from .train import TrainConfig, load_results, profile_config, train

RUNS_DIR = REPO_ROOT / "runs"

# Study sizes that keep the cpu profile within about an hour a notebook on 2 cores: the
# sampler comparison and the sequential run use fewer epochs / a subset (the smoke profile
# keeps its own tiny sizes).
STUDY_OVERRIDES = {
    "smoke": {"samplers": {}, "sequential": {}},
    "cpu": {"samplers": {"epochs": 2, "train_fraction": 0.15}, "sequential": {"epochs": 1}},
    "gpu": {"samplers": {}, "sequential": {}},
}


def run_dir(profile: str, name: str) -> Path:
    """Folder of a named run: ``runs/<profile>/<name>`` (or under $MTL_LAB_RUNS)."""
    root = Path(os.environ.get("MTL_LAB_RUNS", RUNS_DIR))
    return root / profile / name


def experiment(name: str, profile: str, backbone: str | None = None, **overrides) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a named experiment under a profile.

    Names: ``baseline`` (multi-task [CLS]), ``single-<task>``, ``sampler-<sampler>``,
    ``sequential-<t1>-<t2>-<t3>``.
    """
    model_kw = {"backbone": backbone} if backbone else {}
    model = ModelConfig(**model_kw)
    if name == "baseline":
        return model, profile_config(profile, **overrides)
    if name.startswith("single-"):
        return model, profile_config(profile, tasks=(name.split("-", 1)[1],), **overrides)
    if name.startswith("sampler-"):
        kw = {**STUDY_OVERRIDES[profile]["samplers"], **overrides}
        return model, profile_config(profile, sampler=name.split("-", 1)[1], **kw)
    if name.startswith("sequential-"):
        kw = {**STUDY_OVERRIDES[profile]["sequential"], **overrides}
        return model, profile_config(profile, tasks=tuple(name.split("-")[1:]), sequential=True, **kw)
    raise ValueError(f"unknown experiment {name!r}")


def run_experiment(name: str, profile: str, backbone: str | None = None, progress: bool = True, **overrides) -> dict:
    """Train a named experiment into its run folder (or return the finished run's results)."""
    model_cfg, train_cfg = experiment(name, profile, backbone, **overrides)
    return train(model_cfg, train_cfg, run_dir(profile, name), progress=progress)


def finished_results(profile: str, names: list[str] | None = None) -> dict[str, dict]:
    """results.json of every finished run of a profile (optionally only the named ones)."""
    root = run_dir(profile, "")
    out = {}
    for path in sorted(root.glob("*/results.json")):
        res = load_results(path.parent)
        if res and res.get("finished") and (names is None or path.parent.name in names):
            out[path.parent.name] = res
    return out
