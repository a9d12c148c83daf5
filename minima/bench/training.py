"""Training throughput: seconds per model-epoch of SGD on LeNet-5, side by side in one process.

Rows: a plain eager nn.Module + torch.optim loop on resident tensors (the reference), the same
fed by a CPU DataLoader, our functional step with one model, and our stacked (vmap) step with
several seeds at once. On CPU it also times the layouts worth trying there (channels_last
input and weights; two threads for one process against one thread each). `ratio` is the eager
loop's time over the row's (> 1: faster).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm import tqdm

from minima import optimizers
from minima.checkpoints import TrainJob, fresh
from minima.models import build_model
from minima.objective import frozen_copy
from minima.optimizers import OptimizerConfig
from minima.train import TrainSettings, TrainData, run_epoch

def bench_training(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    n_models: int,
    n_batches: int,
    variant_name: str = "modern",
    batch_size: int = 128,
) -> list[dict[str, Any]]:
    """Seconds per model-epoch of SGD training, extrapolated from `n_batches` timed batches.

    Rows: a plain eager nn.Module + torch.optim loop on resident tensors (the reference), the
    same fed by a CPU DataLoader, our functional path with one model, and our stacked path
    with `n_models` seeds at once. `ratio` is the eager loop's time over the row's (> 1: faster).
    """
    device = torch.device(device)
    x, y = train_x.to(device=device, dtype=dtype), train_y.to(device=device, dtype=torch.long)
    epoch_batches = math.ceil(len(y) / batch_size)
    n_batches = max(1, min(n_batches, len(y) // batch_size - 2))  # timed batches stay inside one epoch
    work = f"SGD training, LeNet-5 {variant_name}, batch {batch_size}, {device.type} {str(dtype).replace('torch.', '')}"
    timings = [
        ("eager nn.Module + torch.optim, resident tensors", 1, _time_eager(x, y, device, dtype, variant_name, batch_size, n_batches, loader=False)),
        ("eager nn.Module + torch.optim, CPU DataLoader", 1, _time_eager(x, y, device, dtype, variant_name, batch_size, n_batches, loader=True)),
        ("minima functional step, 1 model", 1, _time_stacked(x, y, device, dtype, variant_name, batch_size, n_batches, 1)),
        (f"minima stacked vmap step, {n_models} models", n_models, _time_stacked(x, y, device, dtype, variant_name, batch_size, n_batches, n_models)),
    ]
    reference = timings[0][2] * epoch_batches / n_batches
    rows = []
    for implementation, models, seconds in timings:
        per_model_epoch = seconds / n_batches * epoch_batches / models
        rows.append(
            {
                "work": work,
                "implementation": implementation,
                "seconds_per_model_epoch": per_model_epoch,
                "ratio": reference / per_model_epoch,
            }
        )
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_eager(x, y, device, dtype, variant_name, batch_size, n_batches, *, loader: bool) -> float:
    model = build_model(variant_name, seed=0, dtype=dtype, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    if loader:
        dataset = torch.utils.data.TensorDataset(x.cpu(), y.cpu())
        batches = iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                                   generator=torch.Generator().manual_seed(0)))
        source = lambda i: tuple(t.to(device) for t in next(batches))  # noqa: E731
    else:
        source = lambda i: (x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size])  # noqa: E731

    def one(i: int) -> None:
        xb, yb = source(i)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(2):  # warm-up: allocator, kernels, lazy init
        one(i)
    _sync(device)
    started = time.perf_counter()
    for i in range(n_batches):
        one(i + 2)
    _sync(device)
    return time.perf_counter() - started


def _time_stacked(x, y, device, dtype, variant_name, batch_size, n_batches, n_models) -> float:
    config = OptimizerConfig("sgd", lr=0.01)
    settings = TrainSettings(max_epochs=1, batch_size=batch_size, shuffle=True)
    runs = [fresh(TrainJob(Path("."), variant_name, config, seed), device, dtype) for seed in range(n_models)]
    model = frozen_copy(build_model(variant_name, seed=0, dtype=dtype, device=device))
    params = optimizers.concat([run.params for run in runs])
    state = optimizers.concat_states([run.state for run in runs])
    data = TrainData(x, y, x[:1], y[:1], x[:0], y[:0])
    bar = tqdm(disable=True)
    run_epoch(config, model, params, state, runs, data, settings, bar, limit=2)  # warm-up
    _sync(device)
    started = time.perf_counter()
    run_epoch(config, model, params, state, runs, data, settings, bar, limit=n_batches)
    _sync(device)
    return time.perf_counter() - started


# ---- CPU layouts ---------------------------------------------------------------------------


def _functional_step_seconds(x: torch.Tensor, y: torch.Tensor, batch_size: int, n_batches: int, *,
                             channels_last: bool, threads: int) -> float:
    """Seconds per SGD step of our functional path (one model), after two warm-up steps."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = OptimizerConfig("sgd", lr=0.01)
        model = frozen_copy(build_model("modern", seed=0, dtype=x.dtype))
        run = fresh(TrainJob(Path("."), "modern", config, 0), torch.device("cpu"), x.dtype)
        params, state = run.params, run.state
        if channels_last:  # the input in NHWC; convolutions then choose channels_last kernels
            x = x.contiguous(memory_format=torch.channels_last)
        from minima.train import batch_objective

        def one(i: int):
            start = (i * batch_size) % max(1, len(y) - batch_size)
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            return optimizers.step(config, params, state, batch_objective(model, xb, yb, shared=True))

        for i in range(2):
            one(i)
        started = time.perf_counter()
        for i in range(n_batches):
            one(i + 2)
        return (time.perf_counter() - started) / n_batches
    finally:
        torch.set_num_threads(previous)


def _worker(args: tuple) -> float:  # a spawned process: one thread, its own copy of the data
    x, y, batch_size, n_batches = args
    torch.set_num_threads(1)
    return _functional_step_seconds(x, y, batch_size, n_batches, channels_last=False, threads=1)


def bench_cpu_layouts(train_x: torch.Tensor, train_y: torch.Tensor, *, dtype: torch.dtype, n_batches: int) -> list[dict[str, Any]]:
    """What the CPU profiles are laid out on, measured: memory format, batch size, and two
    one-thread processes against one two-thread process. Rows give seconds per 1,000 images."""
    import multiprocessing

    x, y = train_x[:8192].to(dtype=dtype).contiguous(), train_y[:8192].long()
    rows = []

    def row(work: str, implementation: str, seconds_per_step: float, batch: int, note: str = "") -> dict[str, Any]:
        return {"work": work, "implementation": implementation, "seconds_per_1000_images": seconds_per_step / batch * 1000, "note": note}

    for batch in (32, 128, 512):
        base = _functional_step_seconds(x, y, batch, n_batches, channels_last=False, threads=1)
        last = _functional_step_seconds(x, y, batch, n_batches, channels_last=True, threads=1)
        rows.append(row(f"SGD step, batch {batch}, 1 thread", "contiguous (NCHW)", base, batch))
        rows.append(row(f"SGD step, batch {batch}, 1 thread", "channels_last input", last, batch))
    batch = 128
    two_threads = _functional_step_seconds(x, y, batch, n_batches, channels_last=False, threads=2)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        started = time.perf_counter()
        per_step = pool.map(_worker, [(x, y, batch, n_batches)] * 2)
        elapsed = time.perf_counter() - started
    pair = max(per_step) / 2  # two steps complete per step time when both processes run at once
    rows.append(row(f"SGD step, batch {batch}, 2 cores", "one process, 2 threads", two_threads, batch))
    rows.append(row(f"SGD step, batch {batch}, 2 cores", "two processes, 1 thread each (throughput)", pair, batch,
                    f"spawned workers, {elapsed:.1f} s including start-up"))
    reference = {r["work"]: r["seconds_per_1000_images"] for r in rows if r["implementation"] in ("contiguous (NCHW)", "one process, 2 threads")}
    for r in rows:
        r["ratio"] = reference[r["work"]] / r["seconds_per_1000_images"]
    return rows
