"""`make bench`: the curvature engine side by side with PyHessian 0.1 and curvlinops 3.0.1, and
training throughput (eager loop, DataLoader loop, seeds trained together; on CPU also channels_last,
threads per process and batch size), in one process, on the same checkpoint and data. Writes build/bench.json and build/bench.md (the table the README quotes).

Absolute times mean something only on a GPU; on CPU read the ratios.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from minima import pipeline
from minima.bench.curvature import bench_curvature, bench_markdown, bench_summary
from minima.bench.training import bench_cpu_layouts, bench_training
from minima.io import MinimaError, write_json, write_text
from minima.models import build_model
from minima.objective import loss_at, params_of
from minima.runtime import environment


def _checkpoint(ctx: pipeline.Context) -> tuple[torch.nn.Module, str]:
    """A trained LeNet-5 of the profile if one exists, else 300 SGD steps from seed 0."""
    for run in ctx.profile.runs:
        if run.model == "modern" and pipeline.is_trained(ctx, run):
            return pipeline.load_trained(ctx, run), f"run {run.run_hash} ({run.optimizer.name}, seed {run.seed})"
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


def main(ctx: pipeline.Context, *, out: Path, samples: int = 0) -> None:
    started = time.perf_counter()
    pipeline.stage_data(ctx)
    train = ctx.dataset.train
    if not 0 <= samples <= len(train.y):
        raise MinimaError(f"--samples: must be in 1..{len(train.y)} (0: the default), got {samples}")
    work = _workload(ctx.device, samples)
    x, y = train.x[: work.n_samples], train.y[: work.n_samples]
    model, origin = _checkpoint(ctx)
    curvature_rows = bench_curvature(model, x, y, device=ctx.device, dtype=ctx.dtype, seed=0, reps=work.reps,
                                     density_probes=work.density_probes, density_steps=work.density_steps)
    print("bench: training throughput ...", file=sys.stderr, flush=True)
    training_rows = bench_training(train.x, train.y, device=ctx.device, dtype=ctx.dtype, n_models=len(ctx.profile.study.seeds) * 2, n_batches=40)
    layout_rows = []
    if ctx.device.type == "cpu":
        print("bench: CPU layouts (channels_last, threads, batch size) ...", file=sys.stderr, flush=True)
        layout_rows = bench_cpu_layouts(train.x, train.y, dtype=ctx.dtype, n_batches=40)
    env = environment(ctx.device)
    env.pop("argv", None)
    result = {
        "environment": env,
        "checkpoint": origin,
        "n_samples": len(y),
        "headline": bench_summary(curvature_rows),
        "curvature": curvature_rows,
        "training": training_rows,
        "cpu_layouts": layout_rows,
        "seconds": time.perf_counter() - started,
    }
    write_json(out / "bench.json", result)
    where = f"{env['device']} ({env['cpu']}, {env['threads']} threads), torch {env['torch']}"
    text = f"### Curvature: {len(y)} MNIST training images, {origin}; {where}\n\n" + bench_markdown(curvature_rows)
    text += f"\n### Training: seconds per model-epoch; {where}\n\n" + bench_markdown(training_rows, "speed-up vs eager")
    if layout_rows:
        text += f"\n### CPU layouts: seconds per 1,000 training images; {where}\n\n" + bench_markdown(layout_rows, "speed-up")
    write_text(out / "bench.md", text)
    print(text)
