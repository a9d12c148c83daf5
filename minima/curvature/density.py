"""Eigenvalue spectral density by stochastic Lanczos quadrature (SLQ).

Lin, Saad & Yang 2016, "Approximating spectral densities of large matrices" (SIAM Review);
Ghorbani, Krishnan & Xiao 2019, "An investigation into neural net optimization via Hessian
eigenvalue density" (ICML); Golub & Meurant, "Matrices, Moments and Quadrature".

The spectral density of an n x n symmetric H is phi(t) = (1/n) sum_i delta(t - lambda_i).
For a unit vector q uniform on the sphere (a normalized Gaussian), E[q^T f(H) q] =
tr(f(H)) / n = integral of f against phi. Running m Lanczos steps from q gives T_m =
S diag(theta) S^T; the Gauss quadrature with nodes theta_i and weights tau_i = S[0, i]^2 gives
q^T f(H) q = sum_i tau_i f(theta_i) exactly for polynomials f of degree <= 2m - 1. Averaging
over n_v probes gives a discrete measure (nodes theta, weights tau / n_v, total mass 1)
whose moments are unbiased estimates of tr(H^j) / n.

The density is that measure convolved with a Gaussian of standard deviation sigma, evaluated
on a grid spanning [min node - 5 sigma, max node + 5 sigma] (so the tails are inside), and
normalized numerically so its trapezoid integral over the grid is 1. Automatic sigma (the
`sigma=0` setting): 1 % of the node range max - min, which keeps each bump about five grid
spacings wide at 500 points.

The probes run in lockstep, so each step is one block product op @ [P, n_v]. Each probe's
basis is fully reorthogonalized; a probe whose beta vanishes stops there (its quadrature is
then exact, Lanczos having found an invariant subspace).

Any Lanczos run from a uniformly random unit vector is such a probe, whatever it was run for:
the eigenvalue run of `minima.curvature.measure` starts from a normalized Gaussian and
reorthogonalizes fully, so its first n_steps coefficients (the leading n_steps x n_steps block
of its T_m is exactly the T of an n_steps-step run) are one probe, independent of the others'
draws. `spectral_density(..., probes=[(alphas, betas)])` takes such runs in and makes only the
remaining ones: on LeNet-5 at 1,024 images that halved the density's products (24 of 48).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from tqdm import tqdm

from minima.curvature.lanczos import breakdown_threshold, tridiagonal

_AUTO_SIGMA_FRACTION = 0.01
_MARGIN_SIGMAS = 5.0


@dataclass(frozen=True)
class DensityResult:
    grid: torch.Tensor  # [points], float64
    density: torch.Tensor  # [points], float64, trapezoid integral over grid == 1
    nodes: torch.Tensor  # [n_nodes] Ritz values of all probes
    weights: torch.Tensor  # [n_nodes] quadrature weights, summing to 1
    sigma: float
    n_probes: int
    n_steps: int
    n_matvec: int


def moment(result: DensityResult, j: int) -> float:
    """sum_i w_i theta_i^j: the SLQ estimate of tr(H^j) / n."""
    return float((result.weights * result.nodes**j).sum())


def _lockstep_lanczos(
    op: Any, starts: torch.Tensor, n_steps: int, progress: bool
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Lanczos from each column of `starts`; returns per probe (alphas, betas) as float64."""
    n, b = starts.shape
    steps = min(n_steps, n)
    bases = torch.zeros(b, steps, n, dtype=starts.dtype, device=starts.device)
    bases[:, 0] = (starts / torch.linalg.vector_norm(starts, dim=0)).T
    alphas = torch.zeros(b, steps, dtype=torch.float64)
    betas = torch.zeros(b, steps, dtype=torch.float64)
    length = torch.full((b,), steps, dtype=torch.long)
    active = list(range(b))
    scale = torch.zeros(b, dtype=torch.float64)
    for j in tqdm(range(steps), desc="slq", disable=not progress, leave=False):
        q = bases[active, j]  # [a, n]
        w = (op @ q.T).T
        alphas[active, j] = (q * w).sum(dim=1).double().cpu()
        past = bases[active, : j + 1]  # [a, j+1, n]
        for _ in range(2):
            w = w - torch.einsum("ajn,aj->an", past, torch.einsum("ajn,an->aj", past, w))
        norms = torch.linalg.vector_norm(w, dim=1)
        betas[active, j] = norms.double().cpu()
        scale[active] = torch.maximum(scale[active], torch.maximum(alphas[active, j].abs(), betas[active, j]))
        still = []
        for row, probe in enumerate(active):
            if betas[probe, j] <= breakdown_threshold(starts.dtype) * scale[probe] or j + 1 == steps:
                length[probe] = j + 1
            else:
                still.append((row, probe))
                if j + 1 < steps:
                    bases[probe, j + 1] = w[row] / norms[row]
        active = [probe for _, probe in still]
        if not active:
            break
    return [(alphas[i, : length[i]], betas[i, : length[i] - 1]) for i in range(b)]


def auto_sigma(nodes: torch.Tensor) -> float:
    span = float(nodes.max() - nodes.min())
    if span > 0:
        return _AUTO_SIGMA_FRACTION * span
    return _AUTO_SIGMA_FRACTION * max(float(nodes.abs().max()), 1.0)


def broaden(nodes: torch.Tensor, weights: torch.Tensor, sigma: float, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid over the nodes +- 5 sigma and the Gaussian-broadened density, normalized on the grid."""
    margin = _MARGIN_SIGMAS * sigma
    grid = torch.linspace(float(nodes.min()) - margin, float(nodes.max()) + margin, points, dtype=torch.float64)
    z = (grid[:, None] - nodes[None, :]) / sigma
    density = (weights[None, :] * torch.exp(-0.5 * z**2)).sum(dim=1) / (sigma * (2 * torch.pi) ** 0.5)
    return grid, density / torch.trapezoid(density, grid)


def spectral_density(
    op: Any,
    *,
    n_probes: int = 5,
    n_steps: int = 60,
    points: int = 500,
    sigma: float = 0.0,
    generator: torch.Generator,
    dtype: torch.dtype | None = None,
    device: Any = None,
    probes: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
    progress: bool = False,
) -> DensityResult:
    """SLQ density of op from n_probes Gaussian probes of n_steps Lanczos steps each.

    probes: (alphas, betas) of Lanczos runs already made from uniformly random unit vectors
    independent of `generator` (see the module docstring); each is one of the n_probes, cut to
    n_steps steps (and at its first vanishing beta), and only the rest are run here."""
    if n_probes < 1 or n_steps < 1:
        raise ValueError("n_probes, n_steps: must be >= 1")
    if len(probes) > n_probes:
        raise ValueError(f"probes: at most n_probes ({n_probes}) given runs, got {len(probes)}")
    if points < 2:
        raise ValueError(f"points: must be >= 2, got {points}")
    if sigma < 0:
        raise ValueError(f"sigma: must be >= 0 (0 = automatic), got {sigma}")
    dtype = dtype or getattr(op, "dtype", torch.float64)
    device = device if device is not None else getattr(op, "device", "cpu")
    n = op.shape[0]
    given = [_leading(alphas, betas, n_steps) for alphas, betas in probes]
    start_matvec = getattr(op, "n_matvec", None)
    runs = list(given)
    if n_probes > len(given):
        starts = torch.randn(n, n_probes - len(given), generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
        runs += _lockstep_lanczos(op, starts, n_steps, progress)
    nodes, weights = [], []
    for alphas, betas in runs:
        theta, s = torch.linalg.eigh(tridiagonal(alphas, betas))
        nodes.append(theta)
        weights.append(s[0, :] ** 2 / n_probes)
    nodes_t, weights_t = torch.cat(nodes), torch.cat(weights)
    width = sigma if sigma > 0 else auto_sigma(nodes_t)
    grid, density = broaden(nodes_t, weights_t, width, points)
    n_matvec = op.n_matvec - start_matvec if start_matvec is not None else sum(len(t) for t in nodes[len(given):])
    return DensityResult(grid, density, nodes_t, weights_t, width, n_probes, min(n_steps, n), n_matvec)


def _leading(alphas: torch.Tensor, betas: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The T of the first n_steps steps of a run, stopped at its first vanishing beta (where a
    restarted run continues in a new Krylov space, which the probe's quadrature never sees)."""
    alphas, betas = alphas.double(), betas.double()
    zero = (betas == 0).nonzero()
    length = min(n_steps, len(alphas), int(zero[0]) + 1 if len(zero) else len(alphas))
    return alphas[:length], betas[: length - 1]
