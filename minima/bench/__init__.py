"""`make bench`: what measuring one minimum costs, stage by stage, against the previous schedule
(`measurement`); the curvature engine side by side with PyHessian 0.1 and curvlinops 3.0.1
(`curvature`); and training throughput (eager loop, DataLoader loop, seeds trained together; on
CPU also channels_last, threads per process and batch size; `training`), in one process, on the
same checkpoint and data. Writes build/bench.json and build/bench.md (the table the README
quotes); `--section` runs a part alone.

Absolute times mean something only on a GPU; on CPU read the ratios, or the measurement rows'
core-seconds (CPU time, which other processes on a shared machine do not inflate as much).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from minima import data as data_stage
from minima import pipeline, stages
from minima.bench.curvature import bench_curvature, bench_markdown, bench_summary
from minima.bench.measurement import bench_measurement, measurement_markdown, measurement_summary
from minima.bench.training import bench_cpu_layouts, bench_training
from minima.config import RunConfig
from minima.io import MinimaError, write_json, write_text
from minima.models import build_model
from minima.objective import flatten, loss_at, params_of
from minima.reparam import balancing_scales, rescaling_factors
from minima.runtime import environment

SECTIONS = ("measurement", "curvature", "training")


def _trained_run(ctx: pipeline.Context) -> RunConfig | None:
    return next((run for run in ctx.profile.runs if run.model == "modern" and pipeline.is_trained(ctx, run)), None)


def _checkpoint(ctx: pipeline.Context) -> tuple[torch.nn.Module, str]:
    """A trained LeNet-5 of the profile if one exists, else 300 SGD steps from seed 0."""
    run = _trained_run(ctx)
    if run is not None:
        return stages.load_trained(ctx, run), f"run {run.run_hash} ({run.optimizer.name}, seed {run.seed})"
    model = build_model("modern", seed=0, dtype=ctx.dtype, device=ctx.device)
    params = {k: v.requires_grad_(True) for k, v in params_of(model).items()}
    optimizer = torch.optim.SGD(params.values(), lr=0.1)
    train = ctx.dataset.train
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        index = torch.randint(0, len(train.y), (128,), generator=generator).to(train.x.device)
        optimizer.zero_grad()
        loss_at(model, params, train.x[index], train.y[index]).backward()
        optimizer.step()
    model.load_state_dict({k: v.detach() for k, v in params.items()})
    return model, "LeNet-5 (modern) after 300 SGD steps, seed 0"


@dataclass(frozen=True)
class _Workload:
    n_samples: int
    reps: int
    density_probes: int
    density_steps: int


def _workload(device: torch.device, samples: int) -> _Workload:
    """The full training set on a GPU; on CPU a 5k subset, one timed repetition (after a warm-up)
    and a smaller density: 1,008 s for the whole bench on 2 cores (measured 2026-11-29)."""
    if device.type == "cuda":
        return _Workload(samples or 60000, reps=3, density_probes=5, density_steps=60)
    return _Workload(samples or 5000, reps=1, density_probes=3, density_steps=40)


def _measurement_data(ctx: pipeline.Context) -> tuple[torch.Tensor, torch.Tensor, str]:
    """One run's curvature set: the trained run's own when the bench measures one of the
    profile's checkpoints, else the profile's training subset (class-stratified, its data seed)."""
    run = _trained_run(ctx)
    settings = ctx.profile.curvature
    if run is not None:
        x, y, _ = ctx.analysis_data(run, settings.n_samples, settings.seed)
        return x, y, "the run's curvature set"
    study = ctx.profile.study
    chosen = data_stage.select(ctx.dataset.train, study.n_train, study.data_seed).split
    chosen = data_stage.select(chosen, settings.n_samples, settings.seed).split
    return chosen.x, chosen.y, f"a class-stratified subset as the profile's runs use ({study.n_train or 'all'} images)"


def _measurement(ctx: pipeline.Context, model: torch.nn.Module) -> tuple[list[dict], str]:
    profile = ctx.profile
    x, y, what = _measurement_data(ctx)
    params = params_of(model)
    rescaling = flatten(rescaling_factors(params, balancing_scales(params))) if getattr(getattr(model, "spec", None), "activation", "") == "relu" else None
    fraction = 1.0 if profile.curvature.density_runs == "all" else 1.0 / len(profile.study.seeds)
    rows = bench_measurement(model, x, y, curvature=profile.curvature, sharpness=profile.sharpness, landscape=profile.landscape,
                             density_fraction=fraction, rescaling=rescaling, device=ctx.device, dtype=ctx.dtype)
    return rows, f"{len(y)} images ({what}), profile {profile.name}'s settings"


def main(ctx: pipeline.Context, *, out: Path, samples: int = 0, sections: list[str] | None = None) -> None:
    started = time.perf_counter()
    sections = list(sections or SECTIONS)
    pipeline.stage_data(ctx)
    train = ctx.dataset.train
    if not 0 <= samples <= len(train.y):
        raise MinimaError(f"--samples: must be in 1..{len(train.y)} (0: the default), got {samples}")
    work = _workload(ctx.device, samples)
    x, y = train.take(np.arange(work.n_samples)), train.y[: work.n_samples]  # converts only these images
    model, origin = _checkpoint(ctx)
    env = environment(ctx.device)
    env.pop("argv", None)
    where = f"{env['device']} ({env['cpu']}, {env['threads']} threads), torch {env['torch']}"
    result: dict = {"environment": env, "checkpoint": origin, "sections": sections}
    text = ""
    if "measurement" in sections:
        print("bench: measurement cost per minimum (both schedules, interleaved) ...", file=sys.stderr, flush=True)
        rows, data = _measurement(ctx, model)
        result.update(measurement=rows, measurement_headline=measurement_summary(rows))
        text += (f"### Measurement cost per minimum: core-seconds (CPU time, one thread) and gradients (one loss and "
                 f"gradient on the same images); {data}; {origin}; {where}\n\n" + measurement_markdown(rows))
    if "curvature" in sections:
        curvature_rows = bench_curvature(model, x, y, device=ctx.device, dtype=ctx.dtype, seed=0, reps=work.reps,
                                         density_probes=work.density_probes, density_steps=work.density_steps)
        result.update(n_samples=len(y), headline=bench_summary(curvature_rows), curvature=curvature_rows)
        text += f"\n### Curvature: {len(y)} MNIST training images, {origin}; {where}\n\n" + bench_markdown(curvature_rows)
    if "training" in sections:
        print("bench: training throughput ...", file=sys.stderr, flush=True)
        training_rows = bench_training(train.x, train.y, device=ctx.device, dtype=ctx.dtype, n_models=len(ctx.profile.study.seeds) * 2, n_batches=40)
        layout_rows = []
        if ctx.device.type == "cpu":
            print("bench: CPU layouts (channels_last, threads, batch size) ...", file=sys.stderr, flush=True)
            layout_rows = bench_cpu_layouts(train.x, train.y, dtype=ctx.dtype, n_batches=40)
        result.update(training=training_rows, cpu_layouts=layout_rows)
        text += f"\n### Training: seconds per model-epoch; {where}\n\n" + bench_markdown(training_rows, "speed-up vs eager")
        if layout_rows:
            text += f"\n### CPU layouts: seconds per 1,000 training images; {where}\n\n" + bench_markdown(layout_rows, "speed-up")
    result["seconds"] = time.perf_counter() - started
    write_json(out / "bench.json", result)
    write_text(out / "bench.md", text.lstrip("\n"))
    print(text)
