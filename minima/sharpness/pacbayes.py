"""PAC-Bayes flatness (Jiang et al. 2020, "Fantastic generalization measures and where to find
them": the sharpness-based measures pacbayes.flatness and pacbayes.mag.flatness, and their
search for sigma).

    pacbayes_flatness      = 1 / sigma^2,   u ~ N(0, sigma^2 I)
    pacbayes_mag_flatness  = 1 / sigma'^2,  u_i ~ N(0, sigma'^2 w_i^2 + eps^2), eps = 1e-3

where sigma (sigma') is the largest noise level whose expected deviation of the training accuracy
stays at the target d = 0.1:

    | E_u[acc(w + u)] - acc(w) | <= d.

sigma is found by bisection on [0, sigma_max], estimating the expectation with M Monte Carlo
draws and stopping early once the deviation is within a tolerance of d (Jiang et al.'s released
search, as reimplemented by Dziugaite et al. 2020: bracket [0, 2], 10 draws, tolerance 0.01,
15 iterations; we default to 12, which resolves sigma to 2 / 2^12 = 5e-4). Two choices differ
from that code, on purpose:
- the same M standard-normal draws z_m are reused at every sigma (u = std(sigma) * z_m: common
  random numbers), so the estimated deviation is a deterministic function of sigma and the
  bisection compares like with like; fresh draws at each step can reverse the bracket on noise;
- the noise has standard deviation sigma (the reimplementation passes sigma^2 where torch.normal
  takes a standard deviation).
The criterion can also be the mean loss (increase of the cross-entropy), so that the search is
testable against a closed form: on a quadratic, E[L(w + sigma z)] - L(w) = sigma^2 tr(H) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from minima.objective import Params, flatten, unflatten
from minima.sharpness.common import standard_normal

Criterion = Callable[[Params], float]


@dataclass(frozen=True)
class Bisection:
    sigma: float  # the last midpoint evaluated (or sigma_max when the target is out of reach)
    deviation: float  # estimated deviation at sigma
    iterations: int
    lower: float  # final bracket
    upper: float
    stop_reason: str


def bisect_sigma(
    deviation: Callable[[float], float], *, target: float, sigma_max: float, iters: int, tolerance: float
) -> Bisection:
    """Largest sigma in [0, sigma_max] with deviation(sigma) at the target, for a deviation that
    grows with sigma."""
    at_max = deviation(sigma_max)
    if abs(at_max - target) <= tolerance:
        return Bisection(sigma_max, at_max, 0, 0.0, sigma_max, "deviation within tolerance of the target")
    if at_max < target:
        reason = f"deviation at sigma_max = {sigma_max} is only {at_max:.4g}; sigma clipped to sigma_max"
        return Bisection(sigma_max, at_max, 0, sigma_max, sigma_max, reason)
    lower, upper = 0.0, sigma_max
    sigma, current = sigma_max, at_max
    for iteration in range(1, iters + 1):
        sigma = (lower + upper) / 2
        current = deviation(sigma)
        if abs(current - target) <= tolerance:
            return Bisection(sigma, current, iteration, lower, upper, "deviation within tolerance of the target")
        if current > target:
            upper = sigma
        else:
            lower = sigma
    return Bisection(sigma, current, iters, lower, upper, f"ran all {iters} bisection steps")


@dataclass(frozen=True)
class PacBayesFlatness:
    value: float  # 1 / sigma^2
    sigma: float
    deviation: float  # estimated |E[criterion(w + u)] - criterion(w)| at sigma
    target: float
    criterion: str  # "accuracy" or "loss"
    baseline: float  # criterion at w
    magnitude_eps: float | None  # None: isotropic noise; else the magnitude-aware variant
    samples: int
    iterations: int
    lower: float
    upper: float
    stop_reason: str


def pacbayes_flatness_of(
    criterion: Criterion,
    params: Params,
    *,
    criterion_name: str,
    target: float,
    samples: int,
    iters: int,
    sigma_max: float,
    tolerance: float,
    magnitude_eps: float | None,
    generator: torch.Generator,
) -> PacBayesFlatness:
    """1/sigma^2 for any criterion(params) -> float (accuracy or loss)."""
    w = flatten(params).detach()
    draws = standard_normal((samples, len(w)), generator, w)
    baseline = criterion(params)

    def std(sigma: float) -> torch.Tensor:
        if magnitude_eps is None:
            return torch.full_like(w, sigma)
        return torch.sqrt(sigma**2 * w**2 + magnitude_eps**2)

    def deviation(sigma: float) -> float:
        scale = std(sigma)
        perturbed = [criterion(unflatten(w + scale * z, params)) for z in draws]
        return abs(sum(perturbed) / samples - baseline)

    found = bisect_sigma(deviation, target=target, sigma_max=sigma_max, iters=iters, tolerance=tolerance)
    return PacBayesFlatness(
        value=1.0 / found.sigma**2,
        sigma=found.sigma,
        deviation=found.deviation,
        target=target,
        criterion=criterion_name,
        baseline=baseline,
        magnitude_eps=magnitude_eps,
        samples=samples,
        iterations=found.iterations,
        lower=found.lower,
        upper=found.upper,
        stop_reason=found.stop_reason,
    )
