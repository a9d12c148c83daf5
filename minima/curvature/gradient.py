"""Norm of the full-data gradient at the end point: is the trained model at a minimum at all?

g = grad L(w) for the mean cross-entropy L over the curvature set, model in eval mode. In
chunks c of n_c samples, g = sum_c (n_c / N) grad L_c. Curvature at a point with a large
||g|| describes a slope, not a minimum; the report states ||g|| beside the eigenvalues.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import grad_and_value

from minima.objective import Params, flatten, frozen_copy, loss_at, params_of, unflatten


@dataclass(frozen=True)
class GradientResult:
    norm: float  # ||g||_2 over all trainable parameters
    loss: float  # L(w), the mean loss the gradient is of
    n_samples: int


def gradient_norm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Params | None = None, *, chunk_size: int = 5000
) -> GradientResult:
    if chunk_size < 1:
        raise ValueError("chunk_size: must be >= 1")
    frozen = frozen_copy(model)
    like = {k: v.detach() for k, v in (params if params is not None else params_of(model)).items()}
    w = flatten(like)
    total = torch.zeros_like(w)
    loss = 0.0
    for start in range(0, len(y), chunk_size):
        xc, yc = x[start : start + chunk_size], y[start : start + chunk_size]
        weight = len(yc) / len(y)

        def chunk_loss(v: torch.Tensor) -> torch.Tensor:
            return loss_at(frozen, unflatten(v, like), xc, yc)

        g, value = grad_and_value(chunk_loss)(w)
        total += weight * g
        loss += weight * float(value)
    return GradientResult(norm=float(torch.linalg.vector_norm(total)), loss=loss, n_samples=len(y))
