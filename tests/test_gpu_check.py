"""The GPU check script stays alive in CI: without CUDA it says so, does the CPU half and prints its table."""

import importlib.util
import json

from mtl_lab.data import REPO_ROOT


def test_gpu_check_runs_its_cpu_half(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "check.json"
    code = gpu_check.main(["--json", str(out), "--steps", "6", "--per-task", "8", "--skip-bert-base"])
    printed = capsys.readouterr().out
    assert "no CUDA GPU here" in printed and "train_ex_per_s" in printed and "finite_and_falling" in printed
    report = json.loads(out.read_text())
    assert report["device"]["device"] == "cpu" and "notebooks" not in report
    assert report["training"][0]["precision"] in ("fp32", "bf16")
    assert report["throughput"][0]["train_ex_per_s"] > 0 and report["throughput"][0]["projected_gpu_profile_min"] > 0
    assert code == (0 if report["training"][0]["finite_and_falling"] else 1)
