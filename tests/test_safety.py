"""Checkpoints from elsewhere load safely; a run knows the data it was trained on."""

import json
import pathlib
import shutil

import pytest
import torch
from conftest import tiny_config

from mtl_lab.checkpoint import UnsafeCheckpointError, convert, safe_load
from mtl_lab.data import DataError, resolve_data_dir
from mtl_lab.models.model import ModelConfig, load_model
from mtl_lab.runs import StaleDataError, stale_data
from mtl_lab.training.loop import train


class WritesAFile:
    """What a malicious checkpoint carries: unpickling it would write a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.target), "pwned"))


tiny = tiny_config


def test_a_checkpoint_that_runs_code_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned.txt"
    bad = tmp_path / "run" / "best.pt"
    bad.parent.mkdir()
    torch.save({"model_config": WritesAFile(marker), "state_dict": {}}, bad)
    with pytest.raises(UnsafeCheckpointError, match=r"best\.pt: refused to load.*convert-checkpoint"):
        load_model(bad.parent)
    with pytest.raises(UnsafeCheckpointError):
        safe_load(bad)
    assert not marker.exists()


def test_a_crafted_checkpoint_pt_is_refused_on_resume(tmp_path, tiny_backbone):
    marker = tmp_path / "pwned.txt"
    torch.save({"config": WritesAFile(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(UnsafeCheckpointError, match="checkpoint.pt: refused"):
        train(ModelConfig(backbone=tiny_backbone), tiny(), tmp_path, progress=False)
    assert not marker.exists()


def test_the_labs_own_checkpoints_load_safely_and_old_ones_convert(tmp_path, tiny_backbone):
    import numpy as np

    train(ModelConfig(backbone=tiny_backbone), tiny(), tmp_path, progress=False)
    assert load_model(tmp_path).config.backbone == tiny_backbone  # weights_only=True
    old = safe_load(tmp_path / "best.pt")
    old["metrics"]["overall"] = np.float64(old["metrics"]["overall"])  # as older versions could store
    torch.save(old, tmp_path / "best.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_model(tmp_path)
    convert(tmp_path / "best.pt")
    assert isinstance(load_model(tmp_path).checkpoint_meta["metrics"]["overall"], float)


@pytest.fixture
def data_copy(tmp_path):
    src = resolve_data_dir()
    dst = tmp_path / "data"
    dst.mkdir()
    for name in ("ids-sst-train.csv", "ids-sst-dev.csv", "sts-train.csv", "sts-dev.csv"):
        shutil.copy(src / name, dst / name)
    return dst


def test_a_finished_run_is_not_reused_after_its_data_changed(tmp_path, data_copy, tiny_backbone):
    cfg, model = tiny(tasks=("sst", "sts")), ModelConfig(backbone=tiny_backbone)
    first = train(model, cfg, tmp_path / "run", data_dir=data_copy, progress=False)
    assert set(first["config"]["data"]) == {"ids-sst-train.csv", "ids-sst-dev.csv", "sts-train.csv", "sts-dev.csv"}
    again = train(model, cfg, tmp_path / "run", data_dir=data_copy, progress=False)
    assert again == json.loads(json.dumps(first))  # same data: the finished run is reused
    assert stale_data(first, data_copy) == []
    with open(data_copy / "sts-dev.csv", "a") as f:  # a student fixes a row
        f.write("9999\tnewid\tA man plays.\tA man is playing.\t4.5\n")
    (change,) = stale_data(first, data_copy)  # what sweep and best_model report for a finished run
    assert change.startswith("sts-dev.csv changed (size ")
    with pytest.raises(StaleDataError, match=r"sts-dev\.csv changed.*--out.*--no-resume"):
        train(model, cfg, tmp_path / "run", data_dir=data_copy, progress=False)
    redone = train(model, cfg, tmp_path / "run", data_dir=data_copy, progress=False, resume=False)
    assert redone["data"]["dev"]["sts"] == first["data"]["dev"]["sts"]  # dev_limit 16 either way
    assert redone["config"]["data"]["sts-dev.csv"] != first["config"]["data"]["sts-dev.csv"]


def test_a_missing_data_file_is_named_before_anything_is_reused(tmp_path, data_copy, tiny_backbone):
    cfg, model = tiny(tasks=("sst", "sts")), ModelConfig(backbone=tiny_backbone)
    train(model, cfg, tmp_path / "run", data_dir=data_copy, progress=False)
    (data_copy / "sts-dev.csv").unlink()
    with pytest.raises(DataError, match=r"sts-dev\.csv: file not found"):
        train(model, cfg, tmp_path / "run", data_dir=data_copy, progress=False)


def test_runs_stored_before_fingerprints_stay_reusable(tmp_path, data_copy, tiny_backbone):
    cfg, model = tiny(tasks=("sst",)), ModelConfig(backbone=tiny_backbone)
    first = train(model, cfg, tmp_path, data_dir=data_copy, progress=False)
    res = json.loads((tmp_path / "results.json").read_text())
    del res["config"]["data"]
    (tmp_path / "results.json").write_text(json.dumps(res))
    assert train(model, cfg, tmp_path, data_dir=data_copy, progress=False)["best"] == first["best"]


def test_a_finished_run_without_its_weights_trains_again(tmp_path, tiny_backbone):
    cfg, model = tiny(tasks=("sst",)), ModelConfig(backbone=tiny_backbone)
    train(model, cfg, tmp_path, progress=False)
    (tmp_path / "best.pt").unlink()
    train(model, cfg, tmp_path, progress=False)
    assert (tmp_path / "best.pt").is_file()
