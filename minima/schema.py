"""The schema of build/summary.json, defined once: the analysis validates what it writes, the
report what it reads, the tests their fixtures. Torch-free (pydantic only), so the report
renders on a machine without torch.

Objects allow extra fields (a summary may carry more than the report reads); the fields
listed here are required with their types, and fractions lie in [0, 1].
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from minima import verdicts
from minima.io import CorruptFile, MinimaError, read_json
from minima.settings import Optimizer, describe

SCHEMA_VERSION = 4
Number = float | None
FractionValue = Annotated[float, Field(ge=0, le=1)] | None
Verdict = Literal["reproduced", "not_reproduced", "inconclusive", "not_testable"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Trace(_Open):
    mean: Number
    stderr: Number


class Curvature(_Open):
    top_eigenvalues: list[Number]
    min_eigenvalue: Number
    trace: Trace
    gradient_norm: Number
    n_samples: int
    density: dict[str, Any] | None
    balanced_top_eigenvalue: Number


class Run(_Open):
    run: str
    configuration: str
    dataset: str
    model: Literal["modern", "seed"]
    optimizer: Optimizer
    seed: int
    status: Literal["ok", "diverged"]
    converged: bool
    epochs: int
    epochs_to_fit: int | None
    train_loss: Number
    train_accuracy: FractionValue
    test_loss: Number
    test_accuracy: FractionValue
    val_loss: Number
    val_accuracy: FractionValue
    generalization_gap: Number
    gap_stderr: Number
    hyperparameters: dict[str, float | int]
    levels: dict[str, int]
    weight_norm: Number
    distance_from_init: Number
    layer_norms: dict[str, float]
    curvature: Curvature | None
    sharpness: dict[str, Number] | None
    landscape: dict[str, Any] | None
    history: dict[str, list]
    values: dict[str, Number]


class Stat(_Open):
    mean: Number
    std: Number
    n: int


class Aggregate(_Open):
    optimizer: Optimizer
    n: int
    n_ok: int
    n_converged: int
    metrics: dict[str, Stat]
    layer_norms: dict[str, Stat]


class Correlation(_Open):
    measure: str
    target: str
    kind: Literal["hessian", "sharpness", "baseline"]
    kendall_tau: Number
    spearman: Number
    ci95: list[float] | None
    p_value: Number
    p_holm: Number
    partial_tau: Number
    partial_ci95: list[float] | None
    psi_ci95: list[float] | None
    versus_baseline: dict[str, Any] | None
    significant: bool
    direction: Literal["positive", "negative", "undetermined"]
    psi: dict[str, Number]
    psi_mean: Number
    beats_baselines: bool | None
    n: int
    n_clusters: int


class Claim(_Open):
    id: str
    claim: str
    source: str
    test: str
    statistic: str
    value: Number
    ci95: list[float] | None
    n: int
    n_clusters: int
    method: str
    p: Number
    p_min: Number
    p_holm: Number
    condition: bool | None
    verdict: Verdict
    reason: str
    rule: str
    rule_kind: Literal["directional", "noninferiority", "equivalence", "check", "bound"]
    reference: float
    side: Literal["above", "below", "either"]
    margin: float
    unit: Literal["fraction", "log10_ratio", "psi", "ratio", "factor"]
    note: str

    @model_validator(mode="after")
    def _verdict_follows_its_rule(self) -> "Claim":
        problem = verdicts.check(self.model_dump())
        if problem:
            raise ValueError(problem)
        return self


class Agreement(_Open):
    swap_rate: Number
    kendall_tau: Number
    n_comparisons: int


class Extreme(_Open):
    quantity: str
    sharpest: Optimizer
    sharpest_mean: float
    flattest: Optimizer
    flattest_mean: float
    ratio: Number


class Tally(_Open):
    optimizer: Optimizer
    measures: int


class ExtremesTally(_Open):
    sharpest: Tally
    flattest: Tally
    n_measures: int


class Configuration(_Open):
    configuration: str
    optimizer: Optimizer
    hyperparameters: dict[str, float | int]
    n: int
    n_converged: int
    metrics: dict[str, Stat]


class Statistics(_Open):
    alpha: float
    deterministic: bool
    holm_over: list[str]
    n_converged: int


class DinhRow(_Open):
    scale: float
    top_eigenvalue: Number
    trace: Number
    test_accuracy: FractionValue


class Design(_Open):
    axes: list[str]
    seeds: list[int]
    n_runs: int
    n_configurations: int
    n_converged: int
    n_capped: int
    n_diverged: int
    gap_spread: Number
    stop_loss: float
    max_epochs: int


class Summary(_Open):
    schema_: Literal[4] = Field(alias="schema")
    profile: str
    git_commit: str
    created_by: str
    data: dict[str, Any]
    model: dict[str, Any]
    settings: dict[str, Any]
    seeds: list[int]
    optimizers: dict[str, dict[str, Any]]
    measures: dict[str, str]
    measure_kinds: dict[str, Literal["hessian", "sharpness", "baseline"]]
    targets: list[str]
    design: Design
    statistics: Statistics
    noise_floor: dict[str, Agreement]
    extremes: list[Extreme]
    extremes_tally: ExtremesTally | None
    best: dict[str, Any] | None
    tuning: dict[str, Any]
    configurations: list[Configuration]
    interpolation: dict[str, Any] | None
    runs: Annotated[list[Run], Field(min_length=1)]
    aggregates: list[Aggregate]
    correlations: list[Correlation]
    claims: list[Claim]
    dinh: list[DinhRow]
    dinh_info: dict[str, Any]
    original_study: dict[str, Any]
    limitations: dict[str, Any]
    timing: dict[str, float]
    environment: dict[str, Any]


# A corrupt or outdated summary cannot be trusted to say which profile and root built it, so the
# advice names what the user must repeat.
ERRORS_SHOWN = 3  # a validation error names this many problems, then their count
REBUILD = "rebuild it with `make report` and the PROFILE= (and ROOT=) that built it"


def validate_summary(summary: Any, *, where: str = "summary") -> dict:
    """The summary itself, or a MinimaError naming its first few bad fields and their count on one line."""
    if not isinstance(summary, dict):
        raise MinimaError(f"{where}: expected a JSON object, got {type(summary).__name__}")
    if summary.get("schema") != SCHEMA_VERSION:
        raise MinimaError(f"{where}: schema {summary.get('schema')!r} is not supported (expected {SCHEMA_VERSION}); "
                          + REBUILD)
    try:
        Summary.model_validate(summary)
    except ValidationError as exc:
        raise MinimaError(describe(exc, where, first=ERRORS_SHOWN)) from None
    return summary


def load_summary(path) -> dict:
    try:
        return validate_summary(read_json(path), where=str(path))
    except CorruptFile as exc:
        raise MinimaError(f"{exc}; {REBUILD}") from None
