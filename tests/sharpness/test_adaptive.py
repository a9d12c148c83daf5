import math

import torch

from minima.sharpness.adaptive import adaptive_average_of, adaptive_worst_of



def quadratic(hessian: torch.Tensor, center: torch.Tensor, c: float = 0.2):
    return lambda p: 0.5 * (p["w"] - center) @ hessian @ (p["w"] - center) + c


W0 = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.1], dtype=torch.float64)
H_DIAG = torch.tensor([1.0, 0.125, 32.0, 0.02, 0.3, 10.0], dtype=torch.float64)  # h w^2 = 1, .5, 8, .18, .3, .1


def test_worst_case_on_a_diagonal_quadratic_is_rho_squared_half_max_h_w2():
    rho = 0.3
    result = adaptive_worst_of(
        quadratic(torch.diag(H_DIAG), W0), {"w": W0.clone()}, rho=rho, steps=20, xi=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    exact = rho**2 / 2 * (H_DIAG * W0**2).max().item()
    assert abs(result.value - exact) < 1e-8 * exact
    assert abs(result.relative_norm - rho) < 1e-12


def test_worst_case_on_a_dense_quadratic_is_the_top_eigenvalue_of_T_H_T():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(6, 6, generator=g)
    hessian = a @ a.T + torch.diag(torch.tensor([30.0, 0, 0, 0, 0, 0]))  # a clear spectral gap
    xi, rho = 0.05, 0.2
    t = torch.diag(W0.abs() + xi)
    result = adaptive_worst_of(
        quadratic(hessian, W0), {"w": W0}, rho=rho, steps=20, xi=xi, generator=torch.Generator().manual_seed(1)
    )
    exact = rho**2 / 2 * torch.linalg.eigvalsh(t @ hessian @ t)[-1].item()
    assert abs(result.value - exact) < 1e-6 * exact


def test_worst_case_of_a_linear_loss_is_rho_times_the_scaled_gradient_norm():
    grad = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.5, -0.3])
    rho = 0.1
    result = adaptive_worst_of(
        lambda p: grad @ p["w"], {"w": W0}, rho=rho, steps=20, xi=0.0, generator=torch.Generator().manual_seed(2)
    )
    exact = rho * (grad * W0.abs()).norm().item()
    assert abs(result.value - exact) < 1e-9 * exact


def test_average_case_on_a_quadratic_is_rho_squared_half_sum_h_w2():
    rho, xi, n = 0.5, 0.1, 4000
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(50, generator=g)
    h = torch.rand(50, generator=g) + 0.5
    result = adaptive_average_of(
        quadratic(torch.diag(h), w0), {"w": w0}, rho=rho, samples=n, xi=xi, generator=torch.Generator().manual_seed(4)
    )
    exact = rho**2 / 2 * (h * (w0.abs() + xi) ** 2).sum().item()
    # the increase is a weighted chi-square: its exact standard deviation gives the expected error
    exact_stderr = rho**2 / 2 * math.sqrt(2 * ((h * (w0.abs() + xi) ** 2) ** 2).sum().item() / n)
    assert abs(result.value - exact) < 4 * exact_stderr
    assert abs(result.stderr / exact_stderr - 1) < 0.1
    assert result.samples == n and result.loss == 0.2


def test_zero_weights_are_not_perturbed_without_xi():
    w0 = torch.tensor([0.0, 0.0, 2.0])
    loss = lambda p: (p["w"][:2] ** 2).sum() * 100  # noqa: E731  only the zero weights matter
    params = {"w": w0}
    worst = adaptive_worst_of(loss, params, rho=1.0, steps=5, xi=0.0, generator=torch.Generator().manual_seed(0))
    average = adaptive_average_of(loss, params, rho=1.0, samples=5, xi=0.0, generator=torch.Generator().manual_seed(0))
    assert worst.value == 0.0 and average.value == 0.0
    assert worst.stop_reason.startswith("zero gradient")
    nudged = adaptive_worst_of(loss, params, rho=1.0, steps=5, xi=1e-3, generator=torch.Generator().manual_seed(0))
    assert nudged.value > 0
