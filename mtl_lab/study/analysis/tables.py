"""Tables as students read them: numbers to a fixed number of decimals, whole numbers whole, nothing for a gap."""

from __future__ import annotations

import pandas as pd

WHOLE_COLUMNS = ("seeds", "examples", "count", "probes", "epochs", "best epoch")
ONE_DECIMAL = ("minutes", "examples/s")  # timings: a tenth is all a shared machine measures
TINY = ("lr", "learning rate", "weight decay")  # numbers that 3 decimals would show as 0.000


def format_cell(value: object, column: str, decimals: int = 3) -> str:
    """One cell as text: ``decimals`` digits (timings: 1; counts: none; a learning rate as it is), an empty
    string for a missing value, never a negative zero."""
    if isinstance(value, float):  # numpy's float64 too
        if pd.isna(value):
            return ""
        if column in TINY:
            return f"{value:g}"
        digits = 1 if column in ONE_DECIMAL else 0 if column in WHOLE_COLUMNS else decimals
        text = f"{value:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return "" if value is None else str(value)


def format_table(table: pd.DataFrame, decimals: int = 3, index: bool = True) -> pd.DataFrame:
    """The table with every cell as text (``format_cell``): print it, display it, or write it as markdown.

    With ``index``, the index becomes the first column(s) (named ``run`` when it has no name).
    """
    if index and table.index.names == [None]:
        table = table.rename_axis("run")
    table = table.reset_index() if index else table
    return pd.DataFrame({c: [format_cell(v, str(c), decimals) for v in table[c]] for c in table.columns})


def markdown(table: pd.DataFrame, decimals: int = 3, index: bool = True) -> str:
    """The table as markdown (``format_table``'s text, left as it is)."""
    return format_table(table, decimals, index).to_markdown(index=False, disable_numparse=True)
