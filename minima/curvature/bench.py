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

The headline ratio is for "top-5 eigenvalues + trace at equal accuracy": every
implementation reaches relative error <= tol on the top eigenvalues (a tighter PyHessian
tolerance is tried when its default misses), and our trace stops once its standard error is
at most PyHessian's 100-probe Hutchinson standard error (curvlinops runs the same 100-probe
Hutchinson, so it has the same accuracy).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import lanczos, top_eigenpairs
from minima.curvature.trace import deflated_hutchinson, hutchinson
from minima.curvature.density import spectral_density
from minima.objective import frozen_copy

OURS = "minima"
PYHESSIAN = "PyHessian 0.1"
CURVLINOPS = "curvlinops 3.0.1"
COMBINED = "top-5 eigenvalues + trace at equal accuracy"


def _row(work: str, implementation: str, seconds: float | None, note: str = "", **extra: Any) -> dict[str, Any]:
    return {"work": work, "implementation": implementation, "seconds": seconds, "ratio_vs_ours": None, "note": note, **extra}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


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


def _pyhessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> Any:
    from pyhessian import hessian

    return hessian(frozen_copy_with_grad(model), nn.CrossEntropyLoss(), data=(x, y), cuda=device.type == "cuda")


def frozen_copy_with_grad(model: nn.Module) -> nn.Module:
    """An eval-mode copy with trainable parameters (PyHessian differentiates the module itself)."""
    clone = frozen_copy(model)
    for name, p in clone.named_parameters():
        p.requires_grad_(dict(model.named_parameters())[name].requires_grad)
    return clone


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


def _curvlinops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk_size: int) -> Any:
    from curvlinops import HessianLinearOperator

    clone = frozen_copy_with_grad(model)
    params = [p for p in clone.parameters() if p.requires_grad]
    data = [(x[i : i + chunk_size], y[i : i + chunk_size]) for i in range(0, len(y), chunk_size)]
    return HessianLinearOperator(clone, nn.CrossEntropyLoss(), params, data, check_deterministic=False, num_data=len(y))


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
    local = frozen_copy_with_grad(model).to(device=device, dtype=dtype)
    x, y = x.to(device=device, dtype=dtype), y.to(device=device)
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []

    ours = HessianOperator(local, x, y, chunk_size=chunk_size)
    n = ours.shape[0]
    v = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    vb = torch.randn(n, block, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    setup = _timed(lambda: ours @ v)[1]  # includes the one-time linearization where enabled
    rows += _hvp_rows(local, x, y, ours, v, vb, chunk_size, seed, dtype, device, reps, setup)

    reference = _reference(local, x, y, top_k, chunk_size, seed)
    rows.append(_row("reference top eigenvalues", f"{OURS} (float64, tol 1e-8)", None,
                     f"Lanczos, {reference.n_matvec} products, {reference.reason}", values=list(reference.values)))
    rows += _eigen_rows(local, x, y, top_k, tol, reference.values, chunk_size, seed, dtype, device)
    rows += _trace_rows(local, x, y, trace_probes, chunk_size, seed, dtype, device)
    rows += _combined_rows(local, x, y, rows, top_k, tol, reference.values, chunk_size, seed)
    rows += _density_rows(local, x, y, density_probes, density_steps, chunk_size, seed, dtype, device)
    return _with_ratios(rows)


def _hvp_rows(local, x, y, ours, v, vb, chunk_size, seed, dtype, device, reps, setup) -> list[dict[str, Any]]:
    k = vb.shape[1]
    mode = "linearized" if ours.linearized else "jvp(grad)"
    rows = [
        _row("Hessian-vector product (per vector)", OURS, _best(lambda: ours @ v, reps),
             f"{mode}, best of {reps}; first call {setup:.3g} s"),
        _row(f"Hessian-vector product, block of {k} (per vector)", OURS, _best(lambda: ours @ vb, reps) / k,
             f"{mode}, block_size {ours.block_size}, best of {reps}"),
    ]
    plain = HessianOperator(local, x, y, chunk_size=chunk_size, linearize=False, block_size=k)
    rows.append(_row(f"Hessian-vector product, block of {k} (per vector)", f"{OURS} (vmapped jvp(grad))",
                     _best(lambda: plain @ vb, reps) / k, f"vmap over {k} vectors, best of {reps}"))
    rows.append(_row("Hessian-vector product (per vector)", f"{OURS} (jvp(grad), not linearized)",
                     _best(lambda: plain @ v, reps), f"best of {reps}"))
    rows.append(_row("Hessian-vector product (per vector)", "torch.autograd double-backward",
                     _best(lambda: _double_backward(local, x, y, v, chunk_size), reps), f"forward + backward per product, best of {reps}"))
    cl = _curvlinops(local, x, y, chunk_size)
    rows.append(_row("Hessian-vector product (per vector)", CURVLINOPS, _best(lambda: cl @ v, reps), f"best of {reps}"))
    rows.append(_row(f"Hessian-vector product, block of {k} (per vector)", CURVLINOPS, _best(lambda: cl @ vb, reps) / k,
                     f"vmapped, best of {reps}"))
    if len(y) <= chunk_size:
        with _foreign(seed, dtype):
            ph, built = _timed(lambda: _pyhessian(local, x, y, device))
            vs = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in ph.params]), ph.params)]
            from pyhessian.utils import hessian_vector_product

            secs = _best(lambda: hessian_vector_product(ph.gradsH, ph.params, vs), reps)
        rows.append(_row("Hessian-vector product (per vector)", PYHESSIAN, secs,
                         f"reuses its retained gradient graph (built in {built:.3g} s), best of {reps}"))
    return rows


def _double_backward(local: nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, chunk_size: int) -> torch.Tensor:
    params = [p for p in local.parameters() if p.requires_grad]
    vs = v.split([p.numel() for p in params])
    out = [torch.zeros_like(p) for p in params]
    for i in range(0, len(y), chunk_size):
        xc, yc = x[i : i + chunk_size], y[i : i + chunk_size]
        loss = nn.functional.cross_entropy(local(xc), yc)
        g = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((gi * vi.view_as(gi)).sum() for gi, vi in zip(g, vs))
        for o, h in zip(out, torch.autograd.grad(dot, params)):
            o += h * (len(yc) / len(y))
    return torch.cat([o.reshape(-1) for o in out])


def _reference(local, x, y, top_k, chunk_size, seed):
    precise = frozen_copy_with_grad(local).double()
    op = HessianOperator(precise, x.double(), y, chunk_size=chunk_size)
    return top_eigenpairs(op, top_k, tol=1e-8, max_iter=300, generator=torch.Generator().manual_seed(seed + 1))


def _eigen_rows(local, x, y, top_k, tol, reference, chunk_size, seed, dtype, device) -> list[dict[str, Any]]:
    work = f"top-{top_k} eigenvalues, rel. error <= {tol:g}"
    rows = []
    op = HessianOperator(local, x, y, chunk_size=chunk_size)
    result, secs = _timed(lambda: top_eigenpairs(op, top_k, tol=tol, generator=torch.Generator().manual_seed(seed + 2)))
    rows.append(_row(work, OURS, secs, f"Lanczos, {result.reason}", n_hvp=result.n_matvec,
                     rel_error=_rel_error(list(result.values), reference), values=list(result.values)))
    for ph_tol in (tol, tol / 10):
        with _foreign(seed, dtype), _count_pyhessian_products() as calls:
            (values, _), secs = _timed(lambda: _pyhessian(local, x, y, device).eigenvalues(maxIter=100, tol=ph_tol, top_n=top_k))
        err = _rel_error(values, reference)
        rows.append(_row(work, f"{PYHESSIAN} (tol {ph_tol:g})", secs,
                         f"power iteration with deflation; reached rel. error {err:.2g}", n_hvp=calls[0],
                         rel_error=err, values=sorted(values, reverse=True)))
        if err <= tol:
            break
    cl = _curvlinops(local, x, y, chunk_size)
    (values, count), secs = _timed(lambda: _eigsh(cl, top_k, tol, torch.Generator().manual_seed(seed + 3)))
    rows.append(_row(work, CURVLINOPS, secs, "scipy eigsh (ARPACK), which='LA'", n_hvp=count,
                     rel_error=_rel_error(values, reference), values=values))
    return rows


def _trace_rows(local, x, y, probes, chunk_size, seed, dtype, device) -> list[dict[str, Any]]:
    work = f"trace, {probes} probes"
    rows = []
    op = HessianOperator(local, x, y, chunk_size=chunk_size)
    r, secs = _timed(lambda: hutchinson(op, probes, generator=torch.Generator().manual_seed(seed + 4)))
    rows.append(_row(work, f"{OURS} (hutchinson)", secs, r.reason, n_hvp=r.n_matvec, mean=r.mean, stderr=r.stderr))
    run = lanczos(op, 5, tol=1e-3, bottom=False, generator=torch.Generator().manual_seed(seed + 2))
    r, secs = _timed(lambda: deflated_hutchinson(op, run.basis, float(run.alphas.sum()), probes,
                                                 generator=torch.Generator().manual_seed(seed + 4)))
    rows.append(_row(work, f"{OURS} (deflated by the Lanczos basis)", secs,
                     f"the basis of the top-5 run ({run.n_matvec} products) is not counted here", n_hvp=r.n_matvec,
                     mean=r.mean, stderr=r.stderr))
    with _foreign(seed, dtype), _count_pyhessian_products() as calls:
        samples, secs = _timed(lambda: _pyhessian(local, x, y, device).trace(maxIter=probes, tol=-math.inf))
    mean, stderr = float(np.mean(samples)), float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    rows.append(_row(work, PYHESSIAN, secs, "Hutchinson; stderr from its per-probe samples", n_hvp=calls[0], mean=mean, stderr=stderr))
    from curvlinops import hutchinson_trace

    cl = _curvlinops(local, x, y, chunk_size)
    with _foreign(seed, dtype):
        value, secs = _timed(lambda: float(hutchinson_trace(cl, probes)))
    rows.append(_row(work, CURVLINOPS, secs, "hutchinson_trace (no standard error returned)", n_hvp=probes, mean=value, stderr=None))
    return rows


def _combined_rows(local, x, y, rows, top_k, tol, reference, chunk_size, seed) -> list[dict[str, Any]]:
    eigen = [r for r in rows if r["work"].startswith(f"top-{top_k} eigenvalues")]
    traces = [r for r in rows if r["work"].startswith("trace")]
    ph_rows = [r for r in eigen if r["implementation"].startswith(PYHESSIAN)]
    # the first PyHessian tolerance that reached the accuracy, else its most accurate attempt
    ph_eigen = next((r for r in ph_rows if r["rel_error"] <= tol), ph_rows[-1])
    ph_trace = next(r for r in traces if r["implementation"] == PYHESSIAN)
    target = ph_trace["stderr"]

    op = HessianOperator(local, x, y, chunk_size=chunk_size)

    def ours_combined():
        run = lanczos(op, top_k, tol=tol, bottom=False, generator=torch.Generator().manual_seed(seed + 2))
        trace = deflated_hutchinson(op, run.basis, float(run.alphas.sum()), 100, generator=torch.Generator().manual_seed(seed + 5),
                                    target_stderr=target, block=2, method="hutchinson deflated by the Lanczos basis")
        return run, trace

    (run, trace), secs = _timed(ours_combined)
    note = (f"Lanczos rel. error {_rel_error(list(run.top.values), reference):.2g}; trace {trace.mean:.4g} +- {trace.stderr:.2g} "
            f"({trace.n_probes} probes, target stderr {target:.2g} = PyHessian's)")
    out = [_row(COMBINED, OURS, secs, note, n_hvp=op.n_matvec)]
    out.append(_row(COMBINED, PYHESSIAN, ph_eigen["seconds"] + ph_trace["seconds"],
                    f"{ph_eigen['implementation']} eigenvalues (rel. error {ph_eigen['rel_error']:.2g}) + {ph_trace['work']}",
                    n_hvp=ph_eigen["n_hvp"] + ph_trace["n_hvp"]))
    cl_eigen = next(r for r in eigen if r["implementation"] == CURVLINOPS)
    cl_trace = next(r for r in traces if r["implementation"] == CURVLINOPS)
    out.append(_row(COMBINED, CURVLINOPS, cl_eigen["seconds"] + cl_trace["seconds"],
                    f"eigsh (rel. error {cl_eigen['rel_error']:.2g}) + {cl_trace['work']} (same estimator as PyHessian's)",
                    n_hvp=cl_eigen["n_hvp"] + cl_trace["n_hvp"]))
    return out


def _density_rows(local, x, y, probes, steps, chunk_size, seed, dtype, device) -> list[dict[str, Any]]:
    work = f"spectral density, {probes} probes x {steps} steps"
    op = HessianOperator(local, x, y, chunk_size=chunk_size)
    r, secs = _timed(lambda: spectral_density(op, n_probes=probes, n_steps=steps, generator=torch.Generator().manual_seed(seed + 6)))
    rows = [_row(work, OURS, secs, f"SLQ, sigma {r.sigma:.3g}", n_hvp=r.n_matvec)]
    start = time.perf_counter()
    try:
        with _foreign(seed, dtype):
            _pyhessian(local, x, y, device).density(iter=steps, n_v=1)
        rows.append(_row(work, PYHESSIAN, time.perf_counter() - start, "ran (one probe)"))
    except Exception as exc:  # the documented failure: torch.eig no longer exists
        rows.append(_row(work, PYHESSIAN, None, f"fails: {type(exc).__name__}: {exc} (after {time.perf_counter() - start:.3g} s)"))
    from curvlinops import lanczos_approximate_spectrum

    cl = _curvlinops(local, x, y, chunk_size)
    with _foreign(seed, dtype):
        _, secs = _timed(lambda: lanczos_approximate_spectrum(cl, steps, num_repeats=probes))
    rows.append(_row(work, CURVLINOPS, secs, "lanczos_approximate_spectrum (Papyan 2020), includes its eigsh boundary search"))
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


def bench_markdown(rows: list[dict[str, Any]]) -> str:
    """The bench table as Markdown: work, implementation, seconds, ratio, note."""
    lines = ["| work | implementation | seconds | ratio vs ours | note |", "|---|---|---|---|---|"]
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.3g}"
        ratio = "-" if r["ratio_vs_ours"] is None else f"{r['ratio_vs_ours']:.2f}"
        lines.append(f"| {r['work']} | {r['implementation']} | {secs} | {ratio} | {r['note']} |")
    return "\n".join(lines) + "\n"
