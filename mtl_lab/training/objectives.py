"""What a step minimises: each kind of training set brings its objective, and ``task_losses`` applies them.

A labelled task (``EncodedTask``) is trained on its head's loss (cross-entropy for SST and QQP, MSE
for STS; ``MultitaskModel.loss``), optionally as R-Drop's two passes; mined sentence pairs
(``EncodedPairs``) on the contrastive InfoNCE loss of SimCSE.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mtl_lab.data import EncodedTask, collate
from mtl_lab.runtime import autocast_context, to_device
from mtl_lab.training.rdrop import rdrop_terms
from mtl_lab.training.simcse import EncodedPairs, collate_pairs, contrastive_loss


def supervised_loss(
    model,
    task: str,
    enc: EncodedTask,
    idx: np.ndarray,
    device: torch.device,
    rdrop: float = 0.0,
    terms: dict | None = None,
    **_,
) -> torch.Tensor:
    """A labelled task's loss on rows ``idx``: the model's head for the task and the task's loss
    (with ``rdrop`` > 0, the R-Drop loss of the rows passed twice: ``mtl_lab.training.rdrop``; ``terms``, if given,
    then receives its parts, detached: ``loss``, the task loss alone, and ``rdrop_consistency``)."""
    rows = np.concatenate([idx, idx]) if rdrop else idx  # R-Drop passes every row twice
    batch = to_device(collate(enc, rows, model.views(task)), device)
    if rdrop:
        task_loss, agreement = rdrop_terms(model, task, batch)
        if terms is not None:
            terms.update(loss=task_loss.detach(), rdrop_consistency=agreement.detach())
        return task_loss + rdrop * agreement
    return model.loss(task, model(batch), batch["labels"])


def pair_contrastive_loss(
    model, task: str, enc: EncodedPairs, idx: np.ndarray, device: torch.device, temperature: float = 0.05, **_
) -> torch.Tensor:
    """Contrastive pairs' loss on rows ``idx``: info_nce over the sentence embeddings, in-batch negatives."""
    return contrastive_loss(model, to_device(collate_pairs(enc, idx), device), temperature)


# Each kind of training set brings its objective; the loop below never asks which task it trains.
OBJECTIVES: dict[type, Callable[..., torch.Tensor]] = {
    EncodedTask: supervised_loss,
    EncodedPairs: pair_contrastive_loss,
}


def task_losses(
    model,
    step: tuple,
    train_sets: dict,
    device: torch.device,
    precision: str,
    temperature: float = 0.05,
    rdrop: float = 0.0,
    logged: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Loss of each task in a step (what is back-propagated); the batches of one task are joined into one forward pass.

    ``logged``, if given, receives for each task what a run records of the step: ``loss``, the task's own loss
    (with R-Drop without its consistency term, so loss curves compare with runs without it), and with R-Drop
    ``rdrop_consistency``."""
    by_task: dict[str, list[np.ndarray]] = {}
    for task, idx in step:
        by_task.setdefault(task, []).append(idx)
    out = {}
    for task, parts in by_task.items():
        enc = train_sets[task]
        objective = OBJECTIVES[type(enc)]
        terms: dict[str, torch.Tensor] = {}
        with autocast_context(device, precision):
            out[task] = objective(
                model, task, enc, np.concatenate(parts), device, temperature=temperature, rdrop=rdrop, terms=terms
            )
        if logged is not None:
            logged[task] = {"loss": out[task].detach(), **terms}
    return out
