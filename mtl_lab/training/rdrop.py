"""R-Drop (Liang et al., 2021, "R-Drop: Regularized Dropout for Neural Networks").

Each training batch goes through the model twice (one batch of twice the size, different dropout masks):

    loss = (task(out1, y) + task(out2, y)) / 2 + alpha * consistency(out1, out2)

consistency: the symmetric KL divergence of the two predicted distributions, (KL(p1 || p2) + KL(p2 || p1)) / 2
(SST, QQP), the squared difference of the two scores (STS). Prediction is unchanged: one pass, dropout off. Why
the lab uses it: docs/study.md.

The weight in the paper's parametrisation: the paper's loss is L_NLL + alpha' * L_KL, with L_NLL the SUM of the
two passes' losses and L_KL the same symmetric KL as here. The lab's loss is that loss halved with alpha' = 2 * alpha:
the lab's alpha = 1 (``experiments.RDROP_ALPHA``) is the paper's alpha' = 2.

A run records the task part, (task(out1, y) + task(out2, y)) / 2, as its train_loss (comparable with runs without
R-Drop) and the consistency, unweighted, apart (``rdrop_consistency`` in results.json's history).
"""

from __future__ import annotations

import torch

from mtl_lab.tasks import kind_of


def consistency(task: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How far two dropout passes' outputs for the same examples disagree (0 when they are equal).

    SST: symmetric KL of the class distributions (logits [B, 5]); QQP: symmetric KL of the two-way
    distributions given by one logit [B]; STS: mean squared difference of the scores [B] (``tasks``).
    """
    return kind_of(task).consistency(a, b)


def rdrop_terms(model, task: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of R-Drop's loss on a collated ``batch`` whose rows are the examples twice over (first half,
    then again): the task loss of all rows, and the two halves' consistency.

    Both halves pass through the model in one forward call (different dropout masks per row).
    """
    out = model(batch)
    n = out.shape[0] // 2
    return model.loss(task, out, batch["labels"]), consistency(task, out[:n], out[n:])


def rdrop_loss(model, task: str, batch: dict, alpha: float) -> torch.Tensor:
    """R-Drop loss of such a ``batch``: the task loss of all rows plus ``alpha`` times the two halves' consistency."""
    task_loss, agreement = rdrop_terms(model, task, batch)
    return task_loss + alpha * agreement
