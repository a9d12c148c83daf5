import json

import pytest
import torch

from minima.landscape import (
    LandscapeSettings,
    filter_normalize,
    filter_normalized_direction,
    grid,
    interpolate_of,
    measure_interpolation,
    measure_landscape,
    model_evaluator,
    slice_1d_of,
    surface_2d_of,
)
from minima.models import build_model
from minima.objective import evaluate, flatten, frozen_copy, num_params, params_of, unflatten

F64 = torch.float64



def quadratic_evaluator(hessian: torch.Tensor, c: float = 0.0):
    return lambda p: (float(0.5 * flatten(p) @ hessian @ flatten(p)) + c, 1.0)


def random_spd(n: int, seed: int) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T


LIKE = {"a": torch.zeros(2, 3, dtype=F64), "b": torch.zeros(4, dtype=F64)}


def test_1d_slice_of_a_quadratic_is_half_a_squared_dHd():
    hessian = random_spd(10, 0)
    d = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=F64)
    alphas = grid(-1.0, 1.0, 9)
    result = slice_1d_of(quadratic_evaluator(hessian), LIKE, unflatten(d, LIKE), alphas)
    exact = [0.5 * a**2 * float(d @ hessian @ d) for a in alphas]
    assert result.alphas == tuple(alphas)
    assert torch.allclose(torch.tensor(result.loss), torch.tensor(exact), rtol=1e-12, atol=0)


def test_2d_surface_of_a_quadratic_is_the_quadratic_form_on_the_plane():
    hessian = random_spd(10, 2)
    g = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(10, generator=g, dtype=F64), torch.randn(10, generator=g, dtype=F64)
    alphas, betas = grid(-2.0, 2.0, 5), grid(-1.0, 1.0, 3)
    result = surface_2d_of(quadratic_evaluator(hessian), LIKE, d1, d2, alphas, betas)
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            v = a * d1 + b * d2
            assert abs(result.loss[i][j] - 0.5 * float(v @ hessian @ v)) <= 1e-12 * (1 + result.loss[i][j])


def test_interpolation_barrier_of_a_concave_bump_is_an_eighth_of_the_squared_distance():
    wa = {"a": torch.ones(2, 3, dtype=F64), "b": torch.zeros(4, dtype=F64)}
    wb = {"a": -torch.ones(2, 3, dtype=F64), "b": torch.full((4,), 0.5, dtype=F64)}
    bump = lambda p: (float(-0.5 * flatten(p) @ flatten(p)), 0.0)  # noqa: E731
    result = interpolate_of(bump, wa, wb, grid(-0.25, 1.25, 31))
    distance2 = float((flatten(wa) - flatten(wb)).norm() ** 2)
    assert abs(result.barrier - distance2 / 8) < 1e-12
    convex = interpolate_of(lambda p: (-bump(p)[0], 0.0), wa, wb, grid(0.0, 1.0, 11))
    assert convex.barrier == 0.0


def test_filter_normalized_direction_matches_each_filter_norm_and_ignores_biases(lenet):
    params = lenet.params
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    again = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    for name, w in params.items():
        assert d[name].shape == w.shape and torch.equal(d[name], again[name])
        if w.dim() == 1:
            assert not d[name].any()
        else:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-12, atol=0)
            assert not torch.allclose(d[name], w) and not torch.allclose(d[name], -w)


def test_filter_normalizing_an_eigenvector_keeps_each_filter_direction(lenet):
    params = lenet.params
    v = torch.randn(num_params(params), generator=torch.Generator().manual_seed(4), dtype=F64)
    d = filter_normalize(unflatten(v / v.norm(), params), params)
    for name, w in params.items():
        if w.dim() == 1:
            assert not d[name].any()
            continue
        assert torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-12)
        cosine = torch.nn.functional.cosine_similarity(d[name].flatten(1), unflatten(v, params)[name].flatten(1), dim=1)
        assert torch.allclose(cosine, torch.ones_like(cosine), atol=1e-12)  # each filter only rescaled


def test_model_slice_is_the_loss_at_the_shifted_parameters(lenet):
    model, params, x, y = lenet.model, lenet.params, lenet.x[:12], lenet.y[:12]
    d = filter_normalized_direction(params, torch.Generator().manual_seed(1))
    result = slice_1d_of(model_evaluator(model, x, y), params, d, [-0.5, 0.0, 0.25])
    frozen = frozen_copy(model)
    for a, loss in zip(result.alphas, result.loss):
        shifted = {k: params[k] + a * d[k] for k in params}
        assert abs(loss - evaluate(frozen, shifted, x, y).loss) < 1e-12


def test_interpolation_endpoints_are_the_two_minima(lenet):
    model, params_a, x, y = lenet.model, lenet.params, lenet.x[:12], lenet.y[:12]
    params_b = params_of(build_model("modern", seed=1, dtype=F64))
    before = flatten(params_a).clone()
    result = interpolate_of(model_evaluator(model, x, y), params_a, params_b, grid(-0.25, 1.25, 7))
    frozen = frozen_copy(model)
    assert result.alphas[1] == 0.0 and result.alphas[5] == 1.0
    assert result.loss[1] == result.loss_a == evaluate(frozen, params_a, x, y).loss
    assert result.loss[5] == result.loss_b == evaluate(frozen, params_b, x, y).loss
    assert result.barrier >= 0
    assert torch.equal(flatten(params_a), before)
    settings = LandscapeSettings(n_samples=0, interp_points=5, interp_low=0.0, interp_high=1.0)
    measured = measure_interpolation(model, params_a, params_b, x, y, settings, device="cpu", dtype=F64)
    assert measured.loss[0] == result.loss_a and measured.loss[-1] == result.loss_b


def test_measure_landscape_json_and_consistency(lenet):
    model, params, x, y = lenet.model, lenet.params, lenet.x[:8], lenet.y[:8]
    vectors = torch.randn(num_params(params), 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    vectors = vectors / vectors.norm(dim=0)
    settings = LandscapeSettings(
        span_1d=1.0, points_1d=3, span_2d=1.0, points_2d=3, normalized_span_1d=0.5, normalized_span_2d=0.5
    )
    result = measure_landscape(model, params, vectors, x, y, settings, device="cpu", dtype=F64)
    out = json.loads(json.dumps(result.to_json()))
    assert {"eigen_1d", "eigen_normalized_1d", "random_1d", "eigen_2d", "random_2d", "settings"} <= set(out)
    assert set(out["eigen_1d"]) >= {"alphas", "loss"} and set(out["eigen_2d"]) >= {"alphas", "betas", "loss"}
    assert len(out["eigen_2d"]["loss"]) == 3 and len(out["eigen_2d"]["loss"][0]) == 3
    assert out["n_samples"] == 8
    # the normalized eigen slice is the loss along filter_normalize(v1), every filter as long as w's
    d = filter_normalize(unflatten(vectors[:, 0], params), params)
    frozen = frozen_copy(model)
    shifted = {k: params[k] + 0.5 * d[k] for k in params}
    assert out["eigen_normalized_1d"]["loss"][2] == pytest.approx(evaluate(frozen, shifted, x, y).loss, rel=1e-12)
    # the 2-D grid through beta = 0 is the 1-D slice; the centre is the unperturbed loss
    assert [row[1] for row in out["eigen_2d"]["loss"]] == pytest.approx(out["eigen_1d"]["loss"], rel=1e-12)
    assert [row[1] for row in out["random_2d"]["loss"]] == pytest.approx(out["random_1d"]["loss"], rel=1e-12)
    assert out["eigen_1d"]["loss"][1] == out["center_loss"]
    with pytest.raises(ValueError, match="^eigenvectors: "):
        measure_landscape(model, params, vectors[:, :1], x, y, settings, device="cpu", dtype=F64)
    with pytest.raises(ValueError, match="^eigenvectors: "):
        measure_landscape(model, params, 2 * vectors, x, y, settings, device="cpu", dtype=F64)


@pytest.mark.parametrize(
    "field, bad",
    [("n_samples", -1), ("points_1d", 1), ("span_2d", 0.0), ("normalized_span_1d", float("inf")),
     ("interp_low", 2.0), ("seed", 0.5), ("points_2d", True)],
)
def test_settings_reject_bad_values_naming_the_field(field, bad):
    with pytest.raises(ValueError, match=field):
        LandscapeSettings(**{field: bad})
