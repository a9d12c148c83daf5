"""Statistics over clustered runs: rank correlations, cluster bootstrap, permutation tests, Holm.

Does sharpness predict generalization? Following Jiang et al. 2020, "Fantastic Generalization
Measures and Where to Find Them" (ICLR, arXiv:1912.02178), we rank runs, not fit lines. Runs of
one configuration (optimizer x learning rate x batch size ..., differing only by seed) are
correlated, so every interval and test here respects that clustering. (Somewhat over 450
lines because the weighted-resample Kendall tau is derived in full below: its correctness rests
on that derivation, which the tests check against scipy on materialized resamples.)

- Kendall's tau-b over n runs with s_ij = sgn(x_i - x_j), t_ij = sgn(y_i - y_j):
  tau_b = sum_{i<j} s_ij t_ij / sqrt((n0 - n_x)(n0 - n_y)), n0 = n(n-1)/2, n_x and n_y the pairs
  tied in x and in y; NaN when x or y is constant. Spearman's rho: Pearson's r of the ranks.
- Cluster bootstrap (Davison & Hinkley 1997, "Bootstrap Methods and their Application", sec.
  3.8): draw K of the K clusters with replacement, recompute the statistic over every run of the
  drawn clusters, take percentiles. A resample is a multiplicity m_c per cluster, a weight
  w_i = m_c(i) per run. In the materialized resample (run i repeated w_i times) the copies of
  distinct runs i, j form w_i w_j pairs carrying s_ij t_ij; the C(w_i, 2) pairs of copies of one
  run are tied in x and y. With N = sum w_i, n0 = N(N-1)/2 = sum_{i<j} w_i w_j + sum_i C(w_i, 2),
  so n0 - n_x = sum_{i<j} w_i w_j |s_ij| and, exactly,
      tau_b(resample) = w'(S o T)w / sqrt(w'|S|w * w'|T|w);
  summing S o T, |S|, |T| within cluster blocks leaves K x K matrices: O(n^2 + n_boot K^2).
- Permutation test: under H0 (no association) y is exchangeable within a block (a seed);
  p = (1 + #{|t_perm| >= |t_obs|}) / (1 + n_perm) (Phipson & Smyth 2010).
- Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6.
- Jiang et al.'s granulated coefficient Psi (their sec. 4.2): the mean over hyperparameter axes of
  psi_axis, the mean tau over groups of runs that differ only along that axis.

Missing values (None, NaN, inf) are dropped pairwise, together with their cluster/block labels.
All resampling is deterministic given `seed` (numpy default_rng).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
import scipy.stats

Statistic = Callable[[np.ndarray, np.ndarray], float]
Values = Sequence[float | None]
Labels = Sequence[Hashable]
Groups = Mapping[str, Sequence[Hashable | None]]
Interval = tuple[float, float]

MIN_PAIRS = 3  # below three runs every ranking statistic is trivially +-1 or undefined


@dataclass(frozen=True)
class Correlation:
    """Rank correlation of a measure with a target across runs; None fields when n < 3."""

    kendall_tau: float | None
    spearman: float | None
    ci95: Interval | None  # cluster-bootstrap percentile interval of kendall_tau
    p_value: float | None  # two-sided permutation p-value of tau (configurations permuted)
    n: int  # runs with both values present
    n_clusters: int  # configurations among those runs


@dataclass(frozen=True)
class Granulated:
    """Jiang et al.'s granulated Kendall coefficient; None where no group has a defined tau.
    Everything follows from the within-group taus, which resampling reuses."""

    group_taus: dict[str, dict[Hashable, float]]  # axis -> group -> tau (NaN: undefined)

    @property
    def taus(self) -> dict[str, list[float]]:
        """axis -> the defined within-group taus, in group order."""
        return {axis: [t for t in per.values() if math.isfinite(t)] for axis, per in self.group_taus.items()}

    @property
    def psi(self) -> dict[str, float | None]:
        """axis -> mean within-group tau."""
        return {axis: _mean_or_none(t) for axis, t in self.taus.items()}

    @property
    def psi_mean(self) -> float | None:
        """Psi: the mean of the defined psi."""
        return _mean_or_none(p for p in self.psi.values() if p is not None)

    @property
    def n_groups(self) -> dict[str, int]:
        """axis -> groups with a defined tau."""
        return {axis: len(t) for axis, t in self.taus.items()}


@dataclass(frozen=True)
class SeedAgreement:
    """How often two seeds order two configurations differently: the seed-to-seed noise floor."""

    swap_rate: float | None  # fraction of untied comparisons whose order flips
    kendall_tau: float | None  # pooled tau-b between seeds; 1 - 2 * swap_rate without ties
    n_comparisons: int  # (seed pair, configuration pair) comparisons untied under both seeds


def is_finite(value: object) -> bool:
    """A finite number (numpy scalars included); None, bools, strings and NaN/inf are not."""
    if value is None or isinstance(value, (bool, str)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample std with ddof=1, n) over the finite values; std is None when n < 2."""
    kept = np.array([float(v) for v in values if is_finite(v)], dtype=np.float64)
    if kept.size == 0:
        return None, None, 0
    std = float(kept.std(ddof=1)) if kept.size >= 2 else None
    return float(kept.mean()), std, int(kept.size)


def _clean(*columns: Values, labels: Sequence[Labels] = ()) -> tuple:
    """Drop rows where a value column is missing: (float arrays..., [label lists])."""
    n = len(columns[0])
    for name, col in [("values", c) for c in columns] + [("labels", c) for c in labels]:
        if len(col) != n:
            raise ValueError(f"{name}: lengths differ ({len(col)} vs {n})")
    keep = [i for i in range(n) if all(is_finite(c[i]) for c in columns)]
    arrays = tuple(np.array([float(c[i]) for i in keep], dtype=np.float64) for c in columns)
    return (*arrays, [[lab[i] for i in keep] for lab in labels])


def paired(x: Values, y: Values) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are finite, as float64 arrays."""
    return _clean(x, y)[:2]


def _codes(labels: Labels) -> tuple[np.ndarray, int]:
    """Integer code per label (first-appearance order) and the number of distinct labels."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(a, len(index)) for a in labels], dtype=np.intp), len(index)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (scipy); NaN when x or y is constant or n < 2."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan
    return float(scipy.stats.kendalltau(xs, ys, variant="b").statistic)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (scipy); NaN when x or y is constant or n < 2."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n == 2 warns although rho is defined (+-1)
        return float(scipy.stats.spearmanr(xs, ys).statistic)


def _kendall_tau_rows(x: np.ndarray, y_rows: np.ndarray) -> np.ndarray:
    """tau-b of x against each row of y_rows at once (scipy costs ~0.25 ms a call)."""

    def signs(v: np.ndarray) -> np.ndarray:  # sgn(v_i - v_j), as float32 for fast sums
        more, less = v[..., :, None] > v[..., None, :], v[..., :, None] < v[..., None, :]
        return (more.view(np.int8) - less.view(np.int8)).astype(np.float32)

    sx, sy = signs(x).ravel(), signs(y_rows).reshape(len(y_rows), -1)
    # Each unordered pair appears twice in the full matrices; the factors of 2 cancel. Sums of
    # n^2 <= 2^24 signs are exact in float32. einsum, not BLAS: BLAS threads contending on a
    # busy 2-core machine were measured 50x slower.
    untied = np.count_nonzero(sx) * np.count_nonzero(sy, axis=1).astype(np.float64)
    concordance = np.einsum("bn,n->b", sy, sx).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(untied > 0, concordance / np.sqrt(untied), np.nan)


def _spearman_rows(x: np.ndarray, y_rows: np.ndarray) -> np.ndarray:
    """Spearman's rho of x against each row of y_rows at once."""
    rx, ry = scipy.stats.rankdata(x), scipy.stats.rankdata(y_rows, axis=1)
    rx, ry = rx - rx.mean(), ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ry * rx).sum(axis=1) / denom, np.nan)


# Row-wise twins of the scalar statistics (same numbers, tested against scipy).
_ROWWISE = {kendall_tau: _kendall_tau_rows, spearman: _spearman_rows}
_ROWWISE_MAX_N = 300  # beyond this, scipy's O(n log n) tau per row beats O(n^2) signs
_BLOCK_ELEMENTS = 2**22  # rows x n^2 sign entries per vectorized block (~16 MB)


def _statistic_rows(x: np.ndarray, y_rows: np.ndarray, statistic: Statistic) -> np.ndarray:
    """statistic(x, row) for each row of y_rows, vectorized in blocks for tau and rho."""
    rowwise = _ROWWISE.get(statistic)
    if rowwise is None or (statistic is kendall_tau and x.size > _ROWWISE_MAX_N):
        return np.array([statistic(x, row) for row in y_rows], dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // (x.size * x.size))
    return np.concatenate([rowwise(x, y_rows[s : s + step]) for s in range(0, len(y_rows), step)])


def _check(level: float, n_draws: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be in (0, 1), got {level}")
    if n_draws < 1:
        raise ValueError(f"n_boot/n_perm: must be >= 1, got {n_draws}")


def _percentile(values: np.ndarray, level: float) -> Interval:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def _multiplicities(k: int, n_boot: int, seed: int) -> np.ndarray:
    """n_boot x k counts: how often each of k clusters is drawn in k draws with replacement."""
    return np.random.default_rng(seed).multinomial(k, np.full(k, 1.0 / k), size=n_boot)


def _materialized(codes: np.ndarray, m: np.ndarray) -> Iterable[np.ndarray]:
    """Run indices of each resample: run i repeated m[cluster of i] times."""
    return (np.repeat(np.arange(codes.size), row[codes]) for row in m)


def _weighted_tau(x: np.ndarray, y: np.ndarray, codes: np.ndarray, k: int, m: np.ndarray):
    """tau-b of each resample given by cluster multiplicities m (rows); see the module doc."""
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(k))
    sx, sy = (np.sign(np.subtract.outer(v[order], v[order])) for v in (x, y))
    m = m.astype(np.float64)

    def quad(pairs: np.ndarray) -> np.ndarray:  # m' A m per row, A = pairs summed per cluster
        a = np.add.reduceat(np.add.reduceat(pairs, starts, axis=0), starts, axis=1)
        return (np.einsum("bk,kl->bl", m, a) * m).sum(axis=1)  # einsum: no BLAS threads

    num, dx, dy = quad(sx * sy), quad(np.abs(sx)), quad(np.abs(sy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dx * dy > 0, num / np.sqrt(dx * dy), np.nan)


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], float], clusters: Labels, *, strata: Labels | None = None,
    n_boot: int = 2000, seed: int, level: float = 0.95,
) -> Interval:
    """Percentile interval of a statistic of runs, resampling whole clusters with replacement.

    statistic(indices) sees one materialized resample: the indices of its runs, run i repeated
    as often as its cluster was drawn. Without strata a resample draws K of the K clusters;
    with strata (a label per run, constant within a cluster) it draws, within each stratum,
    that stratum's clusters, so every resample keeps each stratum's number of clusters (two
    families compared, each resampled within itself). NaN resamples are skipped; (nan, nan)
    with fewer than 2 clusters.
    """
    _check(level, n_boot)
    codes, k = _codes(clusters)
    if k < 2:
        return math.nan, math.nan
    if strata is None:
        m = _multiplicities(k, n_boot, seed)
    else:
        stratum_of: dict[int, Hashable] = {}
        for c, s in zip(codes.tolist(), strata):
            if stratum_of.setdefault(c, s) != s:
                raise ValueError(f"strata: a cluster lies in two strata ({stratum_of[c]!r} and {s!r})")
        rng, m = np.random.default_rng(seed), np.zeros((n_boot, k), dtype=np.int64)
        for s in dict.fromkeys(stratum_of.values()):
            members = [c for c, t in stratum_of.items() if t == s]
            m[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_boot)
    boot = np.array([statistic(i) for i in _materialized(codes, m)], dtype=np.float64)
    return _percentile(boot, level)


def cluster_bootstrap_ci(
    x: Values, y: Values, clusters: Labels, *, statistic: Statistic = kendall_tau,
    n_boot: int = 2000, seed: int, level: float = 0.95,
) -> Interval:
    """Percentile interval of statistic(x, y) from resampling whole clusters with replacement.

    Each resample draws K of the K clusters (configurations) with replacement and recomputes the
    statistic over all runs of the drawn clusters (Davison & Hinkley 1997, sec. 3.8). Kendall's
    tau uses the exact multiplicity-weighted form of the module doc; other statistics see the
    materialized resample. NaN resamples are skipped; (nan, nan) if none is left or there are
    fewer than 2 clusters. One cluster per run gives the naive pair bootstrap.
    """
    _check(level, n_boot)
    xs, ys, (labels,) = _clean(x, y, labels=[clusters])
    codes, k = _codes(labels)
    if k < 2:
        return math.nan, math.nan
    if statistic is kendall_tau:
        return _percentile(_weighted_tau(xs, ys, codes, k, _multiplicities(k, n_boot, seed)), level)
    return cluster_bootstrap(lambda i: statistic(xs[i], ys[i]), labels, n_boot=n_boot, seed=seed, level=level)


def _block_permutations(blocks: np.ndarray, clusters: np.ndarray, n_perm: int, rng) -> np.ndarray:
    """n_perm x n indices: run (c, b) receives run (pi(c), b), pi a permutation of the clusters
    observed in the same set of blocks as c, one per row. Runs stay in their block; a cluster's
    runs move together. One cluster per run: plain independent within-block permutations."""
    cells: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(clusters.tolist(), blocks.tolist())):
        if cells.setdefault(key, i) != i:
            raise ValueError(f"clusters/blocks: two runs share cluster and block {key}")
    strata: dict[tuple[int, ...], list[int]] = {}  # blocks observed -> clusters
    for c in dict.fromkeys(clusters.tolist()):
        strata.setdefault(tuple(sorted(b for cc, b in cells if cc == c)), []).append(c)
    out = np.tile(np.arange(blocks.size), (n_perm, 1))
    for bs, cs in strata.items():
        grid = np.array([[cells[c, b] for b in bs] for c in cs])  # clusters x blocks -> run
        order = rng.permuted(np.tile(np.arange(len(cs)), (n_perm, 1)), axis=1)
        out[:, grid.ravel()] = grid[order].reshape(n_perm, -1)
    return out


def permutation_pvalue(
    x: Values, y: Values, blocks: Labels, *, clusters: Labels | None = None,
    statistic: Statistic = kendall_tau, n_perm: int = 2000, seed: int,
) -> float:
    """Two-sided permutation p-value of statistic(x, y), permuting y within each block.

    H0: no association, so y is exchangeable among the runs of a block (blocks = seeds:
    configurations are permuted within a seed). p = (1 + #{|t_perm| >= |t_obs|}) / (1 + n_perm),
    never 0 (Phipson & Smyth 2010); a relative tolerance of 1e-9 absorbs rounding. NaN if t_obs
    is NaN; NaN permuted statistics are dropped from both counts.
    With clusters (configurations), one permutation of the configurations acts in every block
    (run (c, s) gets y of run (pi(c), s)), among configurations observed under the same seeds.
    This keeps y's within-configuration dependence. Permuting each block independently breaks
    it and is anti-conservative when x and y both carry configuration effects (tested: ~20%
    rejections at 5%), so pass clusters whenever a configuration has runs in several blocks.
    """
    _check(0.5, n_perm)
    xs, ys, kept = _clean(x, y, labels=[blocks] if clusters is None else [blocks, clusters])
    observed = statistic(xs, ys) if xs.size else math.nan
    if not math.isfinite(observed):
        return math.nan
    cl = np.arange(xs.size) if clusters is None else _codes(kept[1])[0]
    perms = _block_permutations(_codes(kept[0])[0], cl, n_perm, np.random.default_rng(seed))
    null = np.abs(_statistic_rows(xs, ys[perms], statistic))
    null = null[np.isfinite(null)]
    return float((1 + np.count_nonzero(null >= abs(observed) * (1.0 - 1e-9))) / (1 + null.size))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order.

    With the m present p-values sorted, p_(1) <= ... <= p_(m):
    adj_(k) = min(1, max_{j <= k} (m - j + 1) p_(j)) (step-down, monotone); rejecting
    adj <= alpha controls the family-wise error rate at alpha. None/NaN pass through as None
    and do not count toward m.
    """
    present = sorted((float(p), i) for i, p in enumerate(pvalues) if is_finite(p))
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"pvalues: {p} is not in [0, 1]")
        running = out[i] = max(running, min(1.0, (len(present) - rank) * p))
    return out


def _group_taus(x: Values, y: Values, ids: Sequence[Hashable | None]) -> dict[Hashable, float]:
    """Kendall tau within each group id (None: no group) over its runs with both values; NaN
    if fewer than 2 such runs or constant in x or y."""
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(ids):
        if g is not None:
            members.setdefault(g, []).append(i)
    return {g: kendall_tau(*paired([x[i] for i in run], [y[i] for i in run]))
            for g, run in members.items()}


def _mean_or_none(values: Iterable[float]) -> float | None:
    kept = [v for v in values if math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def granulated_tau(x: Values, y: Values, groups: Groups) -> Granulated:
    """Jiang et al. 2020's granulated Kendall coefficient (their sec. 4.2, psi_i and Psi).

    groups[axis][i] is the id of run i's group for that axis: the runs sharing every other
    hyperparameter and the seed, so within a group only that axis varies (None: in no group).
    psi_axis = mean over groups with >= 2 runs and a defined tau of tau(x, y) within the group;
    Psi = psi_mean = mean of psi_axis over the axes where it is defined.
    """
    if any(len(ids) != len(x) for ids in groups.values()) or len(y) != len(x):
        raise ValueError("groups, x and y: lengths differ")
    return Granulated({axis: _group_taus(x, y, ids) for axis, ids in groups.items()})


def _psi_interval(measures: Sequence[Granulated], n_boot: int, seed: int, level: float) -> Interval:
    """Percentile interval of Psi of measures[0] (or of Psi(measures[0]) - Psi(measures[1])).
    Each resample draws, per axis, that axis's groups with replacement, the same draw for every
    measure; a group enters when its tau is defined for any measure."""
    _check(level, n_boot)
    if any(g.psi_mean is None for g in measures):
        return math.nan, math.nan
    rng, axes = np.random.default_rng(seed), []
    for axis, first in measures[0].group_taus.items():
        per = [g.group_taus[axis] for g in measures]
        table = np.array([[p[g] for g in first if any(math.isfinite(q[g]) for q in per)]
                          for p in per])  # measures x groups, NaN where undefined
        if table.size:
            draw = rng.integers(0, table.shape[1], size=(n_boot, table.shape[1]))
            axes.append(table[:, draw])  # measures x n_boot x groups
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN -> NaN: skipped, as intended
        boot = np.nanmean(np.stack([np.nanmean(a, axis=2) for a in axes], axis=2), axis=2)
    return _percentile(boot[0] if len(measures) == 1 else boot[0] - boot[1], level)


def psi_ci(
    x: Values, y: Values, groups: Groups, *, n_boot: int = 2000, seed: int, level: float = 0.95
) -> tuple[Granulated, Interval]:
    """(granulated coefficient, percentile interval of Psi) from resampling, within each axis,
    that axis's groups with replacement and recomputing Psi (psi per axis, then their mean); the
    interval is (nan, nan) where Psi is undefined."""
    granulated = granulated_tau(x, y, groups)
    return granulated, _psi_interval([granulated], n_boot, seed, level)


def psi_difference_ci(
    x_a: Values, x_b: Values, y: Values, groups: Groups, *,
    n_boot: int = 2000, seed: int, level: float = 0.95,
) -> tuple[float, Interval]:
    """(Psi(a) - Psi(b), percentile interval), paired: each resample draws one set of groups per
    axis and recomputes both measures' Psi on it; nan where undefined."""
    a, b = granulated_tau(x_a, y, groups), granulated_tau(x_b, y, groups)
    if a.psi_mean is None or b.psi_mean is None:
        return math.nan, (math.nan, math.nan)
    return a.psi_mean - b.psi_mean, _psi_interval([a, b], n_boot, seed, level)


def seed_agreement(values: Values, configs: Labels, seeds: Labels) -> SeedAgreement:
    """Seed-to-seed noise floor of a quantity (a sharpness measure or the generalization gap).

    For every pair of seeds (s, t) and every pair of configurations (c, d) with values under
    both seeds, a = sgn(v_sc - v_sd), b = sgn(v_tc - v_td). Comparisons: a != 0 and b != 0; a
    swap: a != b. swap_rate = swaps / comparisons; kendall_tau = sum ab / sqrt(sum|a| sum|b|)
    pooled over all seed and configuration pairs (tau-b; = 1 - 2 swap_rate without ties).
    """
    table: dict[Hashable, dict[Hashable, float]] = {}
    kept, (kept_configs, kept_seeds) = _clean(values, labels=[configs, seeds])
    for v, c, s in zip(kept, kept_configs, kept_seeds):
        if c in table.setdefault(s, {}):
            raise ValueError(f"seeds/configs: two values for configuration {c!r}, seed {s!r}")
        table[s][c] = float(v)
    num = abs_a = abs_b = comparisons = swaps = 0
    for s, t in itertools.combinations(table, 2):
        common = [c for c in table[s] if c in table[t]]
        upper = np.triu_indices(len(common), 1)
        a, b = (np.sign(np.subtract.outer(v, v))[upper]
                for v in (np.array([table[u][c] for c in common]) for u in (s, t)))
        num, abs_a, abs_b = num + (a * b).sum(), abs_a + np.abs(a).sum(), abs_b + np.abs(b).sum()
        comparisons, swaps = comparisons + np.count_nonzero(a * b), swaps + np.sum(a * b < 0)
    return SeedAgreement(
        swap_rate=float(swaps / comparisons) if comparisons else None,
        kendall_tau=float(num / math.sqrt(abs_a * abs_b)) if abs_a * abs_b else None,
        n_comparisons=int(comparisons),
    )


def correlate(
    measure_values: Values, target_values: Values, *, clusters: Labels, blocks: Labels,
    seed: int, n_boot: int = 2000, n_perm: int = 2000,
) -> Correlation:
    """Kendall tau-b and Spearman rho across runs, the cluster-bootstrap 95% interval of tau
    (clusters = configurations) and its permutation p-value (configurations permuted jointly
    within blocks = seeds; see permutation_pvalue).

    Runs missing either value are dropped with their labels; with fewer than 3 left, or tau
    undefined, the statistics are None. ci95 is None with fewer than 2 clusters.
    """
    x, y, (cl, bl) = _clean(measure_values, target_values, labels=[clusters, blocks])
    n, k = int(x.size), _codes(cl)[1]
    if n < MIN_PAIRS:
        return Correlation(None, None, None, None, n=n, n_clusters=k)
    tau, rho = _or_none(kendall_tau(x, y)), _or_none(spearman(x, y))
    ci = p = None
    if tau is not None:
        boot_seed, perm_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
        lo, hi = cluster_bootstrap_ci(x, y, cl, n_boot=n_boot, seed=boot_seed)
        ci = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
        p = _or_none(permutation_pvalue(x, y, bl, clusters=cl, n_perm=n_perm, seed=perm_seed))
    return Correlation(tau, rho, ci, p, n=n, n_clusters=k)


def paired_difference_ci(
    differences: Values, clusters: Labels, *, n_boot: int = 2000, seed: int,
    level: float = 0.95, statistic: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, Interval]:
    """(statistic of the matched-pair differences, cluster-bootstrap percentile interval).

    E.g. d = log lambda_max at the larger batch minus at the smaller, one per matched pair;
    clusters = the configurations the pairs belong to, resampled whole (Davison & Hinkley
    1997, sec. 3.8). For the mean, a resample with multiplicities m_c has mean
    sum_c m_c S_c / sum_c m_c n_c (S_c, n_c: cluster sums and sizes). nan when no difference
    is present; the interval is (nan, nan) with fewer than 2 clusters.
    """
    _check(level, n_boot)
    d, (labels,) = _clean(differences, labels=[clusters])
    if d.size == 0:
        return math.nan, (math.nan, math.nan)
    estimate = float(statistic(d))
    codes, k = _codes(labels)
    if k < 2:
        return estimate, (math.nan, math.nan)
    if statistic is not np.mean:
        return estimate, cluster_bootstrap(lambda i: statistic(d[i]), labels, n_boot=n_boot, seed=seed, level=level)
    m = _multiplicities(k, n_boot, seed)
    sums, sizes = np.bincount(codes, weights=d, minlength=k), np.bincount(codes, minlength=k)
    return estimate, _percentile((m * sums).sum(axis=1) / (m * sizes).sum(axis=1), level)
