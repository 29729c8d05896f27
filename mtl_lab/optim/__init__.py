"""Hand-written optimisation pieces: AdamW and multi-task gradient aggregation."""

from .adam import AdamW
from .pcgrad import project_conflicting

__all__ = ["AdamW", "project_conflicting"]
