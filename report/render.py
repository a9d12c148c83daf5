"""Render build/report.md and build/report.tex (and the PDF) from build/summary.json.

The summary (read as minima.schema's models) holds every number and judgment; the
report only formats it: report.tables arranges facts into rows, report.prose words them,
report.figures draws them. The templates only place, and the report is written once:
templates/report.j2 holds every sentence, caption and table, and is rendered twice, with the
LaTeX and with the Markdown macro library of templates/markup/ (report.markup says how its
static prose is converted and how Markdown numbers things).

Both environments are strict: an undefined name is an error (StrictUndefined), and `_finalize`
refuses to print any value that did not pass through exactly one filter of report.formats
(strings through `text`/`code`, numbers through `pct`, `sci`, `pm`, ...). That is how every
string from the summary, the config or a path gets escaped exactly once.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote

import jinja2

from minima import paths
from minima.io import MinimaError, write_together
from minima.schema import Summary, read_summary
from report import figures as figs
from report import formats, latex, prose, style, tables
from report.escape import prose_md, prose_tex
from report.figures.rcparams import TEXTWIDTH
from report.markup import BODY, Numbering, StaticProse

MARKUP = {"latex": "markup/latex.j2", "markdown": "markup/markdown.j2"}
FIGURE_DIR_IN_TEX = "figures"  # report.tex finds its figures here, beside it


def _finalize(value: Any) -> Any:
    if hasattr(value, "__html__"):
        return value
    raise TypeError(
        f"template printed an unfiltered {type(value).__name__} ({str(value)[:60]!r}): "
        "pass strings through text/code and numbers through a number filter"
    )


def _environment(static_prose: Callable[[str], str], filters: Mapping[str, Callable[..., Any]]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # with _finalize: only Tex/Md values (which carry __html__) print
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=[StaticProse],
    )
    env.static_prose = static_prose  # type: ignore[attr-defined]
    env.filters.update(filters)
    return env


def tex_environment() -> jinja2.Environment:
    return _environment(prose_tex, formats.TEX_FILTERS)


def md_environment() -> jinja2.Environment:
    return _environment(prose_md, formats.MD_FILTERS)


# ---- context -------------------------------------------------------------------------------

def _figure_context(skipped: Mapping[str, str | None], figures_rel: str) -> dict[str, dict]:
    return {
        name: {
            "available": reason is None,
            "reason": reason or "",
            "tex": formats.Tex(f"{FIGURE_DIR_IN_TEX}/{name}.pdf"),
            "md": formats.Md(quote(f"{figures_rel}/{name}.png")),
        }
        for name, reason in skipped.items()
    }


def build_context(summary: Summary, skipped: Mapping[str, str | None], figures_rel: str) -> dict:
    """Everything the templates place: facts arranged (tables), worded (prose) and drawn (figures)."""
    data, design = summary.data, summary.design
    interpolation = summary.interpolation
    return {
        "textwidth": TEXTWIDTH,
        "alpha": summary.statistics.alpha,
        "verdict_colours": [(name, hex_colour.lstrip("#")) for _, name, hex_colour in style.VERDICTS.values()],
        "baselines": [tables.head(summary, m) for m in summary.measures_of("baseline")],
        "profile": summary.profile,
        "description": summary.profile_description,
        "commit": summary.git_commit,
        "commit_short": summary.git_commit[:12],
        "dirty": summary.git_dirty,
        "created_by": summary.created_by,
        "dataset": data.display_name,
        "data": data,
        "data_source": data.source,
        "preprocessing": data.preprocessing,
        "checksums": list(data.sha256.items()),
        "model": {k: formats.value_text(v) for k, v in summary.model if k != "n_params"},
        "n_params": summary.model.n_params,
        "design": design,
        "seeds": ", ".join(str(s) for s in design.seeds),
        "axes": list(design.axes),
        "axes_text": prose.axes_text(summary),
        "stop_rule": prose.stop_rule(summary),
        "second_axis": style.axis_words(style.second_axis(summary)),
        "landscape_runs": prose.coverage(summary.limitations.landscape_runs),
        "density_runs": prose.coverage(summary.limitations.density_runs),
        "grid": tables.grid(summary),
        "hparams": tables.hparams(summary),
        "tuning": tables.tuning(summary),
        "settings": tables.settings(summary),
        "measures": tables.measures(summary),
        "data_desc": tables.data_descriptions(summary),
        "claims": tables.claims(summary),
        "replication": tables.replication(summary),
        "correlation": tables.correlations(summary, "generalization_gap"),
        "correlation_error": tables.correlations(summary, "test_error"),
        "optimizer_columns": tables.optimizer_columns(summary),
        "accuracy_rows": tables.optimizer_block(summary, tables.ACCURACY_ROWS),
        "curvature_rows": tables.optimizer_block(summary, [*summary.measures_of("hessian"), *tables.CURVATURE_ROWS]),
        "sharpness_rows": tables.optimizer_block(summary, summary.measures_of("sharpness")),
        "layer_norms": tables.layer_norms(summary),
        "balance_rows": tables.optimizer_block(summary, ["balance_log_ratio"]),
        "extremes": tables.extremes(summary),
        "dinh": tables.dinh(summary),
        "interpolation": {
            "a": style.optimizer_label(interpolation.a if interpolation else "?"),
            "b": style.optimizer_label(interpolation.b if interpolation else "?"),
            "barrier": interpolation.barrier if interpolation else None,
        },
        "configurations": tables.configurations(summary),
        "capped": tables.failed(summary, summary.limitations.capped),
        "diverged": tables.failed(summary, summary.limitations.diverged),
        "runs": tables.runs(summary),
        "run_heads": [tables.head(summary, q) for q in tables.RUN_MEASURES],
        "sharpness_heads": [tables.head(summary, q) for q in summary.measures_of("sharpness")],
        "original": tables.original(summary),
        "environment": tables.environment(summary),
        "timing": tables.timing(summary),
        "text": {
            "abstract": prose.abstract(summary),
            "correlation": prose.correlation_sentence(summary),
            "correlation_error": prose.correlation_sentence(summary, "test_error"),
            "replication": prose.replication_sentences(summary),
            "baselines": prose.baselines_sentence(summary),
            "noise_floor": prose.noise_floor_sentence(summary),
            "dinh": prose.dinh_sentences(summary),
            "discussion": prose.discussion(summary),
            "limitations": prose.limitations(summary),
        },
        "checklist": prose.checklist(summary),
        "figures": _figure_context(skipped, figures_rel),
    }


# ---- the whole render ----------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    markdown: Path
    tex: Path
    pdf: Path | None
    note: str | None  # why there is no PDF


def render_text(summary: Summary, skipped: Mapping[str, str | None], figures_rel: str) -> tuple[str, str]:
    """(markdown, latex) source for a summary; pure."""
    context = build_context(summary, skipped, figures_rel)
    tex = tex_environment().get_template(BODY).render(context, markup_template=MARKUP["latex"])
    body = md_environment().get_template(BODY)
    # Twice, as LaTeX runs twice: the first render numbers every section, table and figure, the
    # second writes references to those further down with their numbers.
    first = Numbering()
    body.render(context, markup_template=MARKUP["markdown"], numbers=first)
    markdown = body.render(context, markup_template=MARKUP["markdown"], numbers=Numbering(first.defined))
    return re.sub(r"\n{3,}", "\n\n", markdown), tex  # a blank line is all Markdown needs between blocks


def _figures_rel(figures_dir: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(figures_dir).resolve(), Path(out_dir).resolve())).as_posix()


def _check_figures(skipped: Mapping[str, str | None], figures_dir: Path) -> None:
    for name, reason in skipped.items():
        for suffix in (".pdf", ".png"):
            if reason is None and not (figures_dir / f"{name}{suffix}").is_file():
                raise MinimaError(f"missing figure {figures_dir / (name + suffix)}: render without reuse")


def render_report(
    summary_path: Path,
    figures_dir: Path,
    out_dir: Path,
    *,
    pdf: bool = True,
    require_pdf: bool = False,
    draw_figures: bool = True,
) -> Rendered:
    """Write report.md, report.tex and (when LaTeX is installed) report.pdf into out_dir.

    The summary is read, both documents rendered and the PDF built in memory before anything
    is written, so a missing or corrupt summary, a LaTeX error or an interrupt leaves the
    previous report as it was; the three files are then replaced together (a PDF that no
    longer matches the new sources is removed). draw_figures=False reuses the figures already
    in figures_dir.
    """
    summary = read_summary(Path(summary_path))
    figures_dir, out_dir = Path(figures_dir), Path(out_dir)
    skipped = figs.skip_reasons(summary)
    try:
        markdown, tex = render_text(summary, skipped, _figures_rel(figures_dir, out_dir))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MinimaError(f"cannot render the report from {summary_path}: {exc}") from exc
    if require_pdf and pdf and latex.missing_tools():
        raise MinimaError(latex.missing_message(out_dir / "report.md"))
    if draw_figures:
        figs.render_figures(summary, figures_dir)
    else:
        _check_figures(skipped, figures_dir)
    md_path, tex_path, pdf_path, stamp = (out_dir / name for name in ("report.md", "report.tex", "report.pdf", PDF_STAMP))
    files: dict[Path, bytes | None] = {md_path: markdown.encode(), tex_path: tex.encode()}
    figure_pdfs = [figures_dir / f"{name}.pdf" for name, reason in skipped.items() if reason is None]
    key = _pdf_key(tex, figure_pdfs)
    # The PDF is a pure function of the .tex and the figures: skip LaTeX when neither changed.
    current = pdf_path.is_file() and stamp.is_file() and stamp.read_text().strip() == key
    note = None if pdf else "PDF not requested (--no-pdf)"
    if note is None and latex.missing_tools():
        note = latex.missing_message(md_path)
    if note is None and not current:
        files[pdf_path] = latex.compile_pdf(tex, figure_pdfs, pdf_path.with_suffix(".log"))
        files[stamp] = (key + "\n").encode()
    elif note is not None and not current:  # a PDF of other sources would contradict them
        files[pdf_path] = files[stamp] = None
    write_together(files)
    _link_figures(figures_dir, out_dir)
    return Rendered(md_path, tex_path, None if note else pdf_path, note)


PDF_STAMP = ".report.pdf.sha256"


def _pdf_key(tex: str, figure_pdfs: list[Path]) -> str:
    digest = hashlib.sha256(tex.encode())
    for path in figure_pdfs:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _link_figures(figures_dir: Path, out_dir: Path) -> None:
    """report.tex expects figures/ beside it; point there when the figures live elsewhere."""
    beside = out_dir / FIGURE_DIR_IN_TEX
    if beside.resolve() == figures_dir.resolve() or beside.exists() or beside.is_symlink():
        return
    try:
        beside.symlink_to(os.path.relpath(figures_dir.resolve(), out_dir.resolve()), target_is_directory=True)
    except OSError:
        pass  # the PDF is built from copies; only a hand-run pdflatex needs the link
