"""Sharpness measures of a minimum, on a recorded subset of the training set.

One module per measure, each with its paper and formula:
- `epsilon`: epsilon-sharpness (Keskar et al. 2017);
- `adaptive`: adaptive worst-case and average-case sharpness (Kwon et al. 2021; Andriushchenko
  et al. 2023);
- `pacbayes`: PAC-Bayes flatness 1/sigma^2 and its magnitude-aware variant (Jiang et al. 2020);
- `msharpness`: adaptive worst-case m-sharpness (l-infinity and l2, normalized logits, m = 128,
  a small sweep of radii) exactly as Andriushchenko et al.'s released code measures it.

Each measure is a function of a generic loss (or accuracy) callable, `*_of(loss, params, ...)`,
tested on closed forms. `measure_all` evaluates the model's mean cross-entropy through
`minima.objective` on an eval-mode copy and runs every measure on the data it is given (the
caller chose it once, and records which images it was).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from minima.objective import Params
from minima.sharpness.adaptive import AdaptiveAverage, AdaptiveWorst, adaptive_average_of, adaptive_worst_of
from minima.sharpness.common import SharpnessSettings, prepare, value
from minima.sharpness.epsilon import EpsilonSharpness, epsilon_sharpness_of
from minima.sharpness.msharpness import MSharpness, batch_bases, m_sharpness_of, model_batch_losses
from minima.sharpness.pacbayes import PacBayesFlatness, pacbayes_flatness_of
from minima.specs import DESCRIPTIONS, MEASURES, NORM_WORDS, descriptions, measure_names, msharpness_names  # noqa: F401

def measure_generator(settings: SharpnessSettings, measure: str) -> torch.Generator:
    """The generator `measure_all` gives a measure: one stream per measure, from settings.seed,
    so each measure is reproducible alone and adding one does not shift the others."""
    names = measure_names(settings)
    return torch.Generator().manual_seed(settings.seed * len(names) + names.index(measure))


@dataclass(frozen=True)
class SharpnessResult:
    measures: dict[str, Any]  # name -> the measure's result dataclass (has .value)
    n_samples: int  # images the measures were computed on
    seconds: dict[str, float]  # wall clock per measure
    settings: SharpnessSettings
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # the process's CPU time per measure: core-seconds

    def values(self) -> dict[str, float]:
        return {name: float(result.value) for name, result in self.measures.items()}

    def to_json(self) -> dict[str, Any]:
        details: dict[str, Any] = {name: asdict(result) for name, result in self.measures.items()}
        details.update(
            n_samples=self.n_samples,
            seconds=dict(self.seconds),
            cpu_seconds=dict(self.cpu_seconds),
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
    share: bool = True,
) -> SharpnessResult:
    """All the measures on (x, y), each with its own generator stream.

    share=False has every measure compute its own starting point (L(w), the criterion at w, each
    batch's L_b(w) and gradient), as before they were shared: the same numbers, more passes
    (what `make bench` compares)."""
    problem = prepare(model, params, x, y, device=device, dtype=dtype)
    s = settings
    if s.pacbayes_criterion == "accuracy":
        criterion = problem.accuracy
    else:
        criterion = lambda p: value(problem.loss, p)  # noqa: E731
    # what several measures start from is computed once: L(w) (epsilon, adaptive worst and
    # average), the criterion at w (both PAC-Bayes variants), and L_b(w) with its gradient per
    # m-sharpness batch (every zero-start ascent, whatever its norm and radius)
    shared: dict[str, Any] = {}

    def base() -> float | None:
        if share and "loss" not in shared:
            shared["loss"] = value(problem.loss, problem.params)
        return shared.get("loss")

    def baseline() -> float | None:
        if share and "criterion" not in shared:
            shared["criterion"] = criterion(problem.params)
        return shared.get("criterion")

    pacbayes = dict(
        criterion_name=s.pacbayes_criterion,
        target=s.pacbayes_target,
        samples=s.pacbayes_samples,
        iters=s.pacbayes_iters,
        sigma_max=s.pacbayes_sigma_max,
        tolerance=s.pacbayes_tolerance,
        search=s.pacbayes_search,
    )
    runs = {
        "epsilon_sharpness": lambda g: epsilon_sharpness_of(
            problem.loss, problem.params, epsilon=s.epsilon, steps=s.epsilon_steps, generator=g, base=base()
        ),
        "adaptive_worst": lambda g: adaptive_worst_of(
            problem.loss, problem.params, rho=s.adaptive_rho, steps=s.adaptive_steps, xi=s.adaptive_xi, generator=g,
            base=base(),
        ),
        "adaptive_average": lambda g: adaptive_average_of(
            problem.loss, problem.params, rho=s.average_rho, samples=s.average_samples, xi=s.adaptive_xi, generator=g,
            base=base(),
        ),
        "pacbayes_flatness": lambda g: pacbayes_flatness_of(
            criterion, problem.params, magnitude_eps=None, generator=g, baseline=baseline(), **pacbayes
        ),
        "pacbayes_mag_flatness": lambda g: pacbayes_flatness_of(
            criterion, problem.params, magnitude_eps=s.pacbayes_mag_eps, generator=g, baseline=baseline(), **pacbayes
        ),
    }
    m = min(s.msharp_m, len(problem.y))
    n_points = min(s.msharp_points, len(problem.y)) // m * m
    batches = model_batch_losses(problem.model, problem.params, problem.x, problem.y, m=m,
                                 normalize_logits=s.msharp_normalize_logits, n_points=n_points)

    def bases() -> list | None:
        if share and "bases" not in shared:
            shared["bases"] = batch_bases(batches, problem.params)
        return shared.get("bases")

    for name, (norm, rho) in msharpness_names(s).items():
        runs[name] = lambda g, norm=norm, rho=rho: m_sharpness_of(
            batches, problem.params, norm=norm, rho=rho, steps=s.msharp_steps, generator=g, bases=bases()
        )
    results, seconds, cpu_seconds = {}, {}, {}
    for name in measure_names(settings):
        # a shared base is charged to the first measure that needs it
        start, cpu = time.perf_counter(), time.process_time()
        results[name] = runs[name](measure_generator(settings, name))
        seconds[name], cpu_seconds[name] = time.perf_counter() - start, time.process_time() - cpu
    return SharpnessResult(results, n_samples=len(problem.y), seconds=seconds, settings=settings, cpu_seconds=cpu_seconds)


__all__ = [
    "DESCRIPTIONS",
    "MEASURES",
    "AdaptiveAverage",
    "AdaptiveWorst",
    "EpsilonSharpness",
    "MSharpness",
    "PacBayesFlatness",
    "SharpnessResult",
    "SharpnessSettings",
    "descriptions",
    "measure_all",
    "measure_generator",
    "measure_names",
]
