"""What each kind of task does with the model's output: its loss, its soft outputs, its predictions,
R-Drop's consistency term, its metric and its share of the overall score.

The three tasks are three kinds (``data.TASKS[task].kind``): SST-5 is ``multiclass`` (5 logits),
Quora is ``binary`` (one logit), STS-B is ``regression`` (a 0..5 score). Code that handles a task
asks ``kind_of(task)`` instead of testing the task's name.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score

from mtl_lab.data import TASKS


def symmetric_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """(KL(p || q) + KL(q || p)) / 2 from log-probabilities over the last dimension, averaged over rows."""
    p, q = logp.exp(), logq.exp()
    return 0.5 * ((p * (logp - logq)).sum(-1) + (q * (logq - logp)).sum(-1)).mean()


class Multiclass:
    """SST-5: logits [B, 5]; cross-entropy; class probabilities; argmax; accuracy."""

    name = "multiclass"

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits."""
        return F.cross_entropy(output.float(), labels)

    def soft(self, output: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, 5] (what an ensemble averages)."""
        return torch.softmax(output.float(), -1)

    def predict(self, soft: np.ndarray) -> np.ndarray:
        """The most probable class."""
        return soft.argmax(-1).astype(int)

    def consistency(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """R-Drop: symmetric KL of two passes' class distributions."""
        return symmetric_kl(F.log_softmax(a.float(), -1), F.log_softmax(b.float(), -1))

    def metrics(self, task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Accuracy."""
        return {
            f"{task}_acc": float(accuracy_score(np.asarray(labels).astype(int), np.asarray(predictions).astype(int)))
        }

    def score(self, value: float) -> float:
        """Accuracy counts as it is in the overall score."""
        return value


class Binary(Multiclass):
    """Quora: one logit [B]; binary cross-entropy; P(paraphrase); P > 0.5; accuracy."""

    name = "binary"

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the logit."""
        return F.binary_cross_entropy_with_logits(output.float(), labels.float())

    def soft(self, output: torch.Tensor) -> torch.Tensor:
        """P(paraphrase) [B]."""
        return torch.sigmoid(output.float())

    def predict(self, soft: np.ndarray) -> np.ndarray:
        """1 where P(paraphrase) > 0.5."""
        return (soft > 0.5).astype(int)

    def consistency(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """R-Drop: symmetric KL of the two-way distributions the two passes' logits give."""
        two_way = lambda x: F.logsigmoid(torch.stack([x, -x], -1))  # noqa: E731 -- log p(dup), log p(not)
        return symmetric_kl(two_way(a.float()), two_way(b.float()))


class Regression:
    """STS-B: a score [B] on 0..5; MSE; the score itself; clipped to 0..5; Pearson (and Spearman) r."""

    name = "regression"

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean squared error."""
        return F.mse_loss(output.float(), labels.float())

    def soft(self, output: torch.Tensor) -> torch.Tensor:
        """The raw score (what an ensemble averages)."""
        return output.float()

    def predict(self, soft: np.ndarray) -> np.ndarray:
        """The score clipped to 0..5: the leaderboard's scale, and what dev is scored on (docs/running.md)."""
        return np.clip(soft, 0.0, 5.0)

    def consistency(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """R-Drop: mean squared difference of two passes' scores."""
        return F.mse_loss(a.float(), b.float())

    def metrics(self, task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Pearson and Spearman r (0 when either side is constant)."""
        p, g = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        if np.std(p) == 0 or np.std(g) == 0:
            return {f"{task}_pearson": 0.0, f"{task}_spearman": 0.0}
        return {f"{task}_pearson": float(pearsonr(p, g)[0]), f"{task}_spearman": float(spearmanr(p, g)[0])}

    def score(self, value: float) -> float:
        """r in -1..1 counts as (r + 1) / 2 in the overall score."""
        return (value + 1.0) / 2.0


KINDS = {kind.name: kind for kind in (Multiclass(), Binary(), Regression())}


def kind_of(task: str) -> Multiclass | Binary | Regression:
    """What a task's output means and how it is trained and scored."""
    return KINDS[TASKS[task].kind]
