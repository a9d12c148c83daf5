"""Loss landscapes around a minimum: 1-D and 2-D slices, and linear interpolation between minima.

Slices (Li et al. 2018, "Visualizing the loss landscape of neural nets"): the training loss at
w + a d (1-D) and w + a d1 + b d2 (2-D), for
- the top Hessian eigenvectors (unit norm in the whole parameter space, as the original study
  plots them on [-1, 1] and [-2, 2]^2), and
- filter-normalized directions: a random d ~ N(0, I), or the top eigenvector, with every filter
  d_i (index i along dim 0 of a weight: an output channel of a convolution, a row of a linear
  layer) rescaled to the norm of the matching weight filter, ||d_i|| <- ||w_i||. This removes
  the scale ambiguity Dinh et al. point out (a filter scaled by a gets a direction scaled by a),
  so slices of different minima compare. Like Li et al. we leave one-dimensional parameters
  alone (their `ignore="biasbn"`): bias directions are zero (LeNet-5 has no batch norm).

Interpolation (Goodfellow et al. 2015, "Qualitatively characterizing neural network optimization
problems"): loss and accuracy at (1 - a) w_a + a w_b, with a beyond [0, 1] to show both basins.
We also report the barrier of Frankle et al. 2020 ("Linear mode connectivity and the lottery
ticket hypothesis"): max over a in [0, 1] of L(a) - ((1 - a) L(w_a) + a L(w_b)).

Every point is one forward pass over the subset (chunked). On a CPU a plain loop over the grid
points beats `torch.func.vmap` over chunks of points (LeNet-5, 1000 images, one thread: 0.11 s
vs 0.18-0.26 s per point), since batching gives the convolutions nothing to share.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from minima.objective import Params, evaluate, flatten, frozen_copy, num_params, unflatten
from minima.sharpness.common import CHUNK, prepare
from minima.specs import LandscapeSettings


def grid(low: float, high: float, points: int) -> list[float]:
    """Evenly spaced coefficients, snapped so that grid points meant to be 0 or 1 are exact."""
    step = (high - low) / (points - 1)
    return [round(low + k * step, 12) for k in range(points)]


def filter_normalize(direction: Params, params: Params) -> Params:
    """Li et al.'s normalization: every filter d_i of a weight (index i along dim 0) rescaled to
    the norm of the matching weight filter, ||d_i|| <- ||w_i||; one-dimensional parameters
    (biases) get no component."""
    out = {}
    for name, w in params.items():
        d = direction[name].reshape(w.shape).to(w)
        if w.dim() <= 1:
            out[name] = torch.zeros_like(w)
            continue
        factor = w.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
        out[name] = d * factor.view(-1, *([1] * (w.dim() - 1)))
    return out


def filter_normalized_direction(params: Params, generator: torch.Generator) -> Params:
    """A Gaussian direction (drawn on the CPU in float64), filter-normalized to the weights."""
    gaussian = {name: torch.randn(w.shape, generator=generator, dtype=torch.float64) for name, w in params.items()}
    return filter_normalize(gaussian, params)


Evaluator = Callable[[Params], tuple[float, float]]  # params -> (loss, accuracy)


def model_evaluator(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Evaluator:
    """Mean cross-entropy and accuracy of an eval-mode copy of the model on (x, y), chunked."""
    frozen = frozen_copy(model)

    def run(params: Params) -> tuple[float, float]:
        result = evaluate(frozen, params, x, y, chunk=CHUNK)
        return result.loss, result.accuracy

    return run


def _as_flat(direction: Params | torch.Tensor) -> torch.Tensor:
    return direction if isinstance(direction, torch.Tensor) else flatten(direction)


def _evaluate_points(
    evaluator: Evaluator, params: Params, directions: list[Params | torch.Tensor], coefficients: list[tuple[float, ...]]
) -> tuple[list[float], list[float]]:
    """Loss and accuracy at params + sum_k c_k d_k for each coefficient tuple."""
    center = flatten(params).detach()
    stacked = torch.stack([_as_flat(d).detach().to(center) for d in directions])
    losses, accuracies = [], []
    for c in coefficients:
        point = center + torch.tensor(c, dtype=center.dtype, device=center.device) @ stacked
        loss, accuracy = evaluator(unflatten(point, params))
        losses.append(loss)
        accuracies.append(accuracy)
    return losses, accuracies


@dataclass(frozen=True)
class Slice1D:
    alphas: tuple[float, ...]
    loss: tuple[float, ...]
    accuracy: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {"alphas": list(self.alphas), "loss": list(self.loss), "accuracy": list(self.accuracy)}


@dataclass(frozen=True)
class Surface2D:
    alphas: tuple[float, ...]  # first direction, rows of the grids
    betas: tuple[float, ...]  # second direction, columns
    loss: tuple[tuple[float, ...], ...]  # loss[i][j] at w + alphas[i] d1 + betas[j] d2
    accuracy: tuple[tuple[float, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "alphas": list(self.alphas),
            "betas": list(self.betas),
            "loss": [list(row) for row in self.loss],
            "accuracy": [list(row) for row in self.accuracy],
        }


def slice_1d_of(
    evaluator: Evaluator, params: Params, direction: Params | torch.Tensor, alphas: Sequence[float]
) -> Slice1D:
    """Loss and accuracy at w + a d, for any evaluator (a quadratic in the tests)."""
    losses, accuracies = _evaluate_points(evaluator, params, [direction], [(a,) for a in alphas])
    return Slice1D(tuple(float(a) for a in alphas), tuple(losses), tuple(accuracies))


def surface_2d_of(
    evaluator: Evaluator, params: Params, d1: Params | torch.Tensor, d2: Params | torch.Tensor,
    alphas: Sequence[float], betas: Sequence[float],
) -> Surface2D:
    """Loss and accuracy grids at w + a d1 + b d2."""
    points = [(a, b) for a in alphas for b in betas]
    losses, accuracies = _evaluate_points(evaluator, params, [d1, d2], points)
    width = len(betas)
    rows = lambda v: tuple(tuple(v[i * width : (i + 1) * width]) for i in range(len(alphas)))  # noqa: E731
    return Surface2D(tuple(float(a) for a in alphas), tuple(float(b) for b in betas), rows(losses), rows(accuracies))


@dataclass(frozen=True)
class Interpolation:
    alphas: tuple[float, ...]
    loss: tuple[float, ...]
    accuracy: tuple[float, ...]
    loss_a: float  # at w_a (a = 0)
    loss_b: float  # at w_b (a = 1)
    barrier: float  # max over a in [0, 1] of the loss above the chord between the endpoints

    def to_json(self) -> dict[str, Any]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}


def interpolate_of(evaluator: Evaluator, params_a: Params, params_b: Params, alphas: Sequence[float]) -> Interpolation:
    """Loss and accuracy along (1 - a) w_a + a w_b, written so that a = 0 and a = 1 give w_a and
    w_b exactly (w_a + a (w_b - w_a) would not)."""
    losses, accuracies = [], []
    for a in alphas:
        loss, accuracy = evaluator({name: (1 - a) * params_a[name] + a * params_b[name] for name in params_a})
        losses.append(loss)
        accuracies.append(accuracy)
    loss_a, loss_b = evaluator(params_a)[0], evaluator(params_b)[0]
    above_chord = [loss - ((1 - a) * loss_a + a * loss_b) for a, loss in zip(alphas, losses) if 0 <= a <= 1]
    barrier = max([0.0, *above_chord])
    return Interpolation(tuple(float(a) for a in alphas), tuple(losses), tuple(accuracies), loss_a, loss_b, barrier)


def measure_interpolation(
    model: nn.Module, params_a: Params, params_b: Params, x: torch.Tensor, y: torch.Tensor,
    settings: LandscapeSettings, *, device: str | torch.device, dtype: torch.dtype,
) -> Interpolation:
    """`interpolate` on the recorded subset, over settings.interp_points coefficients."""
    problem = prepare(model, params_a, x, y, device=device, dtype=dtype)
    moved_b = {name: p.detach().to(device=device, dtype=dtype) for name, p in params_b.items()}
    alphas = grid(settings.interp_low, settings.interp_high, settings.interp_points)
    return interpolate_of(model_evaluator(problem.model, problem.x, problem.y), problem.params, moved_b, alphas)


@dataclass(frozen=True)
class LandscapeResult:
    eigen_1d: Slice1D  # unit top eigenvector (the original study's plot)
    eigen_normalized_1d: Slice1D  # the top eigenvector filter-normalized: comparable across minima
    random_1d: Slice1D
    eigen_2d: Surface2D
    random_2d: Surface2D
    center_loss: float
    center_accuracy: float
    n_samples: int
    seconds: float
    settings: LandscapeSettings

    def to_json(self) -> dict[str, Any]:
        slices = ("eigen_1d", "eigen_normalized_1d", "random_1d", "eigen_2d", "random_2d")
        return {
            **{name: getattr(self, name).to_json() for name in slices},
            "center_loss": self.center_loss,
            "center_accuracy": self.center_accuracy,
            "n_samples": self.n_samples,
            "seconds": self.seconds,
            "settings": asdict(self.settings),
        }


def _check_eigenvectors(eigenvectors: torch.Tensor, n: int) -> None:
    if eigenvectors.dim() != 2 or eigenvectors.shape[0] != n or eigenvectors.shape[1] < 2:
        raise ValueError(f"eigenvectors: need a [{n}, k>=2] tensor, got shape {tuple(eigenvectors.shape)}")
    norms = eigenvectors[:, :2].double().norm(dim=0)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        raise ValueError(f"eigenvectors: the first two columns must have unit norm, got {norms.tolist()}")


def measure_landscape(
    model: nn.Module, params: Params, eigenvectors: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
    settings: LandscapeSettings, *, device: str | torch.device, dtype: torch.dtype,
) -> LandscapeResult:
    """Slices along the top two Hessian eigenvectors (columns of a flat [P, k] tensor, k >= 2),
    along the top one filter-normalized, and along two filter-normalized random directions drawn
    from settings.seed.

    A unit eigenvector is a different relative perturbation for networks whose weights differ in
    scale, so slices of different optimizers compare only after Li et al.'s normalization; the
    unit slices are kept because the original study plotted them."""
    _check_eigenvectors(eigenvectors, num_params(params))
    start = time.perf_counter()
    problem = prepare(model, params, x, y, device=device, dtype=dtype)
    run, w = model_evaluator(problem.model, problem.x, problem.y), problem.params
    v1, v2 = (eigenvectors[:, i].to(device=device, dtype=dtype) for i in range(2))
    normalized = filter_normalize(unflatten(v1, w), w)
    generator = torch.Generator().manual_seed(settings.seed)
    r1 = filter_normalized_direction(w, generator)
    r2 = filter_normalized_direction(w, generator)
    line = grid(-settings.span_1d, settings.span_1d, settings.points_1d)
    square = grid(-settings.span_2d, settings.span_2d, settings.points_2d)
    normalized_line = grid(-settings.normalized_span_1d, settings.normalized_span_1d, settings.points_1d)
    normalized_square = grid(-settings.normalized_span_2d, settings.normalized_span_2d, settings.points_2d)
    center_loss, center_accuracy = run(w)
    return LandscapeResult(
        eigen_1d=slice_1d_of(run, w, v1, line),
        eigen_normalized_1d=slice_1d_of(run, w, normalized, normalized_line),
        random_1d=slice_1d_of(run, w, r1, normalized_line),
        eigen_2d=surface_2d_of(run, w, v1, v2, square, square),
        random_2d=surface_2d_of(run, w, r1, r2, normalized_square, normalized_square),
        center_loss=center_loss,
        center_accuracy=center_accuracy,
        n_samples=len(problem.y),
        seconds=time.perf_counter() - start,
        settings=settings,
    )
