"""Machinery the sharpness measures share: the objective on a recorded data subset, and
projected gradient ascent in normalized perturbation coordinates.

Every worst-case measure here maximizes L(w + s * u) over a convex set of u, where the scale s
(elementwise, fixed by w) turns the measure's own geometry into a plain ball: s = eps (|w| + 1)
with the unit L-infinity ball for Keskar's box, s = |w| + xi with the L2 ball of radius rho for
adaptive sharpness. In u the gradient is s * grad L(w + s u), the steepest-ascent direction is
its sign (L-infinity) or its normalized value (L2), and the projection is a clamp or a rescale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


from minima.objective import CPU_CHUNK, Params, evaluate, frozen_copy, loss_at, unflatten
from minima.specs import SharpnessSettings  # noqa: F401  (declared torch-free; imported from here too)

LossFn = Callable[[Params], torch.Tensor]  # differentiable scalar
AccuracyFn = Callable[[Params], float]


# Samples per forward pass; above this the loss is checkpointed chunk by chunk so memory stays
# bounded when a measure runs on the whole 60k training set.
CHUNK = 5000


@dataclass(frozen=True)
class Problem:
    """Everything a measure needs, on one device and dtype: the eval copy, w, and the data."""

    model: nn.Module
    params: Params
    x: torch.Tensor
    y: torch.Tensor

    def loss(self, params: Params) -> torch.Tensor:
        return chunked_loss(self.model, params, self.x, self.y)

    def accuracy(self, params: Params) -> float:
        return evaluate(self.model, params, self.x, self.y, chunk=CHUNK).accuracy


def prepare(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, *, device: str | torch.device, dtype: torch.dtype
) -> Problem:
    """Copies model, params and the data (already chosen by the caller) onto device/dtype."""
    clone = frozen_copy(model).to(device=device, dtype=dtype)
    moved = {name: p.detach().to(device=device, dtype=dtype).clone() for name, p in params.items()}
    return Problem(clone, moved, x.to(device=device, dtype=dtype), y.to(device=device))


def chunked_loss(
    model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK
) -> torch.Tensor:
    """Mean cross-entropy, evaluated in pieces.

    On CPU the pieces are at most CPU_CHUNK images (cache-sized activations: loss and gradient
    on 2,048 LeNet-5 images ran about 1.4x faster in pieces of 512). Beyond `chunk` images each
    piece is recomputed in backward instead of keeping every activation of the whole set alive.
    """
    n = len(y)
    step = min(chunk, CPU_CHUNK) if x.device.type == "cpu" else chunk
    if n <= step:
        return loss_at(model, params, x, y)
    total = x.new_zeros(())
    for start in range(0, n, step):
        xb, yb = x[start : start + step], y[start : start + step]
        part = loss_at(model, params, xb, yb) if n <= chunk else checkpoint(loss_at, model, params, xb, yb, use_reentrant=False)
        total = total + part * (len(yb) / n)
    return total


def value(loss: LossFn, params: Params) -> float:
    with torch.no_grad():
        return float(loss(params))


def flat_value_and_grad(loss: LossFn, point: torch.Tensor, like: Params) -> tuple[float, torch.Tensor]:
    """Loss and gradient at a flat parameter vector (leaf of its own, so inputs stay untouched)."""
    leaf = point.detach().requires_grad_(True)
    with torch.enable_grad():
        out = loss(unflatten(leaf, like))
        (grad,) = torch.autograd.grad(out, leaf)
    return float(out.detach()), grad


def flat_value_and_pending_grad(loss: LossFn, point: torch.Tensor, like: Params) -> tuple[float, Callable[[], torch.Tensor]]:
    """The loss at a flat parameter vector now, its gradient on demand: the forward pass keeps its
    graph, and the backward pass runs only if the returned function is called (an ascent step
    that fails, or the last step, never needs it). Same numbers as `flat_value_and_grad`."""
    leaf = point.detach().requires_grad_(True)
    with torch.enable_grad():
        out = loss(unflatten(leaf, like))

    def gradient() -> torch.Tensor:
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(out, leaf)
        return grad

    return float(out.detach()), gradient


def standard_normal(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Gaussian noise drawn on the CPU in float64, so a seed gives the same draw on every device."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(like)


@dataclass(frozen=True)
class Ascent:
    """Outcome of projected gradient ascent on f(u) = L(w + s * u)."""

    best_value: float  # max of L over the evaluated points, the unperturbed w included
    best_point: torch.Tensor  # u at the maximum (zeros when no point beat w)
    steps: int  # ascent steps taken; each costs one loss evaluation, and its gradient when it improved (but the last)
    improvements: int  # steps that beat every earlier point
    final_step: float  # step size after the halvings
    stop_reason: str


@dataclass(frozen=True)
class Constraint:
    """The convex set an ascent moves in, in normalized coordinates u: the steepest-ascent
    direction of a gradient there, the projection onto the set, and the first step size."""

    direction: Callable[[torch.Tensor], torch.Tensor]
    project: Callable[[torch.Tensor], torch.Tensor]
    step: float  # twice the set's radius (APGD's first step)


def projected_ascent(
    loss: LossFn, like: Params, center: torch.Tensor, scale: torch.Tensor, start: torch.Tensor, constraint: Constraint,
    *, steps: int, baseline: float,
) -> Ascent:
    """Maximize L(center + scale * u) over the set `constraint.project` maps onto, from `start`.

    The step-size rule is a simplified form of Croce & Hein's APGD (2020), which Andriushchenko
    et al. (2023) use for sharpness: the first step is twice the set's radius, and whenever a
    step fails to beat the best point the step is halved and the ascent resumes from that point
    (APGD checks progress at fixed checkpoints and adds momentum; we check every step and have
    none). Ascent on a non-concave loss is not monotone; resuming from the best point makes the
    accepted values non-decreasing, and the best point seen is the answer.

    A step's gradient is used only when the step improved and another step follows, so the
    backward pass runs only then (`flat_value_and_pending_grad`); the last step is a forward
    pass alone. Same iterates and values as taking every gradient.
    """
    direction, project, step = constraint.direction, constraint.project, constraint.step
    u = project(start)
    best, grad = flat_value_and_grad(loss, center + scale * u, like)
    improvements, reason = 0, f"ran all {steps} steps"
    taken = 0
    for taken in range(1, steps + 1):
        d = direction(scale * grad)
        if not bool(d.any()):
            reason, taken = f"zero gradient after {taken - 1} steps", taken - 1
            break
        candidate = project(u + step * d)
        if taken < steps:
            value_c, pending = flat_value_and_pending_grad(loss, center + scale * candidate, like)
        else:
            value_c, pending = value(loss, unflatten(center + scale * candidate, like)), None
        if value_c > best:
            u, best, improvements = candidate, value_c, improvements + 1
            if pending is not None:
                grad = pending()
        else:
            step /= 2
    if best > baseline:
        return Ascent(best, u, taken, improvements, step, reason)
    return Ascent(baseline, torch.zeros_like(u), taken, improvements, step, reason)
