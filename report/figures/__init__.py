"""The report's figures, one function per figure, each `(summary) -> matplotlib Figure`.

- rcparams: matplotlib's rc parameters and the text width figures are drawn at;
- common: panels, legends, labels and log axes shared by the draw functions;
- results, optimizers, landscape, training: the draw functions;
- catalog: which figures exist and what each needs from the summary (`skip_reasons`: why one is left out);
- build: drawing them all to PDF and PNG, deterministically, cached and in parallel.

Every value a figure shows comes from the summary: run values, aggregates (the mean bars),
correlation rows (tau and its interval in the titles, psi), claims, Dinh rows.
"""

from report.figures.build import FigureResult, cache_key, draw, render_figure, render_figures, save, skip_reasons
from report.figures.catalog import FIGURES

__all__ = ["FIGURES", "FigureResult", "cache_key", "draw", "render_figure", "render_figures", "save", "skip_reasons"]
