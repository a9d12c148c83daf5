"""Statistics over clustered runs: rank correlations, cluster-level inference, Holm.

Does sharpness predict generalization? Following Jiang et al. 2020, "Fantastic Generalization
Measures and Where to Find Them" (ICLR, arXiv:1912.02178), we rank runs, not fit lines. Runs of
one configuration (optimizer x learning rate x batch size ..., differing only by seed) are
correlated, so the unit of inference is the configuration (a *cluster*), never the run. Every
interval and p-value here is a deterministic function of the data: the same runs give the
same numbers, and so the same verdicts, whatever any random seed.

- Kendall's tau-b over n runs with s_ij = sgn(x_i - x_j), t_ij = sgn(y_i - y_j):
  tau_b = sum_{i<j} s_ij t_ij / sqrt((n0 - n_x)(n0 - n_y)), n0 = n(n-1)/2, n_x and n_y the pairs
  tied in x and in y; NaN when x or y is constant. Spearman's rho: Pearson's r of the ranks.
  Kendall's partial tau of x and y given z (Kendall 1942):
  tau_xy.z = (tau_xy - tau_xz tau_yz) / sqrt((1 - tau_xz^2)(1 - tau_yz^2)).
- Paired differences (a claim compares matched runs): the k cluster means d_1..d_k of the
  differences (a cluster = the configuration pair, over its seeds) are the data. The p-value is
  the exact sign-flip randomization test (Fisher 1935; Good 2005, ch. 3): under H0 the d_c are
  symmetric about the null value, so all 2^k sign patterns of |d_c| are equally likely and
  p = #{patterns with |sum| >= |observed sum|} / 2^k, enumerated exactly (two halves of the
  patterns, sorted and merged: 2 x 2^(k/2) work) up to k = 40; beyond, the normal
  approximation with the exact variance sum d_c^2. Two-sided, its smallest value is 2 / 2^k:
  3 clusters cannot go below 0.25, 4 below 0.125, 12 below 0.00049. The interval is the
  t-interval on the cluster means, mean +- t_{k-1} sd / sqrt(k).
- Statistics of all runs (tau, partial tau, Psi, Psi differences): the delete-one-cluster
  jackknife (Quenouille 1956; Tukey 1958; for clustered data, Efron & Stein 1981): theta_(c)
  recomputed without cluster c, SE^2 = (k-1)/k sum_c (theta_(c) - mean theta_(.))^2, the
  interval theta +- t_{k-1} SE and the two-sided p of t = theta / SE on k - 1 degrees of freedom.
- Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6.
- Jiang et al.'s granulated coefficient Psi (their sec. 4.2): the mean over hyperparameter axes of
  psi_axis, the mean tau over groups of runs that differ only along that axis.

Missing values (None, NaN, inf) are dropped pairwise, together with their cluster labels.
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
class Jackknife:
    """A statistic with its delete-one-cluster jackknife error, interval and test of H0: theta = null."""

    estimate: float
    stderr: float
    ci95: Interval  # estimate +- t_{k-1} stderr
    p: float  # two-sided, t = (estimate - null) / stderr on k - 1 degrees of freedom
    n_clusters: int  # clusters whose deletion left the statistic defined


@dataclass(frozen=True)
class Correlation:
    """Rank correlation of a measure with a target across runs; None fields when n < 3."""

    kendall_tau: float | None
    spearman: float | None
    ci95: Interval | None  # jackknife t-interval of kendall_tau (configurations deleted one at a time)
    p_value: float | None  # two-sided jackknife t-test of tau = 0
    partial_tau: float | None  # Kendall's partial tau given the covariate (None without one)
    partial_ci95: Interval | None
    n: int  # runs with both values present
    n_clusters: int  # configurations among those runs


@dataclass(frozen=True)
class ClusterTest:
    """Inference on paired differences whose unit is the cluster (the configuration pair)."""

    estimate: float  # mean of the cluster means
    ci95: Interval | None  # t-interval on the cluster means; None with fewer than 2 clusters
    p: float | None  # two-sided exact sign-flip p of the cluster means about the null value
    p_min: float | None  # the smallest p that this many clusters allow
    n_clusters: int
    n_pairs: int
    method: str


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


_PAIRWISE_TAU_MAX_N = 400  # below this the n x n sign matrices beat scipy's per-call overhead (~0.3 ms)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b; NaN when x or y is constant or n < 2. Small samples (the jackknife calls
    this thousands of times on groups of 2 to 100 runs) by the sign matrices directly, larger
    ones by scipy's O(n log n) algorithm: the same number (tested)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan
    if xs.size > _PAIRWISE_TAU_MAX_N:
        return float(scipy.stats.kendalltau(xs, ys, variant="b").statistic)
    sx, sy = np.sign(xs[:, None] - xs[None, :]), np.sign(ys[:, None] - ys[None, :])
    return float((sx * sy).sum() / math.sqrt(np.abs(sx).sum() * np.abs(sy).sum()))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (scipy); NaN when x or y is constant or n < 2."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n == 2 warns although rho is defined (+-1)
        return float(scipy.stats.spearmanr(xs, ys).statistic)


def partial_kendall_tau(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Kendall's partial tau of x and y given z (Kendall 1942); NaN where a tau is undefined or
    z ranks x or y perfectly."""
    xy, xz, yz = kendall_tau(x, y), kendall_tau(x, z), kendall_tau(y, z)
    denominator = (1.0 - xz * xz) * (1.0 - yz * yz)
    if not all(map(math.isfinite, (xy, xz, yz))) or denominator <= 1e-12:  # tau(z, x) = 1 up to rounding
        return math.nan
    return (xy - xz * yz) / math.sqrt(denominator)


def _t_quantile(level: float, df: int) -> float:
    return float(scipy.stats.t.ppf((1.0 + level) / 2.0, df))


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval | None:
    """mean +- t_{k-1} sd / sqrt(k) of k values (None with k < 2)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    half = _t_quantile(level, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean()) - half, float(v.mean()) + half


EXACT_SIGN_FLIP_MAX = 40  # 2 x 2^20 signed half-sums: exact enumeration stays under a second


def _signed_sums(values: np.ndarray) -> np.ndarray:
    """All 2^len(values) sums of +-values (sum over every sign pattern)."""
    sums = np.zeros(1)
    for v in values:
        sums = np.concatenate([sums + v, sums - v])
    return sums


def sign_flip_pvalue(values: Sequence[float], null: float = 0.0) -> float:
    """Two-sided sign-flip randomization p of mean(values) = null: the share of the 2^k sign
    patterns of d = values - null whose |sum| reaches the observed |sum| (exact up to k = 40,
    by meeting in the middle; beyond, the normal approximation, variance sum d^2)."""
    d = np.asarray(values, dtype=np.float64) - null
    if d.size == 0:
        return math.nan
    observed = abs(float(d.sum()))
    scale = float(np.abs(d).sum())
    if observed <= 1e-12 * scale or scale == 0.0:
        return 1.0
    if d.size > EXACT_SIGN_FLIP_MAX:
        return float(2.0 * scipy.stats.norm.sf(observed / math.sqrt(float((d * d).sum()))))
    threshold = observed - 1e-12 * scale  # ties with the observed sum count, up to rounding
    half = d.size // 2
    left, right = _signed_sums(d[:half]), np.sort(_signed_sums(d[half:]))
    above = right.size - np.searchsorted(right, threshold - left, side="left")
    below = np.searchsorted(right, -threshold - left, side="right")
    return float((above.sum() + below.sum()) / 2.0**d.size)


def smallest_pvalue(k: int) -> float:
    """The smallest two-sided sign-flip p with k clusters: 2 / 2^k (1 with none)."""
    return min(1.0, 2.0 / 2.0**k) if k > 0 else 1.0


def cluster_means(values: Values, clusters: Labels) -> tuple[np.ndarray, int]:
    """(mean of the finite values per cluster in first-appearance order, number of values)."""
    v, (labels,) = _clean(values, labels=[clusters])
    codes, k = _codes(labels)
    return np.bincount(codes, weights=v, minlength=k) / np.bincount(codes, minlength=k), int(v.size)


def paired_cluster_test(differences: Values, clusters: Labels, *, null: float = 0.0,
                        level: float = 0.95) -> ClusterTest:
    """Mean of the cluster means of matched-pair differences, its t-interval and the exact
    sign-flip p about `null`: the unit is the cluster, whatever its number of pairs."""
    means, n = cluster_means(differences, clusters)
    k = len(means)
    method = ("exact sign-flip randomization on cluster means" if k <= EXACT_SIGN_FLIP_MAX
              else "sign-flip randomization on cluster means (normal approximation)") + ", t-interval"
    if k == 0:
        return ClusterTest(math.nan, None, None, None, 0, 0, method)
    return ClusterTest(float(means.mean()), t_interval(means, level), sign_flip_pvalue(means, null),
                       smallest_pvalue(k), k, n, method)


def cluster_jackknife(statistic: Callable[[np.ndarray], float], clusters: Labels, *, null: float = 0.0,
                      level: float = 0.95) -> Jackknife | None:
    """Delete-one-cluster jackknife of statistic(keep), keep a boolean mask over the runs.

    None when the statistic is undefined on all runs or fewer than 2 deletions leave it defined.
    """
    codes, k = _codes(clusters)
    estimate = statistic(np.ones(codes.size, dtype=bool))
    if not math.isfinite(estimate) or k < 2:
        return None
    leave_out = np.array([statistic(codes != c) for c in range(k)], dtype=np.float64)
    leave_out = leave_out[np.isfinite(leave_out)]
    m = leave_out.size
    if m < 2:
        return None
    stderr = math.sqrt((m - 1) / m * float(((leave_out - leave_out.mean()) ** 2).sum()))
    half = _t_quantile(level, m - 1) * stderr
    if stderr == 0.0:
        p = 1.0 if estimate == null else 0.0
    else:
        p = float(2.0 * scipy.stats.t.sf(abs(estimate - null) / stderr, m - 1))
    return Jackknife(float(estimate), stderr, (float(estimate) - half, float(estimate) + half), p, m)


def pooled_within_sd(values: Values, clusters: Labels) -> float | None:
    """sqrt of the mean within-cluster variance over clusters with >= 2 values: the seed-to-seed
    standard deviation of a quantity whose clusters are configurations."""
    v, (labels,) = _clean(values, labels=[clusters])
    codes, k = _codes(labels)
    variances = [float(np.var(v[codes == c], ddof=1)) for c in range(k) if np.count_nonzero(codes == c) >= 2]
    return math.sqrt(float(np.mean(variances))) if variances else None


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


def _members(ids: Sequence[Hashable | None], keep: np.ndarray | None = None) -> dict[Hashable, list[int]]:
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(ids):
        if g is not None and (keep is None or keep[i]):
            members.setdefault(g, []).append(i)
    return members


def _group_taus(x: Values, y: Values, ids: Sequence[Hashable | None], keep: np.ndarray | None = None
                ) -> dict[Hashable, float]:
    """Kendall tau within each group id (None: no group) over its runs with both values (and
    `keep` true); NaN if fewer than 2 such runs or constant in x or y."""
    return {g: kendall_tau(*paired([x[i] for i in run], [y[i] for i in run]))
            for g, run in _members(ids, keep).items()}


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


def psi_without(x: Values, y: Values, groups: Groups, full: Granulated, dropped: np.ndarray) -> float:
    """Psi with the runs in `dropped` left out: only the groups holding one of them change."""
    keep = ~dropped
    per_axis = {}
    for axis, ids in groups.items():
        touched = {ids[i] for i in np.flatnonzero(dropped) if ids[i] is not None}
        taus = dict(full.group_taus[axis])
        for g, run in _members(ids).items():
            if g in touched:
                kept = [i for i in run if keep[i]]
                taus[g] = kendall_tau(*paired([x[i] for i in kept], [y[i] for i in kept]))
        per_axis[axis] = taus
    value = Granulated(per_axis).psi_mean
    return math.nan if value is None else value


def psi_jackknife(xs: Sequence[Values], signs: Sequence[float], y: Values, groups: Groups, clusters: Labels,
                  *, null: float = 0.0) -> Jackknife | None:
    """Jackknife (configurations deleted one at a time) of sum_j signs[j] Psi(xs[j], y): one
    measure's Psi (xs = [x], signs = [1]) or the paired difference of two (signs = [1, -1])."""
    fulls = [granulated_tau(x, y, groups) for x in xs]
    if any(g.psi_mean is None for g in fulls):
        return None
    codes, _ = _codes(clusters)

    def statistic(keep: np.ndarray) -> float:
        if keep.all():
            return sum(s * g.psi_mean for s, g in zip(signs, fulls))
        return sum(s * psi_without(x, y, groups, g, ~keep) for s, x, g in zip(signs, xs, fulls))

    return cluster_jackknife(statistic, list(codes), null=null)


def correlate(measure_values: Values, target_values: Values, *, clusters: Labels,
              covariate: Values | None = None) -> Correlation:
    """Kendall tau-b and Spearman rho across runs, tau's jackknife interval and p (configurations
    deleted one at a time), and with a covariate Kendall's partial tau given it.

    Runs missing the measure or the target are dropped with their labels (and, for the partial
    tau, runs missing the covariate); with fewer than 3 left, or tau undefined, the statistics
    are None.
    """
    x, y, (cl,) = _clean(measure_values, target_values, labels=[clusters])
    n, k = int(x.size), _codes(cl)[1]
    if n < MIN_PAIRS or not math.isfinite(kendall_tau(x, y)):
        return Correlation(None, None, None, None, None, None, n=n, n_clusters=k)
    tau = cluster_jackknife(lambda keep: kendall_tau(x[keep], y[keep]), cl)
    partial = partial_ci = None
    if covariate is not None:
        xz, yz, z, (clz,) = _clean(measure_values, target_values, covariate, labels=[clusters])
        if xz.size >= MIN_PAIRS:
            part = cluster_jackknife(lambda keep: partial_kendall_tau(xz[keep], yz[keep], z[keep]), clz)
            partial = _or_none(partial_kendall_tau(xz, yz, z))
            partial_ci = part.ci95 if part is not None else None
    return Correlation(
        kendall_tau=kendall_tau(x, y), spearman=_or_none(spearman(x, y)),
        ci95=tau.ci95 if tau is not None else None, p_value=tau.p if tau is not None else None,
        partial_tau=partial, partial_ci95=partial_ci, n=n, n_clusters=k)


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


