"""Seed ensembles as a model of their own: several published runs voting, dev and test, compared like any run.

Built from what every published run carries (its leaderboard files and its dev records), so it needs no weights
and works on any submission's files too. The rule, the same on dev and test:

- SST: the median of the members' classes (the majority when two of three agree; the middle one when all differ);
- QQP: the majority (the lower median: a tie of an even number goes to "not a paraphrase");
- STS: the mean of the members' scores.

``python -m mtl_lab ensemble RUN RUN RUN --name NAME`` writes ``results/<profile>/NAME/``: results.json (its
members, the rule, its dev scores, the members' minutes added up), dev-records.npz (the vote at every epoch the
members share) and predictions/ (the vote of the members' leaderboard files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtl_lab.data import TASKS
from mtl_lab.evaluate import outputs_to_predictions, prediction_path, read_predictions, write_predictions
from mtl_lab.records import RECORDS_FILE, DevRecords
from mtl_lab.runs import atomic_write_json, results_root
from mtl_lab.study import compare

RULE = "vote: SST the median of the members' classes, QQP the majority, STS the mean score"


def vote(task: str, predictions: list[np.ndarray]) -> np.ndarray:
    """The members' predictions of one task (each over the same examples) combined by the ensemble's rule."""
    stacked = np.stack([np.asarray(p, dtype=float) for p in predictions])
    if TASKS[task].kind == "regression":
        return stacked.mean(0)
    lower_median = np.sort(stacked, axis=0)[(len(predictions) - 1) // 2]
    return lower_median.astype(int)


def _as_outputs(task: str, voted: np.ndarray) -> np.ndarray:
    """A vote written as a run's dev outputs (SST: one-hot probabilities; QQP: P = the vote; STS: the score)."""
    if task == "sst":
        return np.eye(5, dtype=np.float32)[voted.astype(int)]
    return voted.astype(np.float32)


def ensemble_records(records: list[DevRecords]) -> DevRecords:
    """The vote at every epoch all members recorded, on the examples they share."""
    tasks = [t for t in records[0].tasks if all(t in r.ids for r in records)]
    epochs = sorted(set.intersection(*(set(r.epochs) for r in records)))
    if not epochs:
        raise ValueError("the members share no recorded epoch")
    ids, outputs = {}, {}
    for t in tasks:
        common = pd.Index(records[0].ids[t])
        for r in records[1:]:
            common = common.intersection(pd.Index(r.ids[t]), sort=False)
        ids[t] = np.asarray(common, dtype=str)
        outputs[t] = {}
        for e in epochs:
            preds = [
                outputs_to_predictions(t, r.outputs[t][e].astype(float))[pd.Index(r.ids[t]).get_indexer(common)]
                for r in records
            ]
            outputs[t][e] = _as_outputs(t, vote(t, preds))
    return DevRecords(ids, outputs)


def ensemble_files(folders: list[Path], out: Path, splits: tuple[str, ...] = ("dev", "test")) -> list[Path]:
    """The vote of the members' leaderboard files, written as leaderboard files into ``out``."""
    written = []
    for split in splits:
        for task in TASKS:
            paths = [prediction_path(f / "predictions", task, split) for f in folders]
            if not all(p.is_file() for p in paths):
                missing = [str(p) for p in paths if not p.is_file()]
                raise FileNotFoundError(f"a member has no {task} {split} file: {', '.join(missing)}")
            members = [read_predictions(f / "predictions", task, split) for f in folders]
            ids = members[0].index
            for f, m in zip(folders[1:], members[1:]):
                if set(m.index) != set(ids):
                    raise ValueError(f"{f}: its {task} {split} file holds other ids than {folders[0]}'s")
            voted = vote(task, [m[ids].to_numpy() for m in members])
            written.append(write_predictions(out, task, split, list(ids), voted))
    return written


def build(name: str, members: list[str], profile: str = "cpu") -> Path:
    """Publish the seed ensemble of published runs ``members`` as ``results/<profile>/<name>/``; return its folder."""
    if len(members) < 2:
        raise ValueError("an ensemble needs two or more members")
    folders = [compare.run_folder(m, profile) for m in members]
    results, records = zip(*(compare.run_records(f) for f in folders))
    if any(r is None for r in records):
        lacking = [m for m, r in zip(members, records) if r is None]
        raise ValueError(f"{', '.join(lacking)}: no dev records (dev-records.npz) to vote on")
    out = results_root() / profile / name
    out.mkdir(parents=True, exist_ok=True)
    ensemble_files(folders, out / "predictions")
    records_out = ensemble_records(records)
    arrays = {f"ids_{t}": ids for t, ids in records_out.ids.items()}
    arrays.update({f"{t}_e{e}": v for t, by in records_out.outputs.items() for e, v in by.items()})
    np.savez_compressed(out / RECORDS_FILE, **arrays)
    labels = compare.dev_labels(TASKS)
    files = compare.score({t: read_predictions(out / "predictions", t) for t in TASKS}, labels)
    first = results[0].get("config", {})
    res = {
        "config": {
            "ensemble": RULE,
            "members": list(members),
            "train": {k: first.get("train", {}).get(k) for k in ("tasks", "epochs", "train_fraction", "train_limit")},
        },
        "members": {
            m: {"best": r.get("best", {}), "wall_time_s": r.get("wall_time_s")} for m, r in zip(members, results)
        },
        # the score of its dev file: each member at its own best epoch, chosen on dev
        "best": files,
        "wall_time_s": sum(float(r.get("wall_time_s") or 0) for r in results),  # the members', one after another
        "environment": results[0].get("environment", {}),
        "precision": "/".join(sorted({str(r.get("precision")) for r in results})),
        "finished": True,
    }
    notes = [f"{m}: {r['timing_note']}" for m, r in zip(members, results) if r.get("timing_note")]
    if notes:
        res["timing_note"] = "members not timed on a quiet machine: " + "; ".join(notes)
    atomic_write_json(res, out / "results.json")
    return out
