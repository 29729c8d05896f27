"""Hand-written optimisation pieces: AdamW and multi-task gradient aggregation."""

from .adam import AdamW

__all__ = ["AdamW"]
