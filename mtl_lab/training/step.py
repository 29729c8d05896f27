"""One optimisation step: the task losses' backward pass (summed, or aggregated by PCGrad / IMTL-G), clipping,
the update; the model's preparation for training; and the gradient-conflict monitor."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from mtl_lab.data import collate
from mtl_lab.models.fast.dropout import use_fast_dropout
from mtl_lab.models.model import MultitaskModel
from mtl_lab.runtime import autocast_context, to_device
from mtl_lab.training.config import TrainConfig
from mtl_lab.training.optim.aggregation import as_aggregator
from mtl_lab.training.optim.aggregation.matrix import cosine_matrix
from mtl_lab.training.optim.aggregation.task_gradients import TaskGradients


def prepare_for_training(model: MultitaskModel, cfg: TrainConfig, device: torch.device) -> MultitaskModel:
    """Freeze the word embeddings (``cfg.freeze_word_embeddings``), the lowest ``cfg.freeze_layers`` layers, and, on
    a CPU, use the plain ("eager") attention -- the same maths as PyTorch's fused SDPA kernels, which train slower on
    a CPU -- and dropout masks drawn 16 bits at a time (``mtl_lab.models.fast.dropout``: the same dropout, faster steps). On a
    CPU the model also runs its backbone over real tokens only (``mtl_lab.models.fast.unpad``, decided by
    ``MultitaskModel.unpadded``). ``benchmarks/bench_training.py`` measures each (docs/performance.md)."""
    if cfg.freeze_word_embeddings:
        model.freeze_word_embeddings()
    if cfg.freeze_layers:
        model.freeze_lower_layers(cfg.freeze_layers)
    if device.type == "cpu":
        use_fast_dropout(model)  # its attention is the eager one with this dropout
    return model


def probe_batches(train_sets: dict, model, cfg: TrainConfig) -> dict[str, dict]:
    """A fixed batch per task (seeded), on which the conflict monitor measures task gradients."""
    rng = np.random.default_rng([cfg.seed, 7919])
    return {
        t: collate(
            enc,
            rng.choice(len(enc), size=min(cfg.batch_size * cfg.task_draws, len(enc)), replace=False),
            model.views(t),
        )
        for t, enc in train_sets.items()
    }


def probe_gradients(model, probes: dict[str, dict], device: torch.device, precision: str) -> torch.Tensor:
    """K x D gradients of each task's probe loss w.r.t. the shared parameters (eval mode: no dropout).

    cuDNN's LSTM refuses a backward pass in eval mode, so the probe runs with cuDNN off (the BiLSTM
    of the sentence encoder then takes PyTorch's own kernels; a no-op on CPU).
    """
    shared = model.shared_parameters()
    model.eval()
    rows = []
    try:
        with torch.backends.cudnn.flags(enabled=False):
            for task, batch in probes.items():
                batch = to_device(batch, device)
                with autocast_context(device, precision):
                    loss = model.loss(task, model(batch), batch["labels"])
                grads = torch.autograd.grad(loss, shared, allow_unused=True)
                rows.append(
                    torch.cat(
                        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared)]
                    )
                )
    finally:
        model.train()
    return torch.stack(rows)


def monitor_conflicts(model, probes: dict[str, dict], stage: tuple[str, ...], device, precision: str) -> dict:
    """The pairwise cosines of the tasks' gradients on their probe batches (what the conflict monitor records)."""
    cos = cosine_matrix(probe_gradients(model, probes, device, precision))
    return {f"{a}-{b}": float(cos[i, j]) for (i, a), (j, b) in itertools.combinations(enumerate(stage), 2)}


def aggregate_backward(
    losses: list[torch.Tensor],
    aggregation: str | Callable,
    reduction: str,
    shared: TaskGradients | None,
    generator: torch.Generator | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Back-propagate one step's task losses, leaving the update direction in ``.grad``.

    ``sum``: one backward of the mean (or sum) of the losses. Otherwise each task's gradient of
    the SHARED parameters is collected separately (``shared``, a TaskGradients) and combined by
    the aggregator (PCGrad, IMTL-G); a task's head only ever receives its own loss's gradient.
    ``scale`` is the GradScaler's scaling on CUDA fp16 (unscaled before clipping and the step).
    """
    weight = 1.0 / len(losses) if reduction == "mean" else 1.0
    scaled = [(scale(loss) if scale is not None else loss) * weight for loss in losses]
    if aggregation == "sum":
        sum(scaled).backward()
        return
    if shared is None:
        raise ValueError(f"aggregation {aggregation!r} needs the TaskGradients of the shared parameters")
    grads = shared.backward(scaled)  # K x D, one row per task
    # the weights above did the reduction; a built-in aggregator writes into a vector reused every step
    shared.assign(as_aggregator(aggregation)(grads, generator, out=shared.result))


def optimizer_step(
    model,
    optimizer,
    losses: list[torch.Tensor],
    cfg: TrainConfig,
    shared: TaskGradients | None = None,
    generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None,
    aggregator: Callable | None = None,
) -> bool:
    """One update from a step's task losses: backward (aggregated), clip, step; returns whether it was applied.

    With a GradScaler (fp16) the losses are scaled before backward, the aggregation works on the
    scaled gradients (exact: PCGrad and IMTL-G are positively homogeneous), the gradients are
    unscaled before clipping, and a step whose gradients hold inf/NaN is skipped by the scaler,
    which then lowers its scale.
    """
    scale = scaler.scale if scaler is not None else None
    aggregate_backward(losses, aggregator or cfg.aggregation, cfg.reduction, shared, generator, scale)
    applied = True
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if scaler is not None:
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        applied = scaler.get_scale() >= before  # update() lowers the scale only after a skipped step
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return applied
