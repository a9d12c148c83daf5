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

The search (`search="secant"`, the default). With common random numbers the deviation is a
smooth, increasing function of sigma that is close to a power law where it crosses the target
(on the quick profile's networks it grows like sigma^3 to sigma^4 between deviations 0.02 and
0.4). `search_sigma` keeps the bisection's bracket, its stopping rule (|deviation - target| <=
tolerance, else `iters` evaluations) and its first evaluation at sigma_max, but places each next
point by the secant in (log sigma, log deviation) -- exact for a power law -- through the two
evaluated points whose deviations are nearest the target. Where that secant is flatter than
sigma^1.5 it spans a saturated end (the accuracy drop levels off near 0.9 at sigma_max, which
sent the secant through the bracket's ends far past the crossing), and the next point follows a
sigma^3.5 law through the point of smaller deviation instead (if that deviation is at most 4x the
target); it log-bisects while no point is usable or the guess falls outside the bracket, and
after three points in a row that fail to halve the bracket (an Illinois-style safeguard). On the
8 quick minima of README's measurement-cost paragraph (16 searches, 5 draws each) it took 375
forward passes where the secant through the bracket's ends took 450 (15 searches no more, one
more), every sigma within the same stopping band. The previous secant, on 6 quick minima (12
searches, deviation curves measured on a grid and interpolated), needed 62 criterion
evaluations where the bisection needed 99. `search="bisection"` is the bisection.

Precision, recorded with every result: the deviation at the returned sigma is within
`tolerance` of the target (or the stop reason says otherwise), [lower, upper] brackets the
crossing, and `deviation_stderr` is the Monte Carlo standard error of the deviation at sigma
(the standard deviation of the M perturbed criteria over sqrt(M)).
"""

from __future__ import annotations

import math
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


def _settled_at_sigma_max(at_max: float, *, target: float, sigma_max: float, tolerance: float) -> Bisection | None:
    """The answer when the deviation at sigma_max already decides it (within tolerance of the
    target, or below it: sigma clipped to sigma_max), else None. Both searches start here."""
    if abs(at_max - target) <= tolerance:
        return Bisection(sigma_max, at_max, 0, 0.0, sigma_max, "deviation within tolerance of the target")
    if at_max < target:
        reason = f"deviation at sigma_max = {sigma_max} is only {at_max:.4g}; sigma clipped to sigma_max"
        return Bisection(sigma_max, at_max, 0, sigma_max, sigma_max, reason)
    return None


def bisect_sigma(
    deviation: Callable[[float], float], *, target: float, sigma_max: float, iters: int, tolerance: float
) -> Bisection:
    """Largest sigma in [0, sigma_max] with deviation(sigma) at the target, for a deviation that
    grows with sigma."""
    at_max = deviation(sigma_max)
    settled = _settled_at_sigma_max(at_max, target=target, sigma_max=sigma_max, tolerance=tolerance)
    if settled is not None:
        return settled
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


SATURATION = 4.0  # one point alone guides the search only if its deviation is at most this times the target
POWER = 3.5  # the slope in (log sigma, log deviation) assumed from one point (3 to 4 on the quick minima)
# a secant flatter than this spans a saturated end (an accuracy drop levels off near 0.9): near a
# minimum the deviation grows at least like sigma^2 (the mean loss increase is sigma^2 tr(H) / 2)
MIN_SLOPE = 1.5
MAX_STALLS = 3  # secant points in a row that fail to halve the bracket before a log-bisection step


def _power_law_guess(points: list[tuple[float, float]], target: float) -> float | None:
    """log sigma where the power law through the two evaluated points nearest the target (in log
    deviation) reaches it; where that law is flatter than MIN_SLOPE, or one point alone is known,
    the law of slope POWER through the point of smaller deviation, if that one is not saturated
    (at most SATURATION * target); else None (log-bisection)."""
    usable = [p for p in points if p[1] > 0]
    near = sorted(usable, key=lambda p: abs(math.log(p[1] / target)))[:2]
    if len(near) == 2:
        (s1, d1), (s2, d2) = near
        if s1 != s2 and d1 != d2:
            slope = (math.log(d2) - math.log(d1)) / (math.log(s2) - math.log(s1))
            if slope >= MIN_SLOPE:
                return math.log(s1) + math.log(target / d1) / slope
    if not near:
        return None
    s1, d1 = min(near, key=lambda p: p[1])
    if d1 > SATURATION * target:
        return None
    return math.log(s1) + math.log(target / d1) / POWER


def search_sigma(
    deviation: Callable[[float], float], *, target: float, sigma_max: float, iters: int, tolerance: float
) -> Bisection:
    """Largest sigma in (0, sigma_max] with deviation(sigma) at the target, for a deviation that
    grows with sigma and is near a power law there: the bisection's bracket and stopping rule,
    secant steps in (log sigma, log deviation) through the two evaluated points nearest the target
    (`_power_law_guess`), log-bisection as the safeguard. The lower end starts at sigma_max / 2^iters (the
    bisection's resolution), its deviation taken as 0."""
    at_max = deviation(sigma_max)
    settled = _settled_at_sigma_max(at_max, target=target, sigma_max=sigma_max, tolerance=tolerance)
    if settled is not None:
        return settled
    lower, upper = sigma_max / 2**iters, sigma_max
    points = [(sigma_max, at_max)]
    sigma, current, stalls = sigma_max, at_max, 0
    for iteration in range(1, iters + 1):
        a, b = math.log(lower), math.log(upper)
        x = (a + b) / 2
        guess = _power_law_guess(points, target) if stalls < MAX_STALLS else None
        if guess is not None and a < guess < b:
            x = guess
        width = b - a
        sigma = math.exp(x)
        current = deviation(sigma)
        if abs(current - target) <= tolerance:
            return Bisection(sigma, current, iteration, lower, upper, "deviation within tolerance of the target")
        points.append((sigma, current))
        if current > target:
            upper = sigma
        else:
            lower = sigma
        stalls = stalls + 1 if math.log(upper) - math.log(lower) > width / 2 else 0
    return Bisection(sigma, current, iters, lower, upper, f"ran all {iters} search steps")


SEARCHES = {"secant": search_sigma, "bisection": bisect_sigma}


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
    tolerance: float = 0.0  # the stopping band on |deviation - target|
    deviation_stderr: float = 0.0  # Monte Carlo standard error of the deviation at sigma
    forward_passes: int = 0  # criterion evaluations, the unperturbed one included
    search: str = "bisection"


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
    search: str = "secant",
    baseline: float | None = None,
) -> PacBayesFlatness:
    """1/sigma^2 for any criterion(params) -> float (accuracy or loss).

    baseline: criterion(params), when the caller has it already (both variants share it)."""
    if search not in SEARCHES:
        raise ValueError(f"search: must be one of {sorted(SEARCHES)}, got {search!r}")
    w = flatten(params).detach()
    draws = standard_normal((samples, len(w)), generator, w)
    passes = [0]
    if baseline is None:
        baseline = criterion(params)
        passes[0] += 1
    spread: dict[float, float] = {}

    def std(sigma: float) -> torch.Tensor:
        if magnitude_eps is None:
            return torch.full_like(w, sigma)
        return torch.sqrt(sigma**2 * w**2 + magnitude_eps**2)

    def deviation(sigma: float) -> float:
        scale = std(sigma)
        perturbed = [criterion(unflatten(w + scale * z, params)) for z in draws]
        passes[0] += len(perturbed)
        mean = sum(perturbed) / samples
        spread[sigma] = math.sqrt(sum((p - mean) ** 2 for p in perturbed) / max(samples - 1, 1) / samples)
        return abs(mean - baseline)

    found = SEARCHES[search](deviation, target=target, sigma_max=sigma_max, iters=iters, tolerance=tolerance)
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
        tolerance=tolerance,
        deviation_stderr=spread.get(found.sigma, 0.0),
        forward_passes=passes[0],
        search=search,
    )
