import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian
from torch.nn import functional as F

from minima.objective import flatten, frozen_copy, loss_at, params_of, unflatten
from minima.curvature import RescaledOperator
from minima.curvature.hvp import HessianOperator
from minima.reparam import (
    DinhSettings,
    balancing_scales,
    check_homogeneous,
    dinh_rows,
    dinh_scales,
    predicted_hessian,
    rescale,
    rescaled_family,
    rescaling_factors,
)
from minima.sharpness.adaptive import adaptive_average_of, adaptive_worst_of
from minima.sharpness.common import prepare
from minima.sharpness.epsilon import epsilon_sharpness_of

F64 = torch.float64
RELU = dict(variant="modern")  # the two-layer test net is a ReLU net too



@pytest.fixture(scope="module")
def net(lenet):
    """The shared LeNet-5 as (eval copy, params, 16 images, labels)."""
    return frozen_copy(lenet.model), lenet.params, lenet.x[:16], lenet.y[:16]


def test_default_grid_is_a_log_grid_from_1e_minus_2_to_1e2():
    scales = DinhSettings().scales
    assert len(scales) == 9 and scales[0] == pytest.approx(1e-2) and scales[-1] == pytest.approx(1e2)
    assert scales[4] == 1.0
    assert dinh_scales(4.0) == {"conv1": 4.0, "conv2": 0.25, "fc1": 1.0, "fc2": 1.0, "fc3": 1.0}


def test_lenet_logits_are_unchanged_over_the_whole_grid(net):
    model, params, x, _ = net
    before = flatten(params).clone()
    reference = functional_call(model, params, (x,))
    family = rescaled_family(params, DinhSettings(), **RELU)
    assert [alpha for alpha, _ in family] == list(DinhSettings().scales)
    for alpha, scaled in family:
        assert torch.allclose(scaled["conv1.weight"], alpha * params["conv1.weight"], rtol=1e-15)
        assert torch.allclose(scaled["conv1.bias"], alpha * params["conv1.bias"], rtol=1e-15)
        assert torch.allclose(scaled["conv2.bias"], params["conv2.bias"], rtol=1e-15)
        assert torch.allclose(functional_call(model, scaled, (x,)), reference, rtol=1e-10, atol=1e-12)
    everywhere = {"conv1": 3.0, "conv2": 0.5, "fc1": 0.25, "fc2": 4.0, "fc3": 2 / 3}
    scaled = rescale(params, everywhere, **RELU)
    assert scaled["fc2.bias"].div(params["fc2.bias"]).allclose(torch.tensor(1.5, dtype=F64))
    assert torch.allclose(functional_call(model, scaled, (x,)), reference, rtol=1e-10, atol=1e-12)
    assert torch.equal(flatten(params), before)


def test_bad_rescalings_are_refused(net):
    _, params, _, _ = net
    with pytest.raises(ValueError, match="multiply to 1"):
        rescale(params, {"conv1": 2.0, "conv2": 0.4}, **RELU)
    with pytest.raises(ValueError, match="positive"):
        rescale(params, {"conv1": -1.0, "conv2": -1.0}, **RELU)
    with pytest.raises(ValueError, match="unknown layers"):
        rescale(params, {"conv9": 1.0}, **RELU)
    with pytest.raises(ValueError, match="tanh.*not positively homogeneous"):
        rescale(params, dinh_scales(2.0), variant="seed")
    with pytest.raises(ValueError, match="tanh"):
        check_homogeneous("tanh", "max")
    for bad in [dict(scales=()), dict(scales=(1.0, 0.0)), dict(layers=("conv1",)), dict(layers=("conv1", "conv9")),
                dict(layers=("conv1", "conv1"))]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            DinhSettings(**bad)


def test_adaptive_sharpness_is_invariant_while_hessian_and_epsilon_sharpness_move(net):
    model, params, x, y = net

    def measures(p):
        gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
        problem = prepare(model, p, x, y, device="cpu", dtype=F64)
        return (
            adaptive_worst_of(problem.loss, problem.params, rho=0.5, steps=3, xi=0.0, generator=gen()).value,
            adaptive_average_of(problem.loss, problem.params, rho=0.2, samples=3, xi=0.0, generator=gen()).value,
            epsilon_sharpness_of(problem.loss, problem.params, epsilon=1e-3, steps=2, generator=gen()).value,
        )

    g = torch.Generator().manual_seed(3)
    v1 = torch.randn(params["conv1.weight"].shape, generator=g, dtype=F64)
    v2 = torch.randn(params["conv2.weight"].shape, generator=g, dtype=F64)

    def curvature(p, name, v):
        """v^T H v along a direction inside one weight tensor (exact, by double backward)."""
        leaf = p[name].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_at(model, {**p, name: leaf}, x, y), leaf, create_graph=True)
        (hv,) = torch.autograd.grad(grad, leaf, grad_outputs=v)
        return float((v * hv).sum())

    worst, average, eps = measures(params)
    c1, c2 = curvature(params, "conv1.weight", v1), curvature(params, "conv2.weight", v2)
    for alpha in (1e-2, 1e2):
        scaled = rescale(params, dinh_scales(alpha), **RELU)
        w2, a2, e2 = measures(scaled)
        assert w2 == pytest.approx(worst, rel=1e-7) and a2 == pytest.approx(average, rel=1e-7)
        # H' = D^-1 H D^-1: the conv1 block is divided by alpha^2, the conv2 block multiplied
        assert curvature(scaled, "conv1.weight", v1) == pytest.approx(c1 / alpha**2, rel=1e-8)
        assert curvature(scaled, "conv2.weight", v2) == pytest.approx(c2 * alpha**2, rel=1e-8)
        assert abs(e2 / eps - 1) > 1e-3  # not invariant: Keskar's box has a +1 that does not scale with w


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 5)
        self.out = nn.Linear(5, 4)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def test_two_layer_hessian_transforms_as_predicted():
    torch.manual_seed(0)  # module init only; the test's own draws use a generator
    net = TwoLayer().to(F64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=g, dtype=F64)
    y = torch.randint(0, 4, (20,), generator=g)
    params = params_of(net)

    def dense_hessian(p):
        f = lambda flat: F.cross_entropy(functional_call(net, unflatten(flat, p), (x,)), y)  # noqa: E731
        return hessian(f)(flatten(p))

    h = dense_hessian(params)
    alpha = 100.0
    scales = dinh_scales(alpha, ("hidden", "out"), all_layers=("hidden", "out"))
    scaled = rescale(params, scales, **RELU)
    h_scaled = dense_hessian(scaled)
    factors = rescaling_factors(params, scales)
    assert torch.allclose(h_scaled, predicted_hessian(h, factors), rtol=1e-9, atol=1e-12)
    top, top_scaled = torch.linalg.eigvalsh(h)[-1], torch.linalg.eigvalsh(h_scaled)[-1]
    assert top_scaled == pytest.approx(float(torch.linalg.eigvalsh(predicted_hessian(h, factors))[-1]), rel=1e-9)
    out_weight = slice(5 * 3 + 5, 5 * 3 + 5 + 4 * 5)
    assert top_scaled >= alpha**2 * h.diagonal()[out_weight].max() * (1 - 1e-12)
    assert top_scaled > 100 * top


def test_balancing_equalizes_layer_norms_and_keeps_the_function(net):
    model, params, x, _ = net
    scales = balancing_scales(params)
    assert math.prod(scales.values()) == pytest.approx(1.0, rel=1e-14)
    balanced = rescale(params, scales, **RELU)
    norms = [float(balanced[f"{layer}.weight"].norm()) for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")]
    geometric = math.exp(sum(math.log(float(params[f"{l}.weight"].norm())) for l in ("conv1", "conv2", "fc1", "fc2", "fc3")) / 5)
    assert norms == pytest.approx([geometric] * 5, rel=1e-12)
    assert torch.allclose(functional_call(model, balanced, (x,)), functional_call(model, params, (x,)), rtol=1e-10, atol=1e-12)


def test_rescaled_operator_is_the_hessian_of_the_rescaled_network():
    torch.manual_seed(0)
    net = TwoLayer().to(F64)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 3, generator=g, dtype=F64)
    y = torch.randint(0, 4, (30,), generator=g)
    params = params_of(net)
    scales = balancing_scales(params)
    scaled = rescale(params, scales, **RELU)
    f = lambda p: (lambda flat: F.cross_entropy(functional_call(net, unflatten(flat, p), (x,)), y))  # noqa: E731
    h_scaled = hessian(f(scaled))(flatten(scaled))
    op = RescaledOperator(HessianOperator(net, x, y, params), flatten(rescaling_factors(params, scales)))
    dense = op @ torch.eye(op.shape[0], dtype=F64)
    assert torch.allclose(dense, h_scaled, rtol=1e-9, atol=1e-11)


def test_dinh_rows_measure_each_member_of_the_family(net):
    _, params, _, _ = net
    settings = DinhSettings(scales=(0.5, 1.0, 4.0))
    rows = dinh_rows(params, settings, variant="modern", measure=lambda p: {"conv1": float(p["conv1.weight"].norm())})
    base = float(params["conv1.weight"].norm())
    assert [r["scale"] for r in rows] == [0.5, 1.0, 4.0]
    assert [r["conv1"] for r in rows] == pytest.approx([0.5 * base, base, 4 * base], rel=1e-14)
