"""Hand-written optimisation pieces: AdamW (``adam``) and multi-task gradient aggregation (``aggregation``)."""

from mtl_lab.training.optim.adam import AdamW

__all__ = ["AdamW"]
