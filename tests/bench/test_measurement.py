import os

import pytest
import torch

from minima.bench.measurement import CURRENT, PER_RUN, PREVIOUS, bench_measurement, measurement_markdown, measurement_summary
from minima.curvature import CurvatureSettings
from minima.landscape import LandscapeSettings
from minima.models import build_model
from minima.objective import flatten, params_of
from minima.reparam import balancing_scales, rescaling_factors
from minima.sharpness import SharpnessSettings


def test_both_schedules_cost_rows_on_a_tiny_lenet():
    """Every stage of one run appears for the previous and the current schedule, in core-seconds
    and gradients, with products; the caller's model is untouched; the headline compares them."""
    g = torch.Generator().manual_seed(0)
    model = build_model("modern", seed=0, dtype=torch.float64)
    x, y = torch.randn(24, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (24,), generator=g)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = params_of(model)
    curvature = CurvatureSettings(top_k=2, tol=1e-2, max_iter=12, trace_probes=6, trace_rel_stderr=0.5, trace_min_probes=3,
                                  density_probes=2, density_steps=6, density_points=50)
    sharpness = SharpnessSettings(epsilon_steps=2, adaptive_steps=2, average_samples=2, pacbayes_samples=2, pacbayes_iters=3,
                                  msharp_rhos_linf=(0.01,), msharp_rhos_l2=(0.5,), msharp_m=8, msharp_points=16, msharp_steps=2)
    landscape = LandscapeSettings(n_samples=12, points_1d=3, points_2d=2, interp_points=2)
    store = os.environ.get("MINIMA_PROGRAM_STORE")
    rows = bench_measurement(model, x, y, curvature=curvature, sharpness=sharpness, landscape=landscape, density_fraction=0.5,
                             rescaling=flatten(rescaling_factors(params, balancing_scales(params))), device="cpu",
                             dtype=torch.float64, reps=1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert os.environ.get("MINIMA_PROGRAM_STORE") == store  # its own stores were temporary
    setups = {r["implementation"] for r in rows if r["work"].startswith("operator setup")}
    assert setups == {"first operator in a process, traced", "first operator in a process, stored", "next operator (program kept)"}
    assert all({"work", "implementation", "seconds", "gradients", "products", "ratio_vs_ours", "note"} <= set(r) for r in rows)
    for schedule in (PREVIOUS, CURRENT):
        works = {r["work"] for r in rows if r["implementation"] == schedule}
        assert {"curvature: Lanczos top-k and lambda_min (per run)", "curvature: trace (per run)",
                "curvature: spectral density (per run)", "sharpness: pacbayes_flatness", PER_RUN} <= works
    unit = next(r for r in rows if r["work"].startswith("one loss and gradient"))
    assert unit["gradients"] == pytest.approx(1.0)
    density = {r["implementation"]: r["products"] for r in rows if r["work"] == "curvature: spectral density (per run)"}
    # the eigenvalue run is the density's first probe: one new probe of 6 steps instead of two
    assert density[PREVIOUS] == pytest.approx(0.5 * 12) and density[CURRENT] == pytest.approx(0.5 * 6)
    headline = measurement_summary(rows)
    assert headline["previous_core_seconds_per_run"] > 0 and headline["current_core_seconds_per_run"] > 0
    assert headline["previous_over_current"] == pytest.approx(headline["previous_core_seconds_per_run"] / headline["current_core_seconds_per_run"])
    assert measurement_markdown(rows).count("\n") == len(rows) + 2
