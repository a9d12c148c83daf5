"""Drawing every figure to disk: deterministic bytes, a cache stamp, worker processes.

Each figure is saved twice: vector PDF for LaTeX, PNG for Markdown. Output bytes are
deterministic: fixed bundled font, no creation date, fixed SVG hash salt, no pyplot global
state (each figure is a bare Figure). A figure whose data the summary lacks is skipped and
its stale files removed; `render_figures` returns the reason, which the report prints.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import matplotlib
from matplotlib.figure import Figure

from minima import schema
from minima.io import MinimaError, write_bytes, write_text
from minima.schema import Summary
from report import formats, style
from report.figures.catalog import FIGURES
from report.figures.rcparams import PNG_DPI, RC

STAMP = ".figures.sha256"
PROVENANCE = ("created_by", "git_commit", "git_dirty", "environment", "timing", "core_timing")
# How long things took, wherever the summary records it (a run's, a stage's, an epoch's): no
# figure draws a duration, and a run trained again to the same weights takes another time.
DURATIONS = frozenset({"seconds", "wall_time", "train_seconds", "analysis_seconds", "train_core_seconds",
                       "analysis_core_seconds", "cpu_seconds", "stage_seconds"})
FIGURE_CODE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class FigureResult:
    name: str
    pdf: Path | None
    png: Path | None
    reason: str | None  # why the figure was skipped; None when drawn

    @property
    def available(self) -> bool:
        return self.pdf is not None


def skip_reasons(summary: Summary) -> dict[str, str | None]:
    """Each figure's skip reason (None: drawn), without drawing anything."""
    return {name: need(summary) for name, (_, need) in FIGURES.items()}


def save(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write stem.pdf and stem.png atomically, with no timestamps in either."""
    pdf, png = stem.with_suffix(".pdf"), stem.with_suffix(".png")
    with matplotlib.rc_context(RC):
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
        write_bytes(pdf, buf.getvalue())
        # The PNG keeps the layout the PDF was drawn with: constrained layout runs on every draw,
        # and it was half of each save (every axis' tick labels measured again); the positions
        # are fractions of the figure, so the two files show the same layout.
        fig.set_layout_engine("none")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PNG_DPI)
        write_bytes(png, buf.getvalue())
    return pdf, png


def draw(name: str, summary: Summary) -> Figure:
    with matplotlib.rc_context(RC):
        return FIGURES[name][0](summary)


def render_figure(name: str, summary: Summary, out_dir: Path) -> FigureResult:
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


def _without_durations(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_durations(v) for k, v in value.items() if k not in DURATIONS}
    if isinstance(value, list):
        return [_without_durations(v) for v in value]
    return value


def cache_key(summary: Summary) -> str:
    """Changes when the summary, the figure code (with the schema methods it calls) or matplotlib changes."""
    # Provenance (the command, the commit, the machine) and durations appear in no figure; leaving
    # them out lets `make report` after `make all`, or a run trained again to the same weights,
    # reuse the figures.
    drawn = _without_durations(summary.model_dump(mode="json", by_alias=True, exclude=set(PROVENANCE)))
    digest = hashlib.sha256(json.dumps(drawn, sort_keys=True, allow_nan=True).encode())
    for module in (*sorted(FIGURE_CODE.glob("*.py")), Path(style.__file__), Path(schema.__file__),
                   Path(formats.__file__)):
        digest.update(module.name.encode() + module.read_bytes())
    digest.update(matplotlib.__version__.encode())
    return digest.hexdigest()


def _cached(summary: Summary, out_dir: Path, key: str) -> dict[str, FigureResult] | None:
    stamp = out_dir / STAMP
    if not stamp.is_file() or stamp.read_text().strip() != key:
        return None
    results = {}
    for name, reason in skip_reasons(summary).items():
        pdf, png = out_dir / f"{name}.pdf", out_dir / f"{name}.png"
        if reason is None and not (pdf.is_file() and png.is_file()):
            return None
        results[name] = FigureResult(name, None, None, reason) if reason else FigureResult(name, pdf, png, None)
    return results


def render_figures(summary: Summary, out_dir: Path) -> dict[str, FigureResult]:
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
    names = list(FIGURES)
    results = dict(zip(names, _map(partial(render_figure, summary=summary, out_dir=out_dir), names)))
    write_text(out_dir / STAMP, key + "\n")
    return results


def _map(fn: Callable[[str], FigureResult], names: list[str]) -> list[FigureResult]:
    """Render figures in worker processes, one per core: each figure's layout and savefig are
    single-threaded Python, so 2 cores halve the time. Each figure writes its own files, so the
    result does not depend on the order. Serial where fork is unavailable or there is one core."""
    workers = min(len(names), os.cpu_count() or 1)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(name) for name in names]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fn, names))
