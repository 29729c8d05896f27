"""The two-task toy objective of the PCGrad paper (Yu et al., 2020, Figure 1), for tests and notebook 04.

Two losses over a 2-D parameter share a long curved valley; inside it their gradients point in
strongly conflicting directions, with one much larger than the other. Adam on the summed loss
stalls on the valley wall; PCGrad removes the conflicting components and keeps descending along
the valley floor. A single path in the valley is chaotic (a start moved by 1e-13, or another CPU's
last bit of tanh, ends elsewhere); averaged over a cloud of 24 starts near (-8.5, 7.5) at lr 1e-3, the
summed loss ends at 7.0 (5.5-8.2) and PCGrad's at 3.2 (1.4-4.7) after 20,000 steps.
"""

from __future__ import annotations

import torch

from mtl_lab.training.optim.aggregation import as_aggregator

_LOWER = 5e-6


def toy_losses(x: torch.Tensor) -> torch.Tensor:
    """The two task losses [L1, L2] at a point x = (x1, x2); for points stacked as rows (N x 2), N x 2."""
    x1, x2 = x[..., 0], x[..., 1]
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), _LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), _LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    return torch.stack([f1 * c1 + f1_sq * c2, f2 * c1 + f2_sq * c2], dim=-1)


def optimize_toys(
    runs: list[tuple[tuple[float, float], str]], steps: int = 20000, lr: float = 1e-3, seed: int = 0
) -> list[torch.Tensor]:
    """Several toy optimisations at once, one per (start, aggregation): Adam on the toy with each point's two
    task gradients combined by its aggregation; returns each trajectory (steps+1 x 2).

    The points move independently (Adam is elementwise, each has its own random generator), exactly as
    one ``optimize_toy`` call each, but share every autograd call: several times faster than one at a time.
    """
    x = torch.tensor([start for start, _ in runs], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr)
    gens = [torch.Generator().manual_seed(seed) for _ in runs]
    aggregators = [as_aggregator(agg, "sum") for _, agg in runs]
    one_hot = torch.eye(2)[:, None, :].expand(2, len(runs), 2)  # task k's loss of every point
    path = [x.detach().clone()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead
    try:
        for _ in range(steps):
            # K x N x 2: task k's gradient at each point (point n's loss depends on point n only)
            (grads,) = torch.autograd.grad(toy_losses(x), x, grad_outputs=one_hot, is_grads_batched=True)
            x.grad = torch.stack([agg(grads[:, n], gen) for n, (agg, gen) in enumerate(zip(aggregators, gens))])
            opt.step()
            path.append(x.detach().clone())
    finally:
        torch.set_num_threads(threads)
    return list(torch.stack(path).unbind(1))


def optimize_toy(
    start: tuple[float, float], aggregation: str = "sum", steps: int = 20000, lr: float = 1e-3, seed: int = 0
) -> torch.Tensor:
    """Adam on the toy with the task gradients combined by ``aggregation``; returns the trajectory (steps+1 x 2)."""
    return optimize_toys([(start, aggregation)], steps, lr, seed)[0]
