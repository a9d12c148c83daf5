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

Any object with `@` for [P] and [P, k] operands and `.shape` serves the estimators; a dense
torch tensor is one, this operator the other.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch import fx, nn
from torch.func import grad, jvp, vmap
from torch.fx.experimental.proxy_tensor import make_fx

from minima.io import MinimaError
from minima.objective import Params, flatten, frozen_copy, loss_at, params_of, unflatten

Chunk = tuple[torch.Tensor, torch.Tensor]
CPU_CHUNK = 512
LINEARIZE_MAX_SAMPLES = 16384


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
        self._tangent_maps: list[Callable[[torch.Tensor], torch.Tensor]] | None = None

    def _chunk_loss(self, chunk: Chunk) -> Callable[[torch.Tensor], torch.Tensor]:
        xc, yc = chunk
        return lambda w: loss_at(self._model, unflatten(w, self._like), xc, yc)

    def _weights(self) -> list[float]:
        return [len(yc) / self.n_samples for _, yc in self.chunks]

    def _tangents(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        if self._tangent_maps is None:
            def chunk_hvp(w: torch.Tensor, v: torch.Tensor, xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
                return jvp(grad(self._chunk_loss((xc, yc))), (w,), (v,))[1]

            programs: dict[int, tuple[fx.GraphModule, fx.GraphModule]] = {}  # balanced chunks: at most two sizes
            maps = []
            for xc, yc in self.chunks:
                if len(yc) not in programs:
                    traced = make_fx(chunk_hvp)(self._w, torch.zeros_like(self._w), xc, yc)
                    programs[len(yc)] = _split_at_vector(traced)
                primal, tangent = programs[len(yc)]
                kept = primal(self._w, xc, yc)
                maps.append(lambda v, tangent=tangent, kept=kept: tangent(*kept, v))
            self._tangent_maps = maps
        return self._tangent_maps

    def _hvp(self, v: torch.Tensor) -> torch.Tensor:
        """One product (v of shape [P]); also the function vmapped over blocks."""
        out = torch.zeros_like(self._w)
        if self.linearized:
            for weight, tangent in zip(self._weights(), self._tangents()):
                out = out + weight * tangent(v)
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
            self._tangent_maps = None
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


def _split_at_vector(traced: fx.GraphModule) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Split a traced (w, v, x, y) -> H v program into primal(w, x, y) -> kept values and
    tangent(*kept, v) -> H v: the nodes that do not depend on v run once per chunk, the rest
    once per vector (what torch.func.linearize does, with the data an input, not a constant)."""
    w, v, x, y = [n for n in traced.graph.nodes if n.op == "placeholder"]
    output = next(n for n in traced.graph.nodes if n.op == "output")
    depends_on_v = {v}
    for node in traced.graph.nodes:
        if node.op != "output" and any(a in depends_on_v for a in node.all_input_nodes):
            depends_on_v.add(node)
    primal_nodes = [n for n in traced.graph.nodes if n not in depends_on_v and n.op != "output"]
    kept = [n for n in primal_nodes if any(u in depends_on_v or u is output for u in n.users)]

    primal_graph, primal_env = fx.Graph(), {}
    for node in primal_nodes:
        primal_env[node] = primal_graph.node_copy(node, lambda a: primal_env[a])
    primal_graph.output(tuple(primal_env[n] for n in kept))

    tangent_graph = fx.Graph()
    tangent_env = {n: tangent_graph.placeholder(f"kept_{i}") for i, n in enumerate(kept)}
    tangent_env[v] = tangent_graph.placeholder("v")
    for node in traced.graph.nodes:
        if node in depends_on_v and node is not v:
            tangent_env[node] = tangent_graph.node_copy(node, lambda a: tangent_env[a])
    tangent_graph.output(fx.map_arg(output.args[0], lambda a: tangent_env[a]))
    return fx.GraphModule(traced, primal_graph), fx.GraphModule(traced, tangent_graph)
