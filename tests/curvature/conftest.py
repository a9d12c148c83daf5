"""Tiny float64 networks whose dense Hessians (torch.func.hessian) are the oracles."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from minima.objective import flatten, frozen_copy, loss_at, params_of, unflatten


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oracle: compares against an external library (PyHessian, curvlinops)")


@dataclass
class Problem:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    hessian: torch.Tensor  # dense [P, P] of the mean cross-entropy


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(h.flatten(1))


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    frozen, like = frozen_copy(model), params_of(model)
    return torch.func.hessian(lambda w: loss_at(frozen, unflatten(w, like), x, y))(flatten(like))


def _problem(module: type[nn.Module], shape: tuple[int, ...], n: int, seed: int) -> Problem:
    g = torch.Generator().manual_seed(seed)
    model = module().double()  # default init is overwritten below from the seeded generator
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g, dtype=torch.float64)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return Problem(model, x, y, dense_hessian(model, x, y))


@pytest.fixture(scope="session")
def mlp() -> Problem:
    return _problem(TinyMLP, (4,), 40, 0)


@pytest.fixture(scope="session")
def cnn() -> Problem:
    return _problem(TinyCNN, (1, 6, 6), 30, 1)


@pytest.fixture(params=["mlp", "cnn"])
def problem(request: pytest.FixtureRequest) -> Problem:
    return request.getfixturevalue(request.param)


def _symmetric(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return q @ torch.diag(eigenvalues.double()) @ q.T


@pytest.fixture(scope="session")
def symmetric():
    """symmetric(eigenvalues, seed) = Q diag(eigenvalues) Q^T, Q random orthogonal: a known spectrum."""
    return _symmetric
