"""Render build/report.md and build/report.tex (and the PDF) from build/summary.json.

The Python side digests the summary into table rows and sentences (report.findings); the
templates only place them. Two Jinja environments, one per output:

- LaTeX: delimiters `((* *))` (blocks), `((( )))` (values) and `((= =))` (comments), which
  cannot clash with TeX's braces and percent signs;
- Markdown: Jinja's usual delimiters.

Both are strict: an undefined name is an error (StrictUndefined), and `_finalize` refuses to
print any value that did not pass through exactly one filter of report.formats (strings
through `tex`/`md`, numbers through `pct`, `sci`, `pm`, ...). That is how every string from
the summary, the config or a path gets escaped exactly once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import jinja2

from minima import paths
from minima.io import MinimaError, write_text
from report import figures as figs
from report import formats, latex, style
from report.findings import (
    ACTIVATIONS,
    POOLINGS,
    Findings,
    aggregate,
    findings,
    get_path,
    measures_of,
    ok_runs,
    optimizers_of,
    run_value,
)
from report.load import load_summary

TEX_TEMPLATE = "report.tex.j2"
MD_TEMPLATE = "report.md.j2"
FIGURE_DIR_IN_TEX = "figures"  # report.tex finds its figures here, beside it


def _finalize(value: Any) -> Any:
    if hasattr(value, "__html__"):
        return value
    raise TypeError(
        f"template printed an unfiltered {type(value).__name__} ({str(value)[:60]!r}): "
        "pass strings through tex/md and numbers through a number filter"
    )


def _environment(**delimiters: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # with _finalize: only Tex/Md values (which carry __html__) print
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        **delimiters,
    )


def tex_environment() -> jinja2.Environment:
    env = _environment(
        block_start_string="((*",
        block_end_string="*))",
        variable_start_string="(((",
        variable_end_string=")))",
        comment_start_string="((=",
        comment_end_string="=))",
    )
    env.filters.update(formats.TEX_FILTERS)
    return env


def md_environment() -> jinja2.Environment:
    env = _environment()
    env.filters.update(formats.MD_FILTERS)
    return env


# ---- context -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Head:
    """A column head or quantity name, already in each output's markup."""

    name: str
    tex: formats.Tex
    md: formats.Md
    words: str  # plain text, escaped by the template


def head(summary: Mapping[str, Any], name: str) -> Head:
    label = style.quantity_label(name)
    if label is not None:
        return Head(name, formats.Tex(label.tex), formats.Md(formats.escape_md(label.md)), label.words)
    text = str(name)
    long = str((summary.get("measures") or {}).get(name, name))
    return Head(name, formats.tex(text), formats.md(text), long)


def _dataset(summary: Mapping[str, Any]) -> str:
    name = get_path(summary, "data", "dataset") or get_path(summary, "runs", 0, "dataset") or "the data"
    return str(name).upper()


def _subset_text(summary: Mapping[str, Any], stage: str) -> str:
    n = get_path(summary, "settings", stage, "n_samples")
    n_train = get_path(summary, "data", "n_train")
    if not isinstance(n, int) or n <= 0 or (isinstance(n_train, int) and n >= n_train):
        total = f"all {n_train:,}" if isinstance(n_train, int) else "all"
        return f"{total} {_dataset(summary)} training images"
    return f"a fixed {n:,}-image subset of the {_dataset(summary)} training set"


def data_descriptions(summary: Mapping[str, Any]) -> dict[str, str]:
    n_test = get_path(summary, "data", "n_test")
    size = f"{n_test:,}-image " if isinstance(n_test, int) else ""
    test = f"the {size}{_dataset(summary)} test set"
    return {
        "test": test,
        "curvature": _subset_text(summary, "curvature"),
        "sharpness": _subset_text(summary, "sharpness"),
        "landscape": _subset_text(summary, "landscape"),
    }


def _hparams(summary: Mapping[str, Any]) -> dict:
    table = summary.get("optimizers") or {}
    columns: list[str] = []
    for params in table.values():
        for key in params if isinstance(params, Mapping) else ():
            if key not in columns:
                columns.append(key)
    rows = [
        {
            "label": style.optimizer_label(opt),
            "values": [
                formats.value_text(params[key]) if isinstance(params, Mapping) and key in params else None
                for key in columns
            ],
        }
        for opt, params in table.items()
    ]
    return {"columns": columns, "rows": rows}


def _settings(summary: Mapping[str, Any]) -> list[dict]:
    out = []
    for stage, values in (summary.get("settings") or {}).items():
        if isinstance(values, Mapping) and values:
            items = [(str(k), formats.value_text(v)) for k, v in values.items()]
            out.append({"stage": str(stage), "items": items})
    return out


def _stat(summary: Mapping[str, Any], opt: str, quantity: str) -> dict:
    return aggregate(summary, opt, quantity)


def _aggregate_rows(summary: Mapping[str, Any], measures: list[str]) -> list[dict]:
    rows = []
    for opt in optimizers_of(summary):
        runs = [r for r in summary["runs"] if r["optimizer"] == opt]
        if not runs:
            continue
        rows.append(
            {
                "label": style.optimizer_label(opt),
                "n": len(runs),
                "n_ok": sum(r.get("status") == "ok" for r in runs),
                "test_accuracy": _stat(summary, opt, "test_accuracy"),
                "train_loss": _stat(summary, opt, "train_loss"),
                "gap": _stat(summary, opt, "generalization_gap"),
                "curvature": [_stat(summary, opt, q) for q in style.CURVATURE_QUANTITIES],
                "measures": [_stat(summary, opt, m) for m in measures],
            }
        )
    return rows


def _run_rows(summary: Mapping[str, Any], measures: list[str]) -> list[dict]:
    order = {o: i for i, o in enumerate(optimizers_of(summary))}
    runs = sorted(summary["runs"], key=lambda r: (order.get(r["optimizer"], len(order)), r["seed"]))
    return [
        {
            "run": str(r["run"]),
            "label": style.optimizer_label(r["optimizer"]),
            "seed": r["seed"],
            "ok": r.get("status") == "ok",
            "status": str(r.get("status")),
            "epochs": r.get("epochs") if isinstance(r.get("epochs"), int) else None,
            "train_loss": run_value(r, "train_loss"),
            "test_accuracy": run_value(r, "test_accuracy"),
            "gap": run_value(r, "generalization_gap"),
            "curvature": [run_value(r, q) for q in style.CURVATURE_QUANTITIES],
            "measures": [run_value(r, m) for m in measures],
        }
        for r in runs
    ]


def _correlations(summary: Mapping[str, Any], found: Findings) -> list[dict]:
    targets: dict[str, list] = {}
    for c in found.correlations:
        targets.setdefault(c.target, []).append(
            {
                "head": head(summary, c.measure),
                "tau": c.kendall_tau,
                "spearman": c.spearman,
                "ci": c.ci95,
                "n": c.n,
                "significant": c.significant,
            }
        )
    return [{"target": head(summary, t), "rows": rows} for t, rows in targets.items()]


def _dinh(summary: Mapping[str, Any], measures: list[str]) -> dict:
    info = summary.get("dinh_info") or {}
    rows = sorted(summary.get("dinh") or [], key=lambda r: r.get("scale", 0.0))
    num = lambda r, k: r.get(k) if isinstance(r.get(k), (int, float)) else None  # noqa: E731
    return {
        "available": bool(rows),
        "note": str(info.get("note") or ""),
        "label": style.optimizer_label(str(info.get("optimizer") or "?")),
        "seed": info.get("seed") if isinstance(info.get("seed"), int) else None,
        "run": str(info.get("run") or "?"),
        "layers": ", ".join(str(x) for x in info.get("layers") or []),
        "rows": [
            {
                "scale": num(r, "scale"),
                "top": num(r, "top_eigenvalue"),
                "trace": num(r, "trace"),
                "measures": [num(r, m) for m in measures],
                "accuracy": num(r, "test_accuracy"),
            }
            for r in rows
        ],
    }


def _original(summary: Mapping[str, Any], found: Findings) -> dict:
    rows = []
    for r in summary.get("original_study") or []:
        ours = r.get("test_accuracy_mean")
        theirs = r.get("original_test_accuracy")
        both = isinstance(ours, (int, float)) and isinstance(theirs, (int, float))
        rows.append(
            {
                "label": style.optimizer_label(str(r.get("optimizer"))),
                "original": theirs if isinstance(theirs, (int, float)) else None,
                "ours": {"mean": ours, "std": r.get("test_accuracy_std")},
                "n": r.get("n") if isinstance(r.get("n"), int) else None,
                "diff": (ours - theirs) if both else None,
            }
        )
    return {"rows": rows, "same_setup": found.same_setup, "differences": list(found.differences)}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _model(model: Mapping[str, Any]) -> dict[str, str]:
    out = {str(k): formats.value_text(v) for k, v in model.items() if k != "n_params"}
    if "activation" in out:
        out["activation"] = ACTIVATIONS.get(out["activation"], out["activation"])
    if "pooling" in out:
        out["pooling"] = POOLINGS.get(out["pooling"], out["pooling"])
    return out


def _environment_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    env = summary.get("environment") or {}
    names = {"python": "Python", "torch": "PyTorch", "cuda": "CUDA", "device": "Device", "cpu": "CPU",
             "platform": "Platform", "threads": "Threads"}
    rows = [(names.get(k, str(k)), formats.value_text(v) if v is not None else "none") for k, v in env.items()]
    return rows


def _timing_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    timing = summary.get("timing") or {}
    return [(str(stage), formats.duration(seconds)) for stage, seconds in timing.items()
            if isinstance(seconds, (int, float))]


def _figure_context(plan: Mapping[str, str | None], figures_rel: str) -> dict[str, dict]:
    return {
        name: {
            "available": reason is None,
            "reason": reason or "",
            "tex": formats.Tex(f"{FIGURE_DIR_IN_TEX}/{name}.pdf"),
            "md": formats.Md(quote(f"{figures_rel}/{name}.png")),
        }
        for name, reason in plan.items()
    }


def build_context(summary: Mapping[str, Any], plan: Mapping[str, str | None], figures_rel: str) -> dict:
    found = findings(summary)
    measures = measures_of(summary)
    model = summary.get("model") or {}
    data = summary.get("data") or {}
    commit = str(summary.get("git_commit") or "unknown")
    seeds = summary.get("seeds") or sorted({r["seed"] for r in summary["runs"]})
    div = [
        {"run": d.run, "label": style.optimizer_label(d.optimizer), "seed": d.seed, "epoch": d.epoch}
        for d in found.diverged
    ]
    settings = {s["stage"]: dict(s["items"]) for s in _settings(summary)}
    return {
        "profile": str(summary["profile"]),
        "description": str(summary.get("profile_description") or ""),
        "commit": commit,
        "commit_short": commit[:12],
        "dirty": bool(summary.get("git_dirty")),
        "created_by": str(summary.get("created_by") or "unknown"),
        "environment": _environment_rows(summary),
        "timing": _timing_rows(summary),
        "dataset": _dataset(summary),
        "data_source": str(data.get("source") or "unknown"),
        "checksums": [(str(k), str(v)) for k, v in (data.get("sha256") or {}).items()],
        "n_train": data.get("n_train") if isinstance(data.get("n_train"), int) else None,
        "n_test": data.get("n_test") if isinstance(data.get("n_test"), int) else None,
        "preprocessing": str(data.get("preprocessing") or "not recorded"),
        "model": _model(model),
        "n_params": model.get("n_params") if isinstance(model.get("n_params"), int) else None,
        "seeds": ", ".join(str(s) for s in seeds),
        "n_seeds": len(seeds),
        "n_runs": len(summary["runs"]),
        "n_ok": len(ok_runs(summary)),
        "optimizers": [style.optimizer_label(o) for o in optimizers_of(summary)],
        "hparams": _hparams(summary),
        "settings": _settings(summary),
        "setting": settings,
        "curvature_heads": [head(summary, q) for q in style.CURVATURE_QUANTITIES],
        "measures": [
            {"head": head(summary, m), "label": str((summary.get("measures") or {}).get(m, m))}
            for m in measures
        ],
        "aggregates": _aggregate_rows(summary, measures),
        "extremes": [
            {
                "head": head(summary, e.quantity),
                "sharpest": style.optimizer_label(e.sharpest),
                "sharpest_mean": e.sharpest_mean,
                "flattest": style.optimizer_label(e.flattest),
                "flattest_mean": e.flattest_mean,
                "ratio": e.sharpest_mean / e.flattest_mean if e.flattest_mean > 0 else None,
            }
            for e in found.extremes
        ],
        "runs": _run_rows(summary, measures),
        "correlations": _correlations(summary, found),
        "dinh": _dinh(summary, measures),
        "interpolation": {
            "a": style.optimizer_label(str(get_path(summary, "interpolation", "a") or "?")),
            "b": style.optimizer_label(str(get_path(summary, "interpolation", "b") or "?")),
            "barrier": _number(get_path(summary, "interpolation", "barrier")),
        },
        "original": _original(summary, found),
        "diverged": div,
        "findings": found,
        "data_desc": data_descriptions(summary),
        "figures": _figure_context(plan, figures_rel),
    }


# ---- the whole render ----------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    markdown: Path
    tex: Path
    pdf: Path | None
    note: str | None  # why there is no PDF


def render_text(summary: Mapping[str, Any], plan: Mapping[str, str | None], figures_rel: str) -> tuple[str, str]:
    """(markdown, latex) source for a summary; pure."""
    context = build_context(summary, plan, figures_rel)
    markdown = md_environment().get_template(MD_TEMPLATE).render(context)
    tex = tex_environment().get_template(TEX_TEMPLATE).render(context)
    return markdown, tex


def _figures_rel(figures_dir: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(Path(figures_dir).resolve(), Path(out_dir).resolve())).as_posix()


def _check_figures(plan: Mapping[str, str | None], figures_dir: Path) -> None:
    for name, reason in plan.items():
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

    The summary is read and both documents rendered in memory before anything is written, so
    a missing or corrupt summary leaves no output behind. draw_figures=False reuses the
    figures already in figures_dir.
    """
    summary = load_summary(Path(summary_path))
    figures_dir, out_dir = Path(figures_dir), Path(out_dir)
    plan = figs.plan(summary)
    try:
        markdown, tex = render_text(summary, plan, _figures_rel(figures_dir, out_dir))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MinimaError(f"cannot render the report from {summary_path}: {exc}") from exc
    if require_pdf and pdf and latex.missing_tools():
        raise MinimaError(latex.missing_message(out_dir / "report.md"))
    if draw_figures:
        figs.render_figures(summary, figures_dir)
    else:
        _check_figures(plan, figures_dir)
    md_path = write_text(out_dir / "report.md", markdown)
    tex_path = write_text(out_dir / "report.tex", tex)
    _link_figures(figures_dir, out_dir)
    if not pdf:
        return Rendered(md_path, tex_path, None, "PDF not requested (--no-pdf)")
    if latex.missing_tools():
        return Rendered(md_path, tex_path, None, latex.missing_message(md_path))
    figure_pdfs = [figures_dir / f"{name}.pdf" for name, reason in plan.items() if reason is None]
    pdf_path, key = out_dir / "report.pdf", _pdf_key(tex, figure_pdfs)
    stamp = out_dir / PDF_STAMP
    # The PDF is a pure function of the .tex and the figures: skip LaTeX when neither changed.
    if not (pdf_path.is_file() and stamp.is_file() and stamp.read_text().strip() == key):
        stamp.unlink(missing_ok=True)
        latex.build_pdf(tex, figure_pdfs, pdf_path)
        write_text(stamp, key + "\n")
    return Rendered(md_path, tex_path, pdf_path, None)


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
