"""Which task batches make up an epoch (the task samplers), and the learning-rate schedule.

``proportional`` takes every training batch once per epoch in shuffled order; ``round_robin`` takes
the tasks in turn; ``sqrt`` draws task k with p ~ sqrt(n_k); ``annealed`` (Stickland & Murray, 2019)
with p ~ n_k ** alpha, alpha from 1 down to 0.2 over the epochs; ``uniform`` with equal probabilities.
A plan is a function of (seed, epoch) alone, which is what makes a resumed run exact.
"""

from __future__ import annotations

import numpy as np

from mtl_lab.data import EncodedTask
from mtl_lab.data import bucket_batches as _bucket_batches

SAMPLERS = ("proportional", "round_robin", "sqrt", "annealed", "uniform")


def task_probabilities(sampler: str, sizes: dict[str, int], epoch: int = 0, epochs: int = 1) -> dict[str, float]:
    """Probability of drawing each task for a step under a sampler (epoch counts from 0)."""
    n = np.array([sizes[t] for t in sizes], dtype=float)
    if sampler in ("round_robin", "uniform"):
        p = np.ones_like(n)
    elif sampler == "proportional":
        p = n
    elif sampler == "sqrt":
        p = np.sqrt(n)
    elif sampler == "annealed":
        alpha = 1.0 - 0.8 * (epoch / (epochs - 1) if epochs > 1 else 0.0)
        p = n**alpha
    else:
        raise ValueError(f"unknown sampler {sampler!r}")
    return dict(zip(sizes, p / p.sum()))


def epoch_plan(
    train: dict[str, EncodedTask],
    tasks: tuple[str, ...],
    sampler: str,
    batch_size: int,
    seed: int,
    epoch: int,
    epochs: int,
    draws: int = 1,
) -> list[tuple[tuple[str, np.ndarray], ...]]:
    """The steps of one epoch: each a tuple of ``draws`` (task, example indices) batches, fixed by seed and epoch.

    An epoch holds as many batches as the tasks have together. ``proportional`` takes every batch
    exactly once, in shuffled order; the other samplers draw the task of each batch (``uniform``
    at random with equal probabilities, ``round_robin`` in turn) and cycle through that task's
    re-shuffled batches, so small tasks may repeat and large ones may not finish. With
    ``draws > 1`` consecutive batches form one step (PCGrad's small per-task batches).
    """
    rng = np.random.default_rng([seed, epoch])
    pools = {t: _bucket_batches(train[t].lengths, batch_size, rng) for t in tasks}
    n_batches = sum(len(b) for b in pools.values())
    if sampler == "proportional":
        order = np.concatenate([[i] * len(pools[t]) for i, t in enumerate(tasks)])
        rng.shuffle(order)
    elif sampler == "round_robin":
        order = np.arange(n_batches) % len(tasks)
    else:
        probs = task_probabilities(sampler, {t: len(train[t]) for t in tasks}, epoch, epochs)
        order = rng.choice(len(tasks), size=n_batches, p=[probs[t] for t in tasks])
    cursor = dict.fromkeys(tasks, 0)
    batches = []
    for i in order:
        t = tasks[i]
        if cursor[t] == len(pools[t]):  # exhausted: a fresh shuffle of this task
            pools[t], cursor[t] = _bucket_batches(train[t].lengths, batch_size, rng), 0
        batches.append((t, pools[t][cursor[t]]))
        cursor[t] += 1
    return [tuple(batches[i : i + draws]) for i in range(0, len(batches), draws)]


def lr_multiplier(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup * total`` steps, then linear decay to zero."""
    warm = max(1, int(round(warmup * total)))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))
