"""Statistics over runs: mean +- std, rank correlations and their bootstrap intervals.

Does sharpness predict generalization? Following Jiang et al. 2020, "Fantastic Generalization
Measures and Where to Find Them" (arXiv:1912.02178), we rank runs, not fit lines: a measure
is useful if runs it calls sharper also generalize worse, whatever the functional form.

- Kendall's tau-b over n runs with sign differences s_ij = sgn(x_i - x_j), t_ij = sgn(y_i - y_j):

      tau_b = sum_{i<j} s_ij t_ij / sqrt((n0 - n_x) (n0 - n_y)),

  n0 = n(n-1)/2 pairs, n_x and n_y the pairs tied in x and in y. It lies in [-1, 1] and is
  undefined when x or y is constant.
- Spearman's rho: Pearson's correlation of the ranks (ties get their average rank).
- Percentile bootstrap (Efron 1979): resample the n (measure, target) pairs with replacement,
  recompute the statistic, and take the (1-level)/2 and (1+level)/2 quantiles. A resample
  whose x or y is constant has no tau; it is skipped, as Jiang et al. skip degenerate
  environments, rather than counted as zero.

Runs with a missing value (None or NaN: a diverged run has no sharpness) are dropped pairwise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import scipy.stats

Statistic = Callable[[np.ndarray, np.ndarray], float]

MIN_PAIRS = 3  # below three runs every ranking statistic is trivially +-1 or undefined


@dataclass(frozen=True)
class Correlation:
    """Rank correlation of a measure with a target across runs; None fields when n < 3."""

    kendall_tau: float | None
    spearman: float | None
    ci95: tuple[float, float] | None  # percentile bootstrap interval of kendall_tau
    n: int  # runs with both values present


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample std with ddof=1, n) over the finite values; std is None when n < 2."""
    kept = np.array([float(v) for v in values if _finite(v)], dtype=np.float64)
    n = int(kept.size)
    if n == 0:
        return None, None, 0
    std = float(kept.std(ddof=1)) if n >= 2 else None
    return float(kept.mean()), std, n


def paired(x: Sequence[float | None], y: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are finite, as float64 arrays."""
    if len(x) != len(y):
        raise ValueError(f"x and y: lengths differ ({len(x)} vs {len(y)})")
    keep = [(float(a), float(b)) for a, b in zip(x, y) if _finite(a) and _finite(b)]
    if not keep:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*keep)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (scipy); NaN when x or y is constant or n < 2."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if _degenerate(xs, ys):
        return math.nan
    return float(scipy.stats.kendalltau(xs, ys, variant="b").statistic)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (scipy); NaN when x or y is constant or n < 2."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if _degenerate(xs, ys):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n == 2 warns although rho is defined (+-1)
        return float(scipy.stats.spearmanr(xs, ys).statistic)


def _kendall_tau_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """tau-b of each row pair at once: scipy costs ~1 ms a call, too slow for 2000 resamples."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    # Each unordered pair appears twice in the full matrices; the factors of 2 cancel.
    concordance = (sx * sy).sum(axis=(1, 2))
    untied = np.count_nonzero(sx, axis=(1, 2)) * np.count_nonzero(sy, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(untied > 0, concordance / np.sqrt(untied.astype(np.float64)), np.nan)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    rx = scipy.stats.rankdata(x, axis=1)
    ry = scipy.stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=1) / denom, np.nan)


# Row-wise twins of the scalar statistics (same numbers, tested against scipy).
_ROWWISE: dict[Statistic, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    kendall_tau: _kendall_tau_rows,
    spearman: _spearman_rows,
}
_ROWWISE_MAX_N = 150  # beyond this, scipy's O(n log n) tau per resample beats O(n^2) signs
_BLOCK_ELEMENTS = 2**22  # resamples x n^2 sign entries per vectorized block (~32 MB per array)


def _resampled_statistics(
    x: np.ndarray, y: np.ndarray, statistic: Statistic, index: np.ndarray
) -> np.ndarray:
    rowwise = _ROWWISE.get(statistic)
    if rowwise is None or x.size > _ROWWISE_MAX_N:
        return np.array([statistic(x[i], y[i]) for i in index], dtype=np.float64)
    rows = max(1, _BLOCK_ELEMENTS // (x.size * x.size))
    blocks = [
        rowwise(x[index[s : s + rows]], y[index[s : s + rows]]) for s in range(0, len(index), rows)
    ]
    return np.concatenate(blocks)


def bootstrap_ci(
    x: Sequence[float],
    y: Sequence[float],
    statistic: Statistic,
    *,
    n_boot: int = 2000,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(x, y), resampling the (x_i, y_i) pairs.

    Degenerate resamples (statistic NaN) are skipped; (nan, nan) if none is left.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y: need two 1-D arrays of one length, got {xs.shape}, {ys.shape}")
    if xs.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    index = rng.integers(0, xs.size, size=(n_boot, xs.size))
    values = _resampled_statistics(xs, ys, statistic, index)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def _or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def correlate(
    measure_values: Sequence[float | None],
    target_values: Sequence[float | None],
    *,
    seed: int,
    n_boot: int = 2000,
) -> Correlation:
    """Kendall tau-b, Spearman rho and the bootstrap 95% interval of tau across runs."""
    x, y = paired(measure_values, target_values)
    n = int(x.size)
    if n < MIN_PAIRS:
        return Correlation(kendall_tau=None, spearman=None, ci95=None, n=n)
    tau = _or_none(kendall_tau(x, y))
    rho = _or_none(spearman(x, y))
    ci = None
    if tau is not None:
        lo, hi = bootstrap_ci(x, y, kendall_tau, n_boot=n_boot, seed=seed, level=0.95)
        ci = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
    return Correlation(kendall_tau=tau, spearman=rho, ci95=ci, n=n)
