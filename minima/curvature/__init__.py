"""The curvature stage: Hessian spectrum, trace, spectral density and gradient norm at a minimum.

The Hessian is that of the mean training cross-entropy over the curvature set (the data
passed in, already subsetted by the caller), model in eval mode, all trainable parameters
(docs/methods.md). One module per estimator:

- hvp.py       matrix-free Hessian-vector products (Pearlmutter 1994), chunked over the data;
- lanczos.py   top-k and most negative eigenpairs, Lanczos with full reorthogonalization;
- trace.py     Hutchinson / Hutch++ trace with standard errors;
- density.py   spectral density by stochastic Lanczos quadrature;
- gradient.py  the full-data gradient norm.

Benchmarks against PyHessian 0.1 and curvlinops 3.0.1 live in `minima.bench`.

`measure` runs them on one operator, and every product serves as many estimates as it can:

- the gradient and the loss are outputs of the operator's one-time primal pass (hvp.py);
- one Lanczos run gives the top-k and the most negative eigenpairs; it stops on the residual
  bounds of exactly those reported pairs (lanczos.py), after at least `min_steps` steps. Why a
  floor: a residual bound says some eigenvalue is near the Ritz value, not that it is the
  smallest. At a minimum H has a large near-zero bulk, and for the first dozen steps the
  smallest Ritz value can sit on it, converged to tolerance, before the Krylov space has found
  the negative eigenvalues: 4 of the 48 runs of 5235d0d's quick study stopped at 12 or 14 steps
  with lambda_min between -0.0005 and -0.0000, where at least 20 steps give -0.031 to -0.13, and
  checking after every step stopped a fifth at 13 (-0.0002 against -0.10). The negative end was
  resolved by step 16 to 20 in the runs traced step by step, so `quick` sets min_steps = 20; 44
  of the 48 runs took at least 20 steps anyway;
- the trace is Hutchinson deflated by that run's Krylov basis (the Krylov variant of Hutch++,
  see trace.py): the basis is already paid for, and every probe works on the part of H outside
  the dominant eigenspace. Probes stop once a bound on the standard error that the same
  products give (trace.py) is `trace_rel_stderr` of the estimate (at least `trace_min_probes`,
  at most `trace_probes`);
- the same run, whose start is a uniformly random unit vector, is the density's first
  stochastic Lanczos quadrature probe (taken to at least `density_steps` steps when a density
  is wanted; density.py), so only the other probes cost products;
- lambda_max after a function-preserving rescaling D (the operator D^-1 H D^-1) starts its
  Lanczos run from D^-1 v_1, v_1 the top eigenvector of H: on 8 of the quick profile's networks
  it took 2 to 6 steps where a random start took 4 to 8 (and one random start stopped, at
  tolerance, on the second eigenvalue); D v_1 and D (v_1 + v_2 + v_3) were in between.

`CurvatureResult.products` says how many products each estimate took (README, Performance, has
the per-stage costs before and after).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping


import torch
from torch import nn

from minima.curvature.density import DensityResult, spectral_density
from minima.curvature.gradient import GradientResult, gradient_norm
from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import EigenResult, LanczosRun, lanczos
from minima.curvature.trace import TraceResult, hutchinson
from minima.io import finite_or_none
from minima.objective import frozen_copy, num_params, params_of
from minima.specs import CurvatureSettings

__all__ = ["CurvatureSettings", "CurvatureResult", "RescaledOperator", "measure", "measure_top_and_trace"]


@dataclass(frozen=True)
class CurvatureResult:
    settings: CurvatureSettings
    top: EigenResult  # top-k eigenpairs, descending
    bottom: EigenResult  # the most negative eigenvalue (k = 1)
    trace: TraceResult
    density: DensityResult | None  # None where the settings ask for one density per configuration
    gradient: GradientResult
    rescaled: EigenResult | None  # lambda_max after the requested function-preserving rescaling
    n_samples: int
    n_params: int
    n_hvp: int  # Hessian-vector products, all estimators together
    products: Mapping[str, int] = field(default_factory=dict)  # the same, per estimate
    seconds: Mapping[str, float] = field(default_factory=dict)  # wall clock per stage, and "total"
    cpu_seconds: Mapping[str, float] = field(default_factory=dict)  # the process's CPU time: core-seconds
    dtype: str = "float32"
    device: str = "cpu"

    @property
    def top_eigenvalues(self) -> tuple[float, ...]:
        return self.top.values

    @property
    def min_eigenvalue(self) -> float:
        return self.bottom.values[0]

    @property
    def vectors(self) -> torch.Tensor:
        """Top-k eigenvectors as a flat [P, k] tensor (parameters in state_dict order)."""
        return self.top.vectors

    def to_json(self) -> dict[str, Any]:
        d = self.density
        density = None if d is None else {
            "grid": _floats(d.grid.tolist()),
            "values": _floats(d.density.tolist()),
            "sigma": _float(d.sigma),
            "n_probes": d.n_probes,
            "n_steps": d.n_steps,
            "nodes": _floats(d.nodes.tolist()),
            "weights": _floats(d.weights.tolist()),
        }
        return {
            "top_eigenvalues": _floats(self.top.values),
            "min_eigenvalue": _float(self.min_eigenvalue),
            "trace": {
                "mean": _float(self.trace.mean),
                "stderr": _float(self.trace.stderr),
                "stderr_bound": None if self.trace.stderr_bound is None else _float(self.trace.stderr_bound),
                "n_probes": self.trace.n_probes,
                "method": self.trace.method,
                "n_matvec": self.trace.n_matvec,
                "reason": self.trace.reason,
            },
            "gradient_norm": _float(self.gradient.norm),
            "rescaled": None if self.rescaled is None else {
                "top_eigenvalue": _float(self.rescaled.values[0]),
                "relative_error": _float(self.rescaled.relative_errors[0]),
                "converged": self.rescaled.converged,
            },
            "loss": _float(self.gradient.loss),
            "n_samples": self.n_samples,
            "n_params": self.n_params,
            "density": density,
            "eigen": {
                "residuals": _floats(self.top.residuals),
                "relative_errors": _floats(self.top.relative_errors),
                "converged": self.top.converged,
                "reason": self.top.reason,
                "tol": self.top.tol,
                "n_steps": self.top.n_steps,
                "min": {
                    "residual": _float(self.bottom.residuals[0]),
                    "relative_error": _float(self.bottom.relative_errors[0]),
                    "converged": self.bottom.converged,
                    "reason": self.bottom.reason,
                },
            },
            "n_hvp": self.n_hvp,
            "products": dict(self.products),
            "seconds": {k: _float(v) for k, v in self.seconds.items()},
            "cpu_seconds": {k: _float(v) for k, v in self.cpu_seconds.items()},
            "settings": asdict(self.settings),
            "dtype": self.dtype,
            "device": self.device,
        }


@dataclass(frozen=True)
class TopAndTrace:
    """The largest eigenvalue and the trace alone: what Dinh's rescaling table reports."""

    top: EigenResult
    trace: TraceResult
    n_hvp: int


def measure_top_and_trace(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: CurvatureSettings, *, device: str | torch.device, dtype: torch.dtype
) -> TopAndTrace:
    """λ_max and tr(H) as `measure` computes them (same estimators, tolerances and probe streams),
    without the most negative eigenvalue, the density or the gradient. Why: on rescaled minima the
    most negative eigenvalue is tiny next to λ_max, and its relative tolerance took Lanczos to up
    to 96 steps where λ_max needed a handful."""
    local, params, x, y = _on_device(model, x, y, device=device, dtype=dtype)
    op = HessianOperator(local, x, y, params, chunk_size=settings.chunk_size)
    run = _eigen(op, settings, 1, bottom=False)
    return TopAndTrace(top=run.top, trace=_deflated_trace(op, settings, run), n_hvp=op.n_matvec)


def _on_device(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: str | torch.device,
               dtype: torch.dtype) -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """An eval-mode copy of the model, its parameters and the data, on the device in the dtype."""
    local = frozen_copy(model).to(device=device, dtype=dtype)
    params = {k: v.to(device=device, dtype=dtype) for k, v in params_of(model).items()}
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=False everywhere)")
    return local, params, x.to(device=device, dtype=dtype), y.to(device=device)


def _eigen(op: Any, settings: CurvatureSettings, k: int, *, bottom: bool, progress: bool = False,
           tol: float | None = None, min_steps: int = 0, start: torch.Tensor | None = None) -> LanczosRun:
    return lanczos(op, k, tol=settings.tol if tol is None else tol, max_iter=settings.max_iter, bottom=bottom,
                   generator=_generator(settings.seed, 0), min_steps=min_steps, start=start, progress=progress)


class RescaledOperator:
    """D^-1 H D^-1 for a diagonal D (flat factors d): the Hessian, at the rescaled point w' = D w,
    of the rescaled network, exactly (L'(w') = L(D^-1 w'); see minima.reparam). Lets lambda_max of
    a function-preserving rescaling reuse the traced operator of the original network."""

    def __init__(self, op: HessianOperator, factors: torch.Tensor):
        self._op = op
        self._inverse = 1.0 / factors.to(device=op.device, dtype=op.dtype)
        self.shape, self.dtype, self.device = op.shape, op.dtype, op.device

    @property
    def n_matvec(self) -> int:
        return self._op.n_matvec

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        d = self._inverse if v.ndim == 1 else self._inverse[:, None]
        return d * (self._op @ (d * v.to(device=self.device, dtype=self.dtype)))


def _deflated_trace(op: HessianOperator, settings: CurvatureSettings, run: LanczosRun, *, progress: bool = False) -> TraceResult:
    target = settings.trace_rel_stderr or None
    # the linearized operator multiplies one column at a time anyway: probes one by one lose
    # nothing and stop exactly at the target; vmapped (GPU) blocks are cheaper per column
    block = 1 if op.linearized else 8
    return hutchinson(op, settings.trace_probes, generator=_generator(settings.seed, 1), basis=run.basis,
                      basis_trace=float(run.alphas.sum()), method="hutchinson deflated by the Lanczos basis",
                      target_rel_stderr=target, min_probes=settings.trace_min_probes, block=block, progress=progress)


def _warm_start(run: LanczosRun, factors: torch.Tensor) -> torch.Tensor:
    """D^-1 v_1: where the top eigenvector of D^-1 H D^-1 is sought first (the best start
    measured; see the module docstring). Lanczos from it still sees every direction it has a
    component in, so a wrong guess costs steps, not the answer's tolerance."""
    v = run.top.vectors[:, 0]
    return v / factors.to(device=v.device, dtype=v.dtype)


class _Stages:
    """Wall-clock and CPU seconds per named stage, and their totals since construction. CPU time
    is what a stage costs in core-seconds; on a shared machine the wall clock also counts the
    time other processes held the cores."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start = (time.perf_counter(), time.process_time())

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = time.perf_counter() - wall
            self.cpu[name] = time.process_time() - cpu

    def close(self) -> None:
        self.wall["total"] = time.perf_counter() - self._start[0]
        self.cpu["total"] = time.process_time() - self._start[1]


def _float(value: float) -> float | None:
    """A plain Python float for JSON (None where the value is not finite)."""
    return finite_or_none(float(value))


def _floats(values: Any) -> list[float | None]:
    return [_float(v) for v in values]


def _generator(seed: int, stream: int) -> torch.Generator:
    # one stream per estimator: changing one estimator's budget leaves the others' draws alone,
    # and the trace probes stay independent of the Lanczos start vector they are deflated by
    return torch.Generator().manual_seed(seed * 1009 + stream)


def _gradient(op: HessianOperator, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: dict[str, torch.Tensor],
              settings: CurvatureSettings) -> GradientResult:
    """The end point's gradient: free from the linearized operator's primal pass, else its own pass."""
    if not op.linearized:
        return gradient_norm(model, x, y, params, chunk_size=settings.chunk_size)
    g, loss = op.gradient()
    return GradientResult(norm=float(torch.linalg.vector_norm(g)), loss=loss, n_samples=len(y))


def measure(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: CurvatureSettings = CurvatureSettings(),
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    progress: bool = False,
    with_density: bool = True,
    rescaling: torch.Tensor | None = None,
) -> CurvatureResult:
    """Every curvature quantity of `model` on (x, y); the caller's model and tensors are untouched.

    `rescaling`: flat factors d of a function-preserving rescaling w' = d * w; then lambda_max of
    the rescaled network is also measured (to `settings.balanced_tol`), on the same operator."""
    stages = _Stages()
    local, params, x, y = _on_device(model, x, y, device=device, dtype=dtype)

    op = HessianOperator(local, x, y, params, chunk_size=settings.chunk_size)
    with stages("gradient"):  # with the operator's one-time primal pass, which yields it
        gradient = _gradient(op, local, x, y, params, settings)

    with stages("eigen"):
        run = _eigen(op, settings, settings.top_k, bottom=True, progress=progress,
                     min_steps=max(settings.min_steps, settings.density_steps if with_density else 0))
    eigen_hvp = op.n_matvec

    with stages("trace"):
        trace = _deflated_trace(op, settings, run, progress=progress)

    density = None
    with stages("density"):
        if with_density:
            density = spectral_density(op, n_probes=settings.density_probes, n_steps=settings.density_steps,
                                       points=settings.density_points, sigma=settings.density_sigma,
                                       generator=_generator(settings.seed, 2), probes=[(run.alphas, run.betas)],
                                       progress=progress)

    rescaled = None
    with stages("rescaled"):
        if rescaling is not None:
            rescaled = _eigen(RescaledOperator(op, rescaling), settings, 1, bottom=False, tol=settings.balanced_tol,
                              start=_warm_start(run, rescaling)).top
    stages.close()
    return CurvatureResult(
        settings=settings,
        top=run.top,
        bottom=run.bottom,
        trace=trace,
        density=density,
        gradient=gradient,
        rescaled=rescaled,
        n_samples=len(y),
        n_params=num_params(params),
        n_hvp=op.n_matvec,
        products={"eigen": eigen_hvp, "trace": trace.n_matvec, "density": 0 if density is None else density.n_matvec,
                  "rescaled": 0 if rescaled is None else rescaled.n_matvec},
        seconds=stages.wall,
        cpu_seconds=stages.cpu,
        dtype=str(dtype).removeprefix("torch."),
        device=str(torch.device(device)),
    )
