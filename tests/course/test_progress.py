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


def test_the_smoke_record_sees_a_busy_neighbour():
    """``notebooks run --inplace`` records how busy other processes kept the cores (the README's minutes say so when
    they shared them): a neighbour spinning one core shows up, whatever the load average says."""
    import os
    import subprocess
    import sys
    import time

    from mtl_lab.course.runner import cpu_snapshot, others_share

    cores = len(os.sched_getaffinity(0))
    start = cpu_snapshot()
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 2: pass"])
    time.sleep(2.2)
    share = others_share(start)
    spin.wait()
    assert share >= 0.6 / cores, share


def test_the_kernels_shutdown_interrupt_prints_no_error(tmp_path):
    """jupyter_client interrupts a kernel before shutting it down, and a kernel caught in a message handler logs
    "KeyboardInterrupt caught in kernel." at ERROR level after a run that succeeded: the runner's kernels drop that
    line, and only that line (another error still shows)."""
    from jupyter_client import KernelManager

    from mtl_lab.course.runner import KERNEL_ARGS

    km = KernelManager(kernel_name="python3")
    log = (tmp_path / "kernel.err").open("w")
    km.start_kernel(extra_arguments=KERNEL_ARGS, stderr=log)
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        code = (
            "k = get_ipython().kernel\nk.log.error('KeyboardInterrupt caught in kernel.')\nk.log.error('a real error')"
        )
        reply = client.execute_interactive(code, timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    log.close()
    err = (tmp_path / "kernel.err").read_text()
    assert "a real error" in err and "KeyboardInterrupt caught" not in err, err
