"""One validation layer for every settings dataclass: types, ranges and choices declared once.

Each stage's settings are a frozen pydantic dataclass made with `@settings`: field types carry
their constraints (`Annotated[int, Field(ge=1)]`, `Literal[...]`), validation is strict (no
string-to-number coercion, no bool where a number is meant, no NaN or infinity) and unknown
keys are errors. Cross-field rules, where one is needed, live in `__post_init__`.

`from_table` turns a TOML table into such a dataclass and every failure into a `SettingsError`
of one line naming the key and the value: `curvature.top_k: must be >= 1, got 0`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

T = TypeVar("T")

CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

# Constrained types shared by the stages.
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]

# The optimizers the study can train, named once: profiles, optimizer configs and the summary
# schema all validate against this.
Optimizer = Literal["sgd", "sgd_momentum", "adagrad", "adam", "adahessian", "sam"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)


class SettingsError(ValueError):
    pass


def settings(cls: type[T]) -> type[T]:
    """Make `cls` a frozen, strictly validated settings dataclass whose constructor raises a
    one-line SettingsError (a ValueError) naming the field: `lr: must be > 0, got 0.0`."""
    made = _pydantic_dataclass(frozen=True, config=CONFIG)(cls)
    validating_init = made.__init__

    @functools.wraps(validating_init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            validating_init(self, *args, **{key: _tuples(value) for key, value in kwargs.items()})
        except ValidationError as exc:
            raise SettingsError(describe(exc, "")) from exc

    made.__init__ = __init__
    return made


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected an array",
    "finite_number": "must be a finite number",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "takes at most {max_length} item(s)",
    "unexpected_keyword_argument": "unknown key",
    "missing": "is missing",
}


QUOTED_CHARS = 60  # a value quoted in an error: enough to recognise it, never a whole object


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS - 1] + "…"


def _problem(error: dict, where: str) -> str:
    """One pydantic error as `key: what is wrong, got value` (the value cut short)."""
    loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    at = f"{where}.{loc}" if loc and where else (loc or where)
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":  # a __post_init__ rule: its message already names key and value
        message = str(ctx.get("error", error["msg"]))
        return f"{where}: {message}" if where else message
    if kind == "missing":  # its "input" is the whole object around the missing key
        return f"{at}: is missing"
    if kind == "literal_error":
        return f"{at}: must be one of {ctx.get('expected')}, got {_quoted(error['input'])}"
    template = _MESSAGES.get(kind)
    text = template.format(**ctx) if template else error["msg"][0].lower() + error["msg"][1:]
    return f"{at}: {text}, got {_quoted(error['input'])}"


def describe(error: ValidationError, where: str, *, first: int = 1) -> str:
    """A pydantic ValidationError as one short line: its first `first` problems, each naming
    key and value, and how many there are in all (a summary missing a field in every run once
    made a 250 KB "line" of the objects it was missing from)."""
    problems = error.errors()
    if len(problems) == 1 or first == 1:
        return _problem(problems[0], where)
    shown = "; ".join(_problem(e, "") for e in problems[:first])
    more = f"; and {len(problems) - first} more" if len(problems) > first else ""
    return f"{where + ': ' if where else ''}{len(problems)} problems: {shown}{more}"


def _tuples(value: Any) -> Any:
    """TOML arrays arrive as lists; settings hold tuples (hashable, immutable)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def from_table(cls: type[T], table: dict[str, Any] | None, where: str) -> T:
    """Build `cls` from a TOML table: every key must be a field; values are validated."""
    table = dict(table or {})
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SettingsError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(fields))}")
    try:
        return cls(**{key: _tuples(value) for key, value in table.items()})
    except SettingsError as exc:
        cause = exc.__cause__
        raise SettingsError(describe(cause, where) if isinstance(cause, ValidationError) else f"{where}: {exc}") from None


def to_table(obj: Any) -> dict[str, Any]:
    """JSON-ready dict of a settings dataclass (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_table(value)
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out
