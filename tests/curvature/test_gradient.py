import pytest
import torch
from torch.nn import functional as F

from minima.curvature.gradient import gradient_norm


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_gradient_norm_equals_full_batch_autograd(problem, chunk_size):
    model = problem.model
    loss = F.cross_entropy(model(problem.x), problem.y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected = float(torch.sqrt(sum((g**2).sum() for g in grads)))
    r = gradient_norm(model, problem.x, problem.y, chunk_size=chunk_size)
    assert r.norm == pytest.approx(expected, rel=1e-12)
    assert r.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    assert r.n_samples == len(problem.y)
    assert all(p.grad is None for p in model.parameters())


def test_zero_at_a_stationary_point():
    # a bias-only model reaches its minimum at the log class frequencies: gradient zero
    model = torch.nn.Linear(2, 3).double()
    model.weight.data.zero_()
    y = torch.tensor([0, 0, 1, 2])
    model.bias.data = torch.log(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    r = gradient_norm(model, torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), y)
    assert r.norm > 0  # the weights still see x: not stationary in them
    r0 = gradient_norm(model, torch.zeros(4, 2, dtype=torch.float64), y)
    assert r0.norm == pytest.approx(0.0, abs=1e-15)
