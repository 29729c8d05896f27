"""Reference numbers: the paper's Table 2 (dev, BERT-base, full QQP) and which of its rows a study row matches."""

from __future__ import annotations

import pandas as pd

# model / strategy -> (SST acc, QQP acc, STS Pearson, overall); one T4, 3 epochs, 141k QQP pairs
PAPER_TABLE2: dict[str, tuple[float, float, float, float]] = {
    "BERT [CLS] multi-task, initial": (0.516, 0.905, 0.871, 0.7855),
    "SBERT + CNN-BiLSTM, initial": (0.521, 0.898, 0.858, 0.7827),
    "SBERT + CNN-BiLSTM, SimCSE (QQP/STS)": (0.513, 0.903, 0.876, 0.7847),
    "SBERT + CNN-BiLSTM, PCGrad": (0.526, 0.898, 0.859, 0.7845),
    "SBERT + CNN-BiLSTM, PCGrad + SimCSE (QQP/STS)": (0.523, 0.905, 0.875, 0.7885),
    "sequential SST -> STS -> QQP (BERT)": (0.397, 0.901, 0.788, 0.7307),
}


def paper_frame() -> pd.DataFrame:
    """The paper's Table 2 as a DataFrame (index: model / strategy)."""
    return pd.DataFrame.from_dict(PAPER_TABLE2, orient="index", columns=["SST", "QQP", "STS", "overall"])


PAPER_MODELS = {"cls": "BERT [CLS] multi-task", "sbert": "SBERT + CNN-BiLSTM"}

# notebook 02's multi-task comparison: its row label -> the paper's Table 2 row
ENCODER_ROWS = {"[CLS] baseline": "BERT [CLS] multi-task, initial", "SBERT + CNN-BiLSTM": "SBERT + CNN-BiLSTM, initial"}


def paper_rows(model: str, strategies: list[str]) -> dict[str, str]:
    """strategy -> the paper's Table 2 row for a model (``cls``/``sbert``), for the strategies it reports."""
    rows = {s: f"{PAPER_MODELS[model]}, {s}" for s in strategies}
    if model == "cls":  # the paper ran its sequential baseline with the [CLS] model
        rows["sequential SST → STS → QQP"] = "sequential SST -> STS -> QQP (BERT)"
    return {s: row for s, row in rows.items() if row in PAPER_TABLE2 and s in strategies}
