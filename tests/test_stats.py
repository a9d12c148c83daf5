import math

import numpy as np
import pytest
import scipy.stats

from minima import stats


def test_mean_std_hand_computed_and_ignores_missing():
    mean, std, n = stats.mean_std([1.0, None, 2.0, float("nan"), 3.0, 6.0])
    assert n == 4
    assert mean == pytest.approx(3.0)
    # deviations -2, -1, 0, 3 -> sum of squares 14, ddof=1 -> 14/3
    assert std == pytest.approx(math.sqrt(14.0 / 3.0))


def test_mean_std_small_n():
    assert stats.mean_std([]) == (None, None, 0)
    assert stats.mean_std([None, float("inf")]) == (None, None, 0)
    assert stats.mean_std([2.5]) == (2.5, None, 1)


def test_paired_drops_missing_pairwise():
    x, y = stats.paired([1.0, None, 3.0, 4.0], [1.0, 2.0, float("nan"), 5.0])
    assert x.tolist() == [1.0, 4.0] and y.tolist() == [1.0, 5.0]
    with pytest.raises(ValueError, match="lengths"):
        stats.paired([1.0], [1.0, 2.0])


def test_kendall_tau_hand_computed():
    # x = 1 2 3 4, y = 1 3 2 4: of the 6 pairs only (2,3) is discordant -> (5 - 1) / 6
    assert stats.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4.0 / 6.0)
    assert stats.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: x = 1 1 2, y = 1 2 3: pair (1,2) tied in x, (1,3), (2,3) concordant
    # tau_b = 2 / sqrt((3 - 1) * (3 - 0))
    assert stats.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2.0 / math.sqrt(6.0))


def test_spearman_hand_computed():
    # ranks 1 2 3 4 vs 1 3 2 4: d^2 = 0+1+1+0 = 2 -> 1 - 6*2 / (4*15) = 0.8
    assert stats.spearman([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_constant_input_is_nan():
    assert math.isnan(stats.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(stats.spearman([1, 2, 3], [5, 5, 5]))


def test_tau_and_spearman_equal_scipy_scalar_and_rowwise_with_ties():
    rng = np.random.default_rng(3)
    for x in (rng.integers(0, 4, size=9).astype(float), np.ones(9)):  # ties; constant x
        y = rng.integers(0, 5, size=(60, 9)).astype(float)  # ties, some constant rows
        y[0] = 2.0
        taus, rhos = stats._kendall_tau_rows(x, y), stats._spearman_rows(x, y)
        for i in range(60):
            degenerate = np.ptp(x) == 0 or np.ptp(y[i]) == 0
            ref_tau = math.nan if degenerate else scipy.stats.kendalltau(x, y[i]).statistic
            ref_rho = math.nan if degenerate else scipy.stats.spearmanr(x, y[i]).statistic
            for got in (taus[i], stats.kendall_tau(x, y[i])):
                assert got == pytest.approx(ref_tau, nan_ok=True)
            for got in (rhos[i], stats.spearman(x, y[i])):
                assert got == pytest.approx(ref_rho, nan_ok=True)


def test_weighted_resample_tau_equals_scipy_on_materialized_resamples():
    rng = np.random.default_rng(5)
    n, k = 14, 5
    x = rng.integers(0, 5, size=n).astype(float)  # ties in x and y
    y = rng.integers(0, 6, size=n).astype(float)
    codes = np.arange(n) % k
    m = rng.multinomial(k, np.full(k, 1.0 / k), size=200)
    m[0] = [1, 1, 1, 1, 1]  # the original sample
    m[1] = [5, 0, 0, 0, 0]  # one cluster five times
    got = stats._weighted_tau(x, y, codes, k, m)
    for row, value in zip(m, got):
        runs = [i for i in range(n) for _ in range(row[codes[i]])]  # each run w_i = m_c times
        xs, ys = x[runs], y[runs]
        expected = math.nan if np.ptp(xs) == 0 or np.ptp(ys) == 0 else (
            scipy.stats.kendalltau(xs, ys, variant="b").statistic)
        assert value == pytest.approx(expected, nan_ok=True)
    assert got[0] == pytest.approx(scipy.stats.kendalltau(x, y).statistic)


def test_holm_hand_computed_and_none_passes_through():
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1) -> 0.02, 0.03, 0.06, 0.04
    # running max -> 0.02, 0.03, 0.06, 0.06, back in input order:
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # None does not count toward m: m = 2 -> 0.02 * 2 = 0.04, max(0.04, 0.6 * 1) = 0.6
    assert stats.holm([None, 0.6, 0.02, float("nan")]) == [None, pytest.approx(0.6),
                                                          pytest.approx(0.04), None]
    assert stats.holm([0.5, 0.7]) == [1.0, 1.0]  # capped: 2 * 0.5 = 1, max(1, 0.7) = 1
    assert stats.holm([]) == []
    with pytest.raises(ValueError):
        stats.holm([1.5])


# Hand-built table for the granulated coefficient. Axes: lr groups (runs differing only in lr),
# batch groups, wd groups (no group with 2 runs).
#        run:  0     1     2     3     4     5     6     7
PSI_X = [1.0, 2.0, 3.0, 1.0, 2.0, 5.0, 4.0, None]
PSI_Y = [1.0, 3.0, 2.0, 2.0, 1.0, 1.0, 2.0, 5.0]
PSI_GROUPS = {
    "lr": ["A", "A", "A", "B", "B", "C", None, None],
    "batch": ["P", "Q", "R", "P", "Q", "R", "Q", "R"],
    "wd": ["u", "v", None, None, None, None, None, "v"],
}
# lr:    A = runs 0,1,2: x 1,2,3, y 1,3,2 -> pairs + + - -> tau 1/3; B = runs 3,4: x 1,2, y 2,1
#        -> -1; C has one run. psi_lr = (1/3 - 1) / 2 = -1/3.
# batch: P = runs 0,3: x 1,1 tied -> undefined, skipped; Q = runs 1,4,6: x 2,2,4, y 3,1,2:
#        (1,4) tied in x, (1,6) discordant, (4,6) concordant -> tau 0; R = runs 2,5 (run 7 has
#        no x): x 3,5, y 2,1 -> -1. psi_batch = (0 - 1) / 2 = -1/2.
# wd:    u has one run, v = runs 1,7 but run 7 has no x -> undefined. psi_wd = None.
# Psi = (-1/3 - 1/2) / 2 = -5/12.


def test_granulated_tau_hand_computed():
    g = stats.granulated_tau(PSI_X, PSI_Y, PSI_GROUPS)
    assert g.psi["lr"] == pytest.approx(-1 / 3)
    assert g.psi["batch"] == pytest.approx(-1 / 2)
    assert g.psi["wd"] is None
    assert g.psi_mean == pytest.approx(-5 / 12)
    assert g.n_groups == {"lr": 2, "batch": 2, "wd": 0}
    assert g.taus["lr"] == pytest.approx([1 / 3, -1]) and g.taus["batch"] == pytest.approx([0, -1])


def test_psi_difference_hand_computed_and_paired():
    # Measure b = y itself: every group with two runs has tau 1 (group P defined now too), so
    # Psi(b) = 1 and Psi(a) - Psi(b) = -5/12 - 1 = -17/12.
    est, (lo, hi) = stats.psi_difference_ci(PSI_X, PSI_Y, PSI_Y, PSI_GROUPS, n_boot=500, seed=0)
    assert est == pytest.approx(-17 / 12)
    assert lo <= est <= hi
    # A measure compared with itself: paired resampling gives exactly 0 in every resample.
    est, ci = stats.psi_difference_ci(PSI_X, PSI_X, PSI_Y, PSI_GROUPS, n_boot=500, seed=0)
    assert est == 0.0 and ci == (0.0, 0.0)


def test_psi_ci_closed_form():
    # One axis, two groups with taus +1 and -1: a resample's mean is +1, 0, -1 with
    # probabilities 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are -1 and +1.
    x, y = [1, 2, 1, 2], [1, 2, 2, 1]
    g, (lo, hi) = stats.psi_ci(x, y, {"lr": ["a", "a", "b", "b"]}, n_boot=2000, seed=1)
    assert g.psi_mean == 0.0 and g.taus == {"lr": [1.0, -1.0]} and (lo, hi) == (-1.0, 1.0)
    # Every group tau 1 -> Psi = 1 in every resample.
    g, interval = stats.psi_ci(x, x, {"lr": ["a", "a", "b", "b"]}, seed=0)
    assert g.psi_mean == 1.0 and interval == (1.0, 1.0)
    g, (lo, hi) = stats.psi_ci(x, y, {"lr": [None] * 4}, seed=0)  # no group: undefined
    assert g.psi_mean is None and math.isnan(lo) and math.isnan(hi)


def test_seed_agreement_hand_computed():
    # value[config][seed]; d is tied with c under seed 0, a is missing under seed 2.
    #   seed 0: a=1 b=2 c=3 d=3 | seed 1: a=1 b=3 c=2 d=0 | seed 2: b=5 c=4
    # seeds (0,1): (a,b) same, (a,c) same, (a,d) swap, (b,c) swap, (b,d) swap, (c,d) tied in 0
    # seeds (0,2): (b,c) swap; seeds (1,2): (b,c) same.
    # comparisons 5 + 1 + 1 = 7, swaps 3 + 1 = 4 -> swap rate 4/7.
    # pooled tau-b: sum ab = 3 - 4 = -1, sum|a| = 7 (the (c,d) tie), sum|b| = 8 -> -1/sqrt(56)
    rows = [("a", 0, 1), ("b", 0, 2), ("c", 0, 3), ("d", 0, 3), ("a", 1, 1), ("b", 1, 3),
            ("c", 1, 2), ("d", 1, 0), ("a", 2, None), ("b", 2, 5), ("c", 2, 4)]
    configs, seeds, values = zip(*rows)
    agreement = stats.seed_agreement(values, configs, seeds)
    assert agreement.n_comparisons == 7
    assert agreement.swap_rate == pytest.approx(4 / 7)
    assert agreement.kendall_tau == pytest.approx(-1 / math.sqrt(56))
    # Without ties tau = 1 - 2 * swap: one swap in three comparisons -> 1/3.
    same = stats.seed_agreement([1, 2, 3, 1, 3, 2], list("abcabc"), [0, 0, 0, 1, 1, 1])
    assert same.swap_rate == pytest.approx(1 / 3) and same.kendall_tau == pytest.approx(1 / 3)
    assert stats.seed_agreement([1, 2], ["a", "b"], [0, 0]).swap_rate is None
    with pytest.raises(ValueError, match="two values"):
        stats.seed_agreement([1, 2], ["a", "a"], [0, 0])


def _clustered(rng, c, s, r, noise):
    """c configurations with latent (u, v) ~ N(0, [[1, r], [r, 1]]), s seeds adding N(0, noise^2)
    to x and y independently."""
    u, v = rng.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]], size=c).T
    x = np.repeat(u, s) + noise * rng.normal(size=c * s)
    y = np.repeat(v, s) + noise * rng.normal(size=c * s)
    return x, y, np.repeat(np.arange(c), s), np.tile(np.arange(s), c)


def _true_tau(c, s, r, noise):
    """E[sample tau] over all runs. For runs of different configurations the differences
    (x_i - x_j, y_i - y_j) are bivariate normal, variances 2 + 2 noise^2 and covariance 2r, so
    correlation rho = r / (1 + noise^2), and E[s_ij t_ij] = P(conc) - P(disc) = (2/pi) asin(rho)
    (Sheppard). Within a configuration the differences are independent noise: expectation 0.
    No ties (continuous), so tau_b = mean of s_ij t_ij over pairs; the within fraction is
    w = c * C(s, 2) / C(cs, 2) = (s - 1) / (cs - 1)."""
    w = (s - 1) / (c * s - 1)
    return (1 - w) * 2 / math.pi * math.asin(r / (1 + noise**2))


def _coverage(c, s, r, noise, reps, n_boot, naive=False, seed=0):
    rng = np.random.default_rng(seed)
    truth, hits = _true_tau(c, s, r, noise), 0
    for rep in range(reps):
        x, y, configs, _ = _clustered(rng, c, s, r, noise)
        labels = np.arange(x.size) if naive else configs
        lo, hi = stats.cluster_bootstrap_ci(x, y, labels, n_boot=n_boot, seed=rep)
        hits += lo <= truth <= hi
    return hits / reps


def test_true_tau_formula_by_monte_carlo():
    # The closed form the coverage tests rely on, checked against simulation.
    rng = np.random.default_rng(11)
    taus = [stats.kendall_tau(*_clustered(rng, 10, 3, 0.6, 0.7)[:2]) for _ in range(2000)]
    assert np.mean(taus) == pytest.approx(_true_tau(10, 3, 0.6, 0.7), abs=0.01)  # SE ~ 0.004


def test_cluster_bootstrap_covers_the_truth():
    coverage = _coverage(c=24, s=2, r=0.5, noise=0.7, reps=200, n_boot=400)
    assert 0.88 <= coverage <= 0.99


def test_naive_bootstrap_undercovers_under_strong_clustering():
    # Seeds nearly replicate each other: 96 runs carry the information of ~24, so resampling
    # runs understates the spread ~2x while resampling configurations does not.
    naive = _coverage(c=24, s=4, r=0.5, noise=0.1, reps=200, n_boot=400, naive=True)
    cluster = _coverage(c=24, s=4, r=0.5, noise=0.1, reps=200, n_boot=400)
    assert naive < 0.8
    assert 0.88 <= cluster <= 0.99


def test_cluster_bootstrap_generic_statistic_and_edge_cases():
    # The mean of x over a resample of clusters with sizes 1 and 3 (x = 0 | 4, 4, 4): resample
    # means are 0 (p 1/4), 3 (p 1/2) or 4 (p 1/4) -> 2.5% and 97.5% quantiles 0 and 4.
    x, y, cl = [0.0, 4.0, 4.0, 4.0], [1.0, 2.0, 3.0, 4.0], ["a", "b", "b", "b"]
    lo, hi = stats.cluster_bootstrap_ci(x, y, cl, statistic=lambda a, b: a.mean(), seed=0)
    assert (lo, hi) == (0.0, 4.0)
    # Perfect ranking: every non-degenerate resample has tau 1.
    assert stats.cluster_bootstrap_ci([1, 2, 3, 4], [1, 2, 3, 5], [0, 0, 1, 1], seed=0) == (1, 1)
    assert all(map(math.isnan, stats.cluster_bootstrap_ci([1, 2], [1, 2], [0, 0], seed=0)))
    # Missing values are dropped together with their labels.
    with_missing = stats.cluster_bootstrap_ci([1, None, 2, 3, 4], [1, 9, 2, 3, 5],
                                              [0, 7, 0, 1, 1], seed=0)
    assert with_missing == (1.0, 1.0)
    with pytest.raises(ValueError, match="level"):
        stats.cluster_bootstrap_ci([1, 2, 3], [1, 2, 3], [0, 1, 2], seed=0, level=1.5)


def test_cluster_bootstrap_of_run_indices_matches_the_closed_form_mean_and_keeps_strata():
    rng = np.random.default_rng(4)
    d = rng.normal(size=30)
    cl = np.repeat(np.arange(10), 3).tolist()
    # Materialized resamples and the closed form (cluster sums over cluster sizes) draw the same
    # multiplicities from one seed, so the mean's intervals agree to rounding.
    _, closed = stats.paired_difference_ci(d.tolist(), cl, n_boot=500, seed=7)
    assert stats.cluster_bootstrap(lambda i: d[i].mean(), cl, n_boot=500, seed=7) == pytest.approx(closed)
    # Strata: clusters 0-3 form family a (12 runs), 4-9 family b. Resampling within families
    # keeps 12 runs of a in every resample; resampling across them does not.
    family = ["a" if c < 4 else "b" for c in cl]
    count_a = lambda i: float(sum(family[j] == "a" for j in i))  # noqa: E731
    assert stats.cluster_bootstrap(count_a, cl, strata=family, n_boot=300, seed=0) == (12.0, 12.0)
    lo, hi = stats.cluster_bootstrap(count_a, cl, n_boot=300, seed=0)
    assert lo < 12.0 < hi
    with pytest.raises(ValueError, match="strata: a cluster lies in two strata"):
        stats.cluster_bootstrap(count_a, cl, strata=["a"] * 29 + ["b"], seed=0)
    assert all(map(math.isnan, stats.cluster_bootstrap(count_a, [0] * 30, seed=0)))


def test_block_permutations_stay_in_blocks_and_move_clusters_together():
    rng = np.random.default_rng(0)
    blocks = np.array([0, 1, 0, 2, 1, 0, 2])
    perms = stats._block_permutations(blocks, np.arange(7), 300, rng)  # one run per cluster
    for row in perms:
        assert (blocks[row] == blocks).all()  # every run draws from its own block
        assert sorted(row) == list(range(7))  # a permutation: each block keeps its multiset
    assert len({tuple(row) for row in perms}) == 3 * 2 * 1 * 2 * 2  # 3! 2! 2! = 24 possible
    # 3 configurations x 2 seeds, plus configuration 3 seen only under seed 0.
    clusters = np.array([0, 0, 1, 1, 2, 2, 3])
    blocks = np.array([0, 1, 0, 1, 0, 1, 0])
    for row in stats._block_permutations(blocks, clusters, 100, rng):
        assert (blocks[row] == blocks).all()
        for c in range(3):  # both seeds of configuration c receive one configuration's runs
            assert len(set(clusters[row[clusters == c]])) == 1
        assert row[6] == 6  # no other configuration is observed under exactly {seed 0}
    with pytest.raises(ValueError, match="share"):
        stats._block_permutations(np.array([0, 0]), np.array([1, 1]), 5, rng)


def _null_rejections(clusters: bool, reps: int = 300) -> int:
    """How often p <= 0.05 in 300 replications where x and y are independent, both with strong
    configuration effects (16 configurations x 3 seeds, noise sd 0.3; blocks = seeds)."""
    rng, small = np.random.default_rng(1), 0
    for rep in range(reps):
        x, y, configs, seeds = _clustered(rng, 16, 3, 0.0, 0.3)
        p = stats.permutation_pvalue(x, y, seeds, clusters=configs if clusters else None,
                                     n_perm=199, seed=rep)
        small += p <= 0.05
    return small


def test_permutation_pvalue_uniform_under_h0_with_cluster_permutations():
    # Under H0 configurations are exchangeable, so permuting them (the same permutation in
    # each seed) leaves the data's law unchanged; with n_perm = 199 the p-value is uniform on
    # {1/200, ..., 1}: P(p <= 0.05) = 0.05. Binomial(300, 0.05): mean 15, sd 3.8.
    assert 4 <= _null_rejections(clusters=True) <= 28


def test_independent_within_block_permutation_is_anti_conservative_with_clustering():
    # Permuting each seed separately breaks y's within-configuration correlation, so the
    # permutation null is too narrow: H0 is rejected 18-24% of the time (54 of 300 here; over
    # other data seeds 54-72), far above the band's upper edge 28.
    assert _null_rejections(clusters=False) > 40


def test_permutation_pvalue_strong_association_and_block_structure():
    rng = np.random.default_rng(2)
    x, y, configs, seeds = _clustered(rng, 24, 2, 0.95, 0.1)
    # No permutation comes near tau ~ 0.8: p is its minimum 1 / (1 + n_perm).
    for cl in (None, configs):
        p = stats.permutation_pvalue(x, y, seeds, clusters=cl, n_perm=499, seed=0)
        assert p == pytest.approx(1 / 500)
    # y depends only on the block: tau(x, y) = 1, but permuting within blocks changes nothing.
    blocks = [0, 0, 1, 1, 2, 2]
    assert stats.permutation_pvalue([1, 1, 2, 2, 3, 3], [1, 1, 2, 2, 3, 3], blocks,
                                    n_perm=50, seed=0) == 1.0
    assert math.isnan(stats.permutation_pvalue([1, 1, 1], [1, 2, 3], [0, 0, 0], seed=0))
    # The other paths: spearman vectorized, tau through scipy for n > 300 runs.
    x, y, configs, seeds = _clustered(rng, 160, 2, 0.9, 0.1)
    for statistic in (stats.spearman, stats.kendall_tau):
        p = stats.permutation_pvalue(x, y, seeds, clusters=configs, statistic=statistic,
                                     n_perm=99, seed=0)
        assert p == pytest.approx(1 / 100)


def test_correlate_drops_missing_with_labels_and_reports_counts():
    x = [1.0, 2.0, None, 4.0, 5.0, float("nan"), 6.0]
    y = [1.0, 3.0, 2.0, 2.0, 6.0, 1.0, 7.0]
    clusters = ["a", "a", "z", "b", "b", "y", "c"]
    blocks = [0, 1, 0, 0, 1, 0, 0]
    result = stats.correlate(x, y, clusters=clusters, blocks=blocks, seed=0, n_boot=300,
                             n_perm=200)
    assert result.n == 5 and result.n_clusters == 3
    kept_x, kept_y = [1, 2, 4, 5, 6], [1, 3, 2, 6, 7]
    assert result.kendall_tau == pytest.approx(scipy.stats.kendalltau(kept_x, kept_y).statistic)
    assert result.spearman == pytest.approx(scipy.stats.spearmanr(kept_x, kept_y).statistic)
    assert result.ci95[0] <= result.kendall_tau <= result.ci95[1]
    assert 1 / 201 <= result.p_value <= 1.0
    again = stats.correlate(x, y, clusters=clusters, blocks=blocks, seed=0, n_boot=300,
                            n_perm=200)
    assert again == result  # deterministic given the seed


def test_correlate_small_n_and_constant():
    small = stats.correlate([1.0, 2.0, None], [1.0, 2.0, 3.0], clusters=[0, 1, 2],
                            blocks=[0, 0, 0], seed=0)
    assert small == stats.Correlation(None, None, None, None, n=2, n_clusters=2)
    flat = stats.correlate([1.0] * 4, [1.0, 2.0, 3.0, 4.0], clusters=[0, 0, 1, 1],
                           blocks=[0, 1, 0, 1], seed=0)
    assert flat.kendall_tau is None and flat.ci95 is None and flat.p_value is None
    one = stats.correlate([1, 2, 3], [1, 2, 4], clusters=[0, 0, 0], blocks=[0, 1, 2], seed=0)
    assert one.kendall_tau == pytest.approx(1.0) and one.ci95 is None and one.n_clusters == 1


def test_paired_difference_ci_closed_form():
    # Cluster means 0 (a: one pair) and 3 (b: three pairs), pooled per run: a resample of two
    # clusters has mean 0 (aa, p 1/4), (0 + 9) / 4 = 2.25 (ab or ba, p 1/2) or 3 (bb, p 1/4).
    d, cl = [0.0, 2.0, 3.0, 4.0, None], ["a", "b", "b", "b", "c"]
    est, (lo, hi) = stats.paired_difference_ci(d, cl, n_boot=2000, seed=0)
    assert est == pytest.approx(2.25) and (lo, hi) == (0.0, 3.0)
    boots = stats.paired_difference_ci(d, cl, n_boot=2000, seed=0, level=0.4)[1]
    assert boots == pytest.approx((2.25, 2.25))  # the middle 40% is all 2.25
    # A generic statistic sees the materialized resample: median of {0}, {2,3,4}, or both.
    est, (lo, hi) = stats.paired_difference_ci(d, cl, n_boot=2000, seed=0, statistic=np.median)
    assert est == 2.5 and (lo, hi) == (0.0, 3.0)
    assert stats.paired_difference_ci([1.0, 2.0], [0, 0], n_boot=10, seed=0)[1] == pytest.approx(
        (math.nan, math.nan), nan_ok=True)
