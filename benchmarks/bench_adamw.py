"""AdamW step time: the hand-written mtl_lab.training.optim.AdamW vs torch.optim.AdamW(foreach=True).

Both optimizers update the full all-MiniLM-L6-v2 parameter set (+ the baseline heads) with the
same random gradients; steps alternate between the two so drift in machine load hits both.
Usage: python benchmarks/bench_adamw.py [--steps 50]
"""

import argparse
import statistics
import time

import torch

from mtl_lab.models.model import ModelConfig, MultitaskModel
from mtl_lab.training.optim import AdamW


def timed_step(opt: torch.optim.Optimizer) -> float:
    """Seconds one optimizer step takes."""
    t0 = time.perf_counter()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    """Print a table of median step times and the ratio ours / torch."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = [MultitaskModel(ModelConfig()) for _ in range(2)]
    for m in models:
        for p in m.parameters():
            p.grad = torch.randn_like(p) * 1e-3
    n_params = sum(p.numel() for p in models[0].parameters())
    n_tensors = len(list(models[0].parameters()))
    ours = AdamW(models[0].parameter_groups(5e-5, 0.01), lr=5e-5)
    ref = torch.optim.AdamW(models[1].parameter_groups(5e-5, 0.01), lr=5e-5, foreach=True)
    for _ in range(5):  # warm-up: state allocation, caches
        timed_step(ours)
        timed_step(ref)
    t_ours, t_ref = [], []
    for _ in range(args.steps):
        t_ours.append(timed_step(ours))
        t_ref.append(timed_step(ref))
    mo, mr = statistics.median(t_ours) * 1e3, statistics.median(t_ref) * 1e3
    print(f"AdamW step on {n_params / 1e6:.1f}M parameters in {n_tensors} tensors, {torch.get_num_threads()} threads")
    print(f"| optimizer | median ms/step |\n| --- | --- |\n| torch.optim.AdamW(foreach=True) | {mr:.1f} |")
    print(f"| mtl_lab.training.optim.AdamW | {mo:.1f} |")
    print(f"ratio ours / torch = {mo / mr:.2f}x (target <= 1.0x)")


if __name__ == "__main__":
    main()
