"""Turning TOML tables into typed, frozen settings dataclasses, strictly.

Unknown keys, wrong types and bad values are errors before any work starts; the message names
the file, the table and the key, on one line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    pass


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except SettingsError as exc:
                errors.append(str(exc))
        raise SettingsError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected an array, got {type(value).__name__} {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    raise SettingsError(f"{where}: unsupported settings type {hint!r}")


def from_table(cls: type[T], table: dict[str, Any] | None, where: str) -> T:
    """Build `cls` from a TOML table: every key must be a field; values are type-checked."""
    table = dict(table or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - fields)
    if unknown:
        raise SettingsError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(fields))}")
    values = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in table.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{where}: {exc}") from exc


def to_table(settings: Any) -> dict[str, Any]:
    """JSON-ready dict of a settings dataclass (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            value = to_table(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
