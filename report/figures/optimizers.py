"""Per-optimizer figures: curvature and sharpness of every run, per-layer weight norms."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from minima.schema import Summary
from report import style
from report.figures import common
from report.figures.rcparams import TEXTWIDTH

CURVATURE = ("gradient_norm",)  # shown beside the Hessian measures


def curvature_quantities(summary: Summary) -> list[str]:
    return [*summary.measures_of("hessian"), *CURVATURE]


def _strip(ax, summary: Summary, quantity: str) -> None:
    """Points per run (filled: converged; hollow: capped) and a black bar at the optimizer's
    mean over its converged runs, as the summary's aggregates give it."""
    opts = style.optimizer_names(summary)
    shown = []
    for x, opt in enumerate(opts):
        runs = [r for r in summary.ok_runs() if r.optimizer == opt and r.value(quantity) is not None]
        if not runs:
            continue
        offsets = np.linspace(-0.18, 0.18, len(runs)) if len(runs) > 1 else np.zeros(1)
        colour, marker = common.styles(summary)[opt]
        for offset, run in zip(offsets, runs):
            filled = run.is_minimum
            ax.scatter([x + offset], [run.value(quantity)], marker=marker, s=14, zorder=3,
                       color=colour if filled else "none", edgecolors=colour, linewidths=0 if filled else 0.8)
            shown.append(run.value(quantity))
        aggregate = summary.aggregate(opt)
        stat = aggregate.metrics.get(quantity) if aggregate else None
        mean = stat.mean if stat else None
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
    return _strips(summary, summary.measures_of("sharpness"), 3, 2.1)


def layer_norms(summary: Summary) -> Figure:
    """Per-layer weight norm per optimizer: mean and standard deviation over converged runs."""
    aggs = [a for o in style.optimizer_names(summary) if (a := summary.aggregate(o)) is not None]
    layers = list(dict.fromkeys(k for a in aggs for k in a.layer_norms))
    fig = Figure(figsize=(TEXTWIDTH, 2.2))
    ax = fig.subplots()
    width = 0.8 / max(len(aggs), 1)
    for j, agg in enumerate(aggs):
        stats = [agg.layer_norms.get(layer) for layer in layers]
        means = [np.nan if s is None or s.mean is None else s.mean for s in stats]
        errors = [np.nan if s is None or s.std is None else s.std for s in stats]
        positions = np.arange(len(layers)) - 0.4 + width * (j + 0.5)
        ax.bar(positions, means, width, yerr=errors, color=common.colour(summary, agg.optimizer),
               error_kw={"elinewidth": 0.7, "capsize": 1.5}, label=common.opt_label(agg.optimizer))
    ax.set_xticks(range(len(layers)), layers)
    ax.set_ylabel(r"weight norm $\|W_l\|_2$")
    ax.grid(axis="x", visible=False)
    common.legend(fig, common.optimizer_handles(summary, [a.optimizer for a in aggs]))
    return fig
