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

`measure` runs them in that order on one operator. The trace is Hutchinson deflated by the
Krylov basis of the eigenvalue run (the Krylov variant of Hutch++, see trace.py): that basis
is already paid for, so every trace probe works on the part of H outside the dominant
eigenspace, which cut the standard error several-fold on LeNet-5 at no extra products.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, Mapping

from pydantic import Field

import torch
from torch import nn

from minima.curvature.density import DensityResult, spectral_density
from minima.curvature.gradient import GradientResult, gradient_norm
from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import EigenResult, LanczosRun, lanczos
from minima.curvature.trace import TraceResult, hutchinson
from minima.io import finite_or_none
from minima.objective import frozen_copy, num_params, params_of
from minima.settings import NonNegativeFloat, NonNegativeInt, PositiveInt, settings

__all__ = ["CurvatureSettings", "CurvatureResult", "RescaledOperator", "measure", "measure_top_and_trace"]


@settings
class CurvatureSettings:
    """Settings of the curvature stage (one TOML table)."""

    n_samples: NonNegativeInt = 0  # training samples in the curvature set; 0 = the run's whole training set
    top_k: PositiveInt = 5  # top eigenpairs
    tol: Annotated[float, Field(gt=0, lt=1)] = 1e-3  # Lanczos: stop when every wanted |beta_m s_m| / |theta| <= tol
    max_iter: PositiveInt = 100  # Lanczos steps at most
    trace_probes: Annotated[int, Field(ge=2)] = 100  # Rademacher probes of the (deflated) Hutchinson trace
    density_probes: PositiveInt = 5  # SLQ Gaussian probes
    density_steps: Annotated[int, Field(ge=2)] = 60  # Lanczos steps per SLQ probe
    density_points: Annotated[int, Field(ge=10)] = 500  # grid points of the density
    density_sigma: NonNegativeFloat = 0.0  # Gaussian broadening; 0 = 1 % of the Ritz-node range
    density_runs: Literal["all", "first_seed"] = "all"  # first_seed: one density per configuration
    balanced_tol: Annotated[float, Field(gt=0, lt=1)] = 1e-2  # lambda_max of the layer-balanced net
    chunk_size: PositiveInt = 5000  # samples per forward/backward pass
    seed: NonNegativeInt = 0  # seeds the probe and start-vector generators

    def __post_init__(self) -> None:
        if self.max_iter < self.top_k:
            raise ValueError(f"max_iter: must be >= top_k ({self.top_k}), got {self.max_iter}")


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
    seconds: Mapping[str, float] = field(default_factory=dict)
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
            "seconds": {k: _float(v) for k, v in self.seconds.items()},
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


def _eigen(op: HessianOperator, settings: CurvatureSettings, k: int, *, bottom: bool, progress: bool = False,
           tol: float | None = None) -> LanczosRun:
    return lanczos(op, k, tol=settings.tol if tol is None else tol, max_iter=settings.max_iter, bottom=bottom,
                   generator=_generator(settings.seed, 0), progress=progress)


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
    return hutchinson(op, settings.trace_probes, generator=_generator(settings.seed, 1), basis=run.basis,
                      basis_trace=float(run.alphas.sum()), method="hutchinson deflated by the Lanczos basis", progress=progress)


def _float(value: float) -> float | None:
    """A plain Python float for JSON (None where the value is not finite)."""
    return finite_or_none(float(value))


def _floats(values: Any) -> list[float | None]:
    return [_float(v) for v in values]


def _generator(seed: int, stream: int) -> torch.Generator:
    # one stream per estimator: changing one estimator's budget leaves the others' draws alone,
    # and the trace probes stay independent of the Lanczos start vector they are deflated by
    return torch.Generator().manual_seed(seed * 1009 + stream)


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
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    local, params, x, y = _on_device(model, x, y, device=device, dtype=dtype)

    clock = time.perf_counter()
    gradient = gradient_norm(local, x, y, params, chunk_size=settings.chunk_size)
    seconds["gradient"] = time.perf_counter() - clock

    op = HessianOperator(local, x, y, params, chunk_size=settings.chunk_size)
    clock = time.perf_counter()
    run = _eigen(op, settings, settings.top_k, bottom=True, progress=progress)
    seconds["eigen"] = time.perf_counter() - clock

    clock = time.perf_counter()
    trace = _deflated_trace(op, settings, run, progress=progress)
    seconds["trace"] = time.perf_counter() - clock

    clock = time.perf_counter()
    density = None
    if with_density:
        density = spectral_density(op, n_probes=settings.density_probes, n_steps=settings.density_steps,
                                   points=settings.density_points, sigma=settings.density_sigma,
                                   generator=_generator(settings.seed, 2), progress=progress)
    seconds["density"] = time.perf_counter() - clock

    clock = time.perf_counter()
    rescaled = None
    if rescaling is not None:
        rescaled = _eigen(RescaledOperator(op, rescaling), settings, 1, bottom=False, tol=settings.balanced_tol).top
    seconds["rescaled"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - start
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
        seconds=seconds,
        dtype=str(dtype).removeprefix("torch."),
        device=str(torch.device(device)),
    )
