"""Per-optimizer figures: curvature and sharpness of every run, per-layer weight norms."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from report import facts
from report.figures import common
from report.figures.rcparams import TEXTWIDTH

Summary = Mapping[str, Any]
CURVATURE = ("gradient_norm",)  # shown beside the Hessian measures


def curvature_quantities(summary: Summary) -> list[str]:
    return [*facts.measures(summary, "hessian"), *CURVATURE]


def _strip(ax, summary: Summary, quantity: str) -> None:
    """Points per run (filled: converged; hollow: capped) and a black bar at the optimizer's
    mean over its converged runs, as the summary's aggregates give it."""
    opts = facts.optimizers(summary)
    shown = []
    for x, opt in enumerate(opts):
        runs = [r for r in facts.ok_runs(summary) if r["optimizer"] == opt and facts.value(r, quantity) is not None]
        if not runs:
            continue
        offsets = np.linspace(-0.18, 0.18, len(runs)) if len(runs) > 1 else np.zeros(1)
        colour, marker = common.styles(summary)[opt]
        for offset, run in zip(offsets, runs):
            filled = facts.converged(run)
            ax.scatter([x + offset], [facts.value(run, quantity)], marker=marker, s=14, zorder=3,
                       color=colour if filled else "none", edgecolors=colour, linewidths=0 if filled else 0.8)
            shown.append(facts.value(run, quantity))
        mean = (facts.get_path(facts.aggregate(summary, opt), "metrics", quantity) or {}).get("mean")
        if mean is not None:
            ax.hlines(mean, x - 0.3, x + 0.3, color="black", linewidth=1.2, zorder=4)
    if common.wants_log(shown):
        common.log(ax)
    ax.set_xticks(range(len(opts)), [common.opt_label(o) for o in opts], rotation=35, ha="right")
    ax.grid(axis="x", visible=False)
    ax.set_title(common.qlabel(summary, quantity))


def _strips(summary: Summary, quantities: list[str], ncols: int, height: float) -> Figure:
    fig, axes = common.grid(len(quantities), ncols, height)
    for ax, quantity in zip(axes, quantities):
        _strip(ax, summary, quantity)
    common.legend(fig, [
        Line2D([], [], color="0.3", marker="o", linestyle="none", label="converged run"),
        Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none", label="capped run"),
        Line2D([], [], color="black", linewidth=1.2, label="mean over converged runs"),
    ])
    return fig


def curvature_by_optimizer(summary: Summary) -> Figure:
    quantities = curvature_quantities(summary)
    return _strips(summary, quantities, len(quantities), 2.3)


def sharpness_by_optimizer(summary: Summary) -> Figure:
    return _strips(summary, facts.measures(summary, "sharpness"), 3, 2.1)


def layer_norms(summary: Summary) -> Figure:
    """Per-layer weight norm per optimizer: mean and standard deviation over converged runs."""
    aggs = [a for o in facts.optimizers(summary) if (a := facts.aggregate(summary, o)) is not None]
    layers = list(dict.fromkeys(k for a in aggs for k in a["layer_norms"]))
    fig = Figure(figsize=(TEXTWIDTH, 2.2))
    ax = fig.subplots()
    width = 0.8 / max(len(aggs), 1)
    for j, agg in enumerate(aggs):
        stats = [agg["layer_norms"].get(layer) or {} for layer in layers]
        means = [s.get("mean") if s.get("mean") is not None else np.nan for s in stats]
        errors = [s.get("std") if s.get("std") is not None else np.nan for s in stats]
        positions = np.arange(len(layers)) - 0.4 + width * (j + 0.5)
        ax.bar(positions, means, width, yerr=errors, color=common.colour(summary, agg["optimizer"]),
               error_kw={"elinewidth": 0.7, "capsize": 1.5}, label=common.opt_label(agg["optimizer"]))
    ax.set_xticks(range(len(layers)), layers)
    ax.set_ylabel(r"weight norm $\|W_l\|_2$")
    ax.grid(axis="x", visible=False)
    common.legend(fig, common.optimizer_handles(summary, [a["optimizer"] for a in aggs]))
    return fig
