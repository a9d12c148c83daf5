"""The figures' style, as one function of the base font size (in the spirit of tueplots).

Figures are drawn at the size they are printed: the article's text width, which the LaTeX
template takes from TEXTWIDTH too, so 8 pt labels stay 8 pt on paper. Fonts are fixed and
bundled with matplotlib (DejaVu Sans), so the output bytes do not depend on the machine.
"""

from __future__ import annotations

from typing import Any

TEXTWIDTH = 6.3  # inches: the report's \textwidth (templates/markup/latex.j2 reads it from here)
PNG_DPI = 150


def rc(base: float = 8.0) -> dict[str, Any]:
    """matplotlib rcParams for the report: sizes derived from the base font size."""
    small = base - 1
    return {
        "font.family": "DejaVu Sans",
        "mathtext.fontset": "dejavusans",
        "font.size": base,
        "axes.titlesize": base,
        "axes.labelsize": base,
        "xtick.labelsize": small,
        "ytick.labelsize": small,
        "legend.fontsize": small,
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


RC = rc()
