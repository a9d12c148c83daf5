"""Which figures the report has, and when each can be drawn.

FIGURES maps a figure's name (its file stem and its key in the templates) to its draw function
`(summary) -> Figure` and a `need` function: None when the summary has the figure's data,
else the reason it is skipped, which the report prints in the figure's place.
"""

from __future__ import annotations

from typing import Callable

from matplotlib.figure import Figure

from minima.schema import Summary
from report.figures import landscape, optimizers, results, training

Need = Callable[[Summary], "str | None"]
Draw = Callable[[Summary], Figure]


def _need_claims(s: Summary) -> str | None:
    return None if s.claims else "no published claim was tested"


def _need_scatter(s: Summary) -> str | None:
    n = sum(r.value("generalization_gap") is not None for r in s.converged_runs())
    if not results.scatter_measures(s):
        return "the summary has no Hessian or sharpness measure"
    return None if n >= 3 else f"only {n} converged runs have a generalization gap (three are needed)"


def _need_replication(s: Summary) -> str | None:
    if s.replication is None:
        return "this profile runs one dataset"
    return None if results.replication_measures(s) else "the summary has no Hessian or sharpness measure"


def _need_psi(s: Summary) -> str | None:
    if not s.design.axes:
        return "the grid varies no axis, so there is no granulated coefficient"
    found = any(c.psi_mean is not None for c in s.correlations)
    return None if found else "no group of converged runs differs in one axis only"


def _need_values(quantities: Callable[[Summary], list[str]], what: str) -> Need:
    def check(s: Summary) -> str | None:
        qs = quantities(s)
        found = any(r.value(q) is not None for r in s.ok_runs() for q in qs)
        return None if found else f"no run has {what}"
    return check


def _need_layer_norms(s: Summary) -> str | None:
    found = any(stat.mean is not None for a in s.aggregates for stat in a.layer_norms.values())
    return None if found else "no converged run has per-layer weight norms"


def _need_density(s: Summary) -> str | None:
    return None if landscape.density_runs(s) else "no spectral density was computed"


def _need_landscape(*keys: str) -> Need:
    def check(s: Summary) -> str | None:
        found = any(landscape.runs_with_slice(s, key) for key in keys)
        return None if found else "this profile computes no such loss landscape"
    return check


def _need_interpolation(s: Summary) -> str | None:
    part = s.interpolation
    if part and part.alphas and part.loss and part.accuracy:
        return None
    return "this profile computes no interpolation between minima"


def _need_training(s: Summary) -> str | None:
    return None if training.loss_runs(s) else "the summary has no per-epoch full-training-set loss"


def _need_dinh(s: Summary) -> str | None:
    if s.dinh_info.applicable and s.dinh:
        return None
    note = s.dinh_info.note
    return f"the rescaling experiment was not run: {note}" if note else "the rescaling experiment was not run"


FIGURES: dict[str, tuple[Draw, Need]] = {
    "claims": (results.claims, _need_claims),
    "correlation_scatter": (results.correlation_scatter, _need_scatter),
    "psi_heatmap": (results.psi_heatmap, _need_psi),
    "replication_scatter": (results.replication_scatter, _need_replication),
    "curvature_by_optimizer": (optimizers.curvature_by_optimizer,
                               _need_values(optimizers.curvature_quantities, "curvature")),
    "sharpness_by_optimizer": (optimizers.sharpness_by_optimizer,
                               _need_values(lambda s: s.measures_of("sharpness"), "sharpness measures")),
    "layer_norms": (optimizers.layer_norms, _need_layer_norms),
    "spectral_densities": (landscape.spectral_densities, _need_density),
    "landscape_1d": (landscape.landscape_1d, _need_landscape("eigen_1d", "eigen_normalized_1d", "random_1d")),
    "landscape_2d_eigen": (landscape.landscape_2d_eigen, _need_landscape("eigen_2d")),
    "landscape_2d_random": (landscape.landscape_2d_random, _need_landscape("random_2d")),
    "interpolation": (landscape.interpolation, _need_interpolation),
    "dinh": (training.dinh, _need_dinh),
    "training": (training.training, _need_training),
}
