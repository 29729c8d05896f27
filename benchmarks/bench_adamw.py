"""AdamW step time: the hand-written mtl_lab.training.optim.AdamW, its fused fast path and its readable path,
beside torch.optim.AdamW(foreach=True).

Each optimizer updates its own copy of the full all-MiniLM-L6-v2 parameter set (+ the baseline heads) with the
same random gradients; steps take turns so drift in machine load hits all of them.
Usage: python benchmarks/bench_adamw.py [--steps 50]
"""

import argparse
import statistics
import time

import torch

from mtl_lab.models.model import ModelConfig, MultitaskModel
from mtl_lab.runtime import cpu_name
from mtl_lab.training.optim import AdamW


def timed_step(opt: torch.optim.Optimizer) -> float:
    """Seconds one optimizer step takes."""
    t0 = time.perf_counter()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    """Print a table of median step times and the ratios to torch's foreach AdamW."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    makers = {
        "mtl_lab AdamW (fused fast path, the default)": lambda groups: AdamW(groups, lr=5e-5),
        "mtl_lab AdamW (fused=False: the readable _foreach path)": lambda groups: AdamW(groups, lr=5e-5, fused=False),
        "torch.optim.AdamW(foreach=True)": lambda groups: torch.optim.AdamW(groups, lr=5e-5, foreach=True),
    }
    opts = {}
    for name, make in makers.items():
        model = MultitaskModel(ModelConfig())
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opts[name] = make(model.parameter_groups(5e-5, 0.01))
    n_params = sum(p.numel() for p in model.parameters())
    for _ in range(5):  # warm-up: state allocation, caches
        for opt in opts.values():
            timed_step(opt)
    times = {name: [] for name in opts}
    for _ in range(args.steps):
        for name, opt in opts.items():
            times[name].append(timed_step(opt))
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    ref = median["torch.optim.AdamW(foreach=True)"]
    print(f"AdamW step on {n_params / 1e6:.1f}M parameters, {torch.get_num_threads()} threads, CPU: {cpu_name()}")
    print("| optimizer | median ms/step | / torch foreach |\n| --- | --- | --- |")
    for name, ms in median.items():
        print(f"| {name} | {ms:.1f} | {ms / ref:.2f}x |")


if __name__ == "__main__":
    main()
