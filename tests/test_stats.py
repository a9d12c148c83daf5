import itertools
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


def test_tau_and_spearman_equal_scipy_with_ties():
    rng = np.random.default_rng(3)
    for x in (rng.integers(0, 4, size=9).astype(float), np.ones(9)):  # ties; constant x
        y = rng.integers(0, 5, size=(60, 9)).astype(float)  # ties, some constant rows
        y[0] = 2.0
        for i in range(60):
            degenerate = np.ptp(x) == 0 or np.ptp(y[i]) == 0
            ref_tau = math.nan if degenerate else scipy.stats.kendalltau(x, y[i]).statistic
            ref_rho = math.nan if degenerate else scipy.stats.spearmanr(x, y[i]).statistic
            assert stats.kendall_tau(x, y[i]) == pytest.approx(ref_tau, nan_ok=True)
            assert stats.spearman(x, y[i]) == pytest.approx(ref_rho, nan_ok=True)


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


def _jackknife_coverage(c, s, r, noise, reps, seed=0):
    rng = np.random.default_rng(seed)
    truth, hits = _true_tau(c, s, r, noise), 0
    for _ in range(reps):
        x, y, configs, _ = _clustered(rng, c, s, r, noise)
        lo, hi = stats.correlate(x, y, clusters=configs).ci95
        hits += lo <= truth <= hi
    return hits / reps


def test_true_tau_formula_by_monte_carlo():
    # The closed form the coverage tests rely on, checked against simulation.
    rng = np.random.default_rng(11)
    taus = [stats.kendall_tau(*_clustered(rng, 10, 3, 0.6, 0.7)[:2]) for _ in range(2000)]
    assert np.mean(taus) == pytest.approx(_true_tau(10, 3, 0.6, 0.7), abs=0.01)  # SE ~ 0.004


def test_configuration_jackknife_interval_covers_the_truth():
    # 36 configurations x 3 seeds, as the quick profile: nominal 95 %, measured ~0.93-0.95
    coverage = _jackknife_coverage(c=36, s=3, r=0.5, noise=0.7, reps=300)
    assert 0.90 <= coverage <= 0.99


def test_run_level_jackknife_undercovers_under_strong_clustering():
    # treating runs as independent (one cluster per run) ignores the configurations: too narrow
    rng = np.random.default_rng(2)
    truth, hits = _true_tau(20, 4, 0.5, 0.3), 0
    for _ in range(200):
        x, y, _, _ = _clustered(rng, 20, 4, 0.5, 0.3)
        lo, hi = stats.correlate(x, y, clusters=np.arange(x.size)).ci95
        hits += lo <= truth <= hi
    assert hits / 200 < 0.85


def test_sign_flip_pvalue_equals_brute_force_enumeration():
    rng = np.random.default_rng(4)
    for k in (1, 2, 5, 9, 12):
        d = rng.normal(0.3, 1.0, size=k)
        patterns = np.array(list(itertools.product((1.0, -1.0), repeat=k)))
        brute = np.mean(np.abs(patterns @ d) >= abs(d.sum()) - 1e-12)
        assert stats.sign_flip_pvalue(d) == pytest.approx(brute, abs=1e-12)
    # by hand: d = (1, 2, 3), sum 6; |sums| of the 8 patterns: 6 4 2 0 0 2 4 6 -> two reach 6
    assert stats.sign_flip_pvalue([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert stats.sign_flip_pvalue([2.0, 3.0, 4.0], null=1.0) == pytest.approx(2 / 8)  # about the null
    assert stats.sign_flip_pvalue([1.0, -1.0]) == 1.0  # sum 0: every pattern reaches it
    assert math.isnan(stats.sign_flip_pvalue([]))


def test_sign_flip_is_exact_up_to_40_clusters_and_normal_beyond():
    d = np.linspace(0.1, 1.0, 40) * np.where(np.arange(40) % 3, 1.0, -1.0)
    exact = stats.sign_flip_pvalue(d)
    normal = 2 * scipy.stats.norm.sf(abs(d.sum()) / math.sqrt((d * d).sum()))
    assert exact == pytest.approx(normal, rel=0.15)  # close, but exact: a multiple of 2^-40
    assert (exact * 2.0**40) == pytest.approx(round(exact * 2.0**40))
    wide = np.concatenate([d, [0.5]])
    assert stats.sign_flip_pvalue(wide) == pytest.approx(
        2 * scipy.stats.norm.sf(abs(wide.sum()) / math.sqrt((wide * wide).sum())))


def test_smallest_attainable_p_with_3_4_and_12_clusters():
    assert stats.smallest_pvalue(3) == 0.25
    assert stats.smallest_pvalue(4) == 0.125
    assert stats.smallest_pvalue(12) == pytest.approx(2 / 4096)
    # and it is attained: all clusters on one side, distinct magnitudes
    for k in (3, 4, 12):
        assert stats.sign_flip_pvalue(np.arange(1.0, k + 1)) == pytest.approx(stats.smallest_pvalue(k))


def test_paired_cluster_test_averages_within_clusters_first():
    # clusters a: (1, 3) -> 2, b: (4,) -> 4, c: (-1, 1, 3) -> 1; mean of means 7/3, not the run mean
    test = stats.paired_cluster_test([1.0, 3.0, 4.0, -1.0, 1.0, 3.0], list("aabccc"))
    assert test.estimate == pytest.approx(7 / 3) and test.n_clusters == 3 and test.n_pairs == 6
    sd = np.std([2.0, 4.0, 1.0], ddof=1)
    half = scipy.stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert test.ci95 == pytest.approx((7 / 3 - half, 7 / 3 + half))
    assert test.p == pytest.approx(0.25) and test.p_min == 0.25  # all three positive: the extreme pattern
    single = stats.paired_cluster_test([1.0, 2.0], ["a", "a"])
    assert single.ci95 is None and single.p == 1.0 and single.n_clusters == 1
    assert stats.paired_cluster_test([None, float("nan")], ["a", "b"]).n_clusters == 0


def test_jackknife_of_the_mean_is_the_t_interval():
    # for the mean of cluster means the delete-one jackknife SE equals sd / sqrt(k) exactly
    values = np.array([0.3, -0.1, 0.5, 0.9, 0.2])
    clusters = np.arange(5)
    jack = stats.cluster_jackknife(lambda keep: values[keep].mean(), clusters)
    assert jack.stderr == pytest.approx(values.std(ddof=1) / math.sqrt(5))
    assert jack.ci95 == pytest.approx(stats.t_interval(values))
    t = values.mean() / jack.stderr
    assert jack.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), 4))
    assert stats.cluster_jackknife(lambda keep: values[keep].mean(), [0] * 5) is None  # one cluster


def test_partial_tau_is_kendalls_formula_and_undefined_when_z_ranks_x():
    x, y, z = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5], [1, 3, 2, 5, 4]
    # by hand: tau_xy = 6/10, tau_xz = 6/10, tau_yz = 2/10 -> (0.6 - 0.12) / sqrt(0.64 * 0.96)
    assert stats.kendall_tau(x, y) == pytest.approx(0.6) and stats.kendall_tau(x, z) == pytest.approx(0.6)
    assert stats.kendall_tau(y, z) == pytest.approx(0.2)
    assert stats.partial_kendall_tau(x, y, z) == pytest.approx(0.48 / math.sqrt(0.64 * 0.96))
    assert math.isnan(stats.partial_kendall_tau(x, y, x))  # z = x: nothing is left to correlate


def test_psi_jackknife_deletes_whole_configurations():
    rng = np.random.default_rng(8)
    configs = [f"{o}-{lr}" for o in "abc" for lr in range(3) for _ in range(2)]
    seeds = [s for _ in range(9) for s in range(2)]
    groups = {"lr": [(c.split("-")[0], s) for c, s in zip(configs, seeds)],
              "optimizer": [(c.split("-")[1], s) for c, s in zip(configs, seeds)]}
    x, y = rng.normal(size=18).tolist(), rng.normal(size=18).tolist()
    jack = stats.psi_jackknife([x], [1.0], y, groups, configs)
    full = stats.granulated_tau(x, y, groups).psi_mean
    assert jack.estimate == pytest.approx(full)
    # each deletion equals Psi recomputed from scratch without that configuration's runs
    names = list(dict.fromkeys(configs))
    leave = []
    for name in names:
        keep = [i for i, c in enumerate(configs) if c != name]
        sub = {a: [ids[i] for i in keep] for a, ids in groups.items()}
        leave.append(stats.granulated_tau([x[i] for i in keep], [y[i] for i in keep], sub).psi_mean)
    leave = np.array(leave)
    assert jack.stderr == pytest.approx(math.sqrt(8 / 9 * ((leave - leave.mean()) ** 2).sum()))
    difference = stats.psi_jackknife([x, y], [1.0, -1.0], y, groups, configs)
    assert difference.estimate == pytest.approx(full - stats.granulated_tau(y, y, groups).psi_mean)


def test_correlate_is_deterministic_drops_missing_and_reports_counts():
    x = [1.0, 2.0, None, 4.0, 5.0, 6.0, 2.5, 3.5]
    y = [1.0, 2.5, 3.0, 3.5, 5.5, 6.0, 2.0, 4.0]
    clusters = [0, 0, 1, 1, 2, 2, 3, 3]
    result = stats.correlate(x, y, clusters=clusters, covariate=[1, 2, 3, 4, 5, 6, 7, 8])
    assert result.n == 7 and result.n_clusters == 4
    assert result.kendall_tau == pytest.approx(scipy.stats.kendalltau([1, 2, 4, 5, 6, 2.5, 3.5],
                                                                      [1, 2.5, 3.5, 5.5, 6, 2, 4]).statistic)
    assert result == stats.correlate(x, y, clusters=clusters, covariate=[1, 2, 3, 4, 5, 6, 7, 8])
    assert result.partial_tau is not None and result.ci95 is not None


def test_correlate_small_n_and_constant():
    small = stats.correlate([1.0, 2.0, None], [1.0, 2.0, 3.0], clusters=[0, 1, 2])
    assert small.kendall_tau is None and small.n == 2
    flat = stats.correlate([1.0] * 4, [1.0, 2.0, 3.0, 4.0], clusters=[0, 0, 1, 1])
    assert flat.kendall_tau is None and flat.ci95 is None
    one = stats.correlate([1, 2, 3], [1, 2, 4], clusters=[0, 0, 0])
    assert one.kendall_tau == pytest.approx(1.0) and one.ci95 is None and one.n_clusters == 1


def test_pooled_within_sd():
    # configs a: 1, 3 (var 2), b: 2, 2, 5 (var 3), c: one value (skipped) -> sqrt(2.5)
    assert stats.pooled_within_sd([1, 3, 2, 2, 5, 9], list("aabbbc")) == pytest.approx(math.sqrt(2.5))
    assert stats.pooled_within_sd([1, 2], ["a", "b"]) is None
