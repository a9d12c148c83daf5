"""The report's figures: one function per figure, each `(summary) -> matplotlib Figure`.

Figures are drawn at the size they are printed (the article's text width, 6.3 in), so 8 pt
labels stay 8 pt on paper. Each is saved twice: vector PDF for LaTeX, PNG for Markdown.
Every optimizer has one colour and marker everywhere (report.style, Okabe-Ito palette).
Output bytes are deterministic: fixed bundled font (DejaVu Sans), no creation date, fixed
SVG hash salt, no pyplot global state (each figure is a bare Figure).

A figure whose data the summary lacks (no Dinh experiment on the tanh profile, no
interpolation) is skipped; `render_figures` returns the reason, which the report prints.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from minima.io import MinimaError, write_bytes, write_text
from report import findings, style
from report.findings import (
    get_path,
    measures_of,
    ok_runs,
    optimizers_of,
    run_value,
)

TEXTWIDTH = 6.3  # inches: the LaTeX template's \textwidth
PNG_DPI = 150
DECADE = 10.0
FEW_EPOCHS = 10

RC = {
    "font.family": "DejaVu Sans",
    "mathtext.fontset": "dejavusans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "pdf.fonttype": 3,  # Type 42 subsetting (fontTools) costs a second per figure
    "svg.hashsalt": "minima",
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "image.cmap": "viridis",
}


@dataclass(frozen=True)
class FigureResult:
    name: str
    pdf: Path | None
    png: Path | None
    reason: str | None  # why the figure was skipped; None when drawn

    @property
    def available(self) -> bool:
        return self.pdf is not None


# ---- helpers -------------------------------------------------------------------------------

def _styles(summary: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return style.optimizer_styles(optimizers_of(summary))


def _label(name: str) -> str:
    return style.mpl_text(style.optimizer_label(name))


def _qlabel(summary: Mapping[str, Any], quantity: str) -> str:
    label = style.quantity_label(quantity)
    return label.mpl if label else style.mpl_text(str((summary.get("measures") or {}).get(quantity, quantity)))


def _grid(n: int, ncols: int, height: float, width: float = TEXTWIDTH, **kw: Any) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(
    fig: Figure, summary: Mapping[str, Any], names: Sequence[str], *, marker: bool = False, line: bool = True
) -> None:
    styles = _styles(summary)
    handles = [
        Line2D([], [], color=styles[n][0], marker=styles[n][1] if marker else None,
               linestyle="-" if line else "none", label=_label(n))
        for n in names
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6))


def _history_matrix(runs: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values[run, epoch]) with NaN where a run has no value (ragged histories)."""
    series = [(get_path(r, "history", "epoch") or [], get_path(r, "history", key) or []) for r in runs]
    epochs = sorted({int(e) for ep, _ in series for e in ep})
    index = {e: i for i, e in enumerate(epochs)}
    values = np.full((len(runs), len(epochs)), np.nan)
    for row, (ep, vals) in enumerate(series):
        for e, v in zip(ep, vals):
            if isinstance(v, (int, float)) and math.isfinite(v):
                values[row, index[int(e)]] = v
    return np.asarray(epochs, dtype=float), values


def _mean_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = np.sum(np.isfinite(values), axis=0)
    safe = np.where(np.isfinite(values), values, 0.0)
    mean = np.where(count > 0, safe.sum(axis=0) / np.maximum(count, 1), np.nan)
    dev = np.where(np.isfinite(values), values - mean, 0.0)
    std = np.where(count > 1, np.sqrt((dev**2).sum(axis=0) / np.maximum(count - 1, 1)), 0.0)
    return mean, mean - std, mean + std


def _curves(ax, summary: Mapping[str, Any], key: str, scale: float = 1.0) -> None:
    styles = _styles(summary)
    all_epochs: set[float] = set()
    for opt in optimizers_of(summary):
        runs = [r for r in ok_runs(summary) if r["optimizer"] == opt]
        epochs, values = _history_matrix(runs, key)
        if not np.isfinite(values).any():
            continue
        all_epochs.update(epochs.tolist())
        mean, lo, hi = _mean_band(values * scale)
        colour, marker = styles[opt]
        # A short history (one epoch in a test profile) is only visible as points.
        ax.plot(epochs, mean, color=colour, label=_label(opt),
                marker=marker if len(epochs) <= FEW_EPOCHS else None, markersize=3)
        ax.fill_between(epochs, lo, hi, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    if 0 < len(all_epochs) <= FEW_EPOCHS:
        ax.set_xticks(sorted(all_epochs))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _positive(values: Sequence[float]) -> bool:
    return len(values) > 0 and all(v > 0 for v in values)


def _wants_log(values: Sequence[float]) -> bool:
    """Log axis only for positive data spanning a decade: narrower data would get no labels."""
    return _positive(values) and max(values) >= DECADE * min(values)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _decade_label(value: float, _pos: int) -> str:
    """10⁻² in plain Unicode: mathtext tick labels cost most of a figure's drawing time."""
    if value <= 0:
        return ""
    exponent = math.log10(value)
    if abs(exponent - round(exponent)) > 1e-9:
        return ""
    exponent = int(round(exponent))
    if exponent in (0, 1):
        return ("1", "10")[exponent]
    return "10" + str(exponent).translate(_SUPERSCRIPT)


def _plotted(ax, axis: str) -> list[float]:
    """The finite data of an axis's lines and scatter points (not of shaded bands)."""
    col = 1 if axis == "y" else 0
    arrays = [np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)[:, col] for line in ax.lines]
    arrays += [np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2)[:, col]
               for c in ax.collections if isinstance(c, PathCollection)]
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    return flat[np.isfinite(flat)].tolist()


def _auto_log(ax, axis: str = "y") -> None:
    if _wants_log(_plotted(ax, axis)):
        _log(ax, axis)


def _log(ax, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_formatter(FuncFormatter(_decade_label))
    target.set_minor_formatter(NullFormatter())


def _has_history(summary: Mapping[str, Any], key: str) -> bool:
    return bool(np.isfinite(_history_matrix(ok_runs(summary), key)[1]).any())


# ---- figures -------------------------------------------------------------------------------

def _few_epochs(summary: Mapping[str, Any]) -> bool:
    return len(_history_matrix(ok_runs(summary), "epoch")[0]) <= FEW_EPOCHS


def training_curves(summary: Mapping[str, Any]) -> Figure:
    fig = Figure(figsize=(TEXTWIDTH, 2.4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    _curves(loss_ax, summary, "train_loss")
    _auto_log(loss_ax)
    loss_ax.set_ylabel("training loss")
    _curves(acc_ax, summary, "test_accuracy", scale=100.0)
    acc_ax.set_ylabel("test accuracy (%)")
    _legend(fig, summary, optimizers_of(summary), marker=_few_epochs(summary))
    return fig


def gradient_norms(summary: Mapping[str, Any]) -> Figure:
    fig = Figure(figsize=(TEXTWIDTH, 2.2))
    ax = fig.subplots()
    _curves(ax, summary, "gradient_norm")
    _auto_log(ax)
    ax.set_ylabel(r"gradient norm $\|\nabla L\|$")
    _legend(fig, summary, optimizers_of(summary), marker=_few_epochs(summary))
    return fig


def spectral_densities(summary: Mapping[str, Any]) -> Figure:
    opts = [o for o in optimizers_of(summary) if any(
        get_path(r, "curvature", "density") for r in ok_runs(summary) if r["optimizer"] == o)]
    fig, axes = _grid(len(opts), 3, 1.9)
    styles = _styles(summary)
    for i, (ax, opt) in enumerate(zip(axes, opts)):
        runs = [r for r in ok_runs(summary) if r["optimizer"] == opt and get_path(r, "curvature", "density")]
        for k, run in enumerate(runs):
            grid = np.asarray(run["curvature"]["density"]["grid"], dtype=float)
            values = np.asarray(run["curvature"]["density"]["values"], dtype=float)
            # Like PyHessian's plots: a log axis shows the outliers beside the bulk at 0.
            floor = max(float(np.nanmax(values, initial=0.0)), 1e-300) * 1e-8
            first = k == 0
            ax.plot(grid, np.clip(values, floor, None), color=styles[opt][0],
                    alpha=1.0 if first else 0.5, linewidth=0.9 if first else 0.7,
                    linestyle="-" if first else "--")
        _log(ax)
        ax.set_title(_label(opt))
        ax.set_xlabel("eigenvalue")
        if i % 3 == 0:
            ax.set_ylabel("density")
    return fig


def _strip(ax, summary: Mapping[str, Any], quantity: str) -> None:
    """Points per seed and a black bar at the mean, one column per optimizer."""
    styles = _styles(summary)
    opts = optimizers_of(summary)
    all_values = []
    for x, opt in enumerate(opts):
        values = [v for r in ok_runs(summary) if r["optimizer"] == opt
                  if (v := run_value(r, quantity)) is not None]
        if not values:
            continue
        all_values += values
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        colour, marker = styles[opt]
        ax.scatter(x + offsets, values, color=colour, marker=marker, s=14, zorder=3, linewidths=0)
        ax.hlines(np.mean(values), x - 0.3, x + 0.3, color="black", linewidth=1.2, zorder=4)
    if _wants_log(all_values):
        _log(ax)
    ax.set_xticks(range(len(opts)), [_label(o) for o in opts], rotation=35, ha="right")
    ax.grid(axis="x", visible=False)
    ax.set_title(_qlabel(summary, quantity))


def curvature_by_optimizer(summary: Mapping[str, Any]) -> Figure:
    fig = Figure(figsize=(TEXTWIDTH, 2.4))
    for ax, quantity in zip(fig.subplots(1, 3), ("top_eigenvalue", "trace", "gradient_norm")):
        _strip(ax, summary, quantity)
    return fig


def sharpness_by_optimizer(summary: Mapping[str, Any]) -> Figure:
    measures = measures_of(summary)
    fig, axes = _grid(len(measures), 3, 2.3)
    for ax, measure in zip(axes, measures):
        _strip(ax, summary, measure)
    return fig


def _landscape_runs(summary: Mapping[str, Any], key: str) -> list[tuple[str, dict]]:
    """The first run per optimizer that has this landscape slice."""
    out: dict[str, dict] = {}
    for run in ok_runs(summary):
        part = get_path(run, "landscape", key)
        if part and run["optimizer"] not in out:
            out[run["optimizer"]] = part
    return [(o, out[o]) for o in optimizers_of(summary) if o in out]


def landscape_1d(summary: Mapping[str, Any]) -> Figure:
    fig = Figure(figsize=(TEXTWIDTH, 2.4))
    styles = _styles(summary)
    names: list[str] = []
    for ax, key, xlabel in zip(
        fig.subplots(1, 2, sharey=True),
        ("eigen_1d", "random_1d"),
        (r"$\alpha$ along the top Hessian eigenvector", r"$\alpha$ along a filter-normalized random direction"),
    ):
        for opt, part in _landscape_runs(summary, key):
            loss = np.asarray(part["loss"], dtype=float)
            ax.plot(np.asarray(part["alphas"], dtype=float), loss, color=styles[opt][0])
            names.append(opt)
        _auto_log(ax)
        ax.set_xlabel(xlabel)
    fig.axes[0].set_ylabel("training loss")
    _legend(fig, summary, list(dict.fromkeys(names)))
    return fig


def _rows_along_beta(grid: np.ndarray, alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """contourf wants rows along y (beta). The summary stores loss[i][j] at (alphas[i], betas[j]);
    a grid stored the other way round is recognized by its shape when the grid is not square."""
    if grid.shape == (len(alphas), len(betas)):
        return grid.T
    if grid.shape == (len(betas), len(alphas)):
        return grid
    raise ValueError(
        f"landscape: loss grid {grid.shape} does not match {len(alphas)} alphas x {len(betas)} betas"
    )


def _landscape_2d(summary: Mapping[str, Any], key: str, axis_words: str) -> Figure:
    parts = _landscape_runs(summary, key)
    fig, axes = _grid(len(parts), 3, 2.0)
    grids = [np.log10(np.clip(np.asarray(p["loss"], dtype=float), 1e-12, None)) for _, p in parts]
    finite = np.concatenate([g[np.isfinite(g)].ravel() for g in grids])
    # One colour scale for all panels, so the same colour is the same loss everywhere.
    levels = np.linspace(finite.min(), finite.max(), 16) if finite.size else 16
    mappable = None
    for ax, (opt, part), grid in zip(axes, parts, grids):
        alphas = np.asarray(part["alphas"], dtype=float)
        betas = np.asarray(part["betas"], dtype=float)
        surface = _rows_along_beta(grid, alphas, betas)
        mappable = ax.contourf(alphas, betas, surface, levels=levels)
        ax.contour(alphas, betas, surface, levels=levels, colors="white", linewidths=0.3, alpha=0.6)
        ax.plot([0], [0], marker="+", color="white", markersize=7, markeredgewidth=1.2)
        ax.set_title(_label(opt))
        ax.set_aspect("equal")
        ax.grid(False)
        ax.set_xlabel(rf"$\alpha$ ({axis_words} 1)")
        ax.set_ylabel(rf"$\beta$ ({axis_words} 2)")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, label=r"$\log_{10}$ training loss", shrink=0.9)
    return fig


def landscape_2d_eigen(summary: Mapping[str, Any]) -> Figure:
    return _landscape_2d(summary, "eigen_2d", "eigenvector")


def landscape_2d_random(summary: Mapping[str, Any]) -> Figure:
    return _landscape_2d(summary, "random_2d", "random direction")


def interpolation_curves(part: Mapping[str, Any]) -> tuple[list, list]:
    """(loss, accuracy) along the line; the landscape stage names them loss/accuracy."""
    loss = part.get("train_loss", part.get("loss"))
    accuracy = part.get("train_accuracy", part.get("accuracy"))
    return list(loss or []), list(accuracy or [])


def interpolation(summary: Mapping[str, Any]) -> Figure:
    part = summary["interpolation"]
    alphas = np.asarray(part["alphas"], dtype=float)
    loss, accuracy = interpolation_curves(part)
    fig = Figure(figsize=(TEXTWIDTH, 2.2))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(alphas, np.asarray(loss, dtype=float), color="black")
    _auto_log(loss_ax)
    loss_ax.set_ylabel("training loss")
    acc_ax.plot(alphas, 100 * np.asarray(accuracy, dtype=float), color="black")
    acc_ax.set_ylabel("training accuracy (%)")
    styles = _styles(summary)
    for ax in (loss_ax, acc_ax):
        for x, name in ((0.0, str(part.get("a"))), (1.0, str(part.get("b")))):
            ax.axvline(x, color=styles.get(name, ("grey", "o"))[0], linestyle=":", linewidth=1)
        ax.set_xlabel(rf"$\alpha$: $(1-\alpha)\,\theta_{{A}} + \alpha\,\theta_{{B}}$")
    fig.suptitle(f"A = {_label(str(part.get('a')))}, B = {_label(str(part.get('b')))}", fontsize=8)
    return fig


def _correlation_row(summary: Mapping[str, Any], measure: str, target: str) -> Mapping[str, Any] | None:
    for row in summary.get("correlations") or []:
        if row.get("measure") == measure and row.get("target") == target:
            return row
    return None


def _signed(x: float) -> str:
    return f"{x:.2f}".replace("-", "\u2212")


def _tau_title(row: Mapping[str, Any] | None) -> str:
    tau = (row or {}).get("kendall_tau")
    if not isinstance(tau, (int, float)) or not math.isfinite(tau):
        return r"$\tau$ n/a"
    ci = (row or {}).get("ci95")
    text = rf"$\tau$ = {_signed(tau)}"
    if ci and len(ci) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci):
        text += f" [{_signed(ci[0])}, {_signed(ci[1])}]"
    return text


def correlation_measures(summary: Mapping[str, Any]) -> list[str]:
    rows = summary.get("correlations") or []
    listed = [r.get("measure") for r in rows if r.get("target") == "generalization_gap"]
    return list(dict.fromkeys(listed)) or ["top_eigenvalue", "trace", "gradient_norm", *measures_of(summary)]


def correlation_scatter(summary: Mapping[str, Any]) -> Figure:
    measures = correlation_measures(summary)
    fig, axes = _grid(len(measures), 4, 1.75, sharey=True)
    styles = _styles(summary)
    for i, (ax, measure) in enumerate(zip(axes, measures)):
        xs = []
        for run in ok_runs(summary):
            x, gap = run_value(run, measure), run_value(run, "generalization_gap")
            if x is None or gap is None:
                continue
            colour, marker = styles[run["optimizer"]]
            ax.scatter([x], [100 * gap], color=colour, marker=marker, s=14, linewidths=0)
            xs.append(x)
        if _wants_log(xs):
            _log(ax, "x")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3))  # long decimals would overlap
        row = _correlation_row(summary, measure, "generalization_gap")
        ax.set_title(_qlabel(summary, measure) + "\n" + _tau_title(row))
        if i % 4 == 0:
            ax.set_ylabel("gap (pp)")
    _legend(fig, summary, optimizers_of(summary), marker=True, line=False)
    return fig


def dinh(summary: Mapping[str, Any]) -> Figure:
    rows = sorted(summary["dinh"], key=lambda r: r["scale"])
    quantities = [q for q in ("top_eigenvalue", "trace", *measures_of(summary), "test_accuracy")
                  if any(isinstance(r.get(q), (int, float)) for r in rows)]
    fig, axes = _grid(len(quantities), 4, 1.7, sharex=True)
    info = summary.get("dinh_info") or {}
    colour = _styles(summary).get(str(info.get("optimizer")), ("black", "o"))[0]
    scales = np.asarray([r["scale"] for r in rows], dtype=float)
    for i, (ax, q) in enumerate(zip(axes, quantities)):
        values = np.asarray(
            [r.get(q) if isinstance(r.get(q), (int, float)) else np.nan for r in rows], dtype=float
        )
        if q == "test_accuracy":
            values = 100 * values
            mid = np.nanmean(values)
            ax.set_ylim(mid - 1.0, mid + 1.0)  # a flat line reads as flat only on a fixed scale
        ax.plot(scales, values, color=colour, marker="o", markersize=3)
        _log(ax, "x")
        finite = values[np.isfinite(values)]
        if q != "test_accuracy" and _positive(finite.tolist()):
            _log(ax)
            # At least a decade of axis, centred: a measure that stays put then looks flat.
            lo, hi = finite.min(), finite.max()
            if hi < DECADE * lo:
                centre = math.sqrt(lo * hi)
                ax.set_ylim(centre / math.sqrt(DECADE) ** 1.2, centre * math.sqrt(DECADE) ** 1.2)
        ax.set_title(_qlabel(summary, q))
        if i >= len(quantities) - 4:
            ax.set_xlabel("layer scale $a$")
    return fig


# ---- which figures, when -------------------------------------------------------------------

Need = Callable[[Mapping[str, Any]], str | None]  # None when the figure can be drawn, else why not
Draw = Callable[[Mapping[str, Any]], Figure]

def _need_history(key: str) -> Need:
    return lambda s: None if _has_history(s, key) else f"the summary has no per-epoch {key.replace('_', ' ')}"


def _need_run_value(quantities: Sequence[str] | Callable, what: str) -> Need:
    def check(s: Mapping[str, Any]) -> str | None:
        qs = quantities(s) if callable(quantities) else quantities
        found = any(run_value(r, q) is not None for r in ok_runs(s) for q in qs)
        return None if found else f"no run has {what}"
    return check


def _need_density(s: Mapping[str, Any]) -> str | None:
    found = any(get_path(r, "curvature", "density", "values") for r in ok_runs(s))
    return None if found else "no spectral density was computed"


def _need_landscape(key: str) -> Need:
    return lambda s: None if _landscape_runs(s, key) else "this profile computes no loss landscapes"


def _need_interpolation(s: Mapping[str, Any]) -> str | None:
    part = s.get("interpolation")
    if part and part.get("alphas") and all(interpolation_curves(part)):
        return None
    return "this profile computes no interpolation between minima"


def _need_correlation(s: Mapping[str, Any]) -> str | None:
    measures = correlation_measures(s)
    n = sum(
        run_value(r, "generalization_gap") is not None
        and any(run_value(r, m) is not None for m in measures)
        for r in ok_runs(s)
    )
    return None if n >= 3 else f"only {n} runs have both a measure and a generalization gap (three are needed)"


def _need_dinh(s: Mapping[str, Any]) -> str | None:
    if s.get("dinh"):
        return None
    note = (s.get("dinh_info") or {}).get("note")
    return f"the rescaling experiment was not run: {note}" if note else "the rescaling experiment was not run"


FIGURES: dict[str, tuple[Draw, Need]] = {
    "training_curves": (training_curves, _need_history("train_loss")),
    "gradient_norms": (gradient_norms, _need_history("gradient_norm")),
    "spectral_densities": (spectral_densities, _need_density),
    "curvature_by_optimizer": (
        curvature_by_optimizer,
        _need_run_value(("top_eigenvalue", "trace"), "curvature"),
    ),
    "sharpness_by_optimizer": (sharpness_by_optimizer, _need_run_value(measures_of, "sharpness measures")),
    "landscape_1d": (landscape_1d, _need_landscape("eigen_1d")),
    "landscape_2d_eigen": (landscape_2d_eigen, _need_landscape("eigen_2d")),
    "landscape_2d_random": (landscape_2d_random, _need_landscape("random_2d")),
    "interpolation": (interpolation, _need_interpolation),
    "correlation_scatter": (correlation_scatter, _need_correlation),
    "dinh": (dinh, _need_dinh),
}


def save(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write stem.pdf and stem.png atomically, with no timestamps in either."""
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    with matplotlib.rc_context(RC):
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
        write_bytes(pdf, buf.getvalue())
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PNG_DPI)
        write_bytes(png, buf.getvalue())
    return pdf, png


def draw(name: str, summary: Mapping[str, Any]) -> Figure:
    with matplotlib.rc_context(RC):
        return FIGURES[name][0](summary)


def render_figure(name: str, summary: Mapping[str, Any], out_dir: Path) -> FigureResult:
    stem = Path(out_dir) / name
    reason = FIGURES[name][1](summary)
    if reason is not None:
        # A figure left over from another profile's build must not look current.
        for suffix in (".pdf", ".png"):
            stem.with_suffix(suffix).unlink(missing_ok=True)
        return FigureResult(name, None, None, reason)
    try:
        fig = draw(name, summary)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MinimaError(f"figure {name}: cannot draw it from the summary: {exc}") from exc
    pdf, png = save(fig, stem)
    return FigureResult(name, pdf, png, None)


STAMP = ".figures.sha256"
PROVENANCE = ("created_by", "git_commit", "git_dirty", "environment", "timing")


def cache_key(summary: Mapping[str, Any]) -> str:
    """Changes when the summary, the figure code or matplotlib changes."""
    # Provenance (the command, the commit, the machine, the timings) appears in no figure; leaving
    # it out lets `make report` after `make all` reuse the figures.
    drawn = {k: v for k, v in summary.items() if k not in PROVENANCE}
    digest = hashlib.sha256(json.dumps(drawn, sort_keys=True, allow_nan=True).encode())
    for module in (__file__, style.__file__, findings.__file__):
        digest.update(Path(module).read_bytes())
    digest.update(matplotlib.__version__.encode())
    return digest.hexdigest()


def _cached(summary: Mapping[str, Any], out_dir: Path, key: str) -> dict[str, FigureResult] | None:
    stamp = out_dir / STAMP
    if not stamp.is_file() or stamp.read_text().strip() != key:
        return None
    results = {}
    for name, reason in plan(summary).items():
        pdf, png = out_dir / f"{name}.pdf", out_dir / f"{name}.png"
        if reason is None and not (pdf.is_file() and png.is_file()):
            return None
        results[name] = FigureResult(name, None, None, reason) if reason else FigureResult(name, pdf, png, None)
    return results


def render_figures(summary: Mapping[str, Any], out_dir: Path) -> dict[str, FigureResult]:
    """Draw every figure the summary has data for; a no-op when out_dir is already current.

    Drawing takes most of a report's render time, and `make report` re-renders often after
    template edits: a stamp of the summary and the figure code says when nothing changed.
    """
    out_dir = Path(out_dir)
    key = cache_key(summary)
    cached = _cached(summary, out_dir, key)
    if cached is not None:
        return cached
    (out_dir / STAMP).unlink(missing_ok=True)
    results = dict(zip(FIGURES, _map(partial(render_figure, summary=summary, out_dir=out_dir), list(FIGURES))))
    write_text(out_dir / STAMP, key + "\n")
    return results


def _map(fn: Callable[[str], FigureResult], names: list[str]) -> list[FigureResult]:
    """Render figures in worker processes, one per core: each figure's layout and savefig are
    single-threaded Python (about 3 s each for the quick profile), so 2 cores halve the time.
    Each figure writes its own files, so the result does not depend on the order. Serial where
    fork is unavailable or there is one core."""
    workers = min(len(names), os.cpu_count() or 1)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(name) for name in names]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fn, names))


def plan(summary: Mapping[str, Any]) -> dict[str, str | None]:
    """Each figure's skip reason (None: drawn), without drawing anything."""
    return {name: need(summary) for name, (_, need) in FIGURES.items()}
