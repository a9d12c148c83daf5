"""Figures of the minima's surroundings: spectral densities, loss slices, interpolation."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from minima.schema import Run, Summary
from report import style
from report.figures import common
from report.figures.rcparams import TEXTWIDTH

SLICES_1D = (
    ("eigen_1d", "top eigenvector (unit norm)"),
    ("eigen_normalized_1d", "top eigenvector, filter-normalized"),
    ("random_1d", "random direction, filter-normalized"),
)


def density_runs(summary: Summary) -> list[Run]:
    """Runs (that did not diverge) with a spectral density."""
    return [r for r in summary.ok_runs() if r.curvature and r.curvature.density and r.curvature.density.values]


def runs_with_slice(summary: Summary, key: str) -> list[Run]:
    """Runs (that did not diverge) with the landscape slice `key` (eigen_1d, random_2d, ...)."""
    return [r for r in summary.ok_runs() if r.landscape and getattr(r.landscape, key)]


def spectral_densities(summary: Summary) -> Figure:
    """One panel per optimizer: the Hessian eigenvalue density of each run that has one."""
    runs = density_runs(summary)
    opts = [o for o in style.optimizer_names(summary) if any(r.optimizer == o for r in runs)]
    fig, axes = common.grid(len(opts), 3, 1.9)
    for i, (ax, opt) in enumerate(zip(axes, opts)):
        for run in (r for r in runs if r.optimizer == opt):
            density = run.curvature.density
            values = np.asarray([np.nan if v is None else v for v in density.values], dtype=float)
            # Like PyHessian's plots: a log axis shows the outliers beside the bulk at 0.
            floor = max(float(np.nanmax(values, initial=0.0)), 1e-300) * 1e-8
            ax.plot(np.asarray(density.grid, dtype=float), np.clip(values, floor, None),
                    color=common.colour(summary, opt), linestyle=common.level_linestyle(summary, run), linewidth=0.8)
        common.log(ax)
        ax.set_title(common.opt_label(opt))
        ax.set_xlabel("eigenvalue")
        if i % 3 == 0:
            ax.set_ylabel("density")
    common.legend(fig, common.level_handles(summary, "line"))
    return fig


def slices_1d(summary: Summary) -> list[tuple[str, str]]:
    return [(key, words) for key, words in SLICES_1D if runs_with_slice(summary, key)]


def landscape_1d(summary: Summary) -> Figure:
    """Training loss along each one-dimensional slice, one line per run that has it."""
    chosen = slices_1d(summary)
    fig, axes = common.grid(len(chosen), 3, 2.3)
    names: list[str] = []
    for ax, (key, title) in zip(axes, chosen):
        for run in runs_with_slice(summary, key):
            part = getattr(run.landscape, key)
            ax.plot(np.asarray(part.alphas, dtype=float), np.asarray(part.loss, dtype=float),
                    color=common.colour(summary, run.optimizer), linestyle=common.level_linestyle(summary, run),
                    linewidth=0.9)
            names.append(run.optimizer)
        common.auto_log(ax)
        ax.set_title(title, fontsize=7)
        ax.set_xlabel(r"$\alpha$")
    axes[0].set_ylabel("training loss")
    common.legend(fig, common.optimizer_handles(summary, list(dict.fromkeys(names)))
                  + common.level_handles(summary, "line"), ncols=8)
    return fig


def rows_along_beta(grid: np.ndarray, alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """contourf wants rows along y (beta). The summary stores loss[i][j] at (alphas[i], betas[j]);
    a grid stored the other way round is recognized by its shape when the grid is not square."""
    if grid.shape == (len(alphas), len(betas)):
        return grid.T
    if grid.shape == (len(betas), len(alphas)):
        return grid
    raise ValueError(
        f"landscape: loss grid {grid.shape} does not match {len(alphas)} alphas x {len(betas)} betas"
    )


def _landscape_2d(summary: Summary, key: str, axis_words: str) -> Figure:
    """One configuration per optimizer (its first run with this slice), to stay readable."""
    first: dict[str, Run] = {}
    for run in runs_with_slice(summary, key):
        first.setdefault(run.optimizer, run)
    runs = [first[o] for o in style.optimizer_names(summary) if o in first]
    fig, axes = common.grid(len(runs), 3, 2.0)
    grids = [np.log10(np.clip(np.asarray(getattr(r.landscape, key).loss, dtype=float), 1e-12, None)) for r in runs]
    finite = np.concatenate([g[np.isfinite(g)].ravel() for g in grids]) if grids else np.zeros(0)
    # One colour scale for all panels, so the same colour is the same loss everywhere.
    levels = np.linspace(finite.min(), finite.max(), 16) if finite.size and finite.max() > finite.min() else 16
    mappable = None
    for ax, run, grid in zip(axes, runs, grids):
        part = getattr(run.landscape, key)
        alphas, betas = np.asarray(part.alphas, dtype=float), np.asarray(part.betas, dtype=float)
        surface = rows_along_beta(grid, alphas, betas)
        mappable = ax.contourf(alphas, betas, surface, levels=levels)
        ax.contour(alphas, betas, surface, levels=levels, colors="white", linewidths=0.3, alpha=0.6)
        ax.plot([0], [0], marker="+", color="white", markersize=7, markeredgewidth=1.2)
        ax.set_title(style.mpl_text(style.configuration_label(summary, run.hyperparameters, run.optimizer)),
                     fontsize=7)
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_xlabel(rf"$\alpha$ ({axis_words} 1)")
        ax.set_ylabel(rf"$\beta$ ({axis_words} 2)")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, label=r"$\log_{10}$ training loss", shrink=0.9)
    return fig


def landscape_2d_eigen(summary: Summary) -> Figure:
    return _landscape_2d(summary, "eigen_2d", "eigenvector")


def landscape_2d_random(summary: Summary) -> Figure:
    return _landscape_2d(summary, "random_2d", "random direction")


def interpolation(summary: Summary) -> Figure:
    part = summary.interpolation
    alphas = np.asarray(part.alphas, dtype=float)
    fig = Figure(figsize=(TEXTWIDTH, 2.2))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(alphas, np.asarray(part.loss, dtype=float), color="black")
    common.auto_log(loss_ax)
    loss_ax.set_ylabel("training loss")
    acc_ax.plot(alphas, 100 * np.asarray(part.accuracy, dtype=float), color="black")
    acc_ax.set_ylabel("training accuracy (%)")
    for ax in (loss_ax, acc_ax):
        for x, name in ((0.0, part.a), (1.0, part.b)):
            ax.axvline(x, color=common.colour(summary, name), linestyle=":", linewidth=1)
        ax.set_xlabel(r"$\alpha$: $(1-\alpha)\,\theta_{A} + \alpha\,\theta_{B}$")
    fig.suptitle(f"A = {common.opt_label(part.a)}, B = {common.opt_label(part.b)}", fontsize=8)
    return fig
