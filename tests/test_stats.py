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


def test_kendall_tau_hand_computed():
    # pairs (1,2),(1,3),(2,3) concordant; (1,4): x up y down ... hand count:
    # x = 1 2 3 4, y = 1 3 2 4: discordant only the pair (2,3) -> (5 - 1) / 6
    assert stats.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4.0 / 6.0)
    assert stats.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_kendall_tau_b_with_ties_hand_computed():
    # x = 1 1 2, y = 1 2 3: pairs (1,2) tied in x, (1,3) and (2,3) concordant.
    # tau_b = 2 / sqrt((3 - 1) * (3 - 0)) = 2 / sqrt(6)
    assert stats.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2.0 / math.sqrt(6.0))


def test_spearman_hand_computed():
    # ranks 1 2 3 4 vs 1 3 2 4: d^2 = 0+1+1+0 = 2 -> 1 - 6*2 / (4*15) = 0.8
    assert stats.spearman([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_constant_input_is_nan():
    assert math.isnan(stats.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(stats.spearman([1, 2, 3], [5, 5, 5]))


def test_rowwise_statistics_equal_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(50, 9)).astype(float)  # many ties
    y = rng.integers(0, 5, size=(50, 9)).astype(float)
    taus = stats._kendall_tau_rows(x, y)
    rhos = stats._spearman_rows(x, y)
    for i in range(50):
        ref_tau = stats.kendall_tau(x[i], y[i])
        ref_rho = stats.spearman(x[i], y[i])
        assert (math.isnan(ref_tau) and math.isnan(taus[i])) or taus[i] == pytest.approx(ref_tau)
        assert (math.isnan(ref_rho) and math.isnan(rhos[i])) or rhos[i] == pytest.approx(ref_rho)
    assert stats.kendall_tau(x[0], y[0]) == pytest.approx(
        scipy.stats.kendalltau(x[0], y[0]).statistic
    )


def _correlated(n, rng, noise=1.0):
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    x, y = _correlated(20, np.random.default_rng(0))
    lo, hi = stats.bootstrap_ci(x, y, stats.kendall_tau, seed=7)
    assert lo < stats.kendall_tau(x, y) < hi
    assert (lo, hi) == stats.bootstrap_ci(x, y, stats.kendall_tau, seed=7)
    assert (lo, hi) != stats.bootstrap_ci(x, y, stats.kendall_tau, seed=8)


def test_bootstrap_fast_path_equals_generic_loop():
    x, y = _correlated(12, np.random.default_rng(1))
    fast = stats.bootstrap_ci(x, y, stats.kendall_tau, n_boot=300, seed=2)
    slow = stats.bootstrap_ci(x, y, lambda a, b: stats.kendall_tau(a, b), n_boot=300, seed=2)
    assert fast == pytest.approx(slow)
    fast = stats.bootstrap_ci(x, y, stats.spearman, n_boot=300, seed=2)
    slow = stats.bootstrap_ci(x, y, lambda a, b: stats.spearman(a, b), n_boot=300, seed=2)
    assert fast == pytest.approx(slow)


def test_bootstrap_ci_width_shrinks_with_n():
    rng = np.random.default_rng(4)
    widths = []
    for n in (10, 40, 160):
        x, y = _correlated(n, rng)
        lo, hi = stats.bootstrap_ci(x, y, stats.kendall_tau, seed=0)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_percentiles_of_the_resamples():
    # Generic statistic: the mean of x; the interval is the quantiles of resampled means.
    x = np.arange(10.0)
    lo, hi = stats.bootstrap_ci(x, x, lambda a, b: float(a.mean()), n_boot=4000, seed=0)
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, 10, size=(4000, 10))].mean(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))


def test_bootstrap_skips_degenerate_resamples():
    # Two distinct x values out of 3: a third of resamples are constant in x and have no tau.
    x = [0.0, 0.0, 1.0]
    y = [0.0, 1.0, 2.0]
    lo, hi = stats.bootstrap_ci(x, y, stats.kendall_tau, n_boot=500, seed=0)
    assert 0.0 < lo <= hi <= 1.0
    assert all(map(math.isnan, stats.bootstrap_ci([1, 1], [1, 2], stats.kendall_tau, seed=0)))


def test_bootstrap_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        stats.bootstrap_ci([1, 2, 3], [1, 2, 3], stats.kendall_tau, seed=0, level=1.5)


def test_correlate_drops_missing_pairs_and_reports_n():
    x = [1.0, 2.0, None, 4.0, 5.0, float("nan")]
    y = [1.0, 3.0, 2.0, 2.0, 6.0, 1.0]
    result = stats.correlate(x, y, seed=0)
    assert result.n == 4
    assert result.kendall_tau == pytest.approx(stats.kendall_tau([1, 2, 4, 5], [1, 3, 2, 6]))
    assert result.spearman == pytest.approx(stats.spearman([1, 2, 4, 5], [1, 3, 2, 6]))
    assert result.ci95[0] <= result.kendall_tau <= result.ci95[1]


def test_correlate_small_n_and_constant():
    small = stats.correlate([1.0, 2.0, None], [1.0, 2.0, 3.0], seed=0)
    assert small == stats.Correlation(kendall_tau=None, spearman=None, ci95=None, n=2)
    flat = stats.correlate([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], seed=0)
    assert flat.kendall_tau is None and flat.ci95 is None and flat.n == 4


def test_correlate_perfect_ranking():
    result = stats.correlate([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], seed=0)
    assert result.kendall_tau == pytest.approx(1.0) and result.spearman == pytest.approx(1.0)
    assert result.ci95 == pytest.approx((1.0, 1.0))
