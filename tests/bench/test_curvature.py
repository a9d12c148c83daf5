import math

import numpy as np
import pytest
import torch

from minima.bench.curvature import (COMBINED, CURVLINOPS, OURS, PYHESSIAN, _Case, _pyhessian, bench_curvature,
                                    bench_markdown, bench_summary, frozen_copy_with_grad)
from minima.curvature.hvp import HessianOperator
from minima.curvature.lanczos import lanczos
from minima.curvature.trace import hutchinson
from minima.models import build_model


@pytest.mark.oracle
def test_agrees_with_pyhessian_on_a_tiny_lenet():
    g = torch.Generator().manual_seed(0)
    model = build_model("modern", seed=0, dtype=torch.float64)
    x = torch.randn(64, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=g)
    op = HessianOperator(model, x, y)
    run = lanczos(op, 1, tol=1e-6, bottom=False, generator=torch.Generator().manual_seed(1))
    ours = hutchinson(op, 30, generator=torch.Generator().manual_seed(2), basis=run.basis, basis_trace=float(run.alphas.sum()))
    with _pyhessian(_Case(frozen_copy_with_grad(model), x, y, torch.device("cpu"), torch.float64, 0, 1, 1e-3, 5000)) as ph:
        (top,), _ = ph.eigenvalues(maxIter=200, tol=1e-5, top_n=1)
        samples = ph.trace(maxIter=60, tol=-math.inf)
    assert run.top.values[0] == pytest.approx(top, rel=0.01)
    ph_mean, ph_stderr = float(np.mean(samples)), float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    assert abs(ours.mean - ph_mean) <= 3 * math.hypot(ours.stderr, ph_stderr)
    assert model.training  # PyHessian got a copy: our model kept its mode


@pytest.mark.oracle
def test_bench_rows_on_a_tiny_network(cnn):
    before = {k: v.clone() for k, v in cnn.model.state_dict().items()}
    rows = bench_curvature(cnn.model, cnn.x, cnn.y, device="cpu", dtype=torch.float64, seed=0, top_k=2, trace_probes=12,
                           density_probes=2, density_steps=6, block=3, reps=1)
    assert all(torch.equal(v, before[k]) for k, v in cnn.model.state_dict().items())
    assert all({"work", "implementation", "seconds", "ratio_vs_ours", "note"} <= set(r) for r in rows)
    impls = {r["implementation"] for r in rows}
    assert {OURS, CURVLINOPS, PYHESSIAN} <= impls
    eigen = [r for r in rows if r["work"].startswith("top-2 eigenvalues")]
    ours = next(r for r in eigen if r["implementation"] == OURS)
    assert ours["rel_error"] <= 1e-3 and ours["ratio_vs_ours"] == pytest.approx(1.0)
    assert next(r for r in eigen if r["implementation"] == CURVLINOPS)["rel_error"] <= 1e-3
    density = [r for r in rows if r["work"].startswith("spectral density") and r["implementation"] == PYHESSIAN]
    assert density[0]["note"].startswith("fails:") and "eig" in density[0]["note"]
    summary = bench_summary(rows)
    assert summary["pyhessian_over_ours"] > 0 and summary["curvlinops_over_ours"] > 0
    assert [r for r in rows if r["work"] == COMBINED]
    table = bench_markdown(rows)
    assert table.count("\n") == len(rows) + 2
