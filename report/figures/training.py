"""Training dynamics and the rescaling experiment."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from minima.schema import Run, Summary, dinh_value
from report import style
from report.figures import common
from report.figures.rcparams import TEXTWIDTH


def loss_runs(summary: Summary) -> list[Run]:
    """Runs with at least one finite full-training-set loss in their history."""
    return [r for r in summary.runs if common.finite(r.history.full_train_loss)]


def _loss_panel(ax, summary: Summary) -> None:
    for run in loss_runs(summary):
        history = run.history
        pairs = [(e, v) for e, v in zip(history.epoch, history.full_train_loss)
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        epochs, loss = zip(*pairs)
        ax.plot(epochs, loss, color=common.colour(summary, run.optimizer),
                linestyle=common.level_linestyle(summary, run), linewidth=0.8, alpha=0.85,
                marker="x" if run.status != "ok" else None, markevery=[len(epochs) - 1])
    ax.axhline(summary.design.stop_loss, color="black", linestyle=":", linewidth=1.0)
    common.log(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("full-training-set loss")


def _fit_panel(ax, summary: Summary) -> None:
    """Epochs to fit per configuration: filled for converged runs, hollow at the cap for capped
    runs, a cross at the epoch of divergence for diverged ones."""
    configurations = style.ordered_configurations(summary)
    for x, config in enumerate(configurations):
        runs = [r for r in summary.runs if r.configuration == config.configuration]
        colour = common.colour(summary, config.optimizer)
        offsets = np.linspace(-0.2, 0.2, len(runs)) if len(runs) > 1 else np.zeros(1)
        for offset, run in zip(offsets, runs):
            if run.is_minimum:
                ax.scatter([x + offset], [run.epochs_to_fit], color=colour, s=14, linewidths=0, zorder=3)
            elif run.status == "ok":
                ax.scatter([x + offset], [run.epochs], facecolors="none", edgecolors=colour, s=14,
                           linewidths=0.8, zorder=3)
            else:
                ax.scatter([x + offset], [run.diverged_epoch or run.epochs], color=colour, marker="x",
                           s=16, linewidths=0.9, zorder=3)
    ax.axhline(summary.design.max_epochs, color="0.4", linestyle=":", linewidth=0.9)
    labels = [style.mpl_text(style.configuration_label(summary, c.hyperparameters, c.optimizer))
              for c in configurations]
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right",
                  fontsize=6 if len(labels) <= 12 else 4.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", visible=False)
    ax.set_ylabel("epochs to fit")


def training(summary: Summary) -> Figure:
    fig = Figure(figsize=(TEXTWIDTH, 2.9))
    loss_ax, fit_ax = fig.subplots(1, 2, width_ratios=[1.2, 1.0])
    _loss_panel(loss_ax, summary)
    _fit_panel(fit_ax, summary)
    names = list(dict.fromkeys(r.optimizer for r in style.ordered_runs(summary)))
    handles = common.optimizer_handles(summary, names) + common.level_handles(summary, "line") + [
        Line2D([], [], color="black", linestyle=":", label="stop loss"),
        Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none", label="capped"),
        Line2D([], [], color="0.3", marker="x", linestyle="none", label="diverged"),
    ]
    common.legend(fig, handles, ncols=5)
    return fig


# ---- Dinh et al.'s rescaling ----------------------------------------------------------------

def dinh(summary: Summary) -> Figure:
    rows = sorted(summary.dinh, key=lambda r: r.scale)
    quantities = summary.dinh_quantities()
    fig, axes = common.grid(len(quantities), 4, 1.7, sharex=True)
    info = summary.dinh_info
    colour = common.colour(summary, str(info.optimizer))
    scales = np.asarray([r.scale for r in rows], dtype=float)
    for i, (ax, q) in enumerate(zip(axes, quantities)):
        values = np.asarray([v if isinstance(v := dinh_value(r, q), (int, float)) else np.nan for r in rows], dtype=float)
        reference = info.reference_test_accuracy
        if q == "test_accuracy":
            values = 100 * values
            if reference is not None:  # a flat line reads as flat only on a fixed scale
                ax.set_ylim(100 * reference - 1.0, 100 * reference + 1.0)
        ax.plot(scales, values, color=colour, marker="o", markersize=3)
        common.log(ax, "x")
        finite = common.finite(values.tolist())
        if q != "test_accuracy" and common.positive(finite):
            common.log(ax)
            # At least a decade of axis, centred: a measure that stays put then looks flat.
            lo, hi = min(finite), max(finite)
            if hi < common.DECADE * lo:
                centre = math.sqrt(lo * hi)
                ax.set_ylim(centre / math.sqrt(common.DECADE) ** 1.2, centre * math.sqrt(common.DECADE) ** 1.2)
        ax.set_title(common.qlabel(summary, q), fontsize=7)
        if i >= len(quantities) - 4:
            ax.set_xlabel("layer scale $a$")
    return fig
