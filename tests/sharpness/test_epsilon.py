import torch

from minima.sharpness.epsilon import epsilon_sharpness_of



def quadratic(h: torch.Tensor, center: torch.Tensor, c: float):
    return lambda p: 0.5 * ((p["w"] - center) ** 2 * h).sum() + c


def test_box_maximum_of_a_convex_diagonal_quadratic_is_at_the_corners():
    w0 = torch.tensor([0.5, -2.0, 0.0, 3.0, -0.1])
    h = torch.tensor([4.0, 1.0, 10.0, 0.5, 2.0])
    c, eps = 0.3, 1e-2
    result = epsilon_sharpness_of(
        quadratic(h, w0, c), {"w": w0.clone()}, epsilon=eps, steps=5, generator=torch.Generator().manual_seed(1)
    )
    r = eps * (w0.abs() + 1)
    exact = 0.5 * (h * r**2).sum().item() / (1 + c) * 100
    assert abs(result.value - exact) <= 1e-12 * exact
    assert result.loss == c
    assert result.relative_linf == 1.0
    assert abs(result.perturbation_norm - r.norm().item()) < 1e-12


def test_linear_loss_gains_the_box_support_function():
    w0 = torch.tensor([1.0, -3.0, 0.2, 0.0])
    g = torch.tensor([0.5, 2.0, -1.0, -0.25])
    eps = 1e-3
    loss = lambda p: (g * p["w"]).sum() + 10.0  # noqa: E731
    result = epsilon_sharpness_of(loss, {"w": w0}, epsilon=eps, steps=3, generator=torch.Generator().manual_seed(0))
    base = (g * w0).sum().item() + 10.0
    exact = (g.abs() * eps * (w0.abs() + 1)).sum().item() / (1 + base) * 100
    assert abs(result.value - exact) < 1e-10 * exact


def test_inputs_are_not_mutated_and_the_seed_decides_the_result():
    w0 = torch.tensor([0.5, -2.0, 1.0])
    params = {"w": w0.clone()}
    loss = lambda p: torch.cos(p["w"]).sum()  # noqa: E731
    a = epsilon_sharpness_of(loss, params, epsilon=0.1, steps=10, generator=torch.Generator().manual_seed(3))
    b = epsilon_sharpness_of(loss, params, epsilon=0.1, steps=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(params["w"], w0)
    assert a == b
    assert a.value >= 0 and a.steps == 10
    # cos is maximal at 0 where its gradient vanishes: ascent must stop, never step past it
    assert a.relative_linf <= 1.0
