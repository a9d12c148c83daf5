"""The stages of a study, each one CLI call that skips work whose outputs are current.

data -> plan -> (per run) train -> curvature -> sharpness -> landscape -> (per study) dinh,
interpolate -> summarize. A per-run analysis is current when its JSON exists and records the
same settings and the same model.pt digest; anything else recomputes it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from minima import curvature as curvature_engine
from minima import data as data_stage
from minima import paths
from minima.config import Profile, RunConfig, load_profile
from minima.io import MinimaError, load_torch, read_json, save_torch, write_json, write_text
from minima.landscape import measure_interpolation
from minima.landscape import measure_landscape
from minima.models import LeNet5, build_model
from minima.objective import evaluate, params_of
from minima.optimizers import RELATIVE_STEP_COST
from minima.reparam import dinh_scales, rescale
from minima.runtime import DTYPES, default_profile, select_device
from minima.settings import to_table
from minima.sharpness import measure_all as measure_sharpness
from minima.train import TrainJob, train

DINH_JSON = "dinh.json"
INTERPOLATION_JSON = "interpolation.json"
EIGENVECTORS_PT = "eigenvectors.pt"


@dataclass(frozen=True)
class Context:
    profile: Profile
    layout: paths.Layout
    device: torch.device
    dtype: torch.dtype
    data_dir: Path | None = None
    progress: bool = True
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def run_dir(self, run: RunConfig) -> Path:
        return self.layout.run_dir(run.run_hash)

    @property
    def dataset(self) -> data_stage.Dataset:
        """The profile's data, loaded once per process and cut to n_train / n_test."""
        if "dataset" not in self._cache:
            study = self.profile.study
            full = data_stage.load_dataset(study.dataset, study.model, self.layout.data, dtype=self.dtype, device=self.device)
            cut = lambda split, n: data_stage.Split(split.x[:n], split.y[:n]) if n else split  # noqa: E731
            self._cache["dataset"] = replace(full, train=cut(full.train, study.n_train), test=cut(full.test, study.n_test))
        return self._cache["dataset"]


def open_context(profile_name: str, *, root: str | None = None, data_dir: Path | None = None, progress: bool = True) -> Context:
    name = default_profile() if profile_name == "auto" else profile_name
    profile = load_profile(name)
    device = select_device(profile.study.device)
    return Context(profile, paths.layout(root), device, DTYPES[profile.study.dtype], data_dir, progress)


# ---- data and plan -------------------------------------------------------------------------


def stage_data(ctx: Context) -> dict:
    return data_stage.provision(ctx.profile.study.dataset, ctx.layout.data, ctx.data_dir or data_stage.default_data_dir())


def _write_run_configs(ctx: Context) -> None:
    for run in ctx.profile.runs:
        path = ctx.run_dir(run) / paths.CONFIG_JSON
        record = {"run": run.run_hash, "profile": ctx.profile.name, **run.to_json()}
        if not path.exists() or read_json(path) != record:
            write_json(path, record)


def pending_runs(ctx: Context) -> list[RunConfig]:
    return [run for run in ctx.profile.runs if not run_is_current(ctx, run)]


def stage_plan(ctx: Context, makefile: Path) -> list[str]:
    """Write each run's config.json and a makefile whose targets are the work still to do.

    Runs of one optimizer configuration form one target when seeds are trained together, so
    `make -j` never trains a stacked group twice. Targets run longest first. GNU make does not go back to a target whose
    prerequisites were still running when it passed it, so the Dinh study (minutes) is chained
    into the recipe of the run it reads, which comes first: it then overlaps the other runs
    under `make -j`. The `study` target does the rest (the interpolation, about a second).
    """
    _write_run_configs(ctx)
    todo = {run.run_hash for run in pending_runs(ctx)}
    groups: dict[str, list[RunConfig]] = {}
    for run in ctx.profile.runs:
        key = run.group_key if ctx.profile.train.stack_seeds else run.run_hash
        groups.setdefault(key, []).append(run)
    dinh_run = study_runs(ctx)[0].run_hash
    dinh_key = next(key for key, runs in groups.items() if any(r.run_hash == dinh_run for r in runs))
    dinh_todo = not study_is_current(ctx, ["dinh"])
    # longest first (the Dinh chain, then by step cost): the cores stay busy until the end
    cost = {key: sum(RELATIVE_STEP_COST.get(r.optimizer.name, 1.0) for r in runs) for key, runs in groups.items()}
    order = [dinh_key] + sorted((k for k in groups if k != dinh_key), key=lambda k: -cost[k])
    profile_arg = str(ctx.profile.path)
    lines = ["# Generated by `python -m minima plan`: the work still to do for this profile.", ".PHONY: all-runs study"]
    for key in order:
        runs = groups[key]
        lines += [f".PHONY: train-{key}", f"train-{key}:"]
        if any(r.run_hash in todo for r in runs):
            lines.append(f"\t$(MINIMA) run --profile {profile_arg} {' '.join(f'--run {r.run_hash}' for r in runs)}")
        if key == dinh_key and dinh_todo:
            lines.append(f"\t$(MINIMA) study --profile {profile_arg} --kind dinh")
    study_todo = not study_is_current(ctx)
    targets = " ".join(f"train-{key}" for key in order)
    lines += [f"study: {targets}"] + ([f"\t$(MINIMA) study --profile {profile_arg}"] if study_todo else [])
    lines += [f"all-runs: {targets} study", ""]
    write_text(makefile, "\n".join(lines))
    pending = sorted(todo) + (["study"] if study_todo else [])
    return pending


# ---- per-run stages ------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _metrics(ctx: Context, run: RunConfig) -> dict | None:
    path = ctx.run_dir(run) / paths.METRICS_JSON
    return read_json(path) if path.exists() else None


def is_trained(ctx: Context, run: RunConfig) -> bool:
    metrics = _metrics(ctx, run)
    return bool(metrics) and metrics.get("status") in ("ok", "diverged") and (ctx.run_dir(run) / paths.MODEL_PT).exists()


def _analysis_is_current(path: Path, settings: dict, model_sha: str) -> bool:
    if not path.exists():
        return False
    try:
        record = read_json(path)
    except MinimaError:
        return False
    return record.get("settings") == settings and record.get("model_sha256") == model_sha


ANALYSES = (
    (paths.CURVATURE_JSON, "curvature"),
    (paths.SHARPNESS_JSON, "sharpness"),
    (paths.LANDSCAPE_JSON, "landscape"),
)


def _analysis_settings(ctx: Context, kind: str) -> dict:
    settings = to_table(getattr(ctx.profile, kind))
    if kind == "landscape":
        # The landscape slices along the top eigenvectors: new curvature settings, new landscape.
        settings["curvature"] = to_table(ctx.profile.curvature)
    return settings


def run_is_current(ctx: Context, run: RunConfig) -> bool:
    if not is_trained(ctx, run):
        return False
    model_sha = _digest(ctx.run_dir(run) / paths.MODEL_PT)
    return all(
        _analysis_is_current(ctx.run_dir(run) / name, _analysis_settings(ctx, kind), model_sha) for name, kind in ANALYSES
    )


def stage_train(ctx: Context, runs: list[RunConfig]) -> None:
    todo = [run for run in runs if not is_trained(ctx, run)]
    if not todo:
        return
    _write_run_configs(ctx)
    data = ctx.dataset
    # Stacked training needs one optimizer configuration per call.
    by_optimizer: dict[str, list[RunConfig]] = {}
    for run in todo:
        by_optimizer.setdefault(run.group_key, []).append(run)
    for group in by_optimizer.values():
        jobs = [TrainJob(run_dir=ctx.run_dir(r), variant=r.model, optimizer=r.optimizer, seed=r.seed) for r in group]
        train(jobs, ctx.profile.train, data.train.x, data.train.y, data.test.x, data.test.y, device=ctx.device, dtype=ctx.dtype, progress=ctx.progress)


def load_trained(ctx: Context, run: RunConfig) -> LeNet5:
    model = build_model(run.model, seed=run.seed, dtype=ctx.dtype, device=ctx.device)
    state = load_torch(ctx.run_dir(run) / paths.MODEL_PT)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise MinimaError(f"corrupt checkpoint {ctx.run_dir(run) / paths.MODEL_PT}: not a LeNet-5 {run.model} state_dict") from exc
    return model.to(device=ctx.device, dtype=ctx.dtype)


def _subset(ctx: Context, n_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int] | None]:
    train = ctx.dataset.train
    indices = data_stage.subset_indices(len(train.y), n_samples, seed)
    if indices is None:
        return train.x, train.y, None
    index = torch.tensor(indices, device=train.x.device)
    return train.x[index], train.y[index], indices


def _record(settings: dict, model_sha: str, indices: list[int] | None, seconds: float, values: dict) -> dict:
    # The stage's own keys come last: a result's own "settings" must not mask what decides currency.
    record = {**values, "settings": settings, "model_sha256": model_sha, "stage_seconds": seconds}
    if indices is not None:
        record["indices"] = indices
    return record


def _skip_record(settings: dict, model_sha: str, reason: str) -> dict:
    return {"settings": settings, "model_sha256": model_sha, "status": "skipped", "reason": reason}


def stage_analyses(ctx: Context, run: RunConfig, kinds: tuple[str, ...] = ("curvature", "sharpness", "landscape")) -> None:
    """Curvature, then sharpness and landscape (the landscape needs the top eigenvectors)."""
    _require_trained(ctx, run)
    directory = ctx.run_dir(run)
    model_sha = _digest(directory / paths.MODEL_PT)
    diverged = (_metrics(ctx, run) or {}).get("status") == "diverged"
    for name, kind in ANALYSES:
        if kind not in kinds:
            continue
        settings = _analysis_settings(ctx, kind)
        path = directory / name
        if _analysis_is_current(path, settings, model_sha):
            continue
        if diverged:
            write_json(path, _skip_record(settings, model_sha, "training diverged"))
            continue
        started = time.perf_counter()
        values, indices = ANALYSIS_FUNCTIONS[kind](ctx, run)
        record = _record(settings, model_sha, indices, time.perf_counter() - started, values)
        record["n_samples_total"] = len(ctx.dataset.train.y)  # what the indices index into
        write_json(path, record)


def _curvature(ctx: Context, run: RunConfig) -> tuple[dict, list[int] | None]:
    settings = ctx.profile.curvature
    x, y, indices = _subset(ctx, settings.n_samples, settings.seed)
    result = curvature_engine.measure(load_trained(ctx, run), x, y, settings, device=ctx.device, dtype=ctx.dtype, progress=ctx.progress)
    save_torch(ctx.run_dir(run) / EIGENVECTORS_PT, result.vectors.detach().cpu())
    return result.to_json(), indices


def _sharpness(ctx: Context, run: RunConfig) -> tuple[dict, list[int] | None]:
    settings = ctx.profile.sharpness
    x, y, indices = _subset(ctx, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    return measure_sharpness(model, params_of(model), x, y, settings, device=ctx.device, dtype=ctx.dtype).to_json(), indices


def _landscape(ctx: Context, run: RunConfig) -> tuple[dict, list[int] | None]:
    settings = ctx.profile.landscape
    if run.seed != ctx.profile.study.seeds[0]:
        return {"status": "skipped", "reason": "landscapes are drawn for the first seed of each optimizer"}, None
    x, y, indices = _subset(ctx, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    if not (ctx.run_dir(run) / EIGENVECTORS_PT).exists():
        stage_analyses(ctx, run, ("curvature",))
    vectors = load_torch(ctx.run_dir(run) / EIGENVECTORS_PT).to(device=ctx.device, dtype=ctx.dtype)
    result = measure_landscape(model, params_of(model), vectors, x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return result.to_json(), indices


ANALYSIS_FUNCTIONS = {"curvature": _curvature, "sharpness": _sharpness, "landscape": _landscape}


def stage_run(ctx: Context, runs: list[RunConfig]) -> None:
    stage_train(ctx, runs)
    for run in runs:
        stage_analyses(ctx, run)


# ---- study-level stages --------------------------------------------------------------------


def _study_settings(ctx: Context, kind: str) -> dict:
    profile = ctx.profile
    if kind == "dinh":
        run = profile.first_seed_run(profile.study.dinh_optimizer)
        return {"run": run.run_hash, "dinh": to_table(profile.dinh), "curvature": to_table(profile.curvature), "sharpness": to_table(profile.sharpness)}
    a, b = profile.study.interpolate
    return {"a": profile.first_seed_run(a).run_hash, "b": profile.first_seed_run(b).run_hash, "landscape": to_table(profile.landscape)}


def _study_path(ctx: Context, kind: str) -> Path:
    return ctx.layout.study / f"{ctx.profile.name}-{DINH_JSON if kind == 'dinh' else INTERPOLATION_JSON}"


def study_runs(ctx: Context) -> list[RunConfig]:
    """The trained runs the profile-level study reads: Dinh's minimum and the interpolation's ends."""
    profile = ctx.profile
    names = [profile.study.dinh_optimizer, *(profile.study.interpolate or ())]
    return [profile.first_seed_run(name) for name in dict.fromkeys(names)]


def _study_kinds(ctx: Context) -> list[str]:
    return ["dinh"] + (["interpolation"] if ctx.profile.study.interpolate else [])


def study_is_current(ctx: Context, kinds: list[str] | None = None) -> bool:
    for kind in kinds or _study_kinds(ctx):
        path = _study_path(ctx, kind)
        if not path.exists():
            return False
        try:
            if read_json(path).get("settings") != _study_settings(ctx, kind):
                return False
        except MinimaError:
            return False
    return True


def stage_study(ctx: Context, kinds: list[str] | None = None) -> None:
    """The profile-level analyses (all the profile asks for, or the given kinds), each skipped when current."""
    for kind in kinds or _study_kinds(ctx):
        if kind not in _study_kinds(ctx):
            raise MinimaError(f"study: profile {ctx.profile.name} has no {kind} part (interpolate is empty)")
        path = _study_path(ctx, kind)
        settings = _study_settings(ctx, kind)
        try:
            if path.exists() and read_json(path).get("settings") == settings:
                continue
        except MinimaError:
            pass
        started = time.perf_counter()
        values = _dinh(ctx) if kind == "dinh" else _interpolation(ctx)
        write_json(path, {"settings": settings, **values, "stage_seconds": time.perf_counter() - started})


def _require_trained(ctx: Context, run: RunConfig) -> None:
    if not is_trained(ctx, run):
        raise MinimaError(f"run {run.run_hash} ({run.optimizer.name}, seed {run.seed}) is not trained yet: run `make all PROFILE={ctx.profile.name}`")


def _dinh(ctx: Context) -> dict:
    profile = ctx.profile
    run = profile.first_seed_run(profile.study.dinh_optimizer)
    if run.model != "modern":
        return {"applicable": False, "rows": [], "note": f"Dinh's rescaling needs positively homogeneous activations (ReLU); the {run.model} variant uses tanh"}
    _require_trained(ctx, run)
    if (_metrics(ctx, run) or {}).get("status") != "ok":
        return {"applicable": False, "rows": [], "note": f"the {run.optimizer.name} run diverged"}
    model = load_trained(ctx, run)
    base = params_of(model)
    cx, cy, _ = _subset(ctx, profile.curvature.n_samples, profile.curvature.seed)
    sx, sy, _ = _subset(ctx, profile.sharpness.n_samples, profile.sharpness.seed)
    test = ctx.dataset.test
    rows = []
    for scale in profile.dinh.scales:
        params = rescale(base, dinh_scales(scale, profile.dinh.layers), variant=run.model)
        scaled = build_model(run.model, seed=run.seed, dtype=ctx.dtype, device=ctx.device)
        scaled.load_state_dict(params, strict=False)
        curvature = curvature_engine.measure_top_and_trace(scaled, cx, cy, profile.curvature, device=ctx.device, dtype=ctx.dtype)
        sharp = measure_sharpness(scaled, params, sx, sy, profile.sharpness, device=ctx.device, dtype=ctx.dtype).to_json()
        evaluation = evaluate(scaled, params, test.x, test.y)
        row = {"scale": scale, "top_eigenvalue": curvature.top.values[0], "trace": curvature.trace.mean, "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss}
        row.update({k: v for k, v in sharp.items() if k != "details"})
        rows.append(row)
    return {"applicable": True, "run": run.run_hash, "optimizer": run.optimizer.name, "seed": run.seed, "layers": list(profile.dinh.layers), "rows": rows, "note": ""}


def _interpolation(ctx: Context) -> dict:
    profile = ctx.profile
    a, b = (profile.first_seed_run(name) for name in profile.study.interpolate)
    for run in (a, b):
        _require_trained(ctx, run)
    settings = profile.landscape
    x, y, _ = _subset(ctx, settings.n_samples, settings.seed)
    model_a, model_b = load_trained(ctx, a), load_trained(ctx, b)
    result = measure_interpolation(model_a, params_of(model_a), params_of(model_b), x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {"a": a.optimizer.name, "b": b.optimizer.name, "run_a": a.run_hash, "run_b": b.run_hash, **result.to_json()}


# ---- what `make report` needs --------------------------------------------------------------


def missing_results(ctx: Context) -> list[str]:
    missing = []
    for run in ctx.profile.runs:
        directory = ctx.run_dir(run)
        label = f"{run.run_hash} ({run.optimizer.name}, seed {run.seed})"
        if not is_trained(ctx, run):
            missing.append(f"{label}: {paths.MODEL_PT}/{paths.METRICS_JSON}")
            continue
        stale = [name for name, kind in ANALYSES if not _analysis_is_current(directory / name, _analysis_settings(ctx, kind), _digest(directory / paths.MODEL_PT))]
        if stale:
            missing.append(f"{label}: {', '.join(stale)}")
    for kind in _study_kinds(ctx):
        path = _study_path(ctx, kind)
        if not path.exists() or read_json(path).get("settings") != _study_settings(ctx, kind):
            missing.append(f"study: {path.name}")
    return missing
