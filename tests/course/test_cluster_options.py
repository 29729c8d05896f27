"""The Slurm executor's options, checked without a cluster (tests/course/test_cluster.py runs the jobs on one)."""

from __future__ import annotations

import argparse

import pytest

from mtl_lab.__main__ import main
from mtl_lab.course.cluster import add_executor_args, job_name, minutes, options_from_args


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_executor_args(p)
    return p.parse_args(argv)


def test_time_limits_in_minutes():
    assert minutes("90") == 90
    assert minutes("1:30") == 90
    assert minutes("1:30:00") == 90
    assert minutes("1:30:01") == 91  # seconds rounded up
    assert minutes("2-00") == 2880
    assert minutes("1-02:03:00") == 1440 + 123
    for bad in ("0", "1h", "", "1:2:3:4"):
        with pytest.raises(ValueError):
            minutes(bad)


def test_options_from_the_command_line():
    args = _parse(
        "--executor", "slurm", "--partition", "gpu", "--time", "2:00:00", "--gpus-per-job", "1", "--mem", "16G",
        "--slurm-arg", "account=mylab", "--slurm-arg=--qos=short", "--max-parallel", "4", "--wait",
    )  # fmt: skip
    opts = options_from_args(args)
    assert (opts.partition, opts.time, opts.gpus_per_job, opts.mem) == ("gpu", "2:00:00", 1, "16G")
    assert opts.slurm_args == {"account": "mylab", "qos": "short"}
    assert opts.max_parallel == 4 and opts.wait
    assert _parse().executor == "local"
    with pytest.raises(ValueError, match="KEY=VALUE"):
        options_from_args(_parse("--slurm-arg", "account"))
    with pytest.raises(ValueError, match="max-parallel"):
        options_from_args(_parse("--max-parallel", "0"))
    assert job_name("smoke/ft-cls-nli") == "mtl-lab.smoke.ft-cls-nli"


def test_slurm_executor_refused_without_slurm(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, srun, squeue here
    monkeypatch.setenv("MTL_LAB_RUNS", str(tmp_path / "runs"))
    assert main(["run", "baseline", "--profile", "smoke", "--executor", "slurm"]) == 2
    assert "--executor slurm needs the Slurm commands" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing recorded
    assert main(["jobs"]) == 0
    assert "no Slurm jobs submitted for" in capsys.readouterr().out
