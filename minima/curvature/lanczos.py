"""Extreme Hessian eigenpairs by Lanczos with full reorthogonalization.

Lanczos (1950); Golub & Van Loan, "Matrix Computations", 4th ed., sections 10.1-10.3;
Parlett, "The Symmetric Eigenvalue Problem", chapter 13.

From a random unit vector q_1, m steps build an orthonormal basis Q_m of the Krylov space
span{q_1, H q_1, ..., H^(m-1) q_1} and the tridiagonal T_m = Q_m^T H Q_m (diagonal alpha_j =
q_j^T H q_j, off-diagonal beta_j), with H Q_m = Q_m T_m + beta_m q_(m+1) e_m^T. For an
eigenpair T_m s = theta s, the Ritz pair (theta, Q_m s) has the residual norm

    || H Q_m s - theta Q_m s || = |beta_m s_m|        (s_m: last entry of s),

and some eigenvalue of H lies within that distance of theta (Parlett, thm 4.5.1). We stop
when every wanted Ritz value satisfies |beta_m s_m| / |theta| <= tol ("relative residual",
a bound on the relative error). Below the working precision (eps ||H||) the products' own
rounding dominates, so residuals are floored there. As for any single-vector Krylov method, a
second copy of a repeated eigenvalue, or one nearly orthogonal to the start vector, may
still be missing when the wanted Ritz values have converged.
Each new vector is orthogonalized against all previous ones twice (classical Gram-Schmidt,
"twice is enough"), so Q_m stays orthonormal to rounding and no spurious copies of converged
eigenvalues appear. If beta_j vanishes, the Krylov space is invariant; we continue from a
fresh random vector orthogonal to Q (beta_j = 0 in T), so k = n recovers a full spectrum.

One Krylov run serves both ends of the spectrum: the top-k Ritz values and the smallest one.
The run also yields Q_m and trace(T_m) = trace(Q_m^T H Q_m), which the trace estimator uses to
deflate the dominant eigenspace (see trace.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm


def breakdown_threshold(dtype: torch.dtype) -> float:
    """Relative size of beta below which the Krylov space counts as invariant (rounding level)."""
    return max(1e-10, 10 * torch.finfo(dtype).eps)


@dataclass(frozen=True)
class EigenResult:
    """Ritz approximations to k extreme eigenpairs.

    values: descending for the top end, ascending (most negative first) for the bottom end.
    vectors: [P, k] orthonormal Ritz vectors, column j for values[j].
    residuals: ||H y_j - theta_j y_j|| per pair; relative_errors: residuals / |theta_j|.
    """

    values: tuple[float, ...]
    vectors: torch.Tensor
    residuals: tuple[float, ...]
    relative_errors: tuple[float, ...]
    n_matvec: int
    n_steps: int
    converged: bool
    reason: str
    tol: float


@dataclass(frozen=True)
class LanczosRun:
    """The top-k and bottom eigenpairs of one Krylov run, with its basis and T_m.

    `basis` [P, m] is orthonormal; `alphas` and `betas` define T_m (betas has m - 1 entries);
    trace(T_m) = sum(alphas) = trace(basis^T H basis).
    """

    top: EigenResult
    bottom: EigenResult
    basis: torch.Tensor
    alphas: torch.Tensor
    betas: torch.Tensor
    n_matvec: int


def _random_unit(n: int, generator: torch.Generator, dtype: torch.dtype, device: Any) -> torch.Tensor:
    # drawn on the CPU generator so a seed gives the same vectors on every device
    v = torch.randn(n, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    return v / torch.linalg.vector_norm(v)


def orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """w minus its projection on the orthonormal columns of basis, done twice for stability."""
    for _ in range(2):
        w = w - basis @ (basis.T @ w)
    return w


def tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    return torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)


def _ritz(
    alphas: torch.Tensor, betas: torch.Tensor, beta_next: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ritz values (ascending), eigenvectors of T_m, and residual norms (float64).

    |beta_m s_m| keeps shrinking in exact arithmetic, but the products themselves carry
    rounding errors of about eps ||H||, so residuals are floored there rather than reported
    as, say, 1e-19 in float32.
    """
    theta, s = torch.linalg.eigh(tridiagonal(alphas.double(), betas.double()))
    floor = eps * float(theta.abs().max())
    return theta, s, (beta_next * s[-1, :]).abs().clamp_min(floor)


def _relative(residuals: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return residuals / theta.abs().clamp_min(torch.finfo(torch.float64).tiny)


def _yardstick(theta: torch.Tensor, idx: list[int], spectral: bool) -> torch.Tensor:
    """What a residual is relative to: the Ritz value itself, or (spectral) the largest |Ritz
    value|. The most negative eigenvalue of a network at a minimum is tiny next to lambda_max;
    measuring its error against itself made Lanczos run to its cap, while the question it
    answers (is the end point a minimum?) needs it to a fraction of the spectrum's scale."""
    if spectral:
        return theta.abs().max().expand(len(idx))
    return theta[idx]


def _pairs(
    idx: list[int], *, theta: torch.Tensor, s: torch.Tensor, residuals: torch.Tensor, basis: torch.Tensor,
    n_matvec: int, n_steps: int, tol: float, exhausted: str, spectral: bool = False,
) -> EigenResult:
    rel = _relative(residuals[idx], _yardstick(theta, idx, spectral))
    worst = float(rel.max()) if idx else 0.0
    converged = worst <= tol
    reason = (f"converged: max relative residual {worst:.2g} <= tol {tol:.2g}" if converged
              else f"{exhausted}: max relative residual {worst:.2g} > tol {tol:.2g}")
    return EigenResult(
        values=tuple(float(t) for t in theta[idx]),
        vectors=basis @ s[:, idx].to(basis.dtype),
        residuals=tuple(float(r) for r in residuals[idx]),
        relative_errors=tuple(float(r) for r in rel),
        n_matvec=n_matvec,
        n_steps=n_steps,
        converged=converged,
        reason=reason,
        tol=tol,
    )


def lanczos(
    op: Any,
    k: int = 5,
    *,
    tol: float = 1e-3,
    max_iter: int = 100,
    bottom: bool = True,
    generator: torch.Generator,
    dtype: torch.dtype | None = None,
    device: Any = None,
    check_every: int = 1,
    min_steps: int = 0,
    start: torch.Tensor | None = None,
    progress: bool = False,
) -> LanczosRun:
    """Run Lanczos until the top-k Ritz pairs reach `tol` relative to themselves, and the smallest
    one (if `bottom`) relative to the largest |Ritz value|.

    k = 0 with bottom=True targets the smallest eigenvalue alone. The convergence test runs
    every `check_every` steps (an m x m tridiagonal eigenproblem, microseconds next to a
    product, so by default after every step: a product saved at half the stops). Stops after
    max_iter steps (capped at the dimension n) with converged=False if not.

    min_steps: take at least that many steps (capped like max_iter) even when converged earlier,
    so the run can serve as a stochastic Lanczos quadrature probe of that many steps (its start
    is a uniformly random unit vector: exactly an SLQ probe; see density.py).
    start: the first Lanczos vector (normalized here) instead of a random one, e.g. a good guess
    of the top eigenvector (the generator still draws restart vectors after a breakdown). A start
    close to the wanted eigenvector needs fewer steps; one orthogonal to it would miss it.
    """
    n = op.shape[0]
    if not 0 <= k <= n or (k == 0 and not bottom):
        raise ValueError(f"k: must be in 1..{n} (or 0 with bottom=True), got {k}")
    if tol <= 0:
        raise ValueError(f"tol: must be > 0, got {tol}")
    if max_iter < 1 or check_every < 1 or min_steps < 0:
        raise ValueError("max_iter, check_every: must be >= 1; min_steps: must be >= 0")
    dtype = dtype or getattr(op, "dtype", torch.float64)
    device = device if device is not None else getattr(op, "device", "cpu")
    steps = min(max(max_iter, k, min_steps), n)
    basis = torch.zeros(n, steps, dtype=dtype, device=device)
    if start is None:
        basis[:, 0] = _random_unit(n, generator, dtype, device)
    else:
        if start.shape != (n,) or not bool(torch.isfinite(start).all()) or float(start.norm()) == 0:
            raise ValueError(f"start: must be a finite nonzero vector of shape [{n}]")
        first = start.to(device=device, dtype=dtype)
        basis[:, 0] = first / torch.linalg.vector_norm(first)
    alphas: list[float] = []
    betas: list[float] = []
    start_matvec = getattr(op, "n_matvec", None)
    scale = 0.0  # largest |alpha|, beta so far: the yardstick for "beta vanished"
    bar = tqdm(total=steps, desc="lanczos", disable=not progress, leave=False)
    for j in range(steps):
        q = basis[:, j]
        w = op @ q
        alphas.append(float(q @ w))
        w = orthogonalize(w, basis[:, : j + 1])
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alphas[-1]), beta)
        bar.update(1)
        m = j + 1
        broke = beta <= breakdown_threshold(dtype) * scale
        if m == steps or m % check_every == 0 or broke:
            # once the basis spans the whole space the Ritz pairs are exact
            theta, s, residuals = _ritz(torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64),
                                       0.0 if m == n else beta, torch.finfo(dtype).eps)
            if m >= max(k, min_steps) and _converged(m, k, bottom, theta, residuals, tol):
                break
        if m == steps:
            break
        if broke:
            w = orthogonalize(_random_unit(n, generator, dtype, device), basis[:, :m])
            betas.append(0.0)
        else:
            betas.append(beta)
        basis[:, m] = w / torch.linalg.vector_norm(w)
    bar.close()
    m = len(alphas)
    used = basis[:, :m]
    n_matvec = op.n_matvec - start_matvec if start_matvec is not None else m
    exhausted = "full dimension reached" if m == n else "max_iter reached"
    common = dict(theta=theta, s=s, residuals=residuals, basis=used, n_matvec=n_matvec, n_steps=m, tol=tol, exhausted=exhausted)
    return LanczosRun(
        top=_pairs(list(range(m - 1, m - 1 - k, -1)), **common),
        bottom=_pairs([0], **common, spectral=True),
        basis=used,
        alphas=torch.tensor(alphas, dtype=torch.float64),
        betas=torch.tensor(betas, dtype=torch.float64),
        n_matvec=n_matvec,
    )


def _converged(m: int, k: int, bottom: bool, theta: torch.Tensor, residuals: torch.Tensor, tol: float) -> bool:
    top = list(range(m - k, m))
    ok = bool((_relative(residuals[top], theta[top]) <= tol).all())
    return ok and (not bottom or bool(_relative(residuals[[0]], _yardstick(theta, [0], True)) <= tol))
