import math
import statistics

import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from minima.sharpness.pacbayes import bisect_sigma, pacbayes_flatness_of, search_sigma



def test_bisection_finds_the_root_of_an_increasing_deviation():
    found = bisect_sigma(lambda s: 3 * s**2, target=0.1, sigma_max=2.0, iters=30, tolerance=0.0)
    assert abs(found.sigma - math.sqrt(0.1 / 3)) < 2.0 / 2**29
    assert found.iterations == 30 and found.lower <= found.sigma <= found.upper


@pytest.mark.parametrize("search", [bisect_sigma, search_sigma], ids=["bisection", "secant"])
def test_both_searches_stop_within_tolerance_and_clip_at_sigma_max(search):
    early = search(lambda s: 3 * s**2, target=0.1, sigma_max=2.0, iters=30, tolerance=0.01)
    assert abs(early.deviation - 0.1) <= 0.01 and early.iterations < 30
    clipped = search(lambda s: 0.01 * s, target=0.1, sigma_max=2.0, iters=30, tolerance=0.01)
    assert clipped.sigma == 2.0 and "clipped" in clipped.stop_reason


def test_loss_criterion_on_a_quadratic_matches_sigma_squared_trace_over_two():
    g = torch.Generator().manual_seed(0)
    h = 1 + torch.rand(4000, generator=g)
    loss = lambda p: float(0.5 * (h * p["w"] ** 2).sum())  # noqa: E731
    result = pacbayes_flatness_of(
        loss, {"w": torch.zeros(4000)}, criterion_name="loss", target=0.1, samples=10, iters=30,
        sigma_max=2.0, tolerance=0.0, magnitude_eps=None, generator=torch.Generator().manual_seed(1),
    )
    exact_sigma = math.sqrt(2 * 0.1 / h.sum().item())
    assert abs(result.sigma / exact_sigma - 1) < 0.02  # Monte Carlo error of tr(H) from 10 draws: ~0.4 %
    assert abs(result.value - 1 / result.sigma**2) < 1e-9 * result.value


def _per_point_accuracy(p):
    """Point j is classified right iff w_j > 0: the accuracy drop under N(0, s_j^2) noise is
    mean_j Phi(-w_j / s_j), a closed form."""
    return float((p["w"] > 0).double().mean())


@pytest.mark.parametrize("magnitude_aware", [False, True])
def test_accuracy_criterion_matches_the_gaussian_closed_form(magnitude_aware):
    g = torch.Generator().manual_seed(2)
    w = torch.exp(torch.empty(20000).uniform_(-1.0, 1.0, generator=g))
    eps = 1e-3 if magnitude_aware else None
    result = pacbayes_flatness_of(
        _per_point_accuracy, {"w": w}, criterion_name="accuracy", target=0.1, samples=10, iters=25,
        sigma_max=4.0, tolerance=0.0, magnitude_eps=eps, generator=torch.Generator().manual_seed(3),
    )
    wn = w.numpy()
    if magnitude_aware:
        drop = lambda s: statistics.fmean(norm.cdf(-wn / ((s * wn) ** 2 + eps**2) ** 0.5)) - 0.1  # noqa: E731
    else:
        drop = lambda s: statistics.fmean(norm.cdf(-wn / s)) - 0.1  # noqa: E731
    exact = brentq(drop, 1e-3, 4.0)
    assert abs(result.sigma / exact - 1) < 0.02
    assert result.baseline == 1.0 and result.criterion == "accuracy"


def test_the_two_variants_differ_when_weights_have_different_scales():
    w = torch.cat([torch.full((5000,), 0.1), torch.full((5000,), 10.0)])
    common = dict(criterion_name="accuracy", target=0.1, samples=4, iters=20, sigma_max=50.0, tolerance=0.0)
    plain = pacbayes_flatness_of(
        _per_point_accuracy, {"w": w}, magnitude_eps=None, generator=torch.Generator().manual_seed(0), **common
    )
    mag = pacbayes_flatness_of(
        _per_point_accuracy, {"w": w}, magnitude_eps=1e-3, generator=torch.Generator().manual_seed(0), **common
    )
    # magnitude-aware noise is relative: drop = Phi(-1/sigma') for every point
    assert abs(mag.sigma * norm.ppf(0.9) - 1) < 0.03
    assert plain.sigma < 0.5 * mag.sigma


def _counted(fn):
    calls = [0]

    def wrapped(s):
        calls[0] += 1
        return fn(s)

    return wrapped, calls


@pytest.mark.parametrize("power", [2.0, 3.5])
def test_secant_search_finds_a_power_law_root_in_a_few_evaluations(power):
    deviation, calls = _counted(lambda s: 40 * s**power)
    found = search_sigma(deviation, target=0.1, sigma_max=2.0, iters=30, tolerance=1e-9)
    exact = (0.1 / 40) ** (1 / power)
    assert found.sigma == pytest.approx(exact, rel=1e-7) and found.lower <= found.sigma <= found.upper
    assert calls[0] <= 4  # sigma_max, then log-bisection until an end is positive... here the secant is exact


def test_secant_search_needs_fewer_evaluations_than_bisection_on_a_saturating_curve():
    """An accuracy drop saturates at both ends (0 and about 0.9): the secant's safeguard falls
    back to log-bisection there and still beats plain bisection."""
    curve = lambda s: 0.9 / (1 + (0.05 / s) ** 3.4)  # noqa: E731
    fast, fast_calls = _counted(curve)
    slow, slow_calls = _counted(curve)
    a = search_sigma(fast, target=0.1, sigma_max=2.0, iters=12, tolerance=0.01)
    b = bisect_sigma(slow, target=0.1, sigma_max=2.0, iters=12, tolerance=0.01)
    assert abs(a.deviation - 0.1) <= 0.01 and abs(b.deviation - 0.1) <= 0.01
    assert fast_calls[0] < slow_calls[0]


def test_the_result_records_its_precision_and_cost():
    g = torch.Generator().manual_seed(0)
    h = 1 + torch.rand(2000, generator=g)
    loss = lambda p: float(0.5 * (h * p["w"] ** 2).sum())  # noqa: E731
    common = dict(criterion_name="loss", target=0.1, samples=4, iters=20, sigma_max=2.0, tolerance=0.005,
                  magnitude_eps=None)
    r = pacbayes_flatness_of(loss, {"w": torch.zeros(2000)}, generator=torch.Generator().manual_seed(1), **common)
    assert r.search == "secant" and r.tolerance == 0.005 and abs(r.deviation - 0.1) <= 0.005
    assert r.forward_passes == 1 + 4 * (r.iterations + 1)  # w, then sigma_max and each search step
    assert 0 < r.deviation_stderr < 0.05
    given = pacbayes_flatness_of(loss, {"w": torch.zeros(2000)}, generator=torch.Generator().manual_seed(1), baseline=0.0,
                                 search="bisection", **common)
    assert given.forward_passes == 4 * (given.iterations + 1) and given.search == "bisection"
    assert abs(given.sigma / r.sigma - 1) < 0.05
    with pytest.raises(ValueError, match="search"):
        pacbayes_flatness_of(loss, {"w": torch.zeros(2000)}, generator=g, search="newton", **common)
