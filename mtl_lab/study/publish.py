"""Publishing: a finished run copied from your ``runs/`` to the committed ``results/``, with what it started from.

The published copy holds the run's results.json, its per-example dev records and, for a full-budget run, its best
epoch's dev and test prediction files (the leaderboard's); the weights stay in ``runs/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from mtl_lab.records import RECORDS_FILE
from mtl_lab.runs import atomic_write_json, init_summary, load_results, runs_root
from mtl_lab.study.experiments import is_full_budget, published_dir, run_dir
from mtl_lab.training.config import config_diff


def replace_predictions(files: Path | None, folder: Path) -> None:
    """``folder/predictions`` becomes a copy of ``files``, or goes (``files`` None or missing): never a mix of runs."""
    if (folder / "predictions").is_dir():
        shutil.rmtree(folder / "predictions")
    if files is not None and files.is_dir():
        shutil.copytree(files, folder / "predictions")


def init_record(res: dict, src: Path) -> dict | None:
    """What a run started from, for its published copy (None when unknown or retrained since).

    The record the run made as it started (``init_run``: the pre-training's ``best.pt`` hash, configuration,
    score, minutes, CPU). Runs older than that record get the pre-training's results.json from ``runs/`` --
    only when it was written before this run started.
    """
    if res.get("init_run"):
        return res["init_run"]
    init = res.get("config", {}).get("model", {}).get("init")
    init_results = runs_root() / str(init) / "results.json" if init else None
    if not init_results or not init_results.is_file():
        return None
    started = (src / "results.json").stat().st_mtime - float(res.get("wall_time_s") or 0)
    if init_results.stat().st_mtime > started:
        return None
    return init_summary(init, json.loads(init_results.read_text()))


def publish(profile: str, names: list[str], predictions: bool = True, replace: bool = False) -> list[Path]:
    """Copy finished runs' results.json (and their predictions/) from ``runs/`` to ``results/``.

    A published run of another configuration under the same name is not overwritten (unless ``replace``):
    other published runs may have started from it. A run that started from a pre-training run carries that
    run's record (``init_run``), so its published copy says which pre-training it used even if the name is reused.
    """
    written = []
    for name in names:
        src, dst = run_dir(profile, name), published_dir(profile, name)
        res = load_results(src)
        if not res or not res.get("finished"):
            raise ValueError(f"{src}: no finished run to publish (train it first: python -m mtl_lab run {name})")
        old = load_results(dst)
        if old and not replace and "model" in old.get("config", {}) and "model" in res.get("config", {}):
            diff = config_diff(old["config"], res["config"])
            if diff:
                raise ValueError(
                    f"{dst} holds a published run of another configuration ({'; '.join(diff)}): runs that started "
                    "from it would lose their record -- keep yours in runs/, or overwrite it with --replace"
                )
        dst.mkdir(parents=True, exist_ok=True)
        init = init_record(res, src)
        if init:
            res = {**res, "init_run": init}
        atomic_write_json(res, dst / "results.json")
        written.append(dst / "results.json")
        if (src / RECORDS_FILE).is_file():  # the per-example dev records of every epoch (mtl_lab.records)
            shutil.copy2(src / RECORDS_FILE, dst / RECORDS_FILE)
            written.append(dst / RECORDS_FILE)
        if predictions and (src / "best.pt").is_file() and not (src / "predictions").is_dir() and is_full_budget(res):
            # every published full-budget seed carries its best epoch's dev and test files for the leaderboard
            from mtl_lab.evaluate import predict_files

            predict_files(src, src / "predictions")
        replace_predictions(src / "predictions" if predictions else None, dst)
        if (dst / "predictions").is_dir():
            written.append(dst / "predictions")
    return written


def dev_files_from_records(folder: Path) -> list[Path]:
    """Rewrite a published run's dev leaderboard files from its records at its best epoch: exactly what the model
    predicted when it was scored (in its own precision). Ids the records lack (malformed rows, which are predicted but
    not scored) keep the file's prediction."""
    from mtl_lab.evaluate import outputs_to_predictions, read_predictions, write_predictions
    from mtl_lab.records import read_records

    res, records = json.loads((folder / "results.json").read_text()), read_records(folder)
    epoch = res["best"]["epoch"]
    written = []
    for task in records.tasks:
        old = read_predictions(folder / "predictions", task, "dev")
        new = pd.Series(
            outputs_to_predictions(task, records.outputs[task][epoch].astype(float)), index=records.ids[task]
        )
        merged = old.astype(float).copy()
        merged[new.index] = new.to_numpy()
        values = merged.to_numpy() if task == "sts" else merged.to_numpy().astype(int)
        written.append(write_predictions(folder / "predictions", task, "dev", list(merged.index), values))
    return written
