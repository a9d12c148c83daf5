"""Side-by-side timing of this engine, PyHessian 0.1 and curvlinops 3.0.1 on one model and data.

All three run in one process on the same model copy, data, device and dtype. Accuracy is
checked, not assumed: top-5 eigenvalues are compared with a float64 reference from our
Lanczos at relative residual 1e-8, and traces carry their standard errors.

- PyHessian (Yao et al. 2020): `hessian(model, criterion, data=(x, y))` builds the gradient
  graph once and reuses it for every product (its fastest mode); eigenvalues by deflated
  power iteration (its `tol` is the relative change between iterations, not an error bound),
  trace by Hutchinson, density by SLQ, which fails on torch >= 1.9 (`torch.eig` was removed):
  it is called and the error recorded. It sets eval() on the model and keeps .grad tensors,
  so it gets its own copy; it draws from the global RNG, so it runs under a forked RNG state.
- curvlinops (Dangel et al.): `HessianLinearOperator` (vmapped forward-over-reverse per
  batch), eigenvalues by SciPy's ARPACK `eigsh` on `to_scipy()`, trace by its
  `hutchinson_trace`, which returns no standard error.

The headline ratio is for "top-5 eigenvalues + trace at equal accuracy". Eigenvalues: ours
and curvlinops' are checked against the reference top-5; PyHessian runs at tol, then tol/10,
until its values are within tol of the nearest reference eigenvalue (its power
iteration ranks by |eigenvalue|, so a negative one can take a top-5 slot; the rows give both
errors), else its most accurate attempt counts and the row says so. Trace: ours stops once
its standard error is at most PyHessian's 100-probe Hutchinson standard error; curvlinops runs
the same 100-probe Hutchinson as PyHessian, hence the same accuracy. Every timing includes
setup (our linearization, PyHessian's gradient graph; PyHessian gets the whole set as one
batch, its fastest mode); the combined row counts each library's setup once, as a user
computing both (and `minima.curvature.measure`) does.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from minima.curvature.density import spectral_density
from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import EigenResult, LanczosRun, lanczos
from minima.curvature.trace import hutchinson

OURS = "minima"
PYHESSIAN = "PyHessian 0.1"
CURVLINOPS = "curvlinops 3.0.1"
COMBINED = "top-5 eigenvalues + trace at equal accuracy"


@dataclass(frozen=True)
class _Case:
    """What every row of one bench run shares."""

    model: nn.Module  # eval-mode copy with trainable parameters, on the device, in the bench dtype
    x: torch.Tensor
    y: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    seed: int
    top_k: int
    tol: float
    chunk_size: int

    def op(self, **kwargs: Any) -> HessianOperator:
        return HessianOperator(self.model, self.x, self.y, chunk_size=self.chunk_size, **kwargs)

    def generator(self, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1009 + stream)


def _row(work: str, implementation: str, seconds: float | None, note: str = "", **extra: Any) -> dict[str, Any]:
    return {"work": work, "implementation": implementation, "seconds": seconds, "ratio_vs_ours": None, "note": note, **extra}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@contextlib.contextmanager
def _section(name: str) -> Iterator[None]:
    """One stderr line per bench section, with its seconds: the CPU bench runs for minutes."""
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"bench: {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def _best(fn: Callable[[], Any], reps: int) -> float:
    fn()  # warm-up: first-call dispatch and allocation costs are not per-vector costs
    return min(_timed(fn)[1] for _ in range(reps))


@contextlib.contextmanager
def _foreign(seed: int, dtype: torch.dtype) -> Iterator[None]:
    """Run third-party code that uses the global RNG and default dtype without leaking state."""
    old = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(old)


def _rel_error(values: list[float], reference: tuple[float, ...]) -> float:
    got = sorted(values, reverse=True)[: len(reference)]
    return max(abs(a - b) / abs(b) for a, b in zip(got, reference))


class _Counting:
    """Counts columns through `@` for any operator (curvlinops has no counter of its own)."""

    def __init__(self, op: Any):
        self.op, self.n_matvec, self.shape = op, 0, op.shape

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        self.n_matvec += 1 if v.ndim == 1 else v.shape[1]
        return self.op @ v


@contextlib.contextmanager
def _pyhessian(case: _Case, timing: list[float] | None = None) -> Iterator[Any]:
    """PyHessian on its own model copy, under a forked RNG; seconds from construction to exit,
    then those of the construction alone (its retained gradient graph), go to `timing`.

    Its single-batch mode leaves .grad tensors that hold their own graph (a reference cycle
    that Python's collector cannot see), so they are dropped on exit.
    """
    from pyhessian import hessian

    model = frozen_copy_with_grad(case.model)
    with _foreign(case.seed, case.dtype), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
        start = time.perf_counter()
        built = start
        try:
            instance = hessian(model, nn.CrossEntropyLoss(), data=(case.x, case.y), cuda=case.device.type == "cuda")
            built = time.perf_counter()
            yield instance
        finally:
            if timing is not None:
                timing += [time.perf_counter() - start, built - start]
            for p in model.parameters():
                p.grad = None


def frozen_copy_with_grad(model: nn.Module) -> nn.Module:
    """An eval-mode copy with the model's own requires_grad flags (PyHessian differentiates the
    module itself)."""
    return copy.deepcopy(model).eval()


@contextlib.contextmanager
def _count_pyhessian_products() -> Iterator[list[int]]:
    import pyhessian  # noqa: F401  (the package re-exports the class under the submodule's name)

    module = sys.modules["pyhessian.hessian"]
    original, calls = module.hessian_vector_product, [0]

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return original(*args)

    module.hessian_vector_product = counted
    try:
        yield calls
    finally:
        module.hessian_vector_product = original


def _import_curvlinops() -> Any:
    with warnings.catch_warnings():
        # its dependency linear_operator scripts functions at import (torch.jit.script warns)
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
        import curvlinops
    return curvlinops


def _curvlinops(case: _Case) -> Any:
    HessianLinearOperator = _import_curvlinops().HessianLinearOperator
    clone = frozen_copy_with_grad(case.model)
    params = [p for p in clone.parameters() if p.requires_grad]
    c = case.chunk_size
    data = [(case.x[i : i + c], case.y[i : i + c]) for i in range(0, len(case.y), c)]
    return HessianLinearOperator(clone, nn.CrossEntropyLoss(), params, data, check_deterministic=False, num_data=len(case.y))


def _eigsh(op: Any, k: int, tol: float, generator: torch.Generator) -> tuple[list[float], int]:
    from scipy.sparse.linalg import LinearOperator, eigsh

    counting = _Counting(op)
    dtype = op.dtype
    device = op.device

    def matvec(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(v), dtype=dtype, device=device)
        return (counting @ t).detach().cpu().double().numpy()

    n = op.shape[0]
    scipy_op = LinearOperator((n, n), matvec=matvec, matmat=matvec, dtype=np.float64)
    v0 = torch.randn(n, generator=generator, dtype=torch.float64).numpy()
    values = eigsh(scipy_op, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return sorted(values.tolist(), reverse=True), counting.n_matvec


def bench_curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    seed: int,
    top_k: int = 5,
    tol: float = 1e-3,
    trace_probes: int = 100,
    density_probes: int = 5,
    density_steps: int = 60,
    chunk_size: int = 5000,
    block: int = 8,
    reps: int = 3,
) -> list[dict[str, Any]]:
    """Rows {work, implementation, seconds, ratio_vs_ours, note, ...}; see the module docstring."""
    device = torch.device(device)
    case = _Case(frozen_copy_with_grad(model).to(device=device, dtype=dtype), x.to(device=device, dtype=dtype),
                 y.to(device=device), device, dtype, seed, top_k, tol, chunk_size)
    with _section("Hessian-vector products"):
        rows = _hvp_rows(case, block, reps)
    with _section("float64 reference eigenvalues"):
        reference = _reference(case)
    rows.append(_row("reference top eigenvalues", f"{OURS} (float64, tol 1e-8)", None,
                     f"Lanczos, {reference.top.n_matvec} products, {reference.top.reason}; minimum {reference.bottom.values[0]:.6g}",
                     values=list(reference.top.values), min_eigenvalue=reference.bottom.values[0]))
    with _section(f"top-{top_k} eigenvalues"):
        eigen_rows, run, op = _eigen_rows(case, reference)
    with _section(f"trace, {trace_probes} probes"):
        trace_rows = _trace_rows(case, trace_probes, run, block)
    with _section("top eigenvalues + trace at equal accuracy"):
        rows += eigen_rows + trace_rows + _combined_rows(case, eigen_rows, trace_rows, run, op, trace_probes)
    with _section("spectral density"):
        rows += _density_rows(case, density_probes, density_steps)
    return _with_ratios(rows)


def _hvp_rows(case: _Case, block: int, reps: int) -> list[dict[str, Any]]:
    gen = case.generator(0)
    ours, plain = case.op(), case.op(linearize=False, block_size=block)
    n = ours.shape[0]
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(device=case.device, dtype=case.dtype)
    vb = torch.randn(n, block, generator=gen, dtype=torch.float64).to(device=case.device, dtype=case.dtype)
    setup = _timed(lambda: ours @ v)[1]  # includes the one-time linearization where enabled
    mode = "linearized" if ours.linearized else "jvp(grad)"
    single, blocked = "Hessian-vector product (per vector)", f"Hessian-vector product, block of {block} (per vector)"
    rows = [
        _row(single, OURS, _best(lambda: ours @ v, reps), f"{mode}, best of {reps}; first call {setup:.3g} s"),
        _row(blocked, OURS, _best(lambda: ours @ vb, reps) / block,
             f"{'linearized, a loop' if ours.linearized else f'vmapped blocks of {ours.block_size}'}, best of {reps}"),
        _row(single, f"{OURS} (jvp(grad), not linearized)", _best(lambda: plain @ v, reps), f"best of {reps}"),
        _row(blocked, f"{OURS} (vmapped jvp(grad))", _best(lambda: plain @ vb, reps) / block, f"vmap over {block} vectors, best of {reps}"),
        _row(single, "torch.autograd double-backward", _best(lambda: _double_backward(case, v), reps),
             f"forward + backward + backward per product, best of {reps}"),
    ]
    cl = _curvlinops(case)
    rows.append(_row(single, CURVLINOPS, _best(lambda: cl @ v, reps), f"best of {reps}"))
    rows.append(_row(blocked, CURVLINOPS, _best(lambda: cl @ vb, reps) / block, f"vmapped, best of {reps}"))
    from pyhessian.utils import hessian_vector_product

    timing: list[float] = []
    with _pyhessian(case, timing) as ph:
        vs = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in ph.params]), ph.params)]
        secs = _best(lambda: hessian_vector_product(ph.gradsH, ph.params, vs), reps)
    rows.append(_row(single, PYHESSIAN, secs, f"reuses its retained gradient graph (built in {timing[1]:.3g} s), best of {reps}"))
    return rows


def _double_backward(case: _Case, v: torch.Tensor) -> torch.Tensor:
    """The textbook HVP: grad of (grad L . v), recomputing forward and backward per product."""
    params = [p for p in case.model.parameters() if p.requires_grad]
    vs = v.split([p.numel() for p in params])
    out = [torch.zeros_like(p) for p in params]
    n = len(case.y)
    for i in range(0, n, case.chunk_size):
        xc, yc = case.x[i : i + case.chunk_size], case.y[i : i + case.chunk_size]
        g = torch.autograd.grad(nn.functional.cross_entropy(case.model(xc), yc), params, create_graph=True)
        dot = sum((gi * vi.view_as(gi)).sum() for gi, vi in zip(g, vs))
        for o, h in zip(out, torch.autograd.grad(dot, params)):
            o += h * (len(yc) / n)
    return torch.cat([o.reshape(-1) for o in out])


@dataclass(frozen=True)
class _Reference:
    top: EigenResult  # float64, relative residual 1e-8
    bottom: EigenResult  # float64, relative residual 1e-5: only used to recognize a negative eigenvalue


def _reference(case: _Case) -> _Reference:
    precise = frozen_copy_with_grad(case.model).double()
    op = HessianOperator(precise, case.x.double(), case.y, chunk_size=case.chunk_size)
    top = lanczos(op, case.top_k, tol=1e-8, max_iter=300, bottom=False, generator=case.generator(1)).top
    # the minimum only has to be good enough to recognize PyHessian's negative eigenvalue (tol 1e-3 checks)
    return _Reference(top, lanczos(op, 0, tol=1e-5, max_iter=200, bottom=True, generator=case.generator(7)).bottom)


def _matched_error(values: list[float], reference: _Reference) -> float:
    """Relative error of each value against the nearest reference eigenvalue (top-k or minimum).

    PyHessian's power iteration returns the largest |eigenvalue| first, so a negative one can
    take a top-k slot; this measure credits it for being right about the eigenvalue it found.
    """
    known = list(reference.top.values) + list(reference.bottom.values)
    return max(min(abs(v - r) / abs(r) for r in known) for v in values)


def _eigen_rows(case: _Case, reference: _Reference) -> tuple[list[dict[str, Any]], LanczosRun, HessianOperator]:
    work = f"top-{case.top_k} eigenvalues, rel. error <= {case.tol:g}"
    top = reference.top.values
    op = case.op()
    run, secs = _timed(lambda: lanczos(op, case.top_k, tol=case.tol, bottom=False, generator=case.generator(2)))
    rows = [_row(work, OURS, secs, f"Lanczos, {run.top.reason}", n_hvp=run.n_matvec,
                 rel_error=_rel_error(list(run.top.values), top), values=list(run.top.values))]
    for ph_tol in (case.tol, case.tol / 10):
        # its tol bounds the change between iterations, not the error: tighten until it is accurate
        timing: list[float] = []
        with _count_pyhessian_products() as calls, _pyhessian(case, timing) as ph:
            values, _ = ph.eigenvalues(maxIter=100, tol=ph_tol, top_n=case.top_k)
        err, matched = _rel_error(values, top), _matched_error(values, reference)
        rows.append(_row(work, f"{PYHESSIAN} (tol {ph_tol:g})", timing[0],
                         f"power iteration with deflation, largest |eigenvalue| first; rel. error {err:.2g} vs the top-"
                         f"{case.top_k}, {matched:.2g} vs the nearest eigenvalue",
                         n_hvp=calls[0], rel_error=err, rel_error_matched=matched, values=sorted(values, reverse=True),
                         setup_seconds=timing[1]))
        if matched <= case.tol:
            break
    (values, count), secs = _timed(lambda: _eigsh(_curvlinops(case), case.top_k, case.tol, case.generator(3)))
    rows.append(_row(work, CURVLINOPS, secs, "scipy eigsh (ARPACK), which='LA'", n_hvp=count,
                     rel_error=_rel_error(values, top), values=values))
    return rows, run, op


def _trace_rows(case: _Case, probes: int, run: LanczosRun, block: int) -> list[dict[str, Any]]:
    work = f"trace, {probes} probes"
    # each timing starts from a fresh operator: setup (linearization, PyHessian's graph) counts everywhere
    r, secs = _timed(lambda: hutchinson(case.op(), probes, generator=case.generator(4)))
    rows = [_row(work, f"{OURS} (hutchinson)", secs, r.reason, n_hvp=r.n_matvec, mean=r.mean, stderr=r.stderr)]
    r, secs = _timed(lambda: hutchinson(case.op(), probes, generator=case.generator(4), basis=run.basis, basis_trace=float(run.alphas.sum())))
    rows.append(_row(work, f"{OURS} (deflated by the Lanczos basis)", secs,
                     f"basis of the top-{case.top_k} run ({run.n_matvec} products, not counted here)", n_hvp=r.n_matvec,
                     mean=r.mean, stderr=r.stderr))
    timing: list[float] = []
    with _count_pyhessian_products() as calls, _pyhessian(case, timing) as ph:
        samples = ph.trace(maxIter=probes, tol=-math.inf)
    secs = timing[0]
    mean, stderr = float(np.mean(samples)), float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    rows.append(_row(work, PYHESSIAN, secs, "Hutchinson; stderr from its per-probe samples", n_hvp=calls[0], mean=mean, stderr=stderr,
                     setup_seconds=timing[1]))
    cl = _curvlinops(case)
    # its hutchinson_trace multiplies all probes as one vmapped block (100 copies of the
    # activations: out of memory at a few thousand samples), so it gets them in blocks
    sizes = [min(block, probes - i) for i in range(0, probes, block)]
    with _foreign(case.seed, case.dtype):
        value, secs = _timed(lambda: sum(float(_import_curvlinops().hutchinson_trace(cl, k)) * k for k in sizes) / probes)
    rows.append(_row(work, CURVLINOPS, secs, f"hutchinson_trace in blocks of {block} (no standard error returned)",
                     n_hvp=probes, mean=value, stderr=None))
    return rows


def _combined_rows(
    case: _Case, eigen: list[dict[str, Any]], traces: list[dict[str, Any]], run: LanczosRun, op: HessianOperator, probes: int
) -> list[dict[str, Any]]:
    """One task, as `minima.curvature.measure` does it: the trace reuses the operator (and its
    one-time linearization) of the eigenvalue run; PyHessian likewise is charged for one
    construction of its gradient graph, not two; curvlinops' operator has no setup to share."""
    ph_rows = [r for r in eigen if r["implementation"].startswith(PYHESSIAN)]
    # the first PyHessian tolerance whose eigenvalues are accurate (by the generous matched
    # measure), else its most accurate attempt
    ph_eigen = next((r for r in ph_rows if r["rel_error_matched"] <= case.tol), min(ph_rows, key=lambda r: r["rel_error_matched"]))
    ph_trace = next(r for r in traces if r["implementation"] == PYHESSIAN)
    ours_eigen = next(r for r in eigen if r["implementation"] == OURS)
    target = ph_trace["stderr"]
    trace, secs = _timed(lambda: hutchinson(op, probes, basis=run.basis, basis_trace=float(run.alphas.sum()), generator=case.generator(5),
                                                     target_stderr=target, block=2))
    note = (f"Lanczos (rel. error {ours_eigen['rel_error']:.2g}) + deflated trace {trace.mean:.4g} +- {trace.stderr:.2g} "
            f"({trace.n_probes} probes; target stderr {target:.2g} = PyHessian's), one operator")
    out = [_row(COMBINED, OURS, ours_eigen["seconds"] + secs, note, n_hvp=ours_eigen["n_hvp"] + trace.n_matvec)]
    out.append(_row(COMBINED, PYHESSIAN, ph_eigen["seconds"] + ph_trace["seconds"] - ph_trace["setup_seconds"],
                    f"{ph_eigen['implementation']} eigenvalues (rel. error {ph_eigen['rel_error_matched']:.2g} vs the nearest "
                    f"eigenvalue) + {ph_trace['work']}, one graph construction ({ph_trace['setup_seconds']:.2g} s)",
                    n_hvp=ph_eigen["n_hvp"] + ph_trace["n_hvp"]))
    cl_eigen = next(r for r in eigen if r["implementation"] == CURVLINOPS)
    cl_trace = next(r for r in traces if r["implementation"] == CURVLINOPS)
    out.append(_row(COMBINED, CURVLINOPS, cl_eigen["seconds"] + cl_trace["seconds"],
                    f"eigsh (rel. error {cl_eigen['rel_error']:.2g}) + {cl_trace['work']} (PyHessian's estimator)",
                    n_hvp=cl_eigen["n_hvp"] + cl_trace["n_hvp"]))
    return out


def _density_rows(case: _Case, probes: int, steps: int) -> list[dict[str, Any]]:
    work = f"spectral density, {probes} probes x {steps} steps"
    op = case.op()
    r, secs = _timed(lambda: spectral_density(op, n_probes=probes, n_steps=steps, generator=case.generator(6)))
    rows = [_row(work, OURS, secs, f"SLQ, sigma {r.sigma:.3g}", n_hvp=r.n_matvec)]
    timing: list[float] = []
    try:
        with _pyhessian(case, timing) as ph:
            ph.density(iter=steps, n_v=1)
        rows.append(_row(work, PYHESSIAN, timing[0], "ran (one probe)"))
    except Exception as exc:  # the documented failure: torch.eig no longer exists
        message = str(exc).splitlines()[0]
        rows.append(_row(work, PYHESSIAN, None, f"fails: {type(exc).__name__}: {message} (after {timing[0]:.3g} s)"))
    cl = _curvlinops(case)
    with _foreign(case.seed, case.dtype):
        _, secs = _timed(lambda: _import_curvlinops().lanczos_approximate_spectrum(cl, steps, num_repeats=probes))
    rows.append(_row(work, CURVLINOPS, secs, "lanczos_approximate_spectrum (Papyan 2020), with its eigsh boundary search"))
    return rows


def _with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ours = {r["work"]: r["seconds"] for r in rows if r["implementation"] in (OURS, f"{OURS} (hutchinson)")}
    for r in rows:
        base = ours.get(r["work"])
        if base and r["seconds"] is not None:
            r["ratio_vs_ours"] = r["seconds"] / base
    return rows


def bench_summary(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The headline ratios for top-5 eigenvalues + trace at equal accuracy (> 1: ours is faster)."""
    by = {r["implementation"]: r["ratio_vs_ours"] for r in rows if r["work"] == COMBINED}
    return {"pyhessian_over_ours": by.get(PYHESSIAN), "curvlinops_over_ours": by.get(CURVLINOPS)}


def bench_markdown(rows: list[dict[str, Any]], ratio_label: str = "theirs / ours") -> str:
    """A bench table as Markdown: work, implementation, seconds, ratio, note. Serves the curvature
    rows (seconds, ratio_vs_ours) and the training rows (seconds_per_model_epoch, ratio) alike."""
    lines = [f"| work | implementation | seconds | {ratio_label} | note |", "|---|---|---|---|---|"]
    for row in rows:
        seconds = row.get("seconds", row.get("seconds_per_model_epoch", row.get("seconds_per_1000_images")))
        seconds_text = f"{seconds:.4g}" if isinstance(seconds, (int, float)) else "-"
        ratio = row.get("ratio_vs_ours", row.get("ratio"))
        ratio_text = f"{ratio:.2f}x" if isinstance(ratio, (int, float)) else "-"
        note = str(row.get("note", "")).replace("|", "/")
        lines.append(f"| {row['work']} | {row['implementation']} | {seconds_text} | {ratio_text} | {note} |")
    return "\n".join(lines) + "\n"
