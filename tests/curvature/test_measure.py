import dataclasses
import json

import pytest
import torch

from minima.curvature import CurvatureSettings, measure

SMALL = CurvatureSettings(top_k=3, tol=1e-6, max_iter=47, trace_probes=20, density_probes=2, density_steps=10,
                          density_points=100, chunk_size=7, seed=3)


@pytest.fixture(scope="module")
def measured(request):
    cnn = request.getfixturevalue("cnn")
    cnn.model.train()
    before = {k: v.clone() for k, v in cnn.model.state_dict().items()}
    x_before = cnn.x.clone()
    result = measure(cnn.model, cnn.x, cnn.y, SMALL, device="cpu", dtype=torch.float64)
    assert cnn.model.training and torch.equal(cnn.x, x_before)
    assert all(torch.equal(v, before[k]) for k, v in cnn.model.state_dict().items())
    return cnn, result


def test_values_match_the_dense_hessian(measured):
    cnn, r = measured
    exact = torch.linalg.eigvalsh(cnn.hessian)
    torch.testing.assert_close(torch.tensor(r.top_eigenvalues, dtype=torch.float64), exact.flip(0)[:3], rtol=1e-5, atol=1e-8)
    assert r.min_eigenvalue == pytest.approx(float(exact[0]), rel=1e-5)
    assert abs(r.trace.mean - float(torch.trace(cnn.hessian))) <= 4 * r.trace.stderr + 1e-9
    assert r.vectors.shape == (cnn.hessian.shape[0], 3)
    assert r.n_samples == len(cnn.y)
    assert r.n_hvp == r.top.n_matvec + r.trace.n_matvec + r.density.n_matvec == sum(r.products.values())
    # the eigenvalue run is the density's first probe: only the others cost products
    assert r.density.n_matvec == (SMALL.density_probes - 1) * SMALL.density_steps
    assert r.top.n_steps >= SMALL.density_steps
    # the bottom pair's residual is judged against the spectral radius, not against itself
    assert r.bottom.residuals[0] <= SMALL.tol * float(exact.abs().max())


def test_json_has_the_contract_keys_and_is_json_safe(measured):
    _, r = measured
    d = r.to_json()
    for key in ("top_eigenvalues", "min_eigenvalue", "trace", "gradient_norm", "n_samples", "density", "eigen", "n_hvp", "seconds"):
        assert key in d
    assert set(d["trace"]) >= {"mean", "stderr", "n_probes", "method"}
    assert set(d["density"]) >= {"grid", "values", "sigma", "n_probes", "n_steps"}
    assert set(d["eigen"]) >= {"residuals", "converged", "reason", "tol"}
    assert set(d["seconds"]) >= {"gradient", "eigen", "trace", "density", "total"}
    assert set(d["products"]) == {"eigen", "trace", "density", "rescaled"} and sum(d["products"].values()) == d["n_hvp"]
    assert d["top_eigenvalues"] == sorted(d["top_eigenvalues"], reverse=True)
    json.dumps(d, allow_nan=False)  # raises on NaN/inf or tensors
    assert d["settings"]["seed"] == 3


def test_same_seed_same_numbers(cnn, measured):
    _, r = measured
    again = measure(cnn.model, cnn.x, cnn.y, SMALL, device="cpu", dtype=torch.float64)
    assert again.top_eigenvalues == r.top_eigenvalues and again.trace.mean == r.trace.mean


@pytest.mark.parametrize("field,value", [
    ("n_samples", -1), ("top_k", 0), ("tol", 0.0), ("tol", 1.5), ("max_iter", 2), ("trace_probes", 1),
    ("density_probes", 0), ("density_steps", 1), ("density_points", 3), ("density_sigma", -0.1),
    ("chunk_size", 0), ("seed", -1), ("top_k", 2.5), ("trace_probes", True), ("tol", float("nan")),
    ("trace_rel_stderr", -0.1), ("trace_rel_stderr", 1.0), ("trace_min_probes", 1),
    ("min_steps", -1), ("min_steps", 101),
])
def test_settings_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        dataclasses.replace(CurvatureSettings(top_k=3), **{field: value})


def test_settings_are_frozen():
    s = CurvatureSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.top_k = 3


def test_rescaled_lambda_max_is_that_of_d_inverse_h_d_inverse(cnn):
    """The balanced lambda_max comes from the same operator: the dense D^-1 H D^-1 is the oracle."""
    d = torch.linspace(0.5, 2.0, cnn.hessian.shape[0], dtype=torch.float64)
    r = measure(cnn.model, cnn.x, cnn.y, dataclasses.replace(SMALL, balanced_tol=1e-8), device="cpu",
                dtype=torch.float64, with_density=False, rescaling=d)
    exact = torch.linalg.eigvalsh(cnn.hessian / torch.outer(d, d))[-1]
    assert r.rescaled.values[0] == pytest.approx(float(exact), rel=1e-6)
    assert r.density is None and r.to_json()["density"] is None


def test_top_and_trace_alone_match_the_dense_hessian_and_measure(cnn, measured):
    from minima.curvature import measure_top_and_trace

    _, full = measured
    r = measure_top_and_trace(cnn.model, cnn.x, cnn.y, SMALL, device="cpu", dtype=torch.float64)
    exact = torch.linalg.eigvalsh(cnn.hessian)
    assert r.top.values[0] == pytest.approx(float(exact[-1]), rel=1e-5)
    assert r.top.values[0] == pytest.approx(full.top_eigenvalues[0], rel=1e-5)
    assert abs(r.trace.mean - float(torch.trace(cnn.hessian))) <= 4 * r.trace.stderr + 1e-9
    assert r.n_hvp == r.top.n_matvec + r.trace.n_matvec < full.n_hvp


def test_trace_probes_stop_at_the_relative_target(cnn):
    """trace_rel_stderr: probes stop once the standard error is that fraction of the trace, after
    at least trace_min_probes; the estimate stays within its error of the dense trace."""
    settings = dataclasses.replace(SMALL, trace_probes=60, trace_rel_stderr=0.05, trace_min_probes=6)
    r = measure(cnn.model, cnn.x, cnn.y, settings, device="cpu", dtype=torch.float64, with_density=False)
    exact = float(torch.trace(cnn.hessian))
    assert 6 <= r.trace.n_probes <= 60 and abs(r.trace.mean - exact) <= 4 * r.trace.stderr + 1e-9
    assert r.trace.n_probes == 60 or r.trace.stderr_bound <= 0.05 * abs(r.trace.mean)
    assert r.products["density"] == 0 and r.density is None


def test_gradient_comes_with_the_operator_and_is_the_full_gradient(cnn, measured):
    from minima.curvature.gradient import gradient_norm

    _, r = measured
    plain = gradient_norm(cnn.model, cnn.x, cnn.y)
    assert r.gradient.norm == pytest.approx(plain.norm, rel=1e-10)
    assert r.gradient.loss == pytest.approx(plain.loss, rel=1e-12)


def test_min_steps_is_a_floor_on_the_eigenvalue_run(cnn):
    settings = dataclasses.replace(SMALL, tol=1e-2, min_steps=30)
    r = measure(cnn.model, cnn.x, cnn.y, settings, device="cpu", dtype=torch.float64, with_density=False)
    assert r.top.n_steps == 30 and r.top.converged
    exact = torch.linalg.eigvalsh(cnn.hessian)
    assert r.min_eigenvalue == pytest.approx(float(exact[0]), rel=1e-2)


def test_few_trace_probes_cap_the_minimum(cnn):
    """Profiles with fewer trace_probes than trace_min_probes stay valid: the minimum is capped."""
    settings = dataclasses.replace(SMALL, trace_probes=3, trace_rel_stderr=0.5)
    r = measure(cnn.model, cnn.x, cnn.y, settings, device="cpu", dtype=torch.float64, with_density=False)
    assert r.trace.n_probes == 3
