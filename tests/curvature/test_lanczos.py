import pytest
import torch

from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import lanczos


def top_eigenpairs(op, k, **kwargs):
    return lanczos(op, k, bottom=False, **kwargs).top


def min_eigenvalue(op, **kwargs):
    return lanczos(op, 0, bottom=True, **kwargs).bottom


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_top_k_and_min_match_eigvalsh_on_network_hessians(problem):
    exact = torch.linalg.eigvalsh(problem.hessian)
    op = HessianOperator(problem.model, problem.x, problem.y)
    top = top_eigenpairs(op, 3, tol=1e-8, generator=_gen())
    low = min_eigenvalue(op, tol=1e-8, generator=_gen(1))
    assert top.converged and low.converged, (top.reason, low.reason)
    torch.testing.assert_close(_t(top.values), exact.flip(0)[:3], rtol=1e-6, atol=1e-9)
    assert exact[0] < 0  # the oracle networks are at random weights: indefinite Hessians
    torch.testing.assert_close(_t(low.values), exact[:1], rtol=1e-6, atol=1e-9)
    assert top.n_matvec == op.n_matvec - low.n_matvec
    assert "converged" in top.reason


def test_eigenvectors_are_eigenvectors(problem):
    result = top_eigenpairs(problem.hessian, 3, tol=1e-10, generator=_gen())
    vals = _t(result.values)
    torch.testing.assert_close(problem.hessian @ result.vectors, result.vectors * vals, rtol=0, atol=1e-7)
    torch.testing.assert_close(result.vectors.T @ result.vectors, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-10)


def test_residual_bound_brackets_the_true_error(symmetric):
    # Ritz value theta is within its residual norm of an eigenvalue (Parlett thm 4.5.1)
    spectrum = torch.cat([torch.tensor([10.0, 9.0, 8.5]), torch.linspace(-1, 1, 197)])
    h = symmetric(spectrum, 3)
    result = top_eigenpairs(h, 3, tol=1e-3, max_iter=300, generator=_gen())
    assert result.converged
    for value, residual, exact in zip(result.values, result.residuals, (10.0, 9.0, 8.5)):
        assert abs(value - exact) <= residual + 1e-12
        assert abs(value - exact) / exact <= 1e-3


def test_full_dimension_recovers_the_whole_spectrum(symmetric):
    spectrum = torch.linspace(-3, 5, 40) ** 3
    result = top_eigenpairs(symmetric(spectrum), 40, tol=1e-10, generator=_gen())
    torch.testing.assert_close(_t(result.values), spectrum.double().sort(descending=True).values,
                               rtol=0, atol=1e-10)
    assert result.converged and result.n_matvec == 40


def test_repeated_eigenvalues_need_the_restart(symmetric):
    # a Krylov space sees one copy of a repeated eigenvalue; the restart on breakdown finds the rest
    spectrum = torch.cat([torch.full((5,), 2.0), torch.linspace(-1, 1, 15)])
    result = top_eigenpairs(symmetric(spectrum, 1), 20, tol=1e-10, generator=_gen())
    torch.testing.assert_close(_t(result.values), spectrum.double().sort(descending=True).values,
                               rtol=0, atol=1e-10)


def test_max_iter_reached_is_reported(symmetric):
    h = symmetric(torch.linspace(0, 1, 300), 2)  # no gaps: slow convergence
    result = top_eigenpairs(h, 5, tol=1e-6, max_iter=10, generator=_gen())
    assert not result.converged
    assert result.reason.startswith("max_iter reached")
    assert result.n_steps == 10 and result.n_matvec == 10


def test_one_run_serves_both_ends(symmetric):
    spectrum = torch.cat([torch.tensor([-4.0, 7.0, 6.0]), torch.linspace(-0.5, 0.5, 97)])
    run = lanczos(symmetric(spectrum, 4), 2, tol=1e-8, max_iter=100, bottom=True, generator=_gen())
    assert run.top.converged and run.bottom.converged
    torch.testing.assert_close(_t(run.top.values), torch.tensor([7.0, 6.0], dtype=torch.float64))
    assert run.bottom.values[0] == pytest.approx(-4.0, rel=1e-8)
    m = run.basis.shape[1]
    torch.testing.assert_close(run.basis.T @ run.basis, torch.eye(m, dtype=torch.float64), rtol=0, atol=1e-12)
    # trace(T_m) = trace(Q^T H Q): what deflated trace estimation relies on
    h = symmetric(spectrum, 4)
    assert float(run.alphas.sum()) == pytest.approx(float(torch.trace(run.basis.T @ h @ run.basis)), rel=1e-12)


def test_same_seed_same_result(symmetric):
    h = symmetric(torch.linspace(-1, 4, 50), 5)
    a = top_eigenpairs(h, 2, tol=1e-6, generator=_gen(7))
    b = top_eigenpairs(h, 2, tol=1e-6, generator=_gen(7))
    assert a.values == b.values


def test_bad_arguments():
    h = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="k:"):
        top_eigenpairs(h, 5, generator=_gen())
    with pytest.raises(ValueError, match="tol:"):
        top_eigenpairs(h, 1, tol=0.0, generator=_gen())


def test_min_steps_runs_past_convergence_and_keeps_the_answer(symmetric):
    spectrum = torch.cat([torch.tensor([9.0, 7.0]), torch.linspace(-1, 1, 98)])
    h = symmetric(spectrum, 2)
    short = lanczos(h, 1, tol=1e-3, max_iter=60, bottom=False, generator=_gen())
    long = lanczos(h, 1, tol=1e-3, max_iter=60, bottom=False, generator=_gen(), min_steps=short.top.n_steps + 9)
    assert long.top.n_steps == short.top.n_steps + 9 and long.top.converged
    assert long.top.values[0] == pytest.approx(9.0, rel=1e-3)
    # the leading block of the longer run's T is the shorter run's T: same start, same steps
    m = short.top.n_steps
    torch.testing.assert_close(long.alphas[:m], short.alphas, rtol=1e-12, atol=1e-12)


def test_a_start_near_the_top_eigenvector_converges_sooner(symmetric):
    spectrum = torch.cat([torch.tensor([5.0]), torch.linspace(-1, 4.5, 199)])
    h = symmetric(spectrum, 5)
    exact = torch.linalg.eigh(h).eigenvectors[:, -1]
    noise = torch.randn(200, generator=_gen(9), dtype=torch.float64)
    cold = lanczos(h, 1, tol=1e-6, max_iter=200, bottom=False, generator=_gen())
    warm = lanczos(h, 1, tol=1e-6, max_iter=200, bottom=False, generator=_gen(), start=exact + 0.05 * noise / noise.norm())
    assert warm.top.values[0] == pytest.approx(5.0, rel=1e-6) and cold.top.values[0] == pytest.approx(5.0, rel=1e-6)
    assert warm.top.n_steps < cold.top.n_steps
    torch.testing.assert_close(warm.basis[:, 0], (exact + 0.05 * noise / noise.norm()) / (exact + 0.05 * noise / noise.norm()).norm())
    with pytest.raises(ValueError, match="start"):
        lanczos(h, 1, generator=_gen(), start=torch.zeros(200, dtype=torch.float64))
