import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from device_params import DEVICES
from testkit import REPO
from minima.curvature.hvp import HessianOperator, _balanced_chunks
from minima.objective import flatten, params_of


def _operand(p: int, k: int | None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p, generator=g, dtype=torch.float64) if k is None else torch.randn(p, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("linearize", [False, True])
def test_single_product_equals_dense_hessian(problem, linearize):
    op = HessianOperator(problem.model, problem.x, problem.y, linearize=linearize)
    v = _operand(op.shape[0], None)
    torch.testing.assert_close(op @ v, problem.hessian @ v, rtol=1e-10, atol=1e-12)
    assert op.n_matvec == 1


@pytest.mark.parametrize("block_size,linearize", [(1, False), (3, False), (8, False), (1, True)])
def test_block_product_equals_dense_hessian(problem, block_size, linearize):
    op = HessianOperator(problem.model, problem.x, problem.y, block_size=block_size, linearize=linearize)
    v = _operand(op.shape[0], 7)
    torch.testing.assert_close(op @ v, problem.hessian @ v, rtol=1e-10, atol=1e-12)
    assert op.n_matvec == 7


@pytest.mark.parametrize("device", DEVICES)
def test_default_product_on_each_device_equals_the_dense_hessian(problem, device):
    """The defaults a device gets (CPU: linearized, small chunks; CUDA: vmapped blocks) are exact."""
    model = problem.model.to(device)
    op = HessianOperator(model, problem.x.to(device), problem.y.to(device))
    assert op.linearized == (device == "cpu")
    v = _operand(op.shape[0], 9).to(device)
    torch.testing.assert_close((op @ v).cpu(), problem.hessian @ v.cpu(), rtol=1e-10, atol=1e-12)
    problem.model.to("cpu")


@pytest.mark.parametrize("chunk_size", [1, 7, 13])
def test_chunked_equals_unchunked(problem, chunk_size):
    # uneven last chunks check the size-weighted mean of chunk means
    whole = HessianOperator(problem.model, problem.x, problem.y, chunk_size=10_000)
    chunked = HessianOperator(problem.model, problem.x, problem.y, chunk_size=chunk_size, block_size=2)
    v = _operand(whole.shape[0], 3)
    torch.testing.assert_close(chunked @ v, whole @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,size,expected", [(10, 3, [3, 3, 2, 2]), (5000, 512, [500] * 10), (1024, 512, [512, 512]),
                                             (7, 7, [7]), (1, 5, [1])])
def test_balanced_chunks_cover_the_data_in_near_equal_sizes(n, size, expected):
    # at most two chunk sizes: the linearized operator traces one program per size
    y = torch.arange(n)
    chunks = _balanced_chunks(y.double(), y, size)
    assert [len(yc) for _, yc in chunks] == expected
    assert torch.equal(torch.cat([yc for _, yc in chunks]), y)


@pytest.mark.filterwarnings("ignore:Attempted to insert a get_attr Node")  # torch's const folding
def test_linearized_products_equal_torch_func_linearize_bit_for_bit(cnn):
    """The traced-once, split program runs exactly what torch.func.linearize replays per chunk."""
    from torch.func import grad, linearize

    from minima.objective import frozen_copy, loss_at, unflatten

    op = HessianOperator(cnn.model, cnn.x, cnn.y, chunk_size=8, linearize=True)
    assert [len(yc) for _, yc in op.chunks] == [8, 8, 7, 7]  # two traced shapes
    like, model = params_of(cnn.model), frozen_copy(cnn.model)
    w = flatten(like)
    v = _operand(w.numel(), None)
    expected = torch.zeros_like(w)
    for xc, yc in op.chunks:
        tangent = linearize(grad(lambda u: loss_at(model, unflatten(u, like), xc, yc)), w)[1]
        expected = expected + (len(yc) / len(cnn.y)) * tangent(v)
    assert torch.equal(op @ v, expected)


def test_quadratic_with_known_hessian():
    # logits = W x with one sample: CE Hessian in W is (diag(p) - p p^T) kron x x^T
    model = torch.nn.Linear(3, 4, bias=False).double()
    model.weight.data = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([2])
    p = torch.softmax(model(x), dim=-1)[0].detach()
    expected = torch.kron(torch.diag(p) - torch.outer(p, p), torch.outer(x[0], x[0]))
    op = HessianOperator(model, x, y)
    eye = torch.eye(12, dtype=torch.float64)
    torch.testing.assert_close(op @ eye, expected, rtol=1e-12, atol=1e-14)


def test_given_params_override_the_model(mlp):
    shifted = {k: v + 0.1 for k, v in params_of(mlp.model).items()}
    op_model = HessianOperator(mlp.model, mlp.x, mlp.y)
    op_shift = HessianOperator(mlp.model, mlp.x, mlp.y, shifted)
    v = _operand(op_model.shape[0], None)
    assert not torch.allclose(op_model @ v, op_shift @ v)


def test_model_is_not_mutated(cnn):
    cnn.model.train()
    before = {k: v.clone() for k, v in cnn.model.state_dict().items()}
    op = HessianOperator(cnn.model, cnn.x, cnn.y, linearize=True)
    op @ _operand(op.shape[0], 2)
    assert cnn.model.training
    assert all(p.grad is None for p in cnn.model.parameters())
    for k, v in cnn.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_operand_is_not_mutated(mlp):
    op = HessianOperator(mlp.model, mlp.x, mlp.y)
    v = _operand(op.shape[0], 4)
    copy = v.clone()
    op @ v
    assert torch.equal(v, copy)


def test_shape_dtype_device_and_errors(mlp):
    op = HessianOperator(mlp.model, mlp.x, mlp.y)
    p = flatten(params_of(mlp.model)).numel()
    assert op.shape == (p, p)
    assert op.dtype == torch.float64 and op.device.type == "cpu"
    with pytest.raises(ValueError, match="operand"):
        op @ torch.zeros(p + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="chunk_size"):
        HessianOperator(mlp.model, mlp.x, mlp.y, chunk_size=0)


def test_out_of_memory_retries_in_smaller_pieces(cnn, monkeypatch):
    """A GPU out-of-memory error on a large chunk halves the block, then the chunks, and the
    product is still exact (simulated on CPU: the first two chunk evaluations raise)."""
    import warnings

    from minima.curvature import hvp as H

    op = H.HessianOperator(cnn.model, cnn.x, cnn.y, chunk_size=30, linearize=False, block_size=2)
    real = H.HessianOperator._chunk_loss
    failures = [2]

    def flaky(self, chunk):
        if failures[0] and len(chunk[1]) > 15:
            failures[0] -= 1
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, chunk)

    monkeypatch.setattr(H.HessianOperator, "_chunk_loss", flaky)
    v = torch.eye(cnn.hessian.shape[0], dtype=torch.float64)[:, :2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = op @ v
    assert torch.allclose(out, cnn.hessian @ v, rtol=1e-10, atol=1e-12)
    assert op.block_size == 1 and max(len(yc) for _, yc in op.chunks) == 15 and op.n_matvec == 2
    assert any("out of memory" in str(w.message) for w in caught)


def test_gradient_is_the_primal_pass_and_equals_autograd(problem):
    """The linearized operator's primal pass returns the gradient and the loss (what the
    curvature stage reports), equal to plain autograd; the vmapped path computes its own."""
    model = problem.model
    loss = torch.nn.functional.cross_entropy(model(problem.x), problem.y)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    for linearize in (True, False):
        op = HessianOperator(model, problem.x, problem.y, chunk_size=7, linearize=linearize)
        g, value = op.gradient()
        torch.testing.assert_close(g, expected, rtol=1e-10, atol=1e-13)
        assert value == pytest.approx(float(loss.detach()), rel=1e-12)
        assert op.n_matvec == 0
    assert all(p.grad is None for p in model.parameters())


def test_a_traced_program_serves_every_operator_of_that_structure(cnn):
    """Programs are traced once per process and structure: a second operator on other weights
    of the same network reuses them, and its products are those of its own weights."""
    from minima.curvature import hvp as H

    shifted = {k: v + 0.05 for k, v in params_of(cnn.model).items()}
    first = HessianOperator(cnn.model, cnn.x, cnn.y, chunk_size=10, linearize=True)
    v = _operand(first.shape[0], None)
    first @ v
    programs = dict(H._PROGRAMS)
    second = HessianOperator(cnn.model, cnn.x, cnn.y, shifted, chunk_size=10, linearize=True)
    plain = HessianOperator(cnn.model, cnn.x, cnn.y, shifted, chunk_size=10, linearize=False)
    torch.testing.assert_close(second @ v, plain @ v, rtol=1e-10, atol=1e-12)
    assert dict(H._PROGRAMS) == programs  # nothing traced again


def test_channels_last_parameters_get_their_own_program(lenet):
    """Strides are part of a program's key: a program traced on contiguous weights would view
    channels_last ones wrongly."""
    like = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in lenet.params.items()}
    x, y = lenet.x[:6], lenet.y[:6]
    contiguous = HessianOperator(lenet.model, x, y, lenet.params, linearize=True)
    last = HessianOperator(lenet.model, x, y, like, linearize=True)
    reference = HessianOperator(lenet.model, x, y, lenet.params, linearize=False)
    v = _operand(contiguous.shape[0], None)
    expected = reference @ v
    torch.testing.assert_close(contiguous @ v, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last @ v, expected, rtol=1e-10, atol=1e-12)


def test_models_with_buffers_are_traced_but_not_kept():
    """A buffer's value would be a constant of the trace: such programs are not memoized."""
    from minima.curvature import hvp as H

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).double().eval()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([0, 1] * 4)
    before = len(H._PROGRAMS)
    op = HessianOperator(model, x, y, linearize=True)
    exact = HessianOperator(model, x, y, linearize=False)
    v = _operand(op.shape[0], None)
    torch.testing.assert_close(op @ v, exact @ v, rtol=1e-10, atol=1e-12)
    assert H._structure_key(op._model, op._like, x, y) is None and len(H._PROGRAMS) == before


def test_the_replayed_program_has_no_zero_terms(lenet):
    """The zeros forward-mode AD adds (zeros_like(a) + b, the data's zero tangent through the first
    convolution) and the trace's shape checks are gone from both parts, and the products are the
    un-linearized operator's."""
    from minima.curvature import hvp as H

    x, y = lenet.x[:6], lenet.y[:6]
    op = HessianOperator(lenet.model, x, y, lenet.params, linearize=True)
    v = _operand(op.shape[0], None)
    torch.testing.assert_close(op @ v, HessianOperator(lenet.model, x, y, lenet.params, linearize=False) @ v,
                               rtol=1e-10, atol=1e-12)
    program = H._program(op._model, op._like, *op.chunks[0])
    aten = torch.ops.aten
    gone = {aten.zeros.default, aten.is_same_size.default, aten._has_same_storage_numel.default}
    for part, absent in ((program.primal, gone), (program.tangent, gone | {aten.zeros_like.default})):
        targets = {node.target for node in part.graph.nodes if node.op == "call_function"}
        assert not targets & absent  # (the primal's one zeros_like is nll_loss's scatter target)


# ---- programs stored between processes ------------------------------------------------------------

_IN_A_FRESH_PROCESS = """
import json, sys, torch
from minima.curvature.hvp import HessianOperator
from minima.models import build_model
g = torch.Generator().manual_seed(0)
x, y = torch.randn(24, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (24,), generator=g)
op = HessianOperator(build_model("modern", seed=0, dtype=torch.float64), x, y, chunk_size=12, linearize=True)
v = torch.randn(op.shape[0], generator=g, dtype=torch.float64)
print(json.dumps({"product": (op @ v).tolist()[:50], "gradient": op.gradient()[0].tolist()[:50],
                  "compiler_loaded": "torch._dynamo" in sys.modules}))
"""


def _fresh_process(store: Path) -> dict:
    env = {**os.environ, "MINIMA_PROGRAM_STORE": str(store), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _IN_A_FRESH_PROCESS], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_a_stored_program_serves_the_next_process_bit_for_bit(tmp_path):
    """The first process traces and stores the program; the next loads it, without importing
    torch's compiler stack, and its gradient and products are the first one's exactly."""
    store = tmp_path / "store"
    first = _fresh_process(store)
    assert first["compiler_loaded"] and len(list(store.glob("hvp-*.pkl"))) == 1
    second = _fresh_process(store)
    assert not second["compiler_loaded"]
    assert second["product"] == first["product"] and second["gradient"] == first["gradient"]


@pytest.fixture
def no_programs_in_memory(monkeypatch):
    from minima.curvature import hvp as H

    monkeypatch.setattr(H, "_PROGRAMS", OrderedDict())
    return H


def _product(problem, chunk_size=10):
    op = HessianOperator(problem.model, problem.x, problem.y, chunk_size=chunk_size, linearize=True)
    return op @ _operand(op.shape[0], None)


def test_a_corrupt_stored_program_is_traced_again_and_replaced(cnn, tmp_path, monkeypatch, no_programs_in_memory):
    H = no_programs_in_memory
    monkeypatch.setenv(H.PROGRAM_STORE_ENV, str(tmp_path))
    expected = _product(cnn)
    (stored,) = tmp_path.glob("hvp-*.pkl")
    for garbage in (b"", b"\x80\x04not a pickle", json.dumps({"n_params": 4}).encode()):
        stored.write_bytes(garbage)
        H._PROGRAMS.clear()
        torch.testing.assert_close(_product(cnn), expected, rtol=0, atol=0)
        assert isinstance(H._load(stored, len(list(cnn.model.parameters()))), H._Program)  # rewritten whole


@pytest.mark.parametrize("store", ["", "a file"])
def test_no_store_or_an_unwritable_one_only_means_tracing(cnn, tmp_path, monkeypatch, no_programs_in_memory, store):
    H = no_programs_in_memory
    if store:
        (tmp_path / "a file").write_text("in the way")
        store = str(tmp_path / "a file" / "programs")
    monkeypatch.setenv(H.PROGRAM_STORE_ENV, store)
    plain = HessianOperator(cnn.model, cnn.x, cnn.y, chunk_size=10, linearize=False)
    torch.testing.assert_close(_product(cnn), plain @ _operand(plain.shape[0], None), rtol=1e-10, atol=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == (["a file"] if store else [])


def test_the_stored_program_is_named_by_the_model_code_and_the_chunk(tmp_path, monkeypatch, no_programs_in_memory):
    """A change to the model's source file, or another chunk shape, names another file: a program
    traced from older code is never loaded for newer code."""
    H = no_programs_in_memory
    monkeypatch.setenv(H.PROGRAM_STORE_ENV, str(tmp_path / "store"))
    source = tmp_path / "net_under_test.py"
    source.write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    net = importlib.import_module("net_under_test").Net(3, 2).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1] * 3)
    like = params_of(net)
    key = H._structure_key(net, like, x, y)
    path = H._stored_path(net, key)
    assert path.parent == tmp_path / "store" and path == H._stored_path(net, key)
    assert H._stored_path(net, H._structure_key(net, like, x[:4], y[:4])) != path
    source.write_text(source.read_text() + "# edited\n")
    assert H._stored_path(net, key) != path
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    monkeypatch.delenv(H.PROGRAM_STORE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert H._stored_path(net, key).parent == tmp_path / "xdg" / "minima" / "programs"
