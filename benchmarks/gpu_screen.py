"""Screen full-budget recipe candidates on one GPU: every (run, seed) trained at once, one process each.

A GPU trains MiniLM at the cpu profile's small batch far below its capacity, so a dozen runs side by side
take about the time of three alone. Each run is the cpu profile's configuration (what the CPU study trains),
on CUDA in fp32 unless ``--precision`` says otherwise, into ``--runs`` (not the user's runs/ folder):
candidates compare with each other over paired seeds, and the ones that gain are then trained on the CPU.

Usage (on a CUDA machine):
    python benchmarks/gpu_screen.py full-mean full-mean-rdrop-e4 --seeds 0 1 2 --out screen.json

Measured on an NVIDIA H200 (2026-11-27): ``benchmarks/results/gpu_screen_h200.json``.
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path


def seeded(name: str, seed: int) -> str:
    """A run name with its seed suffix (seed 0 has none)."""
    return f"{name}-s{seed}" if seed else name


def train_one(name: str, args: dict) -> dict:
    """Train one named run in this process and return its summary (the parent's environment decides paths)."""
    import torch

    from mtl_lab.study.experiments import run_experiment

    torch.set_num_threads(1)
    os.environ["MTL_LAB_RUNS"] = args["runs"]
    t0 = time.time()
    res = run_experiment(
        name,
        args["profile"],
        backbone=args["model"],
        progress=False,
        device=args["device"],
        precision=args["precision"],
    )
    best = res["best"]
    return {
        "run": name,
        "overall": round(best["overall"], 4),
        "best_epoch": best["epoch"],
        **{k: round(best[k], 4) for k in ("sst_acc", "qqp_acc", "sts_pearson")},
        "overall_by_epoch": [round(h["dev"]["overall"], 4) for h in res["history"]],
        "precision": res["precision"],
        "seconds": round(time.time() - t0),
    }


def main() -> None:
    """Train every candidate x seed concurrently, print a paired table against the first candidate, save JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", help="full-budget run names without a seed suffix; the first is the reference")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--model", default=None, help="backbone id or folder (default: the packaged MiniLM)")
    p.add_argument("--runs", default="runs/screen", help="where the screening runs train (resumable)")
    p.add_argument("--out", default="gpu_screen.json")
    args = p.parse_args()
    conf = {k: getattr(args, k) for k in ("profile", "device", "precision", "model")}
    conf["runs"] = str(Path(args.runs).resolve())
    jobs = [seeded(n, s) for n in args.names for s in args.seeds]
    print(f"{len(jobs)} runs at once on {args.device} ({args.precision}): {', '.join(jobs)}", flush=True)
    t0 = time.time()
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        done = pool.starmap(train_one, [(j, conf) for j in jobs])
    by_run = {d["run"]: d for d in done}
    ref = [by_run[seeded(args.names[0], s)]["overall"] for s in args.seeds]
    summary = {}
    print(f"\n{'candidate':28s} {'overall per seed':28s} {'mean':>7s} {'paired diff vs ' + args.names[0]:>30s}")
    for name in args.names:
        scores = [by_run[seeded(name, s)]["overall"] for s in args.seeds]
        diffs = [round(a - b, 4) for a, b in zip(scores, ref)]
        summary[name] = {"overall": scores, "mean": round(statistics.mean(scores), 4), "paired_diff": diffs}
        print(f"{name:28s} {str(scores):28s} {statistics.mean(scores):7.4f} {statistics.mean(diffs):+30.4f}")
    wall = round(time.time() - t0)
    print(f"\n{len(jobs)} runs in {wall} s")
    report = {"config": conf, "seeds": args.seeds, "wall_s": wall, "summary": summary, "runs": done}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
