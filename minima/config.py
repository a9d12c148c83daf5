"""Profiles: one TOML file describes a whole study, a designed grid of runs.

A profile lists optimizers and seeds, and may give lists for the grid's axes: per-optimizer
`lr` and `weight_decay` (in `[optimizer.<name>]`), `batch_size` (in `[train]` for all
optimizers, or per optimizer) and `label_noise` (in `[train]`). Runs are the product of every
axis's values, per optimizer, times the seeds; single values are a grid of one. Runs differing
only by seed form a *configuration*.

`lr_batch_scaling` ("none", "sqrt" or "linear") moves each batch size's learning-rate grid with
the batch size: the listed rates are those of the smallest batch size B0, and at batch size B each
is multiplied by sqrt(B / B0) (Hoffer et al. 2017; Malladi et al. 2022 for adaptive methods) or
B / B0 (Goyal et al. 2017). With rates a factor of 2 apart and B = 32, 128 under "sqrt", the
grids overlap in two rates (equal learning rate across batch sizes) and hold two pairs at equal
lr / B: both comparisons of the batch-size claims have configurations, and every batch size
keeps its own validation optimum inside its own grid.

A run's identity is the hash of everything that decides its trained weights (data set, training
subset rule, model, optimizer and its hyperparameters, seed, training settings, dtype). Analyses
store the settings they ran with beside their results, so changing an analysis setting
recomputes that analysis only, and adding a grid value trains only the new runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from minima import paths
from minima.data import DISPLAY_NAMES, SPLIT_SIZES, available_validation
from minima.io import MinimaError
from minima.settings import OPTIMIZERS, NonNegativeInt, Optimizer, SettingsError, from_table, settings, to_table
from minima.specs import (VARIANTS, CurvatureSettings, DinhSettings, LandscapeSettings, OptimizerConfig,
                          SharpnessSettings, TrainSettings)

# The training subset is a pure function of the data set (fixed by its checksums), n_train,
# data_seed and this rule; the rule's name enters the run hash so a new rule retrains.
SUBSET_RULE = "class-stratified (proportional, largest remainder), numpy default_rng(data_seed)"
VALIDATION_RULE = ("class-stratified among the training split's images outside the training subset, "
                   "numpy default_rng([data_seed, 2]), labels never flipped")
AXES = ("optimizer", "lr", "batch_size", "weight_decay", "label_noise")
_OPTIMIZER_GRID_KEYS = ("lr", "weight_decay", "batch_size")
_TRAIN_GRID_KEYS = ("batch_size", "label_noise")


@settings
class StudySettings:
    description: str = ""
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    model: Literal["modern", "seed"] = "modern"
    seeds: Annotated[tuple[NonNegativeInt, ...], Field(min_length=1)] = (0,)
    optimizers: Annotated[tuple[Optimizer, ...], Field(min_length=1)] = OPTIMIZERS
    # A class-stratified subset of n images (0: the whole split), the same for every run.
    n_train: NonNegativeInt = 0
    n_test: NonNegativeInt = 0
    # Validation images drawn from the training split's images the subset leaves (all that remain
    # when fewer; none when n_train is the whole split): what the study chooses, it chooses on them.
    n_val: NonNegativeInt = 10000
    data_seed: NonNegativeInt = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Linear interpolation between the first minima of these two optimizers ([] = none).
    interpolate: tuple[Optimizer, ...] = ("sgd", "adam")
    # Whose first converged minimum Dinh's rescaling is applied to (none converged: not testable).
    dinh_optimizer: Optimizer = "sgd"
    # How each batch size's learning-rate grid moves with it (the listed rates: the smallest batch's).
    lr_batch_scaling: Literal["none", "sqrt", "linear"] = "none"

    @property
    def validation_size(self) -> int:
        """The validation images this study gets (n_val where the split allows, else what remains)."""
        return available_validation(SPLIT_SIZES[self.dataset][0], self.n_train, self.n_val)

    def __post_init__(self) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: must be distinct, got {list(self.seeds)}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"optimizers: listed twice in {list(self.optimizers)}")
        n_train, n_test = SPLIT_SIZES[self.dataset]
        name = DISPLAY_NAMES[self.dataset]
        if self.n_train > n_train:
            raise ValueError(f"n_train: {self.n_train} exceeds the {n_train} images of the {name} training split")
        if self.n_test > n_test:
            raise ValueError(f"n_test: {self.n_test} exceeds the {n_test} images of the {name} test split")
        if self.interpolate and (len(self.interpolate) != 2 or not set(self.interpolate) <= set(self.optimizers)):
            raise ValueError(f"interpolate: needs two of the profile's optimizers, got {list(self.interpolate)}")
        if self.dinh_optimizer not in self.optimizers:
            raise ValueError(f"dinh_optimizer: {self.dinh_optimizer!r} is not among the profile's optimizers")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides one run's trained weights, and its place in the grid."""

    dataset: str
    model: str
    optimizer: OptimizerConfig
    seed: int
    train: TrainSettings
    dtype: str
    n_train: int = 0
    n_test: int = 0
    data_seed: int = 0
    n_val: int = 0  # validation images (already limited to what the split leaves)
    levels: tuple[tuple[str, int], ...] = ()  # axis -> index of this run's value (not hashed)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "model_spec": to_table(VARIANTS[self.model]),
            "optimizer": to_table(self.optimizer),
            "seed": self.seed,
            "train": self.train.identity(),
            "dtype": self.dtype,
            "data": {"n_train": self.n_train, "n_test": self.n_test, "data_seed": self.data_seed, "subset_rule": SUBSET_RULE,
                     "n_val": self.n_val, "validation_rule": VALIDATION_RULE},
        }

    @property
    def run_hash(self) -> str:
        return _digest(self.to_json())

    @property
    def configuration(self) -> str:
        """Runs that differ only in seed share a configuration (and can train stacked)."""
        return _digest({k: v for k, v in self.to_json().items() if k != "seed"})

    @property
    def label(self) -> str:
        return f"{self.optimizer.name} lr {self.optimizer.lr:g} B {self.train.batch_size} seed {self.seed}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Profile:
    name: str
    ref: str  # as the user gave it (a name or a path): what advice messages repeat
    path: Path
    study: StudySettings
    train: TrainSettings
    optimizers: dict[str, OptimizerConfig]  # each optimizer's first grid point (setup tables)
    curvature: CurvatureSettings
    sharpness: SharpnessSettings
    landscape: LandscapeSettings
    dinh: DinhSettings
    runs: tuple[RunConfig, ...] = field(default=())
    axes: tuple[str, ...] = ()  # grid axes with more than one value
    grid: dict[str, dict[str, list]] = field(default_factory=dict)  # optimizer -> axis -> values

    def run(self, run_hash: str) -> RunConfig:
        for run in self.runs:
            if run.run_hash == run_hash:
                return run
        raise MinimaError(f"run {run_hash!r} is not part of profile {self.ref!r}")

    def first_run(self, optimizer: str) -> RunConfig:
        """The optimizer's first configuration, first seed: where Dinh and interpolation look."""
        return next(r for r in self.runs if r.optimizer.name == optimizer)

    def is_first_seed(self, run: RunConfig) -> bool:
        return run.seed == self.study.seeds[0]

    def hyperparameters(self, run: RunConfig) -> dict[str, Any]:
        """lr and batch size, and every other axis this grid varies."""
        values = {"lr": run.optimizer.lr, "batch_size": run.train.batch_size}
        if "weight_decay" in self.axes:
            values["weight_decay"] = run.optimizer.weight_decay
        if "label_noise" in self.axes:
            values["label_noise"] = run.train.label_noise
        return values

    def levels(self, axis: str) -> Any:
        """What the runs used on one grid axis, as the report states it: the value when every
        run used the same, the list of levels when they vary, per optimizer where the optimizers'
        levels differ. Never `[train]`'s default where the grid overrode it."""
        per = {name: grid[axis] for name, grid in self.grid.items()}
        stated = {name: values[0] if len(values) == 1 else list(values) for name, values in per.items()}
        distinct = {repr(v) for v in stated.values()}
        return next(iter(stated.values())) if len(distinct) == 1 else stated

    def settings_json(self) -> dict[str, Any]:
        # batch_size and label_noise are grid axes: [train] holds only the default the grid
        # started from (the report once stated batch_size = 128 for runs at 32 and 64)
        train = {**to_table(self.train), **{axis: self.levels(axis) for axis in _TRAIN_GRID_KEYS}}
        return {
            "study": to_table(self.study),
            "train": train,
            "curvature": to_table(self.curvature),
            "sharpness": to_table(self.sharpness),
            "landscape": to_table(self.landscape),
            "dinh": to_table(self.dinh),
        }


SECTIONS = {
    "curvature": CurvatureSettings,
    "sharpness": SharpnessSettings,
    "landscape": LandscapeSettings,
    "dinh": DinhSettings,
}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in paths.PROFILES_DIR.glob("*.toml"))


def resolve_profile_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if candidate.is_dir():
            raise MinimaError(f"profile {name_or_path} is a directory; give a .toml file")
        if not candidate.is_file():
            raise MinimaError(f"profile file not found: {candidate}")
        return candidate
    path = paths.PROFILES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise MinimaError(f"unknown profile {name_or_path!r}; choose one of {', '.join(available_profiles())} or give a .toml path")
    return path


def load_profile(name_or_path: str, *, warn: bool = False) -> Profile:
    """Parse and validate a profile; `warn`: print one line per silent surprise (the plan does)."""
    path = resolve_profile_path(name_or_path)
    try:
        table = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise MinimaError(f"{path}: not UTF-8 text; profiles are TOML files") from None
    except tomllib.TOMLDecodeError as exc:
        raise MinimaError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise MinimaError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    if "replicate" in table:  # minima.replication reads these; a stage of single runs cannot
        raise MinimaError(f"{path.name} is a replication profile (replicate = {table['replicate']!r}): "
                          "this command takes one of its member profiles")
    try:
        profile = parse_profile(path.stem, path, table, ref=name_or_path)
    except SettingsError as exc:
        raise MinimaError(f"{path.name}: {exc}") from None
    if warn:
        for line in warnings(profile, table):
            print(f"minima: warning: {line}", file=sys.stderr)
    return profile


def warnings(profile: Profile, table: dict[str, Any]) -> list[str]:
    out = []
    if not table:
        out.append(f"profile {profile.ref} is empty: every default applies ({len(profile.runs)} runs, "
                   f"{', '.join(profile.study.optimizers)}, the whole training split, up to "
                   f"{profile.train.max_epochs} epochs each)")
    n_train = profile.study.n_train or SPLIT_SIZES[profile.study.dataset][0]
    batches = sorted({r.train.batch_size for r in profile.runs if r.train.batch_size > n_train})
    if batches:
        out.append(f"batch size {batches[0]} exceeds the {n_train} training images: every step uses all of them")
    return out


def _values(table: dict[str, Any], key: str, where: str) -> list[Any] | None:
    """A grid axis's values: a list as given, a scalar as a list of one, None when absent."""
    if key not in table:
        return None
    value = table.pop(key)
    values = list(value) if isinstance(value, list) else [value]
    if not values:
        raise SettingsError(f"{where}.{key}: needs at least one value")
    if len(set(map(repr, values))) != len(values):
        raise SettingsError(f"{where}.{key}: values listed twice in {values}")
    return values


def parse_profile(name: str, path: Path, table: dict[str, Any], *, ref: str | None = None) -> Profile:
    table = dict(table)
    sections = {key: from_table(cls, table.pop(key, None), key) for key, cls in SECTIONS.items()}
    train_table = dict(table.pop("train", None) or {})
    train_grid = {key: _values(train_table, key, "train") for key in _TRAIN_GRID_KEYS}
    base_train = from_table(TrainSettings, train_table, "train")
    optimizer_tables = table.pop("optimizer", {})
    study = from_table(StudySettings, table, "profile")
    if not isinstance(optimizer_tables, dict):
        raise SettingsError("optimizer: expected tables [optimizer.<name>]")
    extra = sorted(set(optimizer_tables) - set(study.optimizers))
    if extra:
        raise SettingsError(f"optimizer.{extra[0]}: configured but not listed in optimizers = {list(study.optimizers)}")
    runs, grids, firsts = [], {}, {}
    for opt_index, opt_name in enumerate(study.optimizers):
        hyper = dict(optimizer_tables.get(opt_name) or {})
        if not isinstance(hyper, dict):
            raise SettingsError(f"optimizer.{opt_name}: expected a table")
        if "name" in hyper:
            raise SettingsError(f"optimizer.{opt_name}: the key 'name' is implied by the table name")
        where = f"optimizer.{opt_name}"
        grid = {key: _values(hyper, key, where) for key in _OPTIMIZER_GRID_KEYS}
        grid["batch_size"] = grid["batch_size"] or train_grid["batch_size"] or [base_train.batch_size]
        grid["label_noise"] = train_grid["label_noise"] or [base_train.label_noise]
        smallest = min(grid["batch_size"])
        by_batch: dict[int, list[OptimizerConfig]] = {}
        for batch in grid["batch_size"]:
            factor = _lr_factor(study.lr_batch_scaling, batch, smallest)
            by_batch[batch] = [
                from_table(OptimizerConfig, {"name": opt_name, **hyper, "weight_decay": wd,
                                             "lr": None if lr is None else _scaled(lr, factor)}, where)
                for lr, wd in itertools.product(grid["lr"] or [None], grid["weight_decay"] or [0.0])]
        trains = [from_table(TrainSettings, {**train_table, "batch_size": b, "label_noise": n}, "train")
                  for b, n in itertools.product(grid["batch_size"], grid["label_noise"])]
        lr_by_batch = {b: sorted({c.lr for c in configs}) for b, configs in by_batch.items()}
        grids[opt_name] = {
            "lr": sorted({lr for lrs in lr_by_batch.values() for lr in lrs}),
            "weight_decay": sorted({c.weight_decay for c in by_batch[smallest]}),
            "batch_size": list(grid["batch_size"]),
            "label_noise": list(grid["label_noise"]),
            "lr_by_batch": {str(b): lrs for b, lrs in lr_by_batch.items()},
        }
        firsts[opt_name] = by_batch[grid["batch_size"][0]][0]
        for train in trains:
            for config in by_batch[train.batch_size]:
                levels = (
                    ("optimizer", opt_index),
                    ("lr", lr_by_batch[train.batch_size].index(config.lr)),  # position in this batch size's grid
                    ("batch_size", grids[opt_name]["batch_size"].index(train.batch_size)),
                    ("weight_decay", grids[opt_name]["weight_decay"].index(config.weight_decay)),
                    ("label_noise", grids[opt_name]["label_noise"].index(train.label_noise)),
                )
                for seed in study.seeds:
                    runs.append(RunConfig(study.dataset, study.model, config, seed, train, study.dtype,
                                          study.n_train, study.n_test, study.data_seed, study.validation_size, levels))
    axes = tuple(axis for axis in AXES if _varies(axis, study, grids))
    return Profile(name=name, ref=ref or name, path=path, study=study, train=base_train, optimizers=firsts,
                   runs=tuple(runs), axes=axes, grid=grids, **sections)


def _lr_factor(scaling: str, batch: int, smallest: int) -> float:
    if scaling == "sqrt":
        return math.sqrt(batch / smallest)
    return batch / smallest if scaling == "linear" else 1.0


def _scaled(lr: float, factor: float) -> float:
    """lr x factor, rounded to 12 significant digits so that 0.05 x 2 is the 0.1 of another list."""
    return lr if factor == 1.0 else float(f"{lr * factor:.12g}")


def _varies(axis: str, study: StudySettings, grids: dict[str, dict[str, list]]) -> bool:
    if axis == "optimizer":
        return len(study.optimizers) > 1
    if axis == "lr":
        return any(len(g["lr"]) > 1 for g in grids.values())
    return len({v for g in grids.values() for v in g[axis]}) > 1 or any(len(g[axis]) > 1 for g in grids.values())
