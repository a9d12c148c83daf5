"""Sharpness measures of a minimum, on a recorded subset of the training set.

One module per measure, each with its paper and formula:
- `epsilon`: epsilon-sharpness (Keskar et al. 2017);
- `adaptive`: adaptive worst-case and average-case sharpness (Kwon et al. 2021; Andriushchenko
  et al. 2023);
- `pacbayes`: PAC-Bayes flatness 1/sigma^2 and its magnitude-aware variant (Jiang et al. 2020).

Each measure is a function of a generic loss (or accuracy) callable, `*_of(loss, params, ...)`,
tested on closed forms, with a thin wrapper `(model, params, x, y, settings, *, generator,
device, dtype)` that evaluates the model's mean cross-entropy through `minima.objective` on an
eval-mode copy. `measure_all` runs the five on one shared subset.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from minima.objective import Params
from minima.sharpness.adaptive import AdaptiveAverage, AdaptiveWorst, adaptive_average_of, adaptive_worst_of
from minima.sharpness.common import SharpnessSettings, prepare, value
from minima.sharpness.epsilon import EpsilonSharpness, epsilon_sharpness_of
from minima.sharpness.pacbayes import PacBayesFlatness, pacbayes_flatness_of

MEASURES = (
    "epsilon_sharpness",
    "adaptive_worst",
    "adaptive_average",
    "pacbayes_flatness",
    "pacbayes_mag_flatness",
)

DESCRIPTIONS = {
    "epsilon_sharpness": "epsilon-sharpness (Keskar et al. 2017)",
    "adaptive_worst": "adaptive worst-case sharpness (Kwon et al. 2021; Andriushchenko et al. 2023)",
    "adaptive_average": "adaptive average-case sharpness (Andriushchenko et al. 2023)",
    "pacbayes_flatness": "PAC-Bayes flatness 1/sigma^2 (Jiang et al. 2020)",
    "pacbayes_mag_flatness": "magnitude-aware PAC-Bayes flatness 1/sigma'^2 (Jiang et al. 2020)",
}


def measure_generator(settings: SharpnessSettings, measure: str) -> torch.Generator:
    """The generator `measure_all` gives a measure: one stream per measure, from settings.seed,
    so each measure is reproducible alone and adding one does not shift the others."""
    return torch.Generator().manual_seed(settings.seed * len(MEASURES) + MEASURES.index(measure))


@dataclass(frozen=True)
class SharpnessResult:
    epsilon_sharpness: EpsilonSharpness
    adaptive_worst: AdaptiveWorst
    adaptive_average: AdaptiveAverage
    pacbayes_flatness: PacBayesFlatness
    pacbayes_mag_flatness: PacBayesFlatness
    n_samples: int  # size of the subset actually used
    indices: tuple[int, ...] | None  # into the x given; None means all of it
    seconds: dict[str, float]
    settings: SharpnessSettings

    def values(self) -> dict[str, float]:
        return {name: float(getattr(self, name).value) for name in MEASURES}

    def to_json(self) -> dict[str, Any]:
        details: dict[str, Any] = {name: asdict(getattr(self, name)) for name in MEASURES}
        details.update(
            n_samples=self.n_samples,
            indices=None if self.indices is None else list(self.indices),
            seconds=dict(self.seconds),
            settings=asdict(self.settings),
        )
        return {**self.values(), "details": details}


def measure_all(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: SharpnessSettings,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
) -> SharpnessResult:
    """All five measures on one recorded subset, each with its own generator stream."""
    problem = prepare(model, params, x, y, settings.n_samples, settings.seed, device=device, dtype=dtype)
    s = settings
    if s.pacbayes_criterion == "accuracy":
        criterion = problem.accuracy
    else:
        criterion = lambda p: value(problem.loss, p)  # noqa: E731
    pacbayes = dict(
        criterion_name=s.pacbayes_criterion,
        target=s.pacbayes_target,
        samples=s.pacbayes_samples,
        iters=s.pacbayes_iters,
        sigma_max=s.pacbayes_sigma_max,
        tolerance=s.pacbayes_tolerance,
    )
    runs = {
        "epsilon_sharpness": lambda g: epsilon_sharpness_of(
            problem.loss, problem.params, epsilon=s.epsilon, steps=s.epsilon_steps, generator=g
        ),
        "adaptive_worst": lambda g: adaptive_worst_of(
            problem.loss, problem.params, rho=s.adaptive_rho, steps=s.adaptive_steps, xi=s.adaptive_xi, generator=g
        ),
        "adaptive_average": lambda g: adaptive_average_of(
            problem.loss, problem.params, rho=s.average_rho, samples=s.average_samples, xi=s.adaptive_xi, generator=g
        ),
        "pacbayes_flatness": lambda g: pacbayes_flatness_of(
            criterion, problem.params, magnitude_eps=None, generator=g, **pacbayes
        ),
        "pacbayes_mag_flatness": lambda g: pacbayes_flatness_of(
            criterion, problem.params, magnitude_eps=s.pacbayes_mag_eps, generator=g, **pacbayes
        ),
    }
    results, seconds = {}, {}
    for name in MEASURES:
        start = time.perf_counter()
        results[name] = runs[name](measure_generator(settings, name))
        seconds[name] = time.perf_counter() - start
    indices = None if problem.indices is None else tuple(int(i) for i in problem.indices)
    return SharpnessResult(
        **results, n_samples=len(problem.y), indices=indices, seconds=seconds, settings=settings
    )


__all__ = [
    "DESCRIPTIONS",
    "MEASURES",
    "AdaptiveAverage",
    "AdaptiveWorst",
    "EpsilonSharpness",
    "PacBayesFlatness",
    "SharpnessResult",
    "SharpnessSettings",
    "measure_all",
    "measure_generator",
]
