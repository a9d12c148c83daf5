import itertools

import pytest
import torch
from torch import nn

from minima.models import build_model
from minima.objective import loss_at, params_of
from minima.sharpness.msharpness import (
    MSharpness,
    _onto_ellipsoid,
    checkpoints,
    m_sharpness_of,
    model_batch_losses,
    normalized_logits,
)

W0 = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.1], dtype=torch.float64)
H_DIAG = torch.tensor([1.0, 0.125, 32.0, 0.02, 0.3, 10.0], dtype=torch.float64)  # h w^2 = 1, .5, 8, .18, .3, .1


def quadratic(hessian: torch.Tensor, center: torch.Tensor = W0, c: float = 0.2):
    return lambda p: 0.5 * (p["w"] - center) @ hessian @ (p["w"] - center) + c


def dense_hessian(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    return a @ a.T + torch.diag(torch.tensor([30.0, 0, 0, 0, 0, 0]))  # a clear spectral gap


def l2_exact(hessian: torch.Tensor, rho: float) -> float:
    t = torch.diag(W0.abs())
    return rho**2 / 2 * torch.linalg.eigvalsh(t @ hessian @ t)[-1].item()


def box_exact(hessian: torch.Tensor, rho: float) -> float:
    """A convex quadratic's maximum over a box lies at one of its 2^n corners."""
    best = 0.0
    for signs in itertools.product((-1.0, 1.0), repeat=len(W0)):
        d = torch.tensor(signs) * rho * W0.abs()
        best = max(best, (0.5 * d @ hessian @ d).item())
    return best


def sharpness(losses, params=None, seed=0, **kwargs) -> MSharpness:
    kwargs.setdefault("steps", 50)
    kwargs.setdefault("rand_init", True)
    return m_sharpness_of(
        losses, {"w": W0.clone()} if params is None else params, generator=torch.Generator().manual_seed(seed), **kwargs
    )


@pytest.mark.parametrize("hessian", [torch.diag(H_DIAG), dense_hessian(5)], ids=["diagonal", "dense"])
def test_l2_worst_case_of_a_quadratic_is_rho_squared_half_lambda_max_of_T_H_T(hessian):
    rho = 0.3
    result = sharpness([quadratic(hessian)], norm="l2", rho=rho)
    exact = l2_exact(hessian, rho)
    assert abs(result.value - exact) < 1e-8 * exact
    assert abs(result.per_batch_relative_norm[0] - rho) < 1e-9
    assert result.per_batch_loss == (0.2,) and result.n_batches == 1 and result.m is None


@pytest.mark.parametrize("hessian", [torch.diag(H_DIAG), dense_hessian(5)], ids=["diagonal", "dense"])
def test_linf_worst_case_of_a_quadratic_is_its_maximum_over_the_box_corners(hessian):
    rho = 0.3
    exact = box_exact(hessian, rho)
    for seed in (0, 1):
        result = sharpness([quadratic(hessian)], norm="linf", rho=rho, seed=seed)
        assert abs(result.value - exact) < 1e-10 * exact
        assert abs(result.per_batch_relative_norm[0] - rho) < 1e-12
    # sign ascent can stop at a corner that is only a local maximum; never above the box's maximum
    for seed in range(2, 6):
        assert sharpness([quadratic(hessian)], norm="linf", rho=rho, seed=seed).value <= exact * (1 + 1e-12)


def test_zero_start_on_a_linear_loss_reaches_the_dual_norm():
    """Their momentum x_{k+1} = 0.75 z + 0.25 x_{k-1} approaches the boundary point c as
    c - x_{k+1} = 0.25 (c - x_{k-1}): 1 - 0.25^5 of the way after 10 steps."""
    grad = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5, -0.3])
    loss = lambda p: grad @ p["w"]  # noqa: E731
    rho = 0.1
    exact = {"linf": rho * (grad.abs() * W0.abs()).sum().item(), "l2": rho * (grad * W0.abs()).norm().item()}
    for norm in ("linf", "l2"):
        assert sharpness([loss], norm=norm, rho=rho, rand_init=False, steps=10).value == pytest.approx(
            exact[norm] * (1 - 0.25**5), rel=1e-12
        )
        assert abs(sharpness([loss], norm=norm, rho=rho, rand_init=False).value - exact[norm]) < 1e-12 * exact[norm]


def test_zero_start_at_an_exact_minimum_never_moves():
    result = sharpness([quadratic(torch.diag(H_DIAG))], norm="l2", rho=0.3, rand_init=False, steps=10)
    assert result.value == 0.0 and result.per_batch_relative_norm == (0.0,) and result.per_batch_improvements == (0,)


def test_the_value_is_the_mean_of_the_per_batch_worst_cases():
    rho = 0.2
    hessians = [torch.diag(H_DIAG), dense_hessian(5), torch.diag(2 * H_DIAG.flip(0))]
    losses = [quadratic(h, c=0.1 * i) for i, h in enumerate(hessians)]
    for norm, exact in (("l2", l2_exact), ("linf", box_exact)):
        result = sharpness(losses, norm=norm, rho=rho)
        assert result.n_batches == 3 and len(result.per_batch) == 3
        assert result.value == pytest.approx(sum(result.per_batch) / 3, rel=1e-15)
        assert result.per_batch_loss == pytest.approx((0.0, 0.1, 0.2), abs=1e-15)
        for value, h in zip(result.per_batch, hessians):
            assert abs(value - exact(h, rho)) < 1e-8 * exact(h, rho)
        # the first batch draws first from the generator: alone it gives the same answer bit for bit
        assert sharpness(losses[:1], norm=norm, rho=rho).per_batch[0] == result.per_batch[0]


def test_zero_weights_never_move_and_do_not_break_the_projection():
    w0 = torch.tensor([0.0, 2.0, -1.0])
    loss = lambda p: 100 * p["w"][0] ** 2 + 0.5 * ((p["w"] - w0)[1:] ** 2).sum()  # noqa: E731
    for rule in ("scaled", "theirs"):
        result = sharpness([loss], params={"w": w0}, norm="l2", rho=0.5, l2_step=rule, steps=100)
        assert abs(result.value - 0.5**2 / 2 * 4) < 1e-3  # h w^2 = 4 on the second coordinate
    linf = sharpness([loss], params={"w": w0}, norm="linf", rho=0.5)
    assert abs(linf.value - 0.5 * 0.25 * (4 + 1)) < 1e-12


def test_their_ellipsoid_projection_is_the_euclidean_one():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(40, generator=g)
    s = torch.rand(40, generator=g) * 2 + 0.01
    x = _onto_ellipsoid(d, s, s > 0, 0.3)
    assert abs((x / s).norm().item() - 0.3) < 1e-12
    ratio = (d - x) / (x / s**2)  # KKT: d - x is along the ellipsoid's normal x / s^2
    assert (ratio - ratio.mean()).abs().max() < 1e-9 * ratio.mean() and ratio.mean() > 0
    inside = d * (0.1 / (d / s).norm())
    assert torch.equal(_onto_ellipsoid(inside, s, s > 0, 0.3), inside)


def test_their_l2_rule_stops_short_of_the_maximum_and_depends_on_the_parametrization():
    """Documents why l2_step='scaled' is our default (see the module docstring)."""
    hessian = dense_hessian(5)
    exact = l2_exact(hessian, 0.3)
    theirs = sharpness([quadratic(hessian)], norm="l2", rho=0.3, l2_step="theirs", steps=100)
    assert 0.9 * exact < theirs.value < 0.99 * exact
    net, params, x, y = two_layer_relu()
    values = []
    for a in (1.0, 5.0):
        q = dinh(params, a)
        losses = model_batch_losses(net, q, x, y, m=8, n_points=32, normalize_logits=False)
        values.append(m_sharpness_of(losses, q, norm="l2", rho=0.5, generator=None, l2_step="theirs").value)
    assert abs(values[1] / values[0] - 1) > 0.01


def test_checkpoints_are_their_apgd_schedule():
    assert checkpoints(20) == (5, 9, 12, 15, 16, 18, 19, 20)
    assert checkpoints(10) == (3, 5, 6, 8, 8)


def two_layer_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 5, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    return net, params_of(net), x, y


def dinh(params, a):
    out = dict(params)
    out["0.weight"], out["0.bias"], out["2.weight"] = params["0.weight"] * a, params["0.bias"] * a, params["2.weight"] / a
    return out


@pytest.mark.parametrize("norm,rho", [("linf", 0.05), ("l2", 0.5)])
def test_invariant_under_a_function_preserving_dinh_rescaling(norm, rho):
    net, params, x, y = two_layer_relu()
    for rand_init in (False, True):
        values = []
        for a in (1.0, 5.0, 0.1):
            q = dinh(params, a)
            losses = model_batch_losses(net, q, x, y, m=8, n_points=32, normalize_logits=False)
            result = m_sharpness_of(
                losses, q, norm=norm, rho=rho, steps=20, rand_init=rand_init, generator=torch.Generator().manual_seed(3)
            )
            values.append(result.value)
        assert values[0] > 1e-3
        assert max(abs(v - values[0]) for v in values) < 1e-6 * values[0]


@pytest.fixture(scope="module")
def lenet():
    model = build_model("modern", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (40,), generator=g)
    return model, params_of(model), x, y


def scaled_last_layer(params, c):
    out = dict(params)
    out["fc3.weight"], out["fc3.bias"] = params["fc3.weight"] * c, params["fc3.bias"] * c
    return out


def test_normalized_logits_make_the_value_invariant_to_the_scale_of_the_last_layer(lenet):
    model, params, x, y = lenet
    for norm, rho in (("linf", 0.01), ("l2", 0.5)):
        values = {}
        for normalize in (True, False):
            for c in (1.0, 3.0):
                q = scaled_last_layer(params, c)
                losses = model_batch_losses(model, q, x, y, m=8, n_points=16, normalize_logits=normalize)
                values[normalize, c] = m_sharpness_of(losses, q, norm=norm, rho=rho, steps=5, generator=None).value
        assert values[True, 1.0] > 1e-4
        assert abs(values[True, 3.0] - values[True, 1.0]) < 1e-9 * values[True, 1.0]
        assert abs(values[False, 3.0] / values[False, 1.0] - 1) > 0.05


def test_normalized_logits_are_centered_unit_vectors():
    z = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 0.0]])
    out = normalized_logits(z)
    assert torch.allclose(out[0], (z[0] - 3) / (z[0] - 3).norm())
    assert torch.equal(out[1], torch.zeros(3))  # the 1e-10 floor keeps a constant row finite


def test_batch_losses_take_the_first_points_in_order_or_a_drawn_subset(lenet):
    model, params, x, y = lenet
    before = {k: v.clone() for k, v in params.items()}
    losses = model_batch_losses(model, params, x, y, m=8, n_points=24, normalize_logits=False)
    assert len(losses) == 3 and all(b.size == 8 for b in losses)
    for i, b in enumerate(losses):
        assert torch.equal(b.x, x[8 * i : 8 * (i + 1)]) and torch.equal(b.y, y[8 * i : 8 * (i + 1)])
        assert b(params).item() == pytest.approx(loss_at(model, params, b.x, b.y).item(), rel=1e-14)
    drawn = model_batch_losses(model, params, x, y, m=8, n_points=24, normalize_logits=True,
                               generator=torch.Generator().manual_seed(0))
    index = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:24]
    assert torch.equal(torch.cat([b.y for b in drawn]), y[index])
    result = m_sharpness_of(drawn, params, norm="linf", rho=0.01, steps=3, generator=None)
    assert (result.m, result.n_points, result.n_batches, result.normalize_logits) == (8, 24, 3, True)
    # every parameter is perturbed by default, biases included (their code: model.parameters())
    assert result.perturbed == tuple(params) and len(result.perturbed) == 10
    assert all(torch.equal(params[k], before[k]) for k in params)
    assert all(torch.equal(dict(model.named_parameters())[k].detach(), before[k]) for k in params)


def test_perturb_restricts_the_perturbed_parameters(lenet):
    model, params, x, y = lenet
    losses = model_batch_losses(model, params, x, y, m=8, n_points=8, normalize_logits=False)
    only = m_sharpness_of(losses, params, norm="l2", rho=0.5, steps=5, generator=None, perturb={"fc3.bias", "fc3.weight"})
    assert only.perturbed == ("fc3.weight", "fc3.bias")
    full = m_sharpness_of(losses, params, norm="l2", rho=0.5, steps=5, generator=None)
    assert 0 < only.value < full.value


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(norm="l1"), "norm"),
        (dict(rho=0.0), "rho"),
        (dict(rho=-1.0), "rho"),
        (dict(rho=float("nan")), "rho"),
        (dict(steps=0), "steps"),
        (dict(l2_step="apgd"), "l2_step"),
        (dict(perturb={"v"}), "perturb"),
        (dict(rand_init=True, generator=None), "generator"),
    ],
)
def test_bad_arguments_of_m_sharpness_of_raise_naming_the_argument(kwargs, argument):
    arguments = dict(norm="l2", rho=0.1, steps=5, generator=torch.Generator().manual_seed(0)) | kwargs
    with pytest.raises(ValueError, match=rf"^{argument}: ") as error:
        m_sharpness_of([quadratic(torch.diag(H_DIAG))], {"w": W0}, **arguments)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "kwargs,argument",
    [(dict(m=0), "m"), (dict(m=-8), "m"), (dict(n_points=20), "n_points"), (dict(n_points=48), "n_points")],
)
def test_bad_arguments_of_model_batch_losses_raise_naming_the_argument(lenet, kwargs, argument):
    model, params, x, y = lenet
    with pytest.raises(ValueError, match=rf"^{argument}: ") as error:
        model_batch_losses(model, params, x, y, normalize_logits=False, **(dict(m=8, n_points=16) | kwargs))
    assert "\n" not in str(error.value)


def test_empty_batch_list_raises():
    with pytest.raises(ValueError, match="^batch_losses: "):
        m_sharpness_of([], {"w": W0}, norm="l2", rho=0.1, generator=None)


def test_shared_bases_give_every_measure_its_own_numbers_bit_for_bit():
    """From the zero start every norm and radius begins at L_b(w) and its gradient: computed once
    (`batch_bases`) and handed to each measure, the results are those each computes alone."""
    from minima.sharpness.msharpness import batch_bases

    model = build_model("modern", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (32,), generator=g)
    params = params_of(model)
    batches = model_batch_losses(model, params, x, y, m=8, normalize_logits=True, n_points=32)
    bases = batch_bases(batches, params)
    assert len(bases) == 4 and all(grad.shape == (sum(p.numel() for p in params.values()),) for _, grad in bases)
    for norm, rho in (("linf", 0.01), ("l2", 0.5)):
        alone = m_sharpness_of(batches, params, norm=norm, rho=rho, steps=4, generator=None)
        shared = m_sharpness_of(batches, params, norm=norm, rho=rho, steps=4, generator=None, bases=bases)
        assert alone == shared
    with pytest.raises(ValueError, match="bases"):
        m_sharpness_of(batches, params, norm="l2", rho=0.5, steps=2, generator=None, bases=bases[:2])
