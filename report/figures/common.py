"""Helpers the figure functions share: panels, legends, labels and log axes."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from minima.schema import Correlation, Run, Summary
from report import style
from report.formats import words_ci, words_num
from report.figures.rcparams import TEXTWIDTH

DECADE = 10.0


def styles(summary: Summary) -> dict[str, tuple[str, str]]:
    return style.optimizer_styles(style.optimizer_names(summary))


def colour(summary: Summary, optimizer: str) -> str:
    return styles(summary).get(optimizer, ("black", "o"))[0]


def opt_label(name: str) -> str:
    return style.mpl_text(style.optimizer_label(name))


def qlabel(summary: Summary, quantity: str) -> str:
    label = style.quantity_label(quantity)
    return label.mpl if label else style.mpl_text(summary.measures.get(quantity, quantity))


def grid(n: int, ncols: int, height: float, width: float = TEXTWIDTH, **kw: Any) -> tuple[Figure, list]:
    """A figure of n panels in rows of ncols, each row `height` inches tall."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(width, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


# ---- one grid axis besides the optimizer: marker in scatters, line style in curves -------------

def level_marker(summary: Summary, run: Run) -> str:
    index = style.level_index(summary, run, style.second_axis(summary))
    return style.LEVEL_MARKERS[index % len(style.LEVEL_MARKERS)]


def level_linestyle(summary: Summary, run: Run) -> str:
    index = style.level_index(summary, run, style.second_axis(summary))
    return style.LEVEL_LINESTYLES[index % len(style.LEVEL_LINESTYLES)]


def level_handles(summary: Summary, kind: str) -> list[Line2D]:
    """Grey legend entries for the second axis's levels: markers (kind="marker") or line styles."""
    axis = style.second_axis(summary)
    levels = style.axis_values(summary, axis)
    if len(levels) < 2:
        return []
    symbol = style.mpl_text(style.axis_symbol(axis))
    out = []
    for i, level in enumerate(levels):
        text = f"{symbol} = {level:g}"
        if kind == "marker":
            out.append(Line2D([], [], color="0.35", marker=style.LEVEL_MARKERS[i % len(style.LEVEL_MARKERS)],
                              linestyle="none", label=text))
        else:
            out.append(Line2D([], [], color="0.35", linestyle=style.LEVEL_LINESTYLES[i % len(style.LEVEL_LINESTYLES)],
                              label=text))
    return out


def optimizer_handles(summary: Summary, names: Sequence[str], *, marker: bool | str = False,
                      line: bool = True) -> list[Line2D]:
    """Legend entries by colour: lines, the optimizer's own markers (marker=True) or one shape for all."""
    table = styles(summary)
    return [Line2D([], [], color=table[n][0], marker=(table[n][1] if marker is True else marker or None),
                   linestyle="-" if line else "none", label=opt_label(n)) for n in names]


def legend(fig: Figure, handles: list, ncols: int = 6) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), ncols))


# ---- axes ----------------------------------------------------------------------------------

def finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def positive(values: Sequence[float]) -> bool:
    return len(values) > 0 and all(v > 0 for v in values)


def wants_log(values: Sequence[float]) -> bool:
    """Log axis only for positive data spanning a decade: narrower data would get no labels."""
    return positive(values) and max(values) >= DECADE * min(values)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def decade_label(value: float, _pos: int) -> str:
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


def plotted(ax, axis: str) -> list[float]:
    """The finite data of an axis's lines and scatter points (not of shaded bands)."""
    col = 1 if axis == "y" else 0
    arrays = [np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)[:, col] for line in ax.lines]
    arrays += [np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2)[:, col]
               for c in ax.collections if isinstance(c, PathCollection)]
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    return flat[np.isfinite(flat)].tolist()


def auto_log(ax, axis: str = "y") -> None:
    if wants_log(plotted(ax, axis)):
        log(ax, axis)


def log(ax, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_formatter(FuncFormatter(decade_label))
    target.set_minor_formatter(NullFormatter())


def tau_title(row: Correlation | None) -> str:
    """τ = 0.20 [−0.33, 1.00] from a correlation row of the summary."""
    if row is None or row.kendall_tau is None:
        return r"$\tau$ undetermined"
    return rf"$\tau$ = {words_num(row.kendall_tau)}" + (f" {words_ci(row.ci95)}" if row.ci95 else "")
