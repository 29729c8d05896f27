"""The lab's recipe: which full-budget row it is, training its missing members, and its leaderboard files.

``python -m mtl_lab recipe`` goes from nothing to leaderboard files: it trains the recipe's members that are
missing (``experiments.run_experiment``: finished runs are reused), averages their predictions, and records the
ensemble as a run of its own, ``runs/<profile>/recipe[-s<k>]/``, that ``publish`` commits like a trained run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mtl_lab.study.analysis.results import timed_quietly
from mtl_lab.study.experiments import run_dir, run_experiment
from mtl_lab.study.full_budget import full_budget_rows
from mtl_lab.study.publish import replace_predictions
from mtl_lab.training.config import stored_setting

# The lab's recipe: the k-th runs of the rows below, averaged when there are several (``predict --checkpoint
# A B C`` averages SST and Quora probabilities and STS scores); ``recipe --seed k`` trains what is missing.
# One model, row (i): no ensemble beat the single model within the training budget, and R-Drop over 4 epochs gained
# on every seed against row (d). How it was chosen, with the scores: docs/study.md.
RECIPE = {
    "label": "mean pooling + ensembled pair heads, R-Drop over 4 epochs (one model, full budget)",
    "rows": ["(i) (d) + R-Drop, 4 epochs (the recipe)"],
}


def recipe_name(seed: int = 0) -> str:
    """Folder name of the recipe's ``seed``-th ensemble: ``recipe``, ``recipe-s1``, ..."""
    return "recipe" if seed == 0 else f"recipe-s{seed}"


def recipe_members(seed: int = 0) -> list[str]:
    """The runs averaged by the recipe's ``seed``-th ensemble: the ``seed``-th run of each of its rows."""
    rows = full_budget_rows()
    return [rows[row][seed] for row in RECIPE["rows"]]


def recipe_predictions(
    out: str | os.PathLike,
    profile: str = "cpu",
    members: list[str] | None = None,
    backbone: str | None = None,
    progress: bool = True,
    splits: tuple[str, ...] = ("dev", "test"),
    seed: int = 0,
    **overrides,
) -> dict:
    """From nothing to leaderboard files: the recipe's missing members trained, their averaged files in ``out``.

    Returns {members: {name: dev metrics}, metrics: dev metrics, minutes}.

    With the recipe's own members (``members`` None), the ensemble is also recorded as a run,
    ``runs/<profile>/recipe[-s<k>]/`` (results.json: the ensemble's dev metrics as ``best``, its members'
    own metrics, their training minutes summed; predictions/), which ``publish`` commits like a trained run.
    """
    from mtl_lab.evaluate import predict_files

    start = time.perf_counter()
    names = list(members or recipe_members(seed))
    trained = {}
    for name in names:  # a finished run is reused, an interrupted one resumes
        trained[name] = run_experiment(name, profile, backbone, progress=progress, **overrides)
    own: dict = {}
    metrics = predict_files([run_dir(profile, n) for n in names], out, splits=splits, members=own)
    by_name = {n: own.get(str(run_dir(profile, n)), metrics) for n in names}
    if members is None and "dev" in splits:
        record_recipe(profile, seed, trained, by_name, metrics, out)
    return {"members": by_name, "metrics": metrics, "minutes": (time.perf_counter() - start) / 60}


def shared_budget(trained: dict) -> dict:
    """The training budget every member shares (tasks, epochs, subsets); a member that differs is refused."""
    keys = ("tasks", "epochs", "train_fraction", "train_limit", "dev_limit")
    budgets = {n: {k: r["config"]["train"].get(k) for k in keys} for n, r in trained.items()}
    first = next(iter(budgets.values()))
    odd = [n for n, b in budgets.items() if json.dumps(b) != json.dumps(first)]
    if odd:
        raise ValueError(f"the recipe's members must share one budget; {odd} differ from {next(iter(budgets))}")
    return first


def record_recipe(
    profile: str, seed: int, trained: dict, member_metrics: dict, metrics: dict, predictions: str | os.PathLike
) -> Path:
    """Write the recipe's ``seed``-th ensemble as a run folder (results.json + a copy of its prediction files)."""
    folder = run_dir(profile, recipe_name(seed))
    notes = [f"{n}: {r['timing_note']}" for n, r in trained.items() if not timed_quietly(r)]
    record = {
        # the members' shared budget (tasks, epochs, subsets) as the train config: the recipe is a full-budget row
        "config": {
            "recipe": RECIPE["label"],
            "members": list(trained),
            "train": {
                **shared_budget(trained),
                "freeze_word_embeddings": all(
                    stored_setting(r["config"], "train", "freeze_word_embeddings") for r in trained.values()
                ),
            },
        },
        "members": {n: {"best": member_metrics[n], "wall_time_s": r["wall_time_s"]} for n, r in trained.items()},
        "best": dict(metrics),
        "wall_time_s": sum(r["wall_time_s"] for r in trained.values()),  # the members' training, one after another
        "environment": {"cpu": ", ".join(sorted({r.get("environment", {}).get("cpu", "?") for r in trained.values()}))},
        "precision": ", ".join(sorted({str(r.get("precision")) for r in trained.values()})),
        **({"timing_note": "; ".join(notes)} if notes else {}),
        "finished": True,
    }
    replace_predictions(Path(predictions), folder)
    (folder / "results.json").write_text(json.dumps(record, indent=2))
    return folder
