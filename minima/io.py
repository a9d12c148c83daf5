"""Atomic writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


_UMASK = os.umask(0)
os.umask(_UMASK)


class MinimaError(Exception):
    """An error the user can fix; the CLI prints its message on one line and exits 2."""


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise MinimaError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n"
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: tmp.write_bytes(data))


def save_torch(path: Path, obj: Any) -> Path:
    return _atomic(path, lambda tmp: torch.save(obj, tmp))


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MinimaError(f"missing file: {path}") from exc
    except json.JSONDecodeError as exc:
        raise MinimaError(f"corrupt JSON in {path}: {exc.msg} at line {exc.lineno}") from exc


def load_torch(path: Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise MinimaError(f"missing checkpoint: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated/garbled file
        raise MinimaError(f"corrupt checkpoint {path}: {type(exc).__name__}") from exc
