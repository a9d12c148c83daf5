"""End-to-end: summary.json -> report.md, report.tex, report.pdf (three full LaTeX builds)."""

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fake_summary import HOSTILE, make_summary
from minima.io import MinimaError, write_json
from report import figures, latex
from report.__main__ import main
from report.findings import aggregate
from report.render import render_report, render_text

needs_latex = pytest.mark.skipif(bool(latex.missing_tools()), reason="LaTeX is not installed")
needs_pdftotext = pytest.mark.skipif(
    bool(latex.missing_tools()) or shutil.which("pdftotext") is None,
    reason="LaTeX or pdftotext (poppler-utils) is not installed",
)


def _pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout


def _copy_figures(src: Path, dst: Path) -> None:
    # With the figures (and their stamp) already current, a render skips drawing.
    shutil.copytree(src / "figures", dst / "figures")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full render of the fake summary through the CLI, figures drawn once."""
    root = tmp_path_factory.mktemp("report")
    summary = make_summary()
    write_json(root / "summary.json", summary)
    out = root / "a"
    pdf_args = [] if latex.missing_tools() else ["--require-pdf"]
    assert main(["--summary", str(root / "summary.json"), "--out", str(out), *pdf_args]) == 0
    return root, out, summary


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_every_figure_function_writes_a_figure(built, name):
    _, out, _ = built
    pdf, png = out / "figures" / f"{name}.pdf", out / "figures" / f"{name}.png"
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000
    assert png.read_bytes().startswith(b"\x89PNG")


@needs_pdftotext
def test_pdf_has_the_tables_and_numbers(built):
    _, out, summary = built
    text = _pdf_text(out / "report.pdf")
    for header in ("Kendall τ", "Spearman ρ", "95 % CI of τ", "Test acc. (%)", "Optimizer",
                   "Reproduction of the original study", "Reproducibility checklist",
                   "Sharp minima can generalize", "Diverged runs", "Limitations"):
        assert header in text, header
    sgd = aggregate(summary, "sgd", "test_accuracy")
    assert f"{100 * sgd['mean']:.2f}" in text
    assert "99.03" in text  # the original study's SGD accuracy
    assert summary["runs"][0]["run"] in text
    assert "diverged" in text and "make all PROFILE=quick" in text
    assert "Figure 9" in text and "is omitted" not in text


def test_markdown_has_the_same_content(built):
    _, out, summary = built
    md = (out / "report.md").read_text()
    sgd = aggregate(summary, "sgd", "test_accuracy")
    assert f"{100 * sgd['mean']:.2f}" in md and "| Optimizer | Original | This study |" in md
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) == len(figures.FIGURES)
    assert all((out / link).is_file() for link in links)


def test_rebuild_is_byte_identical(built):
    root, out, _ = built
    again = root / "b"
    _copy_figures(out, again)
    assert main(["--summary", str(root / "summary.json"), "--out", str(again)]) == 0
    names = ["report.md", "report.tex"] + ([] if latex.missing_tools() else ["report.pdf"])
    for name in names:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


@needs_pdftotext
def test_hostile_strings_do_not_break_the_build(built):
    root, out, _ = built
    summary = make_summary(profile="seed", seeds=(100, 101), interpolation=False, hostile=True)
    odd = root / "o ut_%&#${}~^\\x"
    write_json(odd / "summary.json", summary)
    result = render_report(odd / "summary.json", out / "figures", odd, require_pdf=True, draw_figures=False)
    text = _pdf_text(result.pdf)
    assert text.count(HOSTILE) >= 5  # profile, description, run id, command, data path
    assert "CPU a_b" in text and "é??" in text  # CJK and emoji become "?"
    assert "Figure 9 (rescaling experiment) is omitted" in text and "no interpolation" in text
    md = result.markdown.read_text()
    assert r"a\_b%c\&d\#e\$f{g}h\~i^j\\k" in md


def test_missing_latex_writes_markdown_and_says_how(built, tmp_path, monkeypatch, capsys):
    root, out, _ = built
    _copy_figures(out, tmp_path)
    monkeypatch.setenv("PATH", "")
    assert main(["--summary", str(root / "summary.json"), "--out", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert "apt-get install latexmk texlive-latex-base" in said and "make report" in said
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.pdf").exists()
    fresh = tmp_path / "fresh"
    assert main(["--summary", str(root / "summary.json"), "--out", str(fresh), "--require-pdf"]) == 2
    assert "apt-get install" in capsys.readouterr().err
    assert not fresh.exists()


def test_no_pdf_flag(built, tmp_path):
    root, out, _ = built
    _copy_figures(out, tmp_path)
    assert main(["--summary", str(root / "summary.json"), "--out", str(tmp_path), "--no-pdf"]) == 0
    assert (tmp_path / "report.tex").is_file() and not (tmp_path / "report.pdf").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "missing file"),
        ("{not json", "corrupt JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"profile": "quick"}), "missing field 'runs'"),
        (json.dumps({"profile": "q", "runs": [{"run": "x", "optimizer": "sgd", "status": "ok"}]}),
         "runs[0]: missing field 'seed'"),
    ],
)
def test_bad_summary_is_one_line_and_writes_nothing(tmp_path, capsys, content, message):
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    assert main(["--summary", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@needs_latex
def test_latex_error_is_reported_and_nothing_replaced(tmp_path):
    (tmp_path / "report.pdf").write_bytes(b"previous")
    broken = "\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n"
    with pytest.raises(MinimaError, match="Undefined control sequence"):
        latex.build_pdf(broken, [], tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").read_bytes() == b"previous"
    assert (tmp_path / "report.log").is_file()


@pytest.mark.parametrize(
    "variant",
    [
        dict(diverged=False, dinh=False, interpolation=False),
        dict(profile="seed", seeds=(100,), interpolation=False),
        dict(seeds=(0, 1, 2)),
    ],
)
def test_templates_render_every_variant(variant):
    summary = make_summary(**variant)
    md, tex = render_text(summary, figures.plan(summary), "figures")
    assert tex.rstrip().endswith("\\end{document}") and "## 6 Limitations" in md
    if not variant.get("diverged", True) or variant.get("profile") == "seed":
        assert "No run diverged" in md
    if not variant.get("dinh", True) or variant.get("profile") == "seed":
        assert "rescaling experiment was not run" in md
    if not variant.get("interpolation", True):
        assert "no interpolation between minima" in md


def test_a_minimal_summary_still_renders():
    # Only the required fields: every optional block of the schema is absent.
    runs = [
        {"run": f"r{i}", "optimizer": opt, "seed": i, "status": "ok", "test_accuracy": 0.9 + 0.01 * i,
         "train_accuracy": 0.95, "generalization_gap": 0.05 - 0.01 * i}
        for i, opt in enumerate(["sgd", "adam", "mystery"])
    ]
    summary = {"profile": "bare", "runs": runs}
    plan = figures.plan(summary)
    assert all(reason is not None for reason in plan.values())
    md, tex = render_text(copy.deepcopy(summary), plan, "figures")
    assert "mystery" in md and "Figure omitted" in md and "\\end{document}" in tex
