"""CPU wasted beside a neighbour: a fixed piece of training, quiet and then beside a CPU-bound process, side by side.

Each variant runs in a fresh process (OpenMP reads its wait policy once, at start): the [CLS] multi-task model
(the packaged MiniLM), 12 steps of forward, backward and the lab's AdamW on fixed batches (16 x 64 tokens),
after 3 warm-up steps. Reported per variant: the wall time and the CPU time (user + system) of those steps.

- ``default``: OpenMP's default waiting (what a process gets without the lab's choice);
- ``lab``: what ``mtl_lab.threads.thread_choice`` picks for the machine as it is (PASSIVE beside a neighbour);
- ``passive``: PASSIVE whatever the load (is it free on a quiet machine?).

The neighbour is one process spinning on a core (``while True: pass``), as a second student's kernel would. Goal:
the lab's CPU time beside the neighbour at most 1.2x its quiet CPU time.

Usage: python benchmarks/bench_threads.py [--out benchmarks/results/bench_threads_<cpu>_<date>.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STEPS, WARMUP = 12, 3


def child() -> None:
    """The fixed piece of training; prints {wall, cpu, threads, policy} as JSON."""
    from mtl_lab.threads import wait_policy_before_torch

    wait_policy_before_torch()  # before torch loads OpenMP (a no-op for "default": torch is loaded already)
    import torch

    from mtl_lab.models.model import ModelConfig, MultitaskModel
    from mtl_lab.runtime import apply_threads
    from mtl_lab.training.optim import AdamW

    if os.environ.get("VARIANT") == "lab":
        apply_threads()
    torch.manual_seed(0)
    model = MultitaskModel(ModelConfig(tasks=("sst",)))
    model.train()
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(1000, 20000, (16, 64))
    batch = {"task": "sst", "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    labels = torch.randint(0, 5, (16,))
    for k in range(WARMUP + STEPS):
        if k == WARMUP:
            wall, cpu = time.perf_counter(), time.process_time()
        logits = model(batch)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                      "threads": torch.get_num_threads(), "policy": os.environ.get("OMP_WAIT_POLICY", "default")}))  # fmt: skip


def run(variant: str, neighbour: bool) -> dict:
    """One variant in a fresh process, with or without a spinning neighbour."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(VARIANT=variant, HF_HUB_OFFLINE="1")
    env.pop("MTL_LAB_SET_OMP", None)
    if variant == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if neighbour else None
    try:
        if spin:
            time.sleep(65)  # the 1-minute load average must see the neighbour, as it would on a busy machine
        cmd = [sys.executable, __file__, "--child"]
        if variant == "default":  # torch loaded first: the lab's choice of wait policy cannot apply
            cmd = [sys.executable, "-c", f"import torch, runpy, sys; sys.argv = ['x', '--child']; "
                   f"runpy.run_path({__file__!r}, run_name='__main__')"]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=900).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if spin:
            spin.kill()
            spin.wait()


def main() -> None:
    """Quiet and beside a neighbour, the default and the lab's choice; print and write a table of ratios."""
    if "--child" in sys.argv:
        child()
        return
    from mtl_lab.runtime import cpu_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="markdown file for the results")
    args = parser.parse_args()
    rows = {}
    for neighbour in (False, True):
        for variant in ("default", "lab", "passive"):
            rows[(variant, neighbour)] = run(variant, neighbour)
    lines = [
        f"# CPU beside a neighbour ({datetime.date.today()}, {cpu_name()}, {len(os.sched_getaffinity(0))} cores)",
        "",
        f"{STEPS} training steps of the [CLS] model (16 x 64 tokens), after {WARMUP} warm-up steps; a fresh process",
        "each; the neighbour spins on one core from 65 s before. Command: `python benchmarks/bench_threads.py`.",
        "",
        "| variant | neighbour | threads | wait policy | wall s | CPU s | CPU / quiet CPU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (variant, neighbour), r in rows.items():
        quiet = rows[(variant, False)]["cpu"]
        lines.append(
            f"| {variant} | {'yes' if neighbour else 'no'} | {r['threads']} | {r['policy']} | {r['wall']:.2f} | "
            f"{r['cpu']:.2f} | {r['cpu'] / quiet:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
