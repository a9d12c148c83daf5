"""What measuring one minimum costs: the curvature and sharpness stages of one run, stage by stage,
in core-seconds and in units of one gradient on the same images, with the products or passes
each estimate used; the schedule of 5235d0d beside the current one, in one process, on one
checkpoint and data set, interleaved and best of `reps`.

Core-seconds are the process's CPU time (`time.process_time`) with torch on one thread, as each
of `make -j`'s processes runs a study: on a shared machine they do not count the time other
processes held the cores, which the wall clock does. "Gradients" divides by the CPU time of one
loss-and-gradient pass on the same images (the sharpness measures' pass), measured here.

The previous schedule is rebuilt from the same estimators with 5235d0d's choices: a separate
gradient pass, the operator traced anew for every run (`_PROGRAMS` cleared, no store), Lanczos checked
every second step and stopped at convergence, all `trace_probes` probes, every density probe a
new Lanczos run, the balanced lambda_max from a random start; every sharpness measure computing
its own starting point and PAC-Bayes sigma by bisection. The products themselves are the same
(bit for bit), so the rows isolate what the schedule changed; what the operator's new trace
saved is the setup row (first operator in a process against the next).

A run of the profile has a density (and a landscape) when the profile asks for one for it:
`density_fraction` of the runs (one seed in two in `quick`), so the per-run rows average a run
with and a run without a density by that fraction. The current schedule's runs find their
program traced (the next run of a task); what a process's first operator pays, loading the program
an earlier task traced and stored (`minima.curvature.hvp.program_store`), is added per run over a
task's `task_runs` runs (`make`'s TASK_RUNS, 9 by default: minima.paths.TASK_RUNS). The one trace
a study's first task pays is a row of its own.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from dataclasses import replace
from typing import Any, Callable, Iterator
from unittest import mock

import torch
from torch import nn

from minima.curvature import CurvatureSettings, RescaledOperator, measure
from minima.curvature import _generator as curvature_generator
from minima.curvature import hvp as hvp_module
from minima.curvature.density import spectral_density
from minima.curvature.gradient import gradient_norm
from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import lanczos
from minima.curvature.trace import hutchinson
from minima.landscape import LandscapeSettings, measure_landscape
from minima.objective import evaluate, flatten, frozen_copy, params_of
from minima.paths import TASK_RUNS
from minima.sharpness import SharpnessSettings, measure_all
from minima.sharpness.common import flat_value_and_grad, prepare

CURRENT = "current"
PREVIOUS = "5235d0d schedule"
PER_RUN = "curvature + sharpness per run"


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _program_store(path: str) -> Iterator[None]:
    """Traced programs kept in `path` ("": none) for the duration, and none in memory."""
    hvp_module._PROGRAMS.clear()
    with mock.patch.dict(os.environ, {hvp_module.PROGRAM_STORE_ENV: path}):
        yield


def _cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def _best_cpu(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up: first-call dispatch and allocation are not per-call costs
    return min(_cpu(fn)[1] for _ in range(reps))


def _row(work: str, implementation: str, seconds: float | None, gradient: float, *, products: int | None = None,
         note: str = "", **extra: Any) -> dict[str, Any]:
    return {"work": work, "implementation": implementation, "seconds": seconds,
            "gradients": None if seconds is None else seconds / gradient, "products": products,
            "ratio_vs_ours": None, "note": note, **extra}


def _previous_curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: CurvatureSettings, *,
                        with_density: bool, rescaling: torch.Tensor | None) -> tuple[dict[str, float], dict[str, int]]:
    """5235d0d's `measure`, rebuilt from today's estimators: CPU seconds and products per stage."""
    with _program_store(""):  # it traced every operator anew, and kept no program between processes
        return _previous_operator_stages(model, x, y, settings, with_density=with_density, rescaling=rescaling)


def _previous_operator_stages(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: CurvatureSettings, *,
                              with_density: bool, rescaling: torch.Tensor | None) -> tuple[dict[str, float], dict[str, int]]:
    local = frozen_copy(model)
    params = params_of(model)
    seconds, products = {}, {}
    _, seconds["gradient"] = _cpu(lambda: gradient_norm(local, x, y, params, chunk_size=settings.chunk_size))
    op = HessianOperator(local, x, y, params, chunk_size=settings.chunk_size)
    run, seconds["eigen"] = _cpu(lambda: lanczos(op, settings.top_k, tol=settings.tol, max_iter=settings.max_iter,
                                                 bottom=True, generator=curvature_generator(settings.seed, 0),
                                                 check_every=2))
    products["eigen"] = op.n_matvec
    trace, seconds["trace"] = _cpu(lambda: hutchinson(op, settings.trace_probes, generator=curvature_generator(settings.seed, 1),
                                                      basis=run.basis, basis_trace=float(run.alphas.sum())))
    products["trace"] = trace.n_matvec
    seconds["density"], products["density"] = 0.0, 0
    if with_density:
        density, seconds["density"] = _cpu(lambda: spectral_density(
            op, n_probes=settings.density_probes, n_steps=settings.density_steps, points=settings.density_points,
            sigma=settings.density_sigma, generator=curvature_generator(settings.seed, 2)))
        products["density"] = density.n_matvec
    seconds["rescaled"], products["rescaled"] = 0.0, 0
    if rescaling is not None:
        rescaled, seconds["rescaled"] = _cpu(lambda: lanczos(
            RescaledOperator(op, rescaling), 1, tol=settings.balanced_tol, max_iter=settings.max_iter, bottom=False,
            generator=curvature_generator(settings.seed, 0), check_every=2))
        products["rescaled"] = rescaled.n_matvec
    return seconds, products


def _current_curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: CurvatureSettings, *,
                       with_density: bool, rescaling: torch.Tensor | None, device: torch.device,
                       dtype: torch.dtype) -> tuple[dict[str, float], dict[str, int]]:
    r = measure(model, x, y, settings, device=device, dtype=dtype, with_density=with_density, rescaling=rescaling)
    seconds = {k: v for k, v in r.cpu_seconds.items() if k != "total"}
    return seconds, dict(r.products)


def _sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: SharpnessSettings, *, previous: bool,
               device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    if previous:
        settings = replace(settings, pacbayes_search="bisection")
    r = measure_all(model, params_of(model), x, y, settings, device=device, dtype=dtype, share=not previous)
    return dict(r.cpu_seconds)


def _best(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: min(s[k] for s in samples) for k in samples[0]}


def bench_measurement(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    curvature: CurvatureSettings,
    sharpness: SharpnessSettings,
    landscape: LandscapeSettings | None,
    density_fraction: float,
    rescaling: torch.Tensor | None,
    device: str | torch.device,
    dtype: torch.dtype,
    reps: int = 2,
    task_runs: int = TASK_RUNS,
) -> list[dict[str, Any]]:
    """Rows {work, implementation, seconds (core-seconds), gradients, products, ratio_vs_ours,
    note}; see the module docstring. One thread throughout, as in a study's processes."""
    device = torch.device(device)
    model = copy.deepcopy(model).to(device=device, dtype=dtype)  # trainable: measure() reads its parameters
    x, y = x.to(device=device, dtype=dtype), y.to(device=device)
    with _threads(1):
        return _rows(model, x, y, curvature, sharpness, landscape, density_fraction, rescaling, device, dtype, reps, task_runs)


def _rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, curvature: CurvatureSettings, sharpness: SharpnessSettings,
          landscape: LandscapeSettings | None, density_fraction: float, rescaling: torch.Tensor | None,
          device: torch.device, dtype: torch.dtype, reps: int, task_runs: int) -> list[dict[str, Any]]:
    n = len(y)
    problem = prepare(model, params_of(model), x, y, device=device, dtype=dtype)
    w = flatten(problem.params)
    gradient = _best_cpu(lambda: flat_value_and_grad(problem.loss, w, problem.params), 5)
    forward = _best_cpu(lambda: evaluate(problem.model, problem.params, problem.x, problem.y), 5)

    def first_operator() -> float:
        return _cpu(HessianOperator(problem.model, x, y, problem.params, chunk_size=curvature.chunk_size).gradient)[1]

    with tempfile.TemporaryDirectory(prefix="minima-bench-programs-") as store:
        with _program_store(store):
            first_setup = first_operator()  # traced (and stored)
        with _program_store(store):
            first_stored = first_operator()  # the next process: loaded from the store
    op = HessianOperator(problem.model, x, y, problem.params, chunk_size=curvature.chunk_size)
    _, setup = _cpu(op.gradient)
    v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(device=device, dtype=dtype)
    product = _best_cpu(lambda: op @ v, 5)
    rows = [
        _row(f"one loss and gradient, {n} images", CURRENT, gradient, gradient, note="the unit of the gradients column"),
        _row(f"one forward pass (loss and accuracy), {n} images", CURRENT, forward, gradient),
        _row(f"one Hessian-vector product, {n} images", CURRENT, product, gradient, products=1,
             note="linearized: replays the tangent part of the traced jvp(grad)"),
        _row("operator setup: trace, split, primal pass (gives the gradient)", "first operator in a process, traced",
             first_setup, gradient, note="traced with fake tensors; once per store (a study's first task)"),
        _row("operator setup: trace, split, primal pass (gives the gradient)", "first operator in a process, stored",
             first_stored, gradient, note="the program loaded from the store (minima.curvature.hvp.program_store)"),
        _row("operator setup: trace, split, primal pass (gives the gradient)", "next operator (program kept)",
             setup, gradient, note="the primal pass alone"),
    ]
    # the two schedules, interleaved: previous, current, previous, current ...
    samples: dict[tuple[str, bool], list[dict[str, float]]] = {}
    counts: dict[tuple[str, bool], dict[str, int]] = {}
    sharp: dict[str, list[dict[str, float]]] = {PREVIOUS: [], CURRENT: []}
    for _ in range(reps):
        for schedule in (PREVIOUS, CURRENT):
            for with_density in (True, False):
                if schedule == PREVIOUS:
                    seconds, products = _previous_curvature(model, x, y, curvature, with_density=with_density, rescaling=rescaling)
                else:
                    # the next run of a task: its program is kept (the first run's trace is added below)
                    HessianOperator(problem.model, x, y, problem.params, chunk_size=curvature.chunk_size).gradient()
                    seconds, products = _current_curvature(model, x, y, curvature, with_density=with_density,
                                                           rescaling=rescaling, device=device, dtype=dtype)
                samples.setdefault((schedule, with_density), []).append(seconds)
                counts[(schedule, with_density)] = products
            sharp[schedule].append(_sharpness(model, x, y, sharpness, previous=schedule == PREVIOUS, device=device, dtype=dtype))
    per_run: dict[str, float] = {}
    for schedule in (PREVIOUS, CURRENT):
        dense, plain = _best(samples[(schedule, True)]), _best(samples[(schedule, False)])
        dense_n, plain_n = counts[(schedule, True)], counts[(schedule, False)]
        for stage in ("gradient", "eigen", "trace", "density", "rescaled"):
            # the density (and the eigenvalue run it extends) only on density_fraction of the runs
            seconds = density_fraction * dense[stage] + (1 - density_fraction) * plain[stage]
            count = density_fraction * dense_n.get(stage, 0) + (1 - density_fraction) * plain_n.get(stage, 0)
            note = f"{dense_n.get(stage, 0)} products with a density, {plain_n.get(stage, 0)} without" if stage != "gradient" else ""
            rows.append(_row(f"curvature: {_STAGE_WORDS[stage]} (per run)", schedule, seconds, gradient,
                             products=round(count, 1) if stage != "gradient" else None, note=note))
        curvature_total = density_fraction * sum(dense.values()) + (1 - density_fraction) * sum(plain.values())
        if schedule == CURRENT:
            # a process's first operator loads the program traced by an earlier task (the store's
            # one trace per study is left out): once per task of `task_runs` runs
            first_trace = max(first_stored - setup, 0.0) / task_runs
            rows.append(_row("curvature: first operator in a process (per run)", schedule, first_trace, gradient,
                             note=f"({first_stored:.3g} - {setup:.3g}) s over a task's {task_runs} runs; program from the store"))
            curvature_total += first_trace
        best_sharp = _best(sharp[schedule])
        for name, seconds in best_sharp.items():
            rows.append(_row(f"sharpness: {name}", schedule, seconds, gradient))
        sharp_total = sum(best_sharp.values())
        rows.append(_row("curvature stage (per run)", schedule, curvature_total, gradient,
                         products=round(density_fraction * sum(dense_n.values()) + (1 - density_fraction) * sum(plain_n.values()), 1)))
        rows.append(_row("sharpness stage (per run)", schedule, sharp_total, gradient))
        per_run[schedule] = curvature_total + sharp_total
        rows.append(_row(PER_RUN, schedule, per_run[schedule], gradient,
                         note=f"density on {density_fraction:.0%} of the runs"))
    if landscape is not None:
        vectors = measure(model, x, y, replace(curvature, trace_probes=2, trace_min_probes=2, trace_rel_stderr=0.0),
                          device=device, dtype=dtype, with_density=False).vectors
        lx, ly = x, y  # the landscape's own subset size is a profile choice; here the same images
        if 0 < landscape.n_samples < n:
            lx, ly = x[: landscape.n_samples], y[: landscape.n_samples]
        _, seconds = _cpu(lambda: measure_landscape(model, params_of(model), vectors, lx, ly, landscape, device=device, dtype=dtype))
        rows.append(_row(f"landscape: slices and surfaces, {len(ly)} images", CURRENT, seconds, gradient,
                         note=f"on {density_fraction:.0%} of the runs; not part of the per-run row"))
    rows += _layout_rows(problem.model, x, y, problem.params, curvature.chunk_size, gradient, product)
    return _with_ratios(rows)


_STAGE_WORDS = {"gradient": "gradient norm", "eigen": "Lanczos top-k and lambda_min", "trace": "trace",
                "density": "spectral density", "rescaled": "balanced lambda_max"}


def _layout_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict, chunk: int, gradient: float,
                 product: float) -> list[dict[str, Any]]:
    """Per-product cost of the layouts a CPU could use: channels_last weights, and two threads
    (core-seconds: CPU time of both)."""
    rows = []
    if x.device.type != "cpu":
        return rows
    last = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in params.items()}
    op_last = HessianOperator(model, x.contiguous(memory_format=torch.channels_last), y, last, chunk_size=chunk)
    v = torch.randn(op_last.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(x)
    work = f"one Hessian-vector product, {len(y)} images, layouts"
    rows.append(_row(work, "contiguous (NCHW), 1 thread", product, gradient, products=1))
    rows.append(_row(work, "channels_last weights and input, 1 thread", _best_cpu(lambda: op_last @ v, 5), gradient, products=1))
    op = HessianOperator(model, x, y, params, chunk_size=chunk)
    with _threads(2):
        rows.append(_row(work, "contiguous, 2 threads (CPU time of both)", _best_cpu(lambda: op @ v, 5), gradient, products=1))
    return rows


def _with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ratio_vs_ours: the row's core-seconds over the current schedule's on the same work (> 1:
    the current one is cheaper); layouts against the contiguous one-thread product."""
    ours = {r["work"]: r["seconds"] for r in rows if r["implementation"] in (CURRENT, "contiguous (NCHW), 1 thread",
                                                                            "next operator (program kept)")}
    for r in rows:
        base = ours.get(r["work"])
        if base and r["seconds"] is not None:
            r["ratio_vs_ours"] = r["seconds"] / base
    return rows


def measurement_summary(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The headline: core-seconds per run before and after, and their ratio."""
    by = {r["implementation"]: r for r in rows if r["work"] == PER_RUN}
    before, after = by.get(PREVIOUS), by.get(CURRENT)
    return {"previous_core_seconds_per_run": before and before["seconds"], "current_core_seconds_per_run": after and after["seconds"],
            "previous_over_current": before and before["ratio_vs_ours"],
            "current_gradients_per_run": after and after["gradients"]}


def measurement_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| work | implementation | core-seconds | gradients | products | previous / current | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        def num(value: Any, fmt: str) -> str:
            return format(value, fmt) if isinstance(value, (int, float)) else "-"
        ratio = f"{r['ratio_vs_ours']:.2f}x" if isinstance(r["ratio_vs_ours"], (int, float)) else "-"
        note = str(r.get("note", "")).replace("|", "/")
        lines.append(f"| {r['work']} | {r['implementation']} | {num(r['seconds'], '.3g')} | {num(r['gradients'], '.3g')} | "
                     f"{num(r['products'], 'g')} | {ratio} | {note} |")
    return "\n".join(lines) + "\n"
