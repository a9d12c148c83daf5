"""Read build/summary.json and validate it against the one schema definition (minima.schema).

The report reads only the summary (and the figures it draws from it). A missing or corrupt
file, or a summary the schema rejects, is a MinimaError with a one-line message, raised before
anything is written. minima.schema is torch-free (pydantic only), so the report renders on a
machine without torch.
"""

from __future__ import annotations

from pathlib import Path

from minima.schema import load_summary as _load_summary
from minima.schema import validate_summary

__all__ = ["load_summary", "validate_summary"]


def load_summary(path: Path) -> dict:
    return _load_summary(Path(path))
