import math

import pytest
import torch

from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import lanczos
from minima.curvature.trace import hutch_plus_plus, hutchinson, rademacher


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rademacher_entries_are_signs():
    z = rademacher(1000, 3, _gen(), torch.float64, "cpu")
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(z.mean())) < 0.1


@pytest.mark.parametrize("estimator", ["hutchinson", "hutch++"])
def test_converges_to_the_exact_trace_as_probes_grow(problem, estimator):
    exact = float(torch.trace(problem.hessian))
    errors, stderrs = [], []
    for n in (12, 48, 192):
        if estimator == "hutchinson":
            r = hutchinson(problem.hessian, n, generator=_gen(n))
        else:
            r = hutch_plus_plus(problem.hessian, n, generator=_gen(n))
        assert r.n_matvec == n
        errors.append(abs(r.mean - exact))
        stderrs.append(r.stderr)
        assert abs(r.mean - exact) <= 4 * r.stderr + 1e-9
    assert stderrs[2] < stderrs[0]
    assert errors[2] < errors[0]


def test_hutchinson_on_the_hvp_operator(cnn):
    op = HessianOperator(cnn.model, cnn.x, cnn.y)
    r = hutchinson(op, 64, generator=_gen())
    assert r.n_probes == 64 and op.n_matvec == 64
    assert abs(r.mean - float(torch.trace(cnn.hessian))) <= 4 * r.stderr


def test_stderr_matches_the_spread_of_repeated_runs(symmetric):
    h = symmetric(torch.linspace(-1, 3, 60), 1)
    runs = [hutchinson(h, 30, generator=_gen(s)) for s in range(200)]
    spread = torch.tensor([r.mean for r in runs], dtype=torch.float64).std()
    mean_stderr = sum(r.stderr for r in runs) / len(runs)
    assert mean_stderr == pytest.approx(float(spread), rel=0.2)


def test_hutch_plus_plus_is_exact_on_low_rank(symmetric):
    # rank 5 < sketch of 10: Q spans the range, the deflated remainder is zero
    spectrum = torch.cat([torch.tensor([9.0, 4.0, -3.0, 2.0, 1.0]), torch.zeros(45)])
    r = hutch_plus_plus(symmetric(spectrum, 2), 30, generator=_gen())
    assert r.mean == pytest.approx(13.0, abs=1e-9)
    assert r.stderr < 1e-9
    assert r.n_matvec == 30 and r.n_probes == 10 and r.method.startswith("hutch++")


def test_deflation_by_a_lanczos_basis_is_unbiased_and_sharper(symmetric):
    spectrum = torch.cat([torch.tensor([50.0, 30.0, 20.0]), torch.linspace(-0.5, 1.0, 197)])
    h = symmetric(spectrum, 3)
    run = lanczos(h, 3, tol=1e-6, generator=_gen(1), bottom=False)
    plain = hutchinson(h, 40, generator=_gen(2))
    deflated = hutchinson(h, 40, generator=_gen(2), basis=run.basis, basis_trace=float(run.alphas.sum()))
    exact = float(spectrum.sum())
    assert abs(deflated.mean - exact) <= 4 * deflated.stderr
    assert deflated.stderr < plain.stderr / 5


def test_full_basis_gives_the_exact_trace(symmetric):
    h = symmetric(torch.linspace(-2, 2, 12), 4)
    q = torch.eye(12, dtype=torch.float64)
    r = hutchinson(h, 4, generator=_gen(), basis=q, basis_trace=float(torch.trace(h)))
    assert r.mean == pytest.approx(float(torch.trace(h)), abs=1e-12) and r.stderr == 0.0


def test_target_stderr_stops_early(symmetric):
    h = symmetric(torch.linspace(0, 1, 40), 5)
    r = hutchinson(h, 1000, generator=_gen(), target_stderr=0.5, block=4)
    assert r.n_probes < 1000 and r.stderr_bound <= 0.5 and "target" in r.reason


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_probes"):
        hutchinson(torch.eye(3), 1, generator=_gen())
    with pytest.raises(ValueError, match="n_matvec"):
        hutch_plus_plus(torch.eye(3), 3, generator=_gen())
    assert math.isfinite(hutchinson(torch.eye(3, dtype=torch.float64), 2, generator=_gen()).stderr)


def test_relative_target_stops_once_the_error_is_that_fraction_of_the_trace(symmetric):
    # a trace of 200 whose Hutchinson samples scatter by a few percent: 2 % is reached early
    h = symmetric(torch.cat([torch.tensor([60.0, 50.0]), torch.linspace(0.2, 1.8, 98)]), 6)
    r = hutchinson(h, 400, generator=_gen(), target_rel_stderr=0.05, min_probes=8, block=1)
    assert 8 <= r.n_probes < 400 and r.stderr_bound <= 0.05 * abs(r.mean)
    assert r.reason.startswith("relative stderr bound") and r.n_matvec == r.n_probes
    strict = hutchinson(h, 9, generator=_gen(), target_rel_stderr=1e-9, min_probes=4, block=1)
    assert strict.n_probes == 9 and "not reached" in strict.reason
    # below min_probes no target stops the run, even one met at the first probe
    early = hutchinson(h, 50, generator=_gen(), target_rel_stderr=0.9, min_probes=6, block=1)
    assert early.n_probes == 6
    with pytest.raises(ValueError, match="min_probes"):
        hutchinson(h, 10, generator=_gen(), min_probes=1)


def test_relative_target_counts_the_basis_trace(symmetric):
    # deflated: the probes see only the small remainder, the target is relative to the whole trace
    spectrum = torch.cat([torch.tensor([500.0, 400.0]), torch.linspace(-0.5, 1.0, 98)])
    h = symmetric(spectrum, 7)
    run = lanczos(h, 2, tol=1e-8, generator=_gen(1), bottom=False)
    r = hutchinson(h, 100, generator=_gen(2), basis=run.basis, basis_trace=float(run.alphas.sum()),
                   target_rel_stderr=0.01, min_probes=5, block=1)
    assert r.n_probes == 5 and abs(r.mean - float(spectrum.sum())) <= 4 * r.stderr


def test_stderr_bound_is_the_gaussian_probe_error_and_bounds_the_spread(symmetric):
    """sqrt(2 mean ||A z||^2 / n) estimates sqrt(2 ||A||_F^2 / n), which bounds Rademacher
    Hutchinson's standard error; it is steadier than the sample standard error."""
    h = symmetric(torch.linspace(-1, 3, 60), 1)
    runs = [hutchinson(h, 10, generator=_gen(s)) for s in range(300)]
    spread = float(torch.tensor([r.mean for r in runs], dtype=torch.float64).std())
    gaussian = math.sqrt(2 * float((h * h).sum()) / 10)
    bounds = torch.tensor([r.stderr_bound for r in runs], dtype=torch.float64)
    samples = torch.tensor([r.stderr for r in runs], dtype=torch.float64)
    assert float(bounds.mean()) == pytest.approx(gaussian, rel=0.05)
    assert float(bounds.mean()) >= spread
    assert float(bounds.std() / bounds.mean()) < float(samples.std() / samples.mean()) / 2
    # with a basis, A is H projected off it on both sides: exact for the full basis
    q = torch.eye(60, dtype=torch.float64)[:, :59]
    r = hutchinson(h, 4, generator=_gen(), basis=q, basis_trace=float(torch.trace(q.T @ h @ q)))
    a = h[59, 59]
    assert r.stderr_bound == pytest.approx(math.sqrt(2 * float(a) ** 2 / 4), rel=1e-9)
