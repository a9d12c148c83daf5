"""The schema of build/summary.json, defined once: the analysis validates what it writes, the
report reads the summary as these models, the tests validate their fixtures. Torch-free (pydantic
only), so the report renders on a machine without torch.

Every section whose keys are known is a model; a mapping is left a mapping where its keys are the
study's own names (measures, grid axes, optimizers, layers, stages). Objects allow extra fields (a
summary may carry more than the report reads); the fields listed here are required with their
types, and fractions lie in [0, 1]. The lookups the report needs (which runs converged, a measure's
correlation row, an optimizer's aggregate, a run or a claim by its id) are methods of `Summary`:
selections, never statistics.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from minima import verdicts
from minima.io import CorruptFile, MinimaError, read_json
from minima.settings import Optimizer, describe

SCHEMA_VERSION = 4
Number = float | None
FractionValue = Annotated[float, Field(ge=0, le=1)] | None
Interval = list[float] | None  # a 95 % interval [low, high]
Verdict = Literal["reproduced", "not_reproduced", "inconclusive", "not_testable"]
Kind = Literal["hessian", "sharpness", "baseline"]
KINDS: tuple[str, ...] = get_args(Kind)
Target = Literal["generalization_gap", "test_error"]
TARGETS: tuple[str, ...] = get_args(Target)
GAP = "generalization_gap"  # the target the study's question is about
# which runs an analysis covers: every run, or the first seed of each configuration
Coverage = Literal["all", "first_seed"]
# The Hessian quantities Dinh's rescaling measures at every scale, besides the sharpness measures.
RESCALED_CURVATURE = ("top_eigenvalue", "trace")
HyperparameterValue = float | int
Setting = JsonValue  # one setting as its TOML table holds it: a number, string, flag or list


def counts_as_minimum(status: str, converged: bool) -> bool:
    """Trained to the stop rule without diverging: a minimum the study measures and tests. The
    analysis asks it of run records, the report of `Run.is_minimum`."""
    return status == "ok" and bool(converged)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# ---- one run ---------------------------------------------------------------------------------

class Trace(_Open):
    mean: Number
    stderr: Number


class Density(_Open):
    grid: list[float]
    values: list[Number]
    sigma: Number
    n_probes: int
    n_steps: int


class EigenCheck(_Open):
    converged: bool
    reason: str


class Curvature(_Open):
    top_eigenvalues: list[Number]
    min_eigenvalue: Number
    trace: Trace
    gradient_norm: Number
    loss: Number
    n_samples: int
    density: Density | None
    eigen: EigenCheck | None
    n_hvp: int | None
    seconds: dict[str, Number] | None  # per estimator
    balanced_top_eigenvalue: Number
    balancing_scales: dict[str, Number] | None  # per layer


class Slice1D(_Open):
    alphas: list[float]
    loss: list[Number]
    accuracy: list[Number]


class Slice2D(_Open):
    alphas: list[float]
    betas: list[float]
    loss: list[list[Number]]  # loss[i][j] at (alphas[i], betas[j])
    accuracy: list[list[Number]]


class Landscape(_Open):
    eigen_1d: Slice1D | None
    eigen_normalized_1d: Slice1D | None
    random_1d: Slice1D | None
    eigen_2d: Slice2D | None
    random_2d: Slice2D | None


class History(_Open):
    """Per epoch; an entry is None where the epoch did not measure it."""

    epoch: list[int]
    train_loss: list[Number]
    train_accuracy: list[Number]
    full_train_loss: list[Number]
    full_train_accuracy: list[Number]
    test_loss: list[Number]
    test_accuracy: list[Number]
    gradient_norm: list[Number]
    lr: list[Number]
    wall_time: list[Number]


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
    stop_reason: str | None
    diverged_epoch: int | None
    train_loss: Number
    train_accuracy: FractionValue
    test_loss: Number
    test_accuracy: FractionValue
    val_loss: Number
    val_accuracy: FractionValue
    generalization_gap: Number
    gap_stderr: Number
    hyperparameters: dict[str, HyperparameterValue]  # per grid axis
    levels: dict[str, int]  # per grid axis: the value's position in its list
    weight_norm: Number
    distance_from_init: Number
    layer_norms: dict[str, float]  # per layer
    curvature: Curvature | None
    sharpness: dict[str, Number] | None  # per sharpness measure
    landscape: Landscape | None
    history: History
    train_seconds: float
    analysis_seconds: dict[str, float]  # per analysis stage
    train_core_seconds: float | None = None  # process CPU time; None: not recorded (older results)
    analysis_core_seconds: dict[str, float | None] = {}  # per analysis stage, as train_core_seconds
    values: dict[str, Number]  # every quantity the statistics rank, flat

    @property
    def is_minimum(self) -> bool:
        return counts_as_minimum(self.status, self.converged)

    def value(self, quantity: str) -> float | None:
        return self.values.get(quantity)


# ---- aggregates, correlations, claims -----------------------------------------------------------

class Stat(_Open):
    mean: Number
    std: Number
    n: int


class Aggregate(_Open):
    optimizer: Optimizer
    n: int
    n_ok: int
    n_converged: int
    metrics: dict[str, Stat]  # per quantity
    layer_norms: dict[str, Stat]  # per layer, in the network's order


class VersusBaseline(_Open):
    baseline: str
    difference: Number
    ci95: Interval


class Correlation(_Open):
    measure: str
    target: Target
    kind: Kind
    kendall_tau: Number
    spearman: Number
    ci95: Interval
    p_value: Number
    p_holm: Number
    partial_tau: Number
    partial_ci95: Interval
    psi_ci95: Interval
    psi_groups: dict[str, int]  # per grid axis
    versus_baseline: VersusBaseline | None
    significant: bool
    direction: Literal["positive", "negative", "undetermined"]
    psi: dict[str, Number]  # per grid axis
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
    ci95: Interval
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
    seed_sd: Number


class Extreme(_Open):
    quantity: str
    sharpest: Optimizer
    sharpest_mean: float
    flattest: Optimizer
    flattest_mean: float
    ratio: Number
    n_optimizers: int


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
    hyperparameters: dict[str, HyperparameterValue]
    n: int
    n_converged: int
    metrics: dict[str, Stat]


class Statistics(_Open):
    alpha: float
    deterministic: bool
    holm_over: list[Kind]
    n_converged: int


# ---- the study's setup ---------------------------------------------------------------------------

class Data(_Open):
    dataset: str
    display_name: str
    source: str
    sha256: dict[str, str]  # per file of the data set
    n_train: int
    n_test: int
    split_train: int | None
    split_test: int | None
    train_indices_sha256: str | None
    n_val: int
    val_indices_sha256: str | None
    validation_rule: str
    data_seed: int
    preprocessing: str


class ModelInfo(_Open):
    variant: Literal["modern", "seed"]
    activation: str
    pooling: str
    input_size: int
    n_params: int


class Settings(_Open):
    """Each stage's settings as its TOML table (minima.config validates them); a setting the grid
    varies holds the levels its runs used."""

    train: dict[str, Setting]
    curvature: dict[str, Setting]
    sharpness: dict[str, Setting]
    landscape: dict[str, Setting]
    dinh: dict[str, Setting]


class OptimizerGrid(_Open):
    """An optimizer's learning rates and its other hyperparameters (extra fields, per optimizer);
    weight decay the grid's levels where it varies."""

    lr: list[float]
    weight_decay: float | list[float] | None = None
    sam_base: Optimizer | None = None


class AxisGrid(_Open):
    """One optimizer's levels of every grid axis."""

    lr: list[float]
    weight_decay: list[float]
    batch_size: list[int]
    label_noise: list[float]
    lr_by_batch: dict[str, list[float]]  # per batch size: the learning rates it runs


class Design(_Open):
    axes: list[str]
    grid: dict[str, AxisGrid]  # per optimizer
    seeds: list[int]
    n_runs: int
    n_configurations: int
    n_converged: int
    n_capped: int
    n_diverged: int
    gap_min: Number
    gap_max: Number
    gap_spread: Number
    gap_stderr_median: Number
    gap_seed_sd: Number
    train_loss_min: Number
    train_loss_max: Number
    stop_loss: float
    stop_early: bool
    max_epochs: int
    optimizers_converged: list[Optimizer]


class Best(_Open):
    """The optimizer whose validation-tuned runs reach the best validation accuracy, and those
    runs' test accuracy (mean, std, n)."""

    optimizer: Optimizer
    mean: Number
    std: Number
    n: int
    val_accuracy: Number


class TunedOptimizer(_Open):
    optimizer: Optimizer
    n_cells: int
    chosen_lrs: list[float]
    val_accuracy: Stat
    test_accuracy: Stat


class LrOptimum(_Open):
    optimizer: Optimizer
    fixed: dict[str, HyperparameterValue]  # the other grid axes' values of this cell
    lrs: list[float]
    best_lr: float
    val_accuracy: float
    at_edge: bool
    n_seeds: int


class Tuning(_Open):
    available: bool
    per_optimizer: list[TunedOptimizer]
    lr_optima: list[LrOptimum]
    n_at_edge: int
    best: Best | None


class Interpolation(_Open):
    a: Optimizer
    b: Optimizer
    run_a: str
    run_b: str
    alphas: list[float]
    loss: list[Number]
    accuracy: list[Number]
    barrier: Number


class DinhRow(_Open):
    """One scale of the rescaling; each sharpness measure is an extra field."""

    scale: float
    top_eigenvalue: Number
    trace: Number
    test_accuracy: FractionValue
    max_logit_change: Number


class DinhInfo(_Open):
    applicable: bool
    run: str | None
    optimizer: Optimizer | None
    seed: int | None
    layers: list[str] | None
    note: str | None
    reference_test_accuracy: Number
    converged: bool
    moved_factor: float
    stable_factor: float
    scale_min: Number
    scale_max: Number
    factors: dict[str, Number]  # per quantity: max/min over the scales, None where a value is <= 0
    moved: list[str]
    stable: list[str]
    nonpositive: list[str]
    accuracy_min: Number
    accuracy_max: Number
    max_logit_change: Number


class OriginalRow(_Open):
    optimizer: Optimizer
    original_test_accuracy: float
    test_accuracy_mean: Number
    test_accuracy_std: Number
    n: int
    difference: Number


class Difference(_Open):
    """One setting where the profile departs from the original study: values, not text."""

    setting: str  # a setup key, or a hyperparameter when `optimizer` is set
    optimizer: Optimizer | None
    ours: Setting
    original: Setting


class OriginalStudy(_Open):
    comparable: bool
    reason: str
    same_setup: bool
    rows: list[OriginalRow]
    differences: list[Difference]


class Subsets(_Open):
    """Images per analysis stage where it uses a fixed subset of the training set (else None)."""

    curvature: int | None
    sharpness: int | None
    landscape: int | None


class Limitations(_Open):
    n_seeds: int
    subsets: Subsets
    capped: list[str]
    diverged: list[str]
    lanczos_unconverged: int
    trace_rel_stderr_max: Number
    trace_probes: int
    landscape_runs: Coverage
    density_runs: Coverage


class Environment(_Open):
    python: str
    torch: str
    cuda: str | None
    device: str
    cpu: str | None
    platform: str
    threads: int


# ---- the summary -----------------------------------------------------------------------------

Outcome = Literal["replicates", "contradicted", "undecided"]


class ClaimCell(_Open):
    """One claim on one dataset (all None where that dataset did not test it)."""
    verdict: Verdict | None
    value: Number
    ci95: Interval
    n_clusters: int | None
    p: Number
    p_holm: Number
    unit: str | None


class ReplicationRow(_Open):
    id: str
    claim: str
    source: str
    cells: list[ClaimCell]  # per dataset, in `Replication.datasets` order
    outcome: Outcome
    reason: str


class Replication(_Open):
    """The same design on several datasets (minima.replication): the primary's study is the
    summary itself; every other member's whole summary is in `members`."""
    profiles: Annotated[list[str], Field(min_length=2)]
    datasets: Annotated[list[str], Field(min_length=2)]  # display names, primary first
    rule: str
    table: list[ReplicationRow]
    counts: dict[Outcome, int]
    timing_total: float
    n_runs: int
    members: Annotated[list["Summary"], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_cell_per_dataset(self) -> "Replication":
        if len(self.members) != len(self.datasets) - 1 or len(self.profiles) != len(self.datasets):
            raise ValueError(f"{len(self.datasets)} datasets need {len(self.datasets) - 1} member summaries and "
                             f"{len(self.datasets)} profiles")
        bad = [row.id for row in self.table if len(row.cells) != len(self.datasets)]
        if bad:
            raise ValueError(f"claim {bad[0]!r}: needs one cell per dataset")
        return self


class Summary(_Open):
    schema_: Literal[4] = Field(alias="schema")
    profile: str
    profile_ref: str
    profile_description: str
    git_commit: str
    git_dirty: bool
    created_by: str
    data: Data
    model: ModelInfo
    settings: Settings
    seeds: list[int]
    optimizers: dict[str, OptimizerGrid]  # per optimizer
    measures: dict[str, str]  # per measure: its description
    measure_kinds: dict[str, Kind]  # per measure, in the study's order
    targets: list[Target]
    design: Design
    statistics: Statistics
    noise_floor: dict[str, Agreement]  # per quantity
    extremes: list[Extreme]
    extremes_tally: ExtremesTally | None
    best: Best | None
    tuning: Tuning
    configurations: list[Configuration]
    interpolation: Interpolation | None
    runs: Annotated[list[Run], Field(min_length=1)]
    aggregates: list[Aggregate]
    correlations: list[Correlation]
    claims: list[Claim]
    dinh: list[DinhRow]
    dinh_info: DinhInfo
    original_study: OriginalStudy
    limitations: Limitations
    timing: dict[str, float]  # seconds per stage, and their total
    core_timing: dict[str, float | None] | None = None  # core-seconds (CPU time) per stage, keyed like timing
    environment: Environment
    replication: Replication | None = None  # several datasets (a replication profile)

    def studies(self) -> list["Summary"]:
        """This study, then each other dataset's (a replication profile's members)."""
        return [self, *(self.replication.members if self.replication else [])]

    def converged_runs(self) -> list[Run]:
        return [r for r in self.runs if r.is_minimum]

    def ok_runs(self) -> list[Run]:
        """The runs that did not diverge (converged or capped)."""
        return [r for r in self.runs if r.status == "ok"]

    def run_by_hash(self, run_hash: str | None) -> Run | None:
        return next((r for r in self.runs if r.run == run_hash), None)

    def claim(self, claim_id: str) -> Claim | None:
        return next((c for c in self.claims if c.id == claim_id), None)

    def claims_with(self, verdict: str) -> list[Claim]:
        return [c for c in self.claims if c.verdict == verdict]

    def measures_of(self, *kinds: str) -> list[str]:
        """Measure names of the given kinds (every kind when none is given), in the study's order."""
        wanted = kinds or KINDS
        return [m for m, kind in self.measure_kinds.items() if kind in wanted]

    def correlations_of(self, target: str = GAP) -> list[Correlation]:
        return [c for c in self.correlations if c.target == target]

    def correlation(self, measure: str, target: str = GAP) -> Correlation | None:
        return next((c for c in self.correlations_of(target) if c.measure == measure), None)

    def aggregate(self, optimizer: str) -> Aggregate | None:
        return next((a for a in self.aggregates if a.optimizer == optimizer), None)

    def axis_levels(self, axis: str) -> list[HyperparameterValue]:
        """The levels of a hyperparameter axis over every optimizer's grid, ascending."""
        return sorted({level for grid in self.design.grid.values() for level in getattr(grid, axis, None) or []})

    def dinh_quantities(self) -> list[str]:
        """What the rescaling rows measured: the Hessian quantities, the sharpness measures, accuracy."""
        wanted = [*RESCALED_CURVATURE, *self.measures_of("sharpness"), "test_accuracy"]
        return [q for q in wanted if any(isinstance(dinh_value(row, q), (int, float)) for row in self.dinh)]


def dinh_value(row: DinhRow, quantity: str) -> Any:
    """A rescaling row's value of a quantity (the sharpness measures are its extra fields)."""
    return getattr(row, quantity, None)


# A corrupt or outdated summary cannot be trusted to say which profile and root built it, so the
# advice names what the user must repeat.
ERRORS_SHOWN = 3  # a validation error names this many problems, then their count
REBUILD = "rebuild it with `make report` and the PROFILE= (and ROOT=) that built it"


def parse_summary(summary: Any, *, where: str = "summary") -> Summary:
    """The summary as its model, or a MinimaError naming its first few bad fields and their count on one line."""
    if not isinstance(summary, dict):
        raise MinimaError(f"{where}: expected a JSON object, got {type(summary).__name__}")
    if summary.get("schema") != SCHEMA_VERSION:
        raise MinimaError(f"{where}: schema {summary.get('schema')!r} is not supported (expected {SCHEMA_VERSION}); "
                          + REBUILD)
    try:
        return Summary.model_validate(summary)
    except ValidationError as exc:
        raise MinimaError(describe(exc, where, first=ERRORS_SHOWN)) from None


def validate_summary(summary: Any, *, where: str = "summary") -> dict:
    """The summary itself (a dict), once the schema accepts it (see parse_summary)."""
    parse_summary(summary, where=where)
    return summary


def _read(path) -> Any:
    try:
        return read_json(path)
    except CorruptFile as exc:
        raise MinimaError(f"{exc}; {REBUILD}") from None


def load_summary(path) -> dict:
    """summary.json as a validated dict (what the analysis writes and the tests change)."""
    return validate_summary(_read(path), where=str(path))


def read_summary(path) -> Summary:
    """summary.json as its model: what the report reads."""
    return parse_summary(_read(path), where=str(path))


Replication.model_rebuild()
