"""``notebooks run`` prints what the lab is doing inside a long cell, from the kernel's progress notes."""

import time

from mtl_lab import runtime
from mtl_lab.course import runner


def test_progress_lines_show_the_kernels_notes_every_few_seconds(capsys, monkeypatch):
    monkeypatch.setattr(runtime, "_last_note", [0.0])
    with runner.progress_lines("01_bert_baselines", every_s=0.2):
        time.sleep(0.3)  # nothing noted yet: a heartbeat
        runtime.progress_note("baseline: sst/qqp/sts epoch 1/2, step 40/96, 35 s", every_s=0)
        time.sleep(0.45)
    out = capsys.readouterr().out.splitlines()
    assert any("01_bert_baselines 0:00: a cell is running" in line for line in out), out
    assert any(line.endswith("baseline: sst/qqp/sts epoch 1/2, step 40/96, 35 s") for line in out), out
    assert all(len(line) <= 100 for line in out)
    assert runtime.PROGRESS_ENV not in __import__("os").environ


def test_no_watcher_no_note(tmp_path, monkeypatch):
    monkeypatch.delenv(runtime.PROGRESS_ENV, raising=False)
    runtime.progress_note("anything", every_s=0)  # nothing to write to, nothing happens
