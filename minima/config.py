"""Profiles: one TOML file describes a whole study; each (optimizer, seed) pair becomes a run.

A run's identity is the hash of everything that decides its trained weights (data, model,
optimizer and its hyperparameters, seed, training settings, dtype). Analyses store the settings
they ran with beside their results, so changing an analysis setting recomputes that analysis
only, and changing one optimizer's hyperparameters retrains only that optimizer's runs.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minima import paths
from minima.curvature import CurvatureSettings
from minima.io import MinimaError
from minima.landscape import LandscapeSettings
from minima.models import VARIANTS
from minima.optimizers import OPTIMIZERS, OptimizerConfig
from minima.reparam import DinhSettings
from minima.settings import SettingsError, from_table, to_table
from minima.sharpness import SharpnessSettings
from minima.train import TrainSettings

DATASETS = ("mnist", "fashion-mnist")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class StudySettings:
    description: str = ""
    dataset: str = "mnist"
    model: str = "modern"
    seeds: tuple[int, ...] = (0,)
    optimizers: tuple[str, ...] = ("sgd", "sgd_momentum", "adagrad", "adam", "adahessian", "sam")
    # Train/test on the first n images only (0 = the whole split): for tests and smoke runs.
    n_train: int = 0
    n_test: int = 0
    dtype: str = "float32"
    device: str = "auto"
    # Linear interpolation between the first-seed minima of these two optimizers ([] = none).
    interpolate: tuple[str, ...] = ("sgd", "adam")
    # Whose first-seed minimum Dinh's rescaling is applied to.
    dinh_optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.model not in VARIANTS:
            raise ValueError(f"model: unknown model {self.model!r}; choose one of {', '.join(VARIANTS)}")
        if not self.seeds:
            raise ValueError("seeds: at least one seed is needed")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds: must be distinct non-negative integers, got {list(self.seeds)}")
        if not self.optimizers:
            raise ValueError("optimizers: at least one optimizer is needed")
        unknown = [name for name in self.optimizers if name not in OPTIMIZERS]
        if unknown:
            raise ValueError(f"optimizers: unknown optimizer {unknown[0]!r}; choose from {', '.join(OPTIMIZERS)}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ValueError(f"optimizers: listed twice in {list(self.optimizers)}")
        if self.n_train < 0 or self.n_test < 0:
            raise ValueError("n_train/n_test: must be >= 0 (0 means the whole split)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device: unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.interpolate and (len(self.interpolate) != 2 or not set(self.interpolate) <= set(self.optimizers)):
            raise ValueError(f"interpolate: needs two of the profile's optimizers, got {list(self.interpolate)}")
        if self.dinh_optimizer not in self.optimizers:
            raise ValueError(f"dinh_optimizer: {self.dinh_optimizer!r} is not among the profile's optimizers")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides one run's trained weights."""

    dataset: str
    model: str
    optimizer: OptimizerConfig
    seed: int
    train: TrainSettings
    dtype: str
    n_train: int = 0
    n_test: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "model_spec": to_table(VARIANTS[self.model]),
            "optimizer": to_table(self.optimizer),
            "seed": self.seed,
            "train": to_table(self.train),
            "dtype": self.dtype,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }

    @property
    def run_hash(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def group_key(self) -> str:
        """Runs that differ only in seed can be trained together as one stacked model."""
        identity = {k: v for k, v in self.to_json().items() if k != "seed"}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    study: StudySettings
    train: TrainSettings
    optimizers: dict[str, OptimizerConfig]
    curvature: CurvatureSettings
    sharpness: SharpnessSettings
    landscape: LandscapeSettings
    dinh: DinhSettings
    runs: tuple[RunConfig, ...] = field(default=())

    def run(self, run_hash: str) -> RunConfig:
        for run in self.runs:
            if run.run_hash == run_hash:
                return run
        raise MinimaError(f"run {run_hash!r} is not part of profile {self.name!r}")

    def first_seed_run(self, optimizer: str) -> RunConfig:
        return next(r for r in self.runs if r.optimizer.name == optimizer and r.seed == self.study.seeds[0])

    def settings_json(self) -> dict[str, Any]:
        return {
            "study": to_table(self.study),
            "train": to_table(self.train),
            "curvature": to_table(self.curvature),
            "sharpness": to_table(self.sharpness),
            "landscape": to_table(self.landscape),
            "dinh": to_table(self.dinh),
        }


SECTIONS = {
    "train": TrainSettings,
    "curvature": CurvatureSettings,
    "sharpness": SharpnessSettings,
    "landscape": LandscapeSettings,
    "dinh": DinhSettings,
}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in paths.PROFILES_DIR.glob("*.toml"))


def resolve_profile_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if not candidate.exists():
            raise MinimaError(f"profile file not found: {candidate}")
        return candidate
    path = paths.PROFILES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise MinimaError(f"unknown profile {name_or_path!r}; choose one of {', '.join(available_profiles())} or give a .toml path")
    return path


def load_profile(name_or_path: str) -> Profile:
    path = resolve_profile_path(name_or_path)
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MinimaError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return parse_profile(path.stem, path, table)
    except SettingsError as exc:
        raise MinimaError(f"{path.name}: {exc}") from exc


def parse_profile(name: str, path: Path, table: dict[str, Any]) -> Profile:
    table = dict(table)
    sections = {key: from_table(cls, table.pop(key, None), key) for key, cls in SECTIONS.items()}
    optimizer_tables = table.pop("optimizer", {})
    study = from_table(StudySettings, table, "profile")
    if not isinstance(optimizer_tables, dict):
        raise SettingsError("optimizer: expected tables [optimizer.<name>]")
    extra = sorted(set(optimizer_tables) - set(study.optimizers))
    if extra:
        raise SettingsError(f"optimizer.{extra[0]}: configured but not listed in optimizers = {list(study.optimizers)}")
    optimizers = {}
    for name_ in study.optimizers:
        hyper = dict(optimizer_tables.get(name_, {}))
        if "name" in hyper:
            raise SettingsError(f"optimizer.{name_}: the key 'name' is implied by the table name")
        optimizers[name_] = from_table(OptimizerConfig, {"name": name_, **hyper}, f"optimizer.{name_}")
    runs = tuple(
        RunConfig(study.dataset, study.model, optimizers[o], seed, sections["train"], study.dtype, study.n_train, study.n_test)
        for o in study.optimizers
        for seed in study.seeds
    )
    return Profile(name=name, path=path, study=study, optimizers=optimizers, runs=runs, **sections)
