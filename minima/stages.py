"""The stages that compute: training, a run's analyses, the study parts. They decide nothing
about what is current: `minima.pipeline` does (without torch), and each stage here asks it first.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator

import torch

from minima import curvature as curvature_engine
from minima import paths
from minima.checkpoints import TrainJob
from minima.config import RunConfig
from minima.io import CorruptFile, MinimaError, file_sha256, finite_or_none, locked, write_json
from minima.landscape import measure_interpolation, measure_landscape
from minima.models import LeNet5, build_model
from minima.objective import evaluate, flatten, params_of
from minima.pipeline import (ANALYSES, Context, advice, analyses_of, analysis_inputs, analysis_is_current, analysis_path,
                             dinh_run, is_current, is_trained, study_inputs, study_kinds, study_path, study_runs,
                             write_run_configs)
from minima.reparam import balancing_scales, dinh_rows, rescaling_factors
from minima.sharpness import measure_all as measure_sharpness
from minima.tensors import load_torch, save_torch
from minima.train import train


# ---- per-run stages ------------------------------------------------------------------------


def load_trained(ctx: Context, run: RunConfig) -> LeNet5:
    model = build_model(run.model, seed=run.seed, dtype=ctx.dtype, device=ctx.device)
    path = ctx.run_dir(run) / paths.MODEL_PT
    state = load_torch(path)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise CorruptFile(path, f"not a LeNet-5 {run.model} state_dict") from exc
    return model.to(device=ctx.device, dtype=ctx.dtype)


def stage_train(ctx: Context, runs: list[RunConfig]) -> None:
    """Train every run not trained yet (each under its lock); runs of a configuration stack when asked."""
    todo = [run for run in runs if not is_trained(ctx, run)]
    if not todo:
        return
    write_run_configs(ctx, todo)
    test = ctx.test_set().split
    groups: dict[tuple, list[RunConfig]] = {}
    for run in todo:
        key = run.configuration if ctx.profile.train.stack_seeds else run.run_hash
        groups.setdefault(key, []).append(run)
    for group in groups.values():
        training = ctx.training_set(group[0])
        with _locks(ctx, group):
            group = [run for run in group if not is_trained(ctx, run)]  # another process may have finished it
            if not group:
                continue
            jobs = [TrainJob(run_dir=ctx.run_dir(r), variant=r.model, optimizer=r.optimizer, seed=r.seed) for r in group]
            validation = ctx.validation_set(group[0])
            record = {"training_set": training.record(), "test_set": {"n": len(test.y)},
                      "validation_set": {"n": len(validation.split.y), "indices_sha256": validation.indices_sha256}}
            train(jobs, group[0].train, training.split.x, training.split.y, test.x, test.y,
                  device=ctx.device, dtype=ctx.dtype, progress=ctx.progress, record=record,
                  val_x=validation.split.x, val_y=validation.split.y)


@contextlib.contextmanager
def _locks(ctx: Context, runs: list[RunConfig]) -> Iterator[None]:
    """Hold the locks of several runs, always in hash order (no deadlock between processes)."""
    with contextlib.ExitStack() as stack:
        for path in sorted({ctx.run_dir(r) / paths.LOCK for r in runs}):
            stack.enter_context(locked(path))
        yield


def stage_analyses(ctx: Context, run: RunConfig, kinds: tuple[str, ...] | None = None) -> None:
    """The run's analyses that are not current, in order. The landscape reads the eigenvectors
    saved with curvature, so asking for the landscape brings curvature up to date first."""
    if kinds and "landscape" in kinds:
        kinds = (*kinds, "curvature")
    with locked(ctx.run_dir(run) / paths.LOCK):
        wanted = analyses_of(ctx, run)
        for kind in ANALYSES:
            if kind not in wanted or (kinds and kind not in kinds):
                continue
            inputs = analysis_inputs(ctx, run, kind)
            if analysis_is_current(ctx, run, kind, inputs):
                continue
            started, cpu = time.perf_counter(), time.process_time()
            values = ANALYSIS_FUNCTIONS[kind](ctx, run)
            # CPU seconds beside the wall clock: on a shared machine only they count core-seconds
            record = {**values, "inputs": inputs, "stage_seconds": time.perf_counter() - started,
                      "cpu_seconds": time.process_time() - cpu}
            write_json(analysis_path(ctx, run, kind), finite_or_none(record))
            print(f"minima: {kind} of {run.label} ({run.run_hash}) in {record['stage_seconds']:.1f} s", file=sys.stderr)


def _curvature(ctx: Context, run: RunConfig) -> dict:
    settings = ctx.profile.curvature
    x, y, data = ctx.analysis_data(run, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    with_density = settings.density_runs == "all" or ctx.profile.is_first_seed(run)
    # lambda_max after the function-preserving rescaling that equalizes the layers' weight norms
    # (tanh is not positively homogeneous: no such rescaling exists for the seed variant)
    params = params_of(model)
    scales = balancing_scales(params) if run.model == "modern" else None
    factors = flatten(rescaling_factors(params, scales)) if scales else None
    result = curvature_engine.measure(model, x, y, settings, device=ctx.device, dtype=ctx.dtype,
                                      progress=ctx.progress, with_density=with_density, rescaling=factors)
    vectors = save_torch(ctx.run_dir(run) / paths.EIGENVECTORS_PT, result.vectors.detach().cpu())
    record = result.to_json()
    balanced = record.pop("rescaled")
    # the digest vouches for the eigenvectors where plan and summarize check them without torch
    return {**record, "balanced": balanced and {**balanced, "scales": scales}, "data": data,
            "eigenvectors_sha256": file_sha256(vectors)}


def _sharpness(ctx: Context, run: RunConfig) -> dict:
    settings = ctx.profile.sharpness
    x, y, data = ctx.analysis_data(run, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    result = measure_sharpness(model, params_of(model), x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {**result.to_json(), "data": data}


def _landscape(ctx: Context, run: RunConfig) -> dict:
    settings = ctx.profile.landscape
    x, y, data = ctx.analysis_data(run, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    # current and loadable: stage_analyses has just checked (or recomputed) curvature under this lock
    vectors = load_torch(ctx.run_dir(run) / paths.EIGENVECTORS_PT).to(device=ctx.device, dtype=ctx.dtype)
    result = measure_landscape(model, params_of(model), vectors, x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {**result.to_json(), "data": data}


ANALYSIS_FUNCTIONS: dict[str, Callable[[Context, RunConfig], dict]] = {
    "curvature": _curvature, "sharpness": _sharpness, "landscape": _landscape,
}


def stage_run(ctx: Context, runs: list[RunConfig]) -> None:
    stage_train(ctx, runs)
    for run in runs:
        stage_analyses(ctx, run)


# ---- study-level stages --------------------------------------------------------------------


def stage_study(ctx: Context, kinds: list[str] | None = None) -> None:
    """The profile-level analyses (all the profile asks for, or the given kinds), each skipped when current."""
    available = study_kinds(ctx)
    for kind in kinds or available:
        if kind not in available:
            raise MinimaError(f"study: profile {ctx.profile.ref} has no {kind} part (interpolate is empty)")
        for run in study_runs(ctx, kind):
            if not is_trained(ctx, run):
                raise MinimaError(f"run {run.run_hash} ({run.label}) is not trained yet: run `{advice(ctx)}`")
        with locked(study_path(ctx, kind).with_suffix(".lock")):
            inputs = study_inputs(ctx, kind)
            if is_current(ctx, study_path(ctx, kind), inputs):
                continue
            started, cpu = time.perf_counter(), time.process_time()
            values = _dinh(ctx) if kind == "dinh" else _interpolation(ctx)
            record = {**values, "inputs": inputs, "stage_seconds": time.perf_counter() - started,
                      "cpu_seconds": time.process_time() - cpu}
            write_json(study_path(ctx, kind), finite_or_none(record))
            print(f"minima: study {kind} in {record['stage_seconds']:.1f} s", file=sys.stderr)


def _dinh(ctx: Context) -> dict:
    profile = ctx.profile
    if profile.study.model != "modern":
        return {"applicable": False, "rows": [], "note": f"Dinh's rescaling needs positively homogeneous activations (ReLU); the {profile.study.model} variant uses tanh"}
    run = dinh_run(ctx)
    if run is None:
        name, n = profile.study.dinh_optimizer, len(study_runs(ctx, "dinh"))
        return {"applicable": False, "rows": [], "note": (
            f"none of the {n} {name} runs converged (full training loss ≤ {profile.train.stop_loss:g} within "
            f"max_epochs = {profile.train.max_epochs}, not diverged): a capped run is no minimum")}
    model = load_trained(ctx, run)
    cx, cy, _ = ctx.analysis_data(run, profile.curvature.n_samples, profile.curvature.seed)
    sx, sy, _ = ctx.analysis_data(run, profile.sharpness.n_samples, profile.sharpness.seed)
    test = ctx.test_set().split
    reference = evaluate(model, params_of(model), test.x, test.y)
    probe = test.x[:256]
    with torch.no_grad():
        logits = model(probe)

    def measure(params: dict) -> dict:
        scaled = build_model(run.model, seed=run.seed, dtype=ctx.dtype, device=ctx.device)
        scaled.load_state_dict(params)
        curvature = curvature_engine.measure_top_and_trace(scaled, cx, cy, profile.curvature, device=ctx.device, dtype=ctx.dtype)
        sharp = measure_sharpness(scaled, params, sx, sy, profile.sharpness, device=ctx.device, dtype=ctx.dtype).values()
        evaluation = evaluate(scaled, params, test.x, test.y)
        with torch.no_grad():
            change = float((scaled(probe) - logits).abs().max() / logits.abs().max())
        return {"top_eigenvalue": curvature.top.values[0], "trace": curvature.trace.mean,
                "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss, "max_logit_change": change, **sharp}

    rows = dinh_rows(params_of(model), profile.dinh, variant=run.model, measure=measure)
    return {"applicable": True, "run": run.run_hash, "optimizer": run.optimizer.name, "seed": run.seed,
            "layers": list(profile.dinh.layers), "reference_test_accuracy": reference.accuracy, "rows": rows, "note": ""}


def _interpolation(ctx: Context) -> dict:
    a, b = study_runs(ctx, "interpolation")
    settings = ctx.profile.landscape
    x, y, data = ctx.analysis_data(a, settings.n_samples, settings.seed)
    model_a, model_b = load_trained(ctx, a), load_trained(ctx, b)
    result = measure_interpolation(model_a, params_of(model_a), params_of(model_b), x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {"a": a.optimizer.name, "b": b.optimizer.name, "run_a": a.run_hash, "run_b": b.run_hash, "data": data, **result.to_json()}
