"""Hand-written optimisation pieces: AdamW and multi-task gradient aggregation."""

from mtl_lab.training.optim.adam import AdamW
from mtl_lab.training.optim.pcgrad import project_conflicting

__all__ = ["AdamW", "project_conflicting"]
