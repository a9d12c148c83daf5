"""Adaptive sharpness, worst case and average case (Kwon et al. 2021, "ASAM: adaptive
sharpness-aware minimization"; Andriushchenko et al. 2023, "A modern look at the relationship
between sharpness and generalization").

Perturbations are measured relative to each weight, T_w = diag(|w| + xi):

    worst case    S_max(w) = max_{ ||delta / (|w| + xi)||_2 <= rho } L(w + delta) - L(w)
    average case  S_avg(w) = E_{delta ~ N(0, rho^2 diag((|w| + xi)^2))} L(w + delta) - L(w)

With xi = 0 both are invariant under any elementwise positive rescaling w -> a * w that leaves
the network function unchanged (Dinh et al. 2017): writing delta = |w| * u, the rescaled problem
is the same function of u. ASAM adds eta = 0.01 to |w| (weights only) to train; Andriushchenko
et al.'s measurement code scales by |w| exactly, which is our default (xi = 0); a weight that is
exactly zero is then not perturbed.

We evaluate on the whole recorded subset at once (their m-sharpness with m = n; they average
per-batch maxima over batches of 128 out of 1024 points).

Worst case: projected gradient ascent in u = delta / (|w| + xi), where the constraint is the L2
ball of radius rho: direction grad_u / ||grad_u||, projection by rescaling onto the ball, APGD
step rule (first step 2 rho, halved when a step fails; `common.projected_ascent`), a fixed budget
of steps (Andriushchenko et al.: 20), start at a random point of the sphere of radius rho (at an
exact minimum the gradient at u = 0 vanishes). On a quadratic 1/2 d^T H d around the minimum the
answer is rho^2 / 2 * lambda_max(T H T).

Average case: Monte Carlo over independent Gaussian draws, with the standard error of the mean.
On a quadratic the answer is rho^2 / 2 * sum_i H_ii (|w_i| + xi)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minima.objective import Params, flatten, unflatten
from minima.sharpness.common import Constraint, LossFn, projected_ascent, standard_normal, value


@dataclass(frozen=True)
class AdaptiveWorst:
    value: float  # L(w + delta*) - L(w)
    rho: float
    xi: float
    loss: float
    perturbed_loss: float
    relative_norm: float  # ||delta* / (|w| + xi)||_2, at most rho
    perturbation_norm: float  # ||delta*||_2
    steps: int
    improvements: int
    final_step: float
    stop_reason: str


@dataclass(frozen=True)
class AdaptiveAverage:
    value: float  # mean of L(w + delta) - L(w) over the draws
    stderr: float  # standard error of that mean
    rho: float
    xi: float
    loss: float
    samples: int


def _onto_ball(radius: float):
    def project(u: torch.Tensor) -> torch.Tensor:
        norm = u.norm()
        return u * (radius / norm) if norm > radius else u

    return project


def _normalized(g: torch.Tensor) -> torch.Tensor:
    norm = g.norm()
    return g / norm if norm > 0 else g


def adaptive_worst_of(
    loss: LossFn, params: Params, *, rho: float, steps: int, xi: float, generator: torch.Generator,
    base: float | None = None,
) -> AdaptiveWorst:
    """S_max for any differentiable loss(params) -> scalar; base: L(w), when the caller has it."""
    w = flatten(params).detach()
    scale = w.abs() + xi
    direction = standard_normal(tuple(w.shape), generator, w)
    start = direction * (rho / direction.norm())
    base = value(loss, params) if base is None else base
    ascent = projected_ascent(loss, params, w, scale, start, Constraint(_normalized, _onto_ball(rho), 2 * rho),
                              steps=steps, baseline=base)
    return AdaptiveWorst(
        value=ascent.best_value - base,
        rho=rho,
        xi=xi,
        loss=base,
        perturbed_loss=ascent.best_value,
        relative_norm=float(ascent.best_point.norm()),
        perturbation_norm=float((scale * ascent.best_point).norm()),
        steps=ascent.steps,
        improvements=ascent.improvements,
        final_step=ascent.final_step,
        stop_reason=ascent.stop_reason,
    )


def adaptive_average_of(
    loss: LossFn, params: Params, *, rho: float, samples: int, xi: float, generator: torch.Generator,
    base: float | None = None,
) -> AdaptiveAverage:
    """S_avg for any loss(params) -> scalar (no gradient needed); base: L(w), when the caller has it."""
    w = flatten(params).detach()
    scale = rho * (w.abs() + xi)
    base = value(loss, params) if base is None else base
    increases = []
    for _ in range(samples):
        noise = standard_normal(tuple(w.shape), generator, w)
        increases.append(value(loss, unflatten(w + scale * noise, params)) - base)
    mean = sum(increases) / samples
    variance = sum((v - mean) ** 2 for v in increases) / max(samples - 1, 1)
    return AdaptiveAverage(
        value=mean, stderr=math.sqrt(variance / samples), rho=rho, xi=xi, loss=base, samples=samples
    )
