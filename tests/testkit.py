"""What the test files share: the checkout's paths, a copy of the session's tiny study, and
`derived_profile`, which writes a profile derived from a shipped one and refuses an override
that does not apply (a misspelled key, a key in the wrong section, a section the base lacks, or
a value the base already has), so that a renamed setting cannot silently turn a test into a
test of the base profile."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "minima" / "profiles"
SCRIPTS = REPO / "scripts"
HAVE_VENV = (REPO / ".stamps" / "venv").exists()
NEEDS_VENV = "needs the project's venv: run `make venv` (make test does it)"


# Analyses cut to a few seconds a run, for derived profiles of `tiny` whose tests are about
# something else (executors, locking): derived_profile("tiny", path, **LIGHT_ANALYSES, ...).
LIGHT_ANALYSES = {
    "curvature": {"n_samples": 64, "max_iter": 10, "trace_probes": 3, "density_probes": 1, "density_steps": 6},
    "sharpness": {"n_samples": 64, "epsilon_steps": 2, "adaptive_steps": 2, "average_samples": 2, "pacbayes_samples": 2,
                  "pacbayes_iters": 3, "msharp_steps": 2, "msharp_points": 64, "msharp_m": 32},
    "landscape": {"n_samples": 64, "points_1d": 3, "points_2d": 3, "interp_points": 3},
}


# ---- the session's tiny study ------------------------------------------------------------------


def copy_study(source: Path, target: Path, parts: tuple[str, ...] = ("runs", "data", "build")) -> Path:
    """`target` with copies of the study's `parts` (runs/, data/, build/) from `source`: a root of
    its own that a test may change without touching the session's study."""
    target.mkdir(parents=True, exist_ok=True)
    for part in parts:
        shutil.copytree(source / part, target / part, symlinks=True)
    return target


# ---- derived profiles --------------------------------------------------------------------------


class OverrideError(ValueError):
    """An override that would not change the base profile the way its caller meant."""


def _fields(cls: type) -> dict[str, Any]:
    """Field name -> default (dataclasses.MISSING when there is none) of a settings dataclass."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = dataclasses.MISSING
    return out


def _schema() -> dict[str | None, dict[str, Any]]:
    """Each table of a profile (None: the top level; "optimizer": one [optimizer.<name>]) and its keys."""
    from minima import config

    optimizer = _fields(config.OptimizerConfig)
    optimizer.pop("name")
    return {None: _fields(config.StudySettings), "train": _fields(config.TrainSettings), "optimizer": optimizer,
            **{name: _fields(cls) for name, cls in config.SECTIONS.items()}}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """TOML equality: 1 and 1.0 differ in the file but not in meaning; lists and tuples agree."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _sections_holding(schema: dict, key: str) -> list[str]:
    return [f"[{name}]" if name else "the top level" for name, keys in schema.items() if key in keys]


def _apply(table: dict, changes: dict, keys: dict[str, Any], where: str, schema: dict) -> None:
    """Apply `changes` to the table `where` (whose allowed keys and defaults are `keys`)."""
    for key, value in changes.items():
        name = f"{where}.{key}" if where else key
        if key not in keys:
            elsewhere = _sections_holding(schema, key)
            hint = f"; it belongs in {' or '.join(elsewhere)}" if elsewhere else " (misspelled?)"
            raise OverrideError(f"{name}: not a setting of {f'[{where}]' if where else 'the top level'}{hint}")
        if isinstance(value, dict):
            raise OverrideError(f"{name}: a setting takes a value, not a table")
        if value is None:
            if key not in table:
                raise OverrideError(f"{name}: cannot remove it, the base does not set it")
            del table[key]
            continue
        if key in table:
            current = table[key]
        elif keys[key] is not dataclasses.MISSING:
            current = keys[key]
        else:
            current = dataclasses.MISSING
        if current is not dataclasses.MISSING and _same(current, value):
            raise OverrideError(f"{name} = {value!r}: a no-op, the base has that value already")
        table[key] = value


def derived(base: dict, overrides: dict[str, Any]) -> dict:
    """The profile table `base` with `overrides` applied (see `derived_profile`)."""
    schema = _schema()
    table = json.loads(json.dumps(base))
    top = {}
    for key, value in overrides.items():
        if key == "optimizer":
            if not isinstance(value, dict):
                raise OverrideError("optimizer: give {name: {key: value}} or {name: None}")
            tables = table.get("optimizer", {})
            for name, changes in value.items():
                if name not in tables:
                    raise OverrideError(f"[optimizer.{name}]: no such section in the base "
                                        f"(it has {', '.join(f'[optimizer.{n}]' for n in tables) or 'none'})")
                if changes is None:
                    del tables[name]
                elif not isinstance(changes, dict) or not changes:
                    raise OverrideError(f"[optimizer.{name}]: give a table of changes or None")
                else:
                    _apply(tables[name], changes, schema["optimizer"], f"optimizer.{name}", schema)
        elif key in schema and key is not None:
            if not isinstance(value, dict) or not value:
                raise OverrideError(f"[{key}]: give a table of changes")
            if key not in table:
                raise OverrideError(f"[{key}]: no such section in the base")
            _apply(table[key], value, schema[key], key, schema)
        else:
            top[key] = value
    _apply(table, top, schema[None], "", schema)
    return table


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OverrideError(f"{value!r}: not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise OverrideError(f"{value!r}: not a TOML value")


def to_toml(table: dict) -> str:
    """TOML text of a profile table: top-level keys, then one [section] (or [a.b]) per table."""
    lines: list[str] = []

    def emit(prefix: str, body: dict) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in body.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for key, sub in tables.items():
            emit(f"{prefix}.{key}" if prefix else key, sub)

    emit("", table)
    return "\n".join(lines).lstrip("\n") + "\n"


def derived_profile(base: str | Path, path: Path, **overrides: Any) -> Path:
    """Write to `path` the profile `base` (a shipped profile's name, or a .toml path) with
    `overrides`, and return `path`. A top-level setting is `key=value`; a section's settings are
    `train={...}`, `curvature={...}` etc.; an optimizer's are `optimizer={"sgd": {"lr": 0.2}}`.
    `None` removes a setting, or an [optimizer.<name>] table (`optimizer={"sam": None}`).

    Raises OverrideError when an override does not apply: a misspelled key, a key in the wrong
    section, a section the base lacks, removing what the base does not set, or a no-op (the
    value the base has, or the default it leaves in place). The result must load as a profile."""
    from minima import config

    source = PROFILES / f"{base}.toml" if isinstance(base, str) and "/" not in base and not base.endswith(".toml") \
        else Path(base)
    if not overrides:
        raise OverrideError(f"no overrides: use {source} itself")
    table = derived(tomllib.loads(source.read_text()), overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(table))
    config.load_profile(str(path))  # a derived profile that minima refuses is the caller's mistake
    return path
