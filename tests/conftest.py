"""Shared fixtures: tiny float64 networks whose dense Hessians (torch.func.hessian) are the
oracles, a LeNet-5 with a small random batch, and one thread per test process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from minima.models import build_model
from minima.objective import flatten, frozen_copy, loss_at, params_of, unflatten


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and "MINIMA_PROGRAM_STORE" not in os.environ:
        # traced Hessian-vector programs (minima.curvature.hvp.program_store): one store for the
        # session, its workers and every process they start, never the user's ~/.cache
        import shutil
        import tempfile

        store = tempfile.mkdtemp(prefix="minima-programs-")
        os.environ["MINIMA_PROGRAM_STORE"] = store
        config.add_cleanup(lambda: shutil.rmtree(store, ignore_errors=True))
    if hasattr(config, "workerinput"):
        # a pytest-xdist worker: the other workers hold the other cores, so every process this one
        # starts runs torch on one thread (OpenMP threads that wait spinning on a busy core burn it)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    config.addinivalue_line("markers", "oracle: compares against an external library (PyHessian, curvlinops)")
    config.addinivalue_line("markers", "cuda: runs on a CUDA device (skipped without one; scripts/gpu_check.sh runs them)")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Within each file, the tests that need the session's tiny study run after the others
    (a stable sort: each group keeps its order). The first worker to need the study builds it
    while the other one waits on its lock; with this order the waiting worker first runs the
    file's tests that do not need it (test_pipeline.py builds a study of its own), so neither
    core sits idle behind the lock."""
    first_seen: dict[Path, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.path, index)
    items.sort(key=lambda item: (first_seen[item.path], "tiny_build_root" in getattr(item, "fixturenames", ())))



@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """pytest-xdist's worker name ("gw0", ...), or "master" in a run without workers (this
    fixture stands in for xdist's own when xdist is not installed)."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture(autouse=True)
def one_thread():
    """The suite's problems are small: they run fastest on one thread, and two OpenMP threads
    contending for a busy 2-core machine made them several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@dataclass(frozen=True)
class LeNetBatch:
    model: nn.Module
    params: dict
    x: torch.Tensor
    y: torch.Tensor


@pytest.fixture(scope="session")
def lenet() -> LeNetBatch:
    """A freshly initialized LeNet-5 (modern, float64) and 40 random images with labels."""
    model = build_model("modern", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (40,), generator=g)
    return LeNetBatch(model, params_of(model), x, y)


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


# ---- the tiny study, built once per session, and a real summary for the report's tests ------------

import subprocess  # noqa: E402

from testkit import HAVE_VENV, NEEDS_VENV, REPO  # noqa: E402

TINY_BUILD_TIMEOUT_S = 1800


def _build_tiny(root: Path) -> None:
    done = subprocess.run(["make", "-C", str(REPO), "all", "PROFILE=tiny", f"ROOT={root}"],
                          capture_output=True, text=True, timeout=TINY_BUILD_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"make all PROFILE=tiny failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def tiny_build_root(tmp_path_factory, worker_id) -> Path:
    """The root of one `make all PROFILE=tiny` build (runs/, build/summary.json, build/figures,
    build/report.*), made once per session in a temporary directory. The only tiny study the suite
    trains: a test that changes a root, or needs one of its own, works on a copy
    (`testkit.copy_study(tiny_build_root, tmp_path / "root")`), never on this one.

    Under pytest-xdist the workers share it: the first to ask builds it in the session's common
    temporary directory while holding a lock; the others wait on the lock and find it built (or
    the first one's error, so a failed build is reported once per worker, not retried)."""
    if not HAVE_VENV:
        pytest.skip(f"the tiny build {NEEDS_VENV}, or point MINIMA_TEST_SUMMARY at a summary.json")
    if worker_id == "master":
        root = tmp_path_factory.mktemp("tiny-build")
        try:
            _build_tiny(root)
        except RuntimeError as error:
            pytest.fail(str(error))
        return root
    from minima.io import locked

    shared = tmp_path_factory.getbasetemp().parent  # one per session, common to its workers
    root, done, failed = shared / "tiny-build", shared / "tiny-build.done", shared / "tiny-build.failed"
    with locked(shared / "tiny-build.lock"):
        if not done.exists() and not failed.exists():
            try:
                _build_tiny(root)
                done.touch()
            except RuntimeError as error:
                failed.write_text(str(error))
    if failed.exists():
        pytest.fail(failed.read_text())
    return root


@pytest.fixture(scope="session")
def tiny_summary(request) -> dict:
    """A real summary of the tiny profile, validated with minima.schema: the file named
    by MINIMA_TEST_SUMMARY when set, else the one `tiny_build_root` builds. Shared by the whole
    session: deep-copy it before changing anything."""
    from minima.schema import load_summary

    given = os.environ.get("MINIMA_TEST_SUMMARY")
    path = Path(given) if given else request.getfixturevalue("tiny_build_root") / "build" / "summary.json"
    return load_summary(path)
