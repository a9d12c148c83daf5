"""Hessian-vector products of the mean training cross-entropy, as a matrix-free operator.

The Hessian is that of L(w) = (1/N) sum_i CE(f(x_i; w), y_i) over the whole curvature set,
model in eval mode, all trainable parameters, flattened in state_dict order (P entries).

Pearlmutter (1994), "Fast exact multiplication by the Hessian": H v is the directional
derivative of the gradient, H v = d/dt grad L(w + t v) at t = 0, i.e. forward-mode
differentiation (jvp) of the reverse-mode gradient ("forward-over-reverse"). It costs a
small constant times one gradient and is exact to rounding.

Chunks: with the data split into chunks c of n_c samples and chunk means L_c,
L = sum_c (n_c / N) L_c, so H v = sum_c (n_c / N) H_c v; only one chunk's activations are
alive at a time, which bounds memory.

Speed (LeNet-5 modern, 2k samples, float32, 2 shared CPU cores, per vector, best of 4
interleaved repeats): jvp(grad) 0.52 s; the same vmapped over blocks of 8, 0.39 s; plain
double-backward autograd 0.70 s; caching the linearization of grad at w
(`torch.func.linearize`: the forward and first backward are traced once, each product
replays only the tangent part) 0.24 s after a one-time trace. PyHessian's product on its
retained graph takes 0.45 s, curvlinops' 0.67 s (0.37 s in blocks of 8). Hence: the
linearized loop on CPU, vmapped blocks of `block_size` (8) otherwise (on GPU blocks were
measured about twice as fast per vector: docs/methods.md).

Linearization, done once per chunk shape rather than once per chunk: `torch.func.linearize`
traces the whole jvp(grad) program again for every chunk (the chunk is a constant of its
trace) and then constant-folds it, 0.7-0.9 s per chunk of 512 images. Here the program is
traced once with the data as an input (`make_fx`), split into the nodes that do not depend on
the vector v (forward, first backward: evaluated once per chunk, their outputs kept) and the
nodes that do (replayed per vector). Same operations, same results bit for bit; on 5,120
images (10 chunks, 2 CPU threads) the one-time cost fell from 6.9-9.0 s to 2.4 s and a product
stayed at 0.32 s.

The program is traced on the parameter tensors as separate inputs (not on slices of one flat
vector, which left ten zero-filled P-vectors and their sums in every product: 540 replayed nodes
per chunk against 380 now), with fake tensors (shapes only: 0.6 s against 1.0 s with real data,
the trace no longer computes a product), and returns the gradient and the loss beside H v: the
primal part then is one gradient pass per chunk, so the curvature stage gets the gradient norm
for free. Traced programs are kept per process, keyed by the model's structure and the chunk's
shape, dtype and device (`_PROGRAMS`): the next operator on a network of the same architecture
(the next run of a task, each of Dinh's rescalings) only re-evaluates the primal part. They are
also kept on disk (`program_store`: ~/.cache/minima/programs, or $MINIMA_PROGRAM_STORE), so
the next process loads a program in 0.04 s instead of tracing it. Measured
on 1,024 images, one thread, CPU seconds to build an operator and take its first product: 1.0 s
before (a real trace per operator), now 0.9 s the first time in a process and 0.25-0.33 s after.

Any object with `@` for [P] and [P, k] operands and `.shape` serves the estimators; a dense
torch tensor is one, this operator the other.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import operator
import os
import pickle
import sys
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable

import torch
from torch import fx, nn
from torch.func import grad, grad_and_value, jvp, vmap
from torch.fx.experimental.proxy_tensor import make_fx

from minima import objective
from minima.io import MinimaError, write_bytes
from minima.objective import CPU_CHUNK, Params, flatten, frozen_copy, loss_at, params_of, unflatten

Chunk = tuple[torch.Tensor, torch.Tensor]
LINEARIZE_MAX_SAMPLES = 16384
PROGRAM_CACHE_SIZE = 8  # traced (primal, tangent) pairs kept per process
PROGRAM_STORE_ENV = "MINIMA_PROGRAM_STORE"  # where traced programs outlive their process ("": nowhere)


@dataclass(frozen=True)
class _Program:
    """One chunk shape's traced H_c v, split: primal(*params, x, y) -> (*grads, loss, *kept) runs
    once per chunk; tangent(*kept, *vs) -> (*H_c v per parameter) once per vector and chunk."""

    primal: fx.GraphModule
    tangent: fx.GraphModule
    n_params: int


# Process-wide memo of traced programs. It holds no state that changes a result: a program is a
# pure function of its inputs, and the key names everything its trace depends on (the model's
# code and attributes, the parameters' and the chunk's shapes, dtypes and device).
_PROGRAMS: "OrderedDict[Hashable, _Program]" = OrderedDict()


class HessianOperator:
    """H of the mean cross-entropy over (x, y) at `params` (default: the model's own).

    `op @ v` for v of shape [P] and `op @ V` for V of shape [P, k]. `n_matvec` counts
    Hessian-vector products (one per column). The model is copied (eval mode) and never
    touched; x and y must already be on the device, x in the operator's dtype.

    `linearize=True` traces H_c v once per chunk shape, evaluates its v-independent part
    once per chunk and replays only the tangent part for each vector; it holds every chunk's
    intermediates, so the default enables it only on
    CPU and for at most `LINEARIZE_MAX_SAMPLES` samples. On CPU, chunks are at most
    `CPU_CHUNK` samples: activations of a few hundred images stay in cache, and products on
    2,048 LeNet-5 images took 0.24 s per vector in chunks of 512 against 0.34 s in one chunk
    (one thread, linearized; 256: 0.22 s but a slower trace).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        params: Params | None = None,
        *,
        chunk_size: int = 5000,
        block_size: int = 8,
        linearize: bool | None = None,
    ):
        if chunk_size < 1:
            raise ValueError("chunk_size: must be >= 1")
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"x and y must be non-empty and of equal length (got {len(x)}, {len(y)})")
        self._model = frozen_copy(model)
        self._like = {k: v.detach() for k, v in (params if params is not None else params_of(model)).items()}
        self._w = flatten(self._like)
        self.dtype = self._w.dtype
        self.device = self._w.device
        size = self._w.numel()
        self.shape = (size, size)
        self.n_samples = len(y)
        self.n_matvec = 0
        if self.device.type == "cpu":
            chunk_size = min(chunk_size, CPU_CHUNK)
        self.chunks = _balanced_chunks(x, y, chunk_size)
        self.block_size = block_size
        if self.block_size < 1:
            raise ValueError("block_size: must be >= 1")
        if linearize is None:
            linearize = self.device.type == "cpu" and len(y) <= LINEARIZE_MAX_SAMPLES
        self.linearized = linearize
        self._sizes = [p.numel() for p in self._like.values()]
        self._tangent_maps: list[Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]] | None = None
        self._gradient: tuple[torch.Tensor, float] | None = None

    def _chunk_loss(self, chunk: Chunk) -> Callable[[torch.Tensor], torch.Tensor]:
        xc, yc = chunk
        return lambda w: loss_at(self._model, unflatten(w, self._like), xc, yc)

    def _weights(self) -> list[float]:
        return [len(yc) / self.n_samples for _, yc in self.chunks]

    def _tangents(self) -> list[Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]]:
        if self._tangent_maps is None:
            params = tuple(self._like.values())
            maps, gradient, loss = [], torch.zeros_like(self._w), 0.0
            for weight, (xc, yc) in zip(self._weights(), self.chunks):
                program = _program(self._model, self._like, xc, yc)
                outputs = program.primal(*params, xc, yc)
                n = program.n_params
                gradient = gradient + weight * torch.cat([g.reshape(-1) for g in outputs[:n]])
                loss += weight * float(outputs[n])
                kept = outputs[n + 1 :]
                maps.append(lambda vs, tangent=program.tangent, kept=kept: tangent(*kept, *vs))
            self._tangent_maps, self._gradient = maps, (gradient, loss)
        return self._tangent_maps

    def gradient(self) -> tuple[torch.Tensor, float]:
        """The flat gradient of the mean loss at the operator's point, and the loss. Linearized,
        they are outputs of the primal pass the products need anyway (no extra pass); otherwise
        one grad_and_value per chunk."""
        if self.linearized:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
                self._tangents()
            return self._gradient
        total, loss = torch.zeros_like(self._w), 0.0
        for weight, chunk in zip(self._weights(), self.chunks):
            g, value = grad_and_value(self._chunk_loss(chunk))(self._w)
            total, loss = total + weight * g.detach(), loss + weight * float(value)
        return total, loss

    def _hvp(self, v: torch.Tensor) -> torch.Tensor:
        """One product (v of shape [P]); also the function vmapped over blocks."""
        out = torch.zeros_like(self._w)
        if self.linearized:
            vs = tuple(piece.view_as(p) for piece, p in zip(v.split(self._sizes), self._like.values()))
            for weight, tangent in zip(self._weights(), self._tangents()):
                out = out + weight * torch.cat([h.reshape(-1) for h in tangent(vs)])
            return out
        for weight, chunk in zip(self._weights(), self.chunks):
            out = out + weight * jvp(grad(self._chunk_loss(chunk)), (self._w,), (v,))[1]
        return out

    def _block(self, columns: torch.Tensor) -> torch.Tensor:
        if columns.shape[1] == 1 or self.linearized:
            # linearize's replay graph has no vmap rule for some views, so it always loops
            return torch.stack([self._hvp(columns[:, j]) for j in range(columns.shape[1])], dim=1)
        return vmap(self._hvp, in_dims=1, out_dims=1)(columns)

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim not in (1, 2) or v.shape[0] != self.shape[1]:
            raise ValueError(f"operand must have shape [{self.shape[1]}] or [{self.shape[1]}, k], got {tuple(v.shape)}")
        v = v.to(device=self.device, dtype=self.dtype)
        with torch.no_grad(), warnings.catch_warnings():
            # torch's first forward-mode call scripts its jvp decompositions and warns about
            # torch.jit.script's deprecation: torch-internal, nothing a user can act on
            warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
            while True:
                try:
                    result = self._product(v)
                    break
                except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError since 2.5; this name works from 2.4
                    self._shrink()
        self.n_matvec += 1 if v.ndim == 1 else v.shape[1]
        return result

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim == 1:
            return self._hvp(v)
        blocks = [self._block(v[:, j : j + self.block_size]) for j in range(0, v.shape[1], self.block_size)]
        return torch.cat(blocks, dim=1)

    def _shrink(self) -> None:
        """Out of memory: first fewer vectors at once, then chunks half as large (never fails a run
        that fits in smaller pieces; one chunk of one sample that does not fit is a real error)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.block_size > 1:
            self.block_size //= 2
        else:
            size = max(len(yc) for _, yc in self.chunks)
            if size <= 1:
                raise MinimaError(f"out of memory computing Hessian-vector products on {self.device}, even one sample at a time")
            x = torch.cat([xc for xc, _ in self.chunks])
            y = torch.cat([yc for _, yc in self.chunks])
            self.chunks = _balanced_chunks(x, y, (size + 1) // 2)
            self._tangent_maps, self._gradient = None, None
        warnings.warn(f"out of memory: Hessian-vector products now in blocks of {self.block_size}, "
                      f"chunks of {max(len(yc) for _, yc in self.chunks)} samples", RuntimeWarning, stacklevel=3)


def _balanced_chunks(x: torch.Tensor, y: torch.Tensor, chunk_size: int) -> list[Chunk]:
    """The fewest chunks of at most `chunk_size` samples, their sizes differing by at most one
    (so the linearized operator traces at most two chunk shapes)."""
    n_chunks = math.ceil(len(y) / chunk_size)
    small, extra = divmod(len(y), n_chunks)
    bounds = [0]
    for i in range(n_chunks):
        bounds.append(bounds[-1] + small + (1 if i < extra else 0))
    return [(x[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:])]


def _structure_key(model: nn.Module, like: Params, xc: torch.Tensor, yc: torch.Tensor) -> Hashable | None:
    """Everything a traced program depends on besides its inputs, or None where that cannot be
    stated (a model with buffers: their values would be constants of the trace)."""
    if any(True for _ in model.buffers()):
        return None
    try:
        attributes = tuple(
            (type(m).__qualname__, tuple(sorted((k, repr(v)) for k, v in vars(m).items() if not k.startswith("_"))))
            for m in model.modules()
        )
        # strides too: a program traced on contiguous tensors may view what a channels_last one cannot
        key = (type(model), repr(model), attributes,
               tuple((k, tuple(p.shape), p.stride(), p.dtype) for k, p in like.items()),
               tuple(xc.shape), xc.stride(), xc.dtype, tuple(yc.shape), yc.dtype, str(xc.device))
        hash(key)
    except TypeError:
        return None
    return key


def _program(model: nn.Module, like: Params, xc: torch.Tensor, yc: torch.Tensor) -> _Program:
    """The split program of H_c v for a chunk of this shape, traced once per process."""
    key = _structure_key(model, like, xc, yc)
    if key is not None and key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
        return _PROGRAMS[key]
    stored = _stored_path(model, key)
    program = _load(stored, len(like))
    if program is None:
        program = _trace(model, like, xc, yc, real=key is None)
        _save(stored, program)
    if key is not None:
        _PROGRAMS[key] = program
        while len(_PROGRAMS) > PROGRAM_CACHE_SIZE:
            _PROGRAMS.popitem(last=False)
    return program


def _trace(model: nn.Module, like: Params, xc: torch.Tensor, yc: torch.Tensor, *, real: bool) -> _Program:
    names, n = tuple(like), len(like)

    def chunk_hvp(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params, vs, x, y = args[:n], args[n : 2 * n], args[2 * n], args[2 * n + 1]

        def loss(*ps: torch.Tensor) -> torch.Tensor:
            return loss_at(model, dict(zip(names, ps)), x, y)

        (grads, value), (products, _) = jvp(grad_and_value(loss, argnums=tuple(range(n))), params, vs)
        return (*grads, value, *products)

    example = (*like.values(), *(torch.zeros_like(p) for p in like.values()), xc, yc)
    # shapes alone decide the program, so fake tensors trace it without the arithmetic; a model
    # with buffers is traced on real tensors (its buffers are real constants of the trace, which
    # fake tracing under jvp(grad) rejects). A failed trace is not retried: it can leave
    # forward-mode AD state behind, and a model whose control flow depends on data values was
    # never traceable here (a real trace would bake one chunk's branch into every chunk's program)
    traced = make_fx(chunk_hvp, tracing_mode="real" if real else "fake")(*example)
    _drop_zero_terms(traced.graph)
    traced.recompile()
    return _split_at_vector(traced, n)


# ---- traced programs kept on disk, so a task's process does not trace again -----------------------
# Tracing imports torch's compiler stack (make_fx loads torch._inductor, torch._dynamo and sympy:
# about 900 modules, 2 s of CPU) and traces (0.2-0.6 s): the first operator of every task process
# paid it, 0.23 s per run of the quick study (TASK_RUNS = 9). A stored program is a pickled pair of
# GraphModules (about 20 kB), unpickled in 0.04 s without those imports; its products are the traced
# program's, bit for bit (tests/curvature/test_hvp.py).


def program_store() -> Path | None:
    """The directory of stored programs: $MINIMA_PROGRAM_STORE ("" keeps none), else
    $XDG_CACHE_HOME/minima/programs, else ~/.cache/minima/programs."""
    given = os.environ.get(PROGRAM_STORE_ENV)
    if given is not None:
        return Path(given) if given else None
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "minima" / "programs"


def _stored_path(model: nn.Module, key: Hashable | None) -> Path | None:
    """The file of this key's program: a digest of everything a trace depends on across processes,
    the in-process key (model, attributes, shapes, strides, dtypes, device) written out, the torch
    and Python versions, and the source of the code traced (this module, the loss, and the file of
    every module class of the model that is not torch's own, whose code torch's version names).
    None when there is no store, no key, or a class without a source file."""
    store = program_store()
    if store is None or key is None:
        return None
    try:
        files = {Path(__file__), Path(objective.__file__)}
        files |= {Path(inspect.getsourcefile(type(m))) for m in model.modules() if not type(m).__module__.startswith("torch.")}
        digest = hashlib.sha256(f"{key!r}|{torch.__version__}|{sys.version}".encode())
        for path in sorted(files):
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    except (TypeError, OSError):
        return None
    return store / f"hvp-{digest.hexdigest()[:40]}.pkl"


def _load(path: Path | None, n_params: int) -> _Program | None:
    """The stored program, or None: absent, unreadable, or not a program of n_params parameters
    (a corrupt file is traced anew and overwritten)."""
    if path is None:
        return None
    try:
        program = pickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001  (a truncated or foreign pickle raises anything)
        return None
    return program if isinstance(program, _Program) and program.n_params == n_params else None


def _save(path: Path | None, program: _Program) -> None:
    """Store the program atomically; a store that cannot be written only means tracing again."""
    if path is None:
        return
    try:
        write_bytes(path, pickle.dumps(program))
    except (MinimaError, pickle.PicklingError, TypeError, AttributeError):
        pass


_aten = torch.ops.aten
_ZERO_MAKERS = {_aten.zeros.default, _aten._efficientzerotensor.default, _aten.zeros_like.default}
_ZERO_VIEWS = {_aten.expand.default, _aten.view.default, _aten.alias.default, _aten.t.default,
               _aten.unsqueeze.default, _aten.permute.default, _aten._unsafe_view.default}


def _zero_terms(graph: fx.Graph) -> set[fx.Node]:
    """Nodes whose value is zero by construction: zero tensors, their views, and linear maps
    (convolutions without bias, their backward passes, products) of a zero. They come from the
    bookkeeping of forward-mode AD, not from the Hessian: the data's tangent (always zero) sent
    through the first convolution and its weight gradient, and the `zeros_like(a) + b` with which
    the jvp of threshold_backward starts each sum."""
    zero: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        target, args = node.target, node.args
        if target in _ZERO_MAKERS:
            zero.add(node)
        elif target in _ZERO_VIEWS and args and args[0] in zero:
            zero.add(node)
        elif target is _aten.convolution.default and args[2] is None and (args[0] in zero or args[1] in zero):
            zero.add(node)
        elif target is _aten.mul.Tensor and any(a in zero for a in args[:2]):
            zero.add(node)
        elif target is operator.getitem and args[0].op == "call_function" and args[0].target is _aten.convolution_backward.default:
            grad_out, inputs, weight = args[0].args[:3]
            # outputs: d input (linear in grad_out and weight), d weight (grad_out and input), d bias (grad_out)
            factors = {0: (grad_out, weight), 1: (grad_out, inputs), 2: (grad_out,)}.get(args[1], ())
            if any(f in zero for f in factors):
                zero.add(node)
    return zero


def _same_layout(a: fx.Node, b: fx.Node) -> bool:
    va, vb = a.meta.get("val"), b.meta.get("val")
    if not isinstance(va, torch.Tensor) or not isinstance(vb, torch.Tensor):
        return False
    return va.shape == vb.shape and va.dtype == vb.dtype and va.device == vb.device and va.stride() == vb.stride()


def _drop_zero_terms(graph: fx.Graph) -> None:
    """Rewrite `zero + b` (and `b + zero`) to b where b already has the sum's shape, dtype and
    strides, then drop what nothing uses any more (the zeros, and the shape checks and meta-device
    copies the trace records). The sum is b exactly (but for the sign of a zero); per product and
    chunk of 512 images this saved the zero-filling and adding of four activation-sized tensors
    and a convolution of the data, and the primal pass a convolution and its backward."""
    zero = _zero_terms(graph)
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not _aten.add.Tensor or len(node.args) != 2 or node.kwargs:
            continue
        a, b = node.args
        keep = b if a in zero else a if b in zero else None
        if isinstance(keep, fx.Node) and keep not in zero and _same_layout(node, keep):
            node.replace_all_uses_with(keep)
            graph.erase_node(node)
    graph.eliminate_dead_code()
    graph.lint()


def _split_at_vector(traced: fx.GraphModule, n: int) -> _Program:
    """Split a traced (*params, *vs, x, y) -> (*grads, loss, *H v) program into
    primal(*params, x, y) -> (*grads, loss, *kept) and tangent(*kept, *vs) -> H v: the nodes that
    do not depend on the vector run once per chunk, the rest once per vector (what
    torch.func.linearize does, with the data an input, not a constant)."""
    graph_inputs = [node for node in traced.graph.nodes if node.op == "placeholder"]
    vs = graph_inputs[n : 2 * n]  # then the parameters before them, the data after
    output = next(node for node in traced.graph.nodes if node.op == "output")
    results = list(output.args[0])
    primal_results, tangent_results = results[: n + 1], results[n + 1 :]
    depends_on_v = set(vs)
    for node in traced.graph.nodes:
        if node.op != "output" and any(a in depends_on_v for a in node.all_input_nodes):
            depends_on_v.add(node)
    if any(r in depends_on_v for r in primal_results):
        raise AssertionError("the gradient and the loss must not depend on the vector")
    primal_nodes = [node for node in traced.graph.nodes if node not in depends_on_v and node.op != "output"]
    tangent_inputs = {r for r in tangent_results if isinstance(r, fx.Node)}
    kept = [node for node in primal_nodes if any(u in depends_on_v for u in node.users) or node in tangent_inputs]

    primal_graph, primal_env = fx.Graph(), {}
    for node in primal_nodes:
        primal_env[node] = primal_graph.node_copy(node, lambda a: primal_env[a])
    primal_graph.output(tuple(primal_env[r] for r in primal_results) + tuple(primal_env[k] for k in kept))

    tangent_graph = fx.Graph()
    tangent_env = {node: tangent_graph.placeholder(f"kept_{i}") for i, node in enumerate(kept)}
    for i, v in enumerate(vs):
        tangent_env[v] = tangent_graph.placeholder(f"v_{i}")
    for node in traced.graph.nodes:
        if node in depends_on_v and node not in tangent_env:
            tangent_env[node] = tangent_graph.node_copy(node, lambda a: tangent_env[a])
    tangent_graph.output(tuple(fx.map_arg(r, lambda a: tangent_env[a]) for r in tangent_results))
    return _Program(fx.GraphModule(traced, primal_graph), fx.GraphModule(traced, tangent_graph), n)
