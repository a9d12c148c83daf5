"""epsilon-sharpness (Keskar et al. 2017, "On large-batch training for deep learning: generalization
gap and sharp minima", Metric 2.1), in the full parameter space (their A = I).

    C_eps = { z : |z_i| <= eps (|w_i| + 1) }
    phi_eps(w) = (max_{z in C_eps} L(w + z) - L(w)) / (1 + L(w)) * 100

L is the mean training cross-entropy on the recorded subset. The box is relative to each weight's
magnitude (plus 1, so zero weights still move), and the result is a percentage of 1 + L(w).

Optimizer. Keskar et al. solve the inner maximization with L-BFGS-B (10 iterations). We use
projected sign-gradient ascent instead: in u = z / (eps (|w| + 1)) the box is the unit
L-infinity ball, whose steepest-ascent direction is sign(grad_u) and whose projection is a clamp
(the PGD of Madry et al. 2018, with the simplified APGD step rule of `common.projected_ascent`:
first step 2, halved on failure). It runs on any device and dtype without a round trip through SciPy's float64
CPU solver, and it reaches the box's corners, where a maximum of a locally convex loss lies, in
one step. The ascent starts at a uniformly random point of the box: at an exact minimum the
gradient at z = 0 vanishes and sign ascent could not leave it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minima.objective import Params, flatten
from minima.sharpness.common import Constraint, LossFn, projected_ascent, value

# in u = z / (eps (|w| + 1)) the box is the unit L-infinity ball: sign ascent, a clamp, first step 2
UNIT_BOX = Constraint(direction=torch.sign, project=lambda u: u.clamp(-1.0, 1.0), step=2.0)
OPTIMIZER = "projected sign-gradient ascent, step 2 halved on failure, uniform random start"


@dataclass(frozen=True)
class EpsilonSharpness:
    value: float  # phi_eps in percent
    epsilon: float
    loss: float  # L(w)
    perturbed_loss: float  # L(w + z*) at the best z found
    relative_linf: float  # max_i |z_i| / (eps (|w_i| + 1)); 1 means z* sits on the box boundary
    perturbation_norm: float  # ||z*||_2
    steps: int
    improvements: int
    final_step: float
    stop_reason: str
    optimizer: str = OPTIMIZER


def epsilon_sharpness_of(
    loss: LossFn, params: Params, *, epsilon: float, steps: int, generator: torch.Generator, base: float | None = None
) -> EpsilonSharpness:
    """phi_eps for any differentiable loss(params) -> scalar (a quadratic in the tests).
    base: L(w), when the caller has it already."""
    w = flatten(params).detach()
    half_width = epsilon * (w.abs() + 1)
    start = 2 * torch.rand(w.shape, generator=generator, dtype=torch.float64).to(w) - 1
    base = value(loss, params) if base is None else base
    ascent = projected_ascent(loss, params, w, half_width, start, UNIT_BOX, steps=steps, baseline=base)
    z = half_width * ascent.best_point
    return EpsilonSharpness(
        value=(ascent.best_value - base) / (1 + base) * 100,
        epsilon=epsilon,
        loss=base,
        perturbed_loss=ascent.best_value,
        relative_linf=float(ascent.best_point.abs().max()) if len(w) else 0.0,
        perturbation_norm=float(z.norm()),
        steps=ascent.steps,
        improvements=ascent.improvements,
        final_step=ascent.final_step,
        stop_reason=ascent.stop_reason,
    )
