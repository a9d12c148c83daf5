"""Read build/summary.json and check the fields the report relies on.

The report reads only the summary (and the figures it draws from it). A missing or corrupt
file, or a summary without the fields below, is a MinimaError with a one-line message, raised
before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minima.io import MinimaError, read_json

SUPPORTED_SCHEMA = 1
_RUN_FIELDS = {"run": str, "optimizer": str, "status": str}


def _require(where: str, obj: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise MinimaError(f"{where}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MinimaError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _check_optional(where: str, obj: dict, key: str, kind: type) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        raise MinimaError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")


def validate(summary: Any, where: str = "summary") -> dict:
    """The summary itself, or a MinimaError naming the first bad field."""
    if not isinstance(summary, dict):
        raise MinimaError(f"{where}: expected a JSON object, got {type(summary).__name__}")
    schema = summary.get("schema", SUPPORTED_SCHEMA)
    if schema != SUPPORTED_SCHEMA:
        raise MinimaError(f"{where}: schema {schema!r} is not supported (expected {SUPPORTED_SCHEMA})")
    _require(where, summary, "profile", str)
    runs = _require(where, summary, "runs", list)
    if not runs:
        raise MinimaError(f"{where}.runs: no runs to report")
    for i, run in enumerate(runs):
        at = f"{where}.runs[{i}]"
        if not isinstance(run, dict):
            raise MinimaError(f"{at}: expected an object, got {type(run).__name__}")
        for key, kind in _RUN_FIELDS.items():
            _require(at, run, key, kind)
        _require(at, run, "seed", int)
        for key in ("curvature", "sharpness", "landscape", "history"):
            _check_optional(at, run, key, dict)
    for key in ("environment", "timing", "data", "model", "settings", "optimizers", "measures"):
        _check_optional(where, summary, key, dict)
    for key in ("aggregates", "dinh", "correlations", "original_study", "seeds"):
        _check_optional(where, summary, key, list)
    for key in ("dinh_info", "interpolation"):
        _check_optional(where, summary, key, dict)
    return summary


def load_summary(path: Path) -> dict:
    return validate(read_json(Path(path)), where=str(path))
