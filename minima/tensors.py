"""Tensor files (`model.pt`, `checkpoint.pt`, `eigenvectors.pt`): deterministic bytes, safe loads.

`torch.save` to a path records the file's name inside its zip archive, and atomic writes go
through a temporary name, so equal weights gave different bytes (and a new digest) on every
write. We serialize to memory first, where the archive name is fixed, then write atomically:
equal tensors give equal bytes, and digests of `model.pt` change only when the weights do.

Loads use `weights_only=True` (no pickled code runs) and turn any failure into `CorruptFile`,
which the pipeline moves aside and recomputes.
"""

from __future__ import annotations

import io as _io
from pathlib import Path
from typing import Any

import torch

from minima.io import CorruptFile, MinimaError, write_bytes


def to_bytes(obj: Any) -> bytes:
    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(path: Path, obj: Any) -> Path:
    return write_bytes(path, to_bytes(obj))


def load_torch(path: Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise MinimaError(f"missing file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or garbled file
        raise CorruptFile(path, f"not a readable torch file ({type(exc).__name__})") from exc
