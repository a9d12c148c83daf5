import pytest
import torch

from minima.curvature.density import auto_sigma, moment, spectral_density
from minima.curvature.hvp import HessianOperator


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_density_integrates_to_one_and_weights_sum_to_one(problem):
    r = spectral_density(problem.hessian, n_probes=4, n_steps=20, points=300, generator=_gen())
    assert float(torch.trapezoid(r.density, r.grid)) == pytest.approx(1.0, abs=1e-12)
    assert float(r.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    assert (r.density >= 0).all()
    assert r.grid[0] < r.nodes.min() and r.grid[-1] > r.nodes.max()
    assert len(r.grid) == 300 and r.n_probes == 4


def test_moments_match_the_dense_hessian(problem):
    # E[q^T H^j q] = tr(H^j)/n for q uniform on the sphere. The SLQ moment must equal the mean
    # of q^T H^j q over the very probes drawn (quadrature exactness, j <= 2m - 1), and that
    # mean must sit within a few standard errors of tr(H^j)/n.
    h, n, probes = problem.hessian, problem.hessian.shape[0], 200
    r = spectral_density(h, n_probes=probes, n_steps=8, generator=_gen(1))
    q = torch.randn(n, probes, generator=_gen(1), dtype=torch.float64)
    q = q / q.norm(dim=0)
    for j in (1, 2):
        hj = torch.linalg.matrix_power(h, j)
        per_probe = (q * (hj @ q)).sum(dim=0)
        assert moment(r, j) == pytest.approx(float(per_probe.mean()), rel=1e-9, abs=1e-14)
        stderr = float(per_probe.std() / probes**0.5)
        assert abs(moment(r, j) - float(torch.trace(hj)) / n) <= 4 * stderr


def test_quadrature_is_exact_per_probe_for_low_degree(symmetric):
    # one probe, m steps: Gauss quadrature integrates degree <= 2m-1 exactly: q^T H^j q
    h = symmetric(torch.linspace(-2, 3, 30), 1)
    r = spectral_density(h, n_probes=1, n_steps=4, generator=_gen(3))
    q = torch.randn(30, 1, generator=_gen(3), dtype=torch.float64)[:, 0]
    q = q / q.norm()
    for j in range(8):
        assert moment(r, j) == pytest.approx(float(q @ torch.linalg.matrix_power(h, j) @ q), rel=1e-9, abs=1e-12)


def test_with_the_hvp_operator_and_full_steps(cnn):
    # n_steps = n: the nodes are the exact eigenvalues, the moments exact per probe
    op = HessianOperator(cnn.model, cnn.x, cnn.y)
    n = op.shape[0]
    r = spectral_density(op, n_probes=2, n_steps=n, generator=_gen())
    exact = torch.linalg.eigvalsh(cnn.hessian)
    assert op.n_matvec == r.n_matvec <= 2 * n
    heavy = r.nodes[r.weights > 1e-6]
    # every node with weight is an eigenvalue
    assert torch.cdist(heavy[:, None], exact[:, None]).min(dim=1).values.max() < 1e-6


def test_sigma_rule_and_given_sigma():
    h = torch.diag(torch.tensor([0.0, 1.0, 4.0, 10.0], dtype=torch.float64))
    auto = spectral_density(h, n_probes=2, n_steps=4, generator=_gen())
    assert auto.sigma == pytest.approx(0.01 * float(auto.nodes.max() - auto.nodes.min()))
    assert auto_sigma(torch.tensor([2.0, 2.0])) == pytest.approx(0.02)
    given = spectral_density(h, n_probes=2, n_steps=4, sigma=0.5, generator=_gen())
    assert given.sigma == 0.5
    assert float(torch.trapezoid(given.density, given.grid)) == pytest.approx(1.0, abs=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sigma"):
        spectral_density(torch.eye(3), sigma=-1.0, generator=_gen())
    with pytest.raises(ValueError, match="points"):
        spectral_density(torch.eye(3), points=1, generator=_gen())


def test_a_given_lanczos_run_is_one_of_the_probes(symmetric):
    """The eigenvalue run starts from a normalized Gaussian like an SLQ probe: handed in, its first
    n_steps coefficients make exactly the quadrature an SLQ probe from that start makes."""
    from minima.curvature.lanczos import lanczos

    h = symmetric(torch.linspace(-2, 3, 60), 2)
    run = lanczos(h, 2, tol=1e-12, max_iter=30, bottom=True, generator=_gen(5), min_steps=30)
    own = spectral_density(h, n_probes=1, n_steps=12, generator=_gen(7))
    both = spectral_density(h, n_probes=2, n_steps=12, generator=_gen(7), probes=[(run.alphas, run.betas)])
    assert both.n_matvec == 12 and both.n_probes == 2 and len(both.nodes) == 24
    # the given run's nodes come first; the new probe's are the run made from the generator alone
    torch.testing.assert_close(both.nodes[12:], own.nodes, rtol=0, atol=1e-12)
    # quadrature of the given run: q^T H^j q for its start vector, exactly, for j <= 2 * 12 - 1
    q = run.basis[:, 0]
    given_weights = both.weights[:12] * 2
    for j in range(6):
        value = float((given_weights * both.nodes[:12] ** j).sum())
        assert value == pytest.approx(float(q @ torch.linalg.matrix_power(h, j) @ q), rel=1e-9, abs=1e-12)
    assert float(both.weights.sum()) == pytest.approx(1.0, abs=1e-12)


def test_a_given_run_is_cut_at_its_first_breakdown():
    from minima.curvature.density import _leading

    alphas = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    betas = torch.tensor([0.5, 0.0, 0.7], dtype=torch.float64)
    a, b = _leading(alphas, betas, 10)
    assert a.tolist() == [1.0, 2.0] and b.tolist() == [0.5]
    a, b = _leading(alphas, betas, 1)
    assert a.tolist() == [1.0] and b.numel() == 0
    with pytest.raises(ValueError, match="probes"):
        spectral_density(torch.eye(3), n_probes=1, generator=_gen(), probes=[(alphas, betas)] * 2)
