"""End to end: summary.json -> report.md, report.tex, report.pdf (two full LaTeX builds, plus one
byte-identical rebuild), checked by their text."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stated
import variants
from variants import typed
from minima.io import MinimaError, write_json
from report import figures, formats, latex, style
from report.__main__ import main
from report.render import PDF_STAMP, render_report, render_text
from testkit import REPO
needs_latex = pytest.mark.skipif(bool(latex.missing_tools()), reason="LaTeX is not installed")
needs_pdftotext = pytest.mark.skipif(
    bool(latex.missing_tools()) or shutil.which("pdftotext") is None,
    reason="LaTeX or pdftotext (poppler-utils) is not installed",
)
FORBIDDEN = ("sign change", "no correlation", "FASHION-MNIST")
REPLICATION_ONLY = ("replication_scatter",)  # drawn only for a study on several datasets


def _pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _copy_figures(src: Path, dst: Path) -> None:
    # With the figures (and their stamp) already current, a render skips drawing.
    shutil.copytree(src / "figures", dst / "figures")


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_summary):
    """One full render of the tiny summary through the CLI, figures drawn once."""
    root = tmp_path_factory.mktemp("report")
    write_json(root / "summary.json", tiny_summary)
    out = root / "a"
    pdf_args = [] if latex.missing_tools() else ["--require-pdf"]
    assert main(["--summary", str(root / "summary.json"), "--out", str(out), *pdf_args]) == 0
    return root, out


@pytest.fixture(scope="module")
def edge(built, tiny_summary):
    """Every edge case at once (a diverged run, Dinh not applicable, a comparable original study,
    every verdict, a significant correlation, hostile strings, Fashion-MNIST), rendered to PDF
    into a directory with an odd name, reusing the figures already drawn."""
    root, out = built
    summary = variants.edge_cases(tiny_summary)
    odd = root / "o ut_%&#${}~^\\x"
    write_json(odd / "summary.json", summary)
    # the tiny study's figures, and the one only a replication has (a second dataset)
    drawn = root / "edge-figures"
    shutil.copytree(out / "figures", drawn)
    for name in REPLICATION_ONLY:
        figures.render_figure(name, typed(summary), drawn)
    result = render_report(odd / "summary.json", drawn, odd, pdf=not latex.missing_tools(), draw_figures=False)
    return summary, result, drawn


def test_overfull_lines_are_read_from_the_log():
    log = "Overfull \\hbox (408.22012pt too wide) in paragraph at lines 179--191\nOverfull \\hbox (0.5pt too wide) in x\n"
    assert latex.overfull_points(log) == [408.22012, 0.5]


@needs_latex
def test_every_table_fits_the_page(built, capsys):
    """The six-optimizer hyperparameter table once ran 408 pt off the page, hiding SAM's rho."""
    root, out = built
    tex = (out / "report.tex").read_text()
    latex.build_pdf(tex, sorted((out / "figures").glob("*.pdf")), root / "fit" / "report.pdf")
    assert "past the margin" not in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_every_figure_function_writes_a_figure(built, edge, name):
    folder = edge[2] if name in REPLICATION_ONLY else built[1] / "figures"
    pdf, png = folder / f"{name}.pdf", folder / f"{name}.png"
    assert pdf.read_bytes().startswith(b"%PDF")
    assert png.read_bytes().startswith(b"\x89PNG")


@needs_pdftotext
def test_pdf_states_the_summary(built, tiny_summary):
    _, out = built
    text = _pdf_text(out / "report.pdf")
    flat = _flat(text)
    for header in ("Published claims tested", "Verdict rules", "Does sharpness predict generalization?",
                   "Minima per optimizer", "Sharp minima can generalize", "Training dynamics",
                   "Runs that did not converge", "Reproduction of the original study", "Limitations",
                   "Reproducibility checklist", "Per-run results"):
        assert header in text, header
    # The claims table's verdicts, each claim's as the summary gives it.
    assert text.index("Published claims tested") < text.index("Setup")
    for claim in tiny_summary["claims"]:
        assert style.verdict_words(claim["verdict"]) in text
    # A tau exactly as the correlation table prints it (two decimals; positive, so no minus glyph).
    row = next(c for c in tiny_summary["correlations"] if c["kendall_tau"] and c["kendall_tau"] > 0.3)
    assert f"{row['kendall_tau']:.2f}" == str(formats.md_num(row["kendall_tau"]))
    assert re.search(rf"balanced λmax\s+{row['kendall_tau']:.2f}\s", text) or row["measure"] != "balanced_top_eigenvalue"
    assert f"{row['kendall_tau']:.2f}" in text
    data = tiny_summary["data"]
    assert f"{formats.words_int(data['n_train'])} training and {formats.words_int(data['n_test'])} test images" in flat
    assert data["display_name"] in text and tiny_summary["runs"][0]["run"] in text
    assert "No comparison with the original study is made" in flat
    assert tiny_summary["original_study"]["reason"] in flat.replace("’", "'")
    assert "Original This study" not in flat  # the comparison table is left out
    assert "undetermined" in flat and "Figure 13" in text and "is omitted" not in text
    for word in FORBIDDEN:
        assert word not in flat, word


def test_markdown_has_the_same_content(built, tiny_summary):
    _, out = built
    md = (out / "report.md").read_text()
    assert md.index("## 1 Published claims tested") < md.index("## 2 Setup")
    for claim in tiny_summary["claims"]:
        assert f"**{style.verdict_words(claim['verdict'])}**" in md
    best = tiny_summary["best"]
    assert f"{100 * best['mean']:.2f}" in md
    assert "| Optimizer | Original | This study |" not in md
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) == len(figures.FIGURES) - len(REPLICATION_ONLY)  # a one-dataset report shows no replication
    assert all((out / link).is_file() for link in links)
    for word in FORBIDDEN:
        assert word not in md, word


def test_rebuild_is_byte_identical(built):
    root, out = built
    again = root / "b"
    _copy_figures(out, again)
    assert main(["--summary", str(root / "summary.json"), "--out", str(again)]) == 0
    names = ["report.md", "report.tex"] + ([] if latex.missing_tools() else ["report.pdf"])
    for name in names:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


@needs_pdftotext
def test_edge_cases_render_to_pdf(edge):
    summary, result, _ = edge
    text = _pdf_text(result.pdf)
    flat = _flat(text)
    assert text.count(variants.HOSTILE) >= 5  # profile, description, run id, command, CPU
    assert "CPU a_b" in text and "with CJK ? and emoji ?" in flat  # CJK and emoji become "?"
    assert "1 of 12 runs diverged" in flat and "diverged at epoch 3" in flat
    assert "Figure 12 (rescaling experiment) is omitted" in flat and variants.TANH_NOTE in flat.replace("’", "'")
    assert "99.03" in text  # the original study's SGD accuracy: comparable now
    for words in ("not reproduced", "inconclusive", "not testable"):
        assert words in text
    assert "a positive one for λmax" in flat
    assert "Fashion-MNIST" in text
    for word in FORBIDDEN:
        assert word not in flat, word


def test_edge_cases_markdown(edge):
    summary, result, _ = edge
    md = result.markdown.read_text()
    assert r"a\_b%c\&d\#e\$f{g}h\~i^j\\k" in md
    assert "| Optimizer | Original | This study | n | Difference (pp) |" in md
    assert "| SGD | 99.03 |" in md
    assert "Fashion-MNIST" in md and "FASHION" not in md
    assert "## 4 Replication on other data" in md and "| # | Claim (source) |" in md.replace("\\#", "#")
    assert "figures/replication_scatter.png" in md
    assert re.search(r"\*Table \d+: Diverged runs \(profile", md)


def test_report_renders_without_torch(built, tmp_path):
    """`python -m report` in a process where `import torch` fails."""
    root, out = built
    blocker = tmp_path / "no-torch"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text('raise ImportError("torch is absent in this test")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}
    assert subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True).returncode != 0
    _copy_figures(out, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "report", "--summary", str(root / "summary.json"), "--out", str(tmp_path),
         "--figures", str(tmp_path / "figures"), "--no-pdf"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.md").read_text() == (out / "report.md").read_text()


def test_report_imports_nothing_that_needs_torch():
    allowed = {"minima.interrupts", "minima.io", "minima.paths", "minima.schema", "minima.settings"}
    for path in (REPO / "report").rglob("*.py"):
        source = path.read_text()
        imported = set(re.findall(r"^\s*(?:from|import) (minima(?:\.\w+)*)", source, flags=re.MULTILINE))
        imported |= {f"minima.{name.strip()}" for names in re.findall(r"^\s*from minima import ([\w, ]+)", source,
                                                                       flags=re.MULTILINE)
                     for name in names.split(",")}
        imported.discard("minima")
        assert imported <= allowed, (path, imported - allowed)
        assert not re.search(r"^\s*(from|import) torch", source, flags=re.MULTILINE), path


def test_missing_latex_writes_markdown_and_says_how(built, tmp_path, monkeypatch, capsys):
    root, out = built
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
    root, out = built
    _copy_figures(out, tmp_path)
    assert main(["--summary", str(root / "summary.json"), "--out", str(tmp_path), "--no-pdf"]) == 0
    assert (tmp_path / "report.tex").is_file() and not (tmp_path / "report.pdf").exists()


def _without(summary: dict, key: str) -> str:
    return json.dumps({k: v for k, v in summary.items() if k != key})


def _bad_seed(summary: dict) -> str:
    changed = json.loads(json.dumps(summary))
    changed["runs"][0]["seed"] = "zero"
    return json.dumps(changed)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: None, "missing file"),
        (lambda s: "{not json", "invalid JSON"),
        (lambda s: "[]", "expected a JSON object"),
        (lambda s: json.dumps({**s, "schema": 1}), "schema 1 is not supported"),
        (lambda s: _without(s, "claims"), "claims"),
        (_bad_seed, "runs[0].seed"),
    ],
)
def test_bad_summary_is_one_line_and_writes_nothing(tiny_summary, tmp_path, capsys, make, message):
    path = tmp_path / "summary.json"
    content = make(tiny_summary)
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    assert main(["--summary", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_summary_missing_a_field_in_every_run_is_a_short_line(tiny_summary, tmp_path, capsys):
    """Issue 25, try 7: a field missing from each run once gave a one-line error of 30-254 KB
    (pydantic quotes the whole object a field is missing from)."""
    changed = json.loads(json.dumps(tiny_summary))
    for run in changed["runs"]:
        del run["converged"]
    changed["runs"][0]["seed"] = "x" * 100000
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(changed))
    assert main(["--summary", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    n = len(changed["runs"]) + 1
    assert err.count("\n") == 1 and len(err) < 400, err
    assert f"{n} problems: runs[0].seed: " in err and "got 'xxx" in err
    assert "; runs[0].converged: is missing; runs[1].converged: is missing; and " in err and f"and {n - 3} more" in err


def test_the_settings_tables_state_what_the_runs_used(tiny_summary, tmp_path):
    """Issue 25, try 1: with lists on every axis the report stated `[train]`'s defaults
    (batch_size = 128, label_noise = 0) and weight_decay = 0 for a grid of 0 and 0.0005. Each
    stated value is checked against the runs' own config.json."""
    from minima import facts, pipeline

    profile_path = tmp_path / "lists.toml"
    profile_path.write_text(stated.LISTS_ON_EVERY_AXIS)
    ctx = pipeline.open_context(str(profile_path), root=str(tmp_path / "root"))
    pipeline.write_run_configs(ctx)  # what each run records, before any training
    summary = json.loads(json.dumps(tiny_summary))
    summary["settings"] = {k: v for k, v in ctx.profile.settings_json().items() if k != "study"}
    summary["optimizers"] = facts.optimizer_grid(ctx.profile)
    md, _ = render_text(typed(summary), figures.skip_reasons(typed(summary)), "figures")
    train = stated.stated_train(md)
    assert train["batch_size"] == {"sgd": [32.0, 64.0], "adam": 16.0} and train["label_noise"] == [0.0, 0.2]
    assert stated.stated_hyperparameters(md)["weight_decay"] == {"sgd": [0.0, 0.0005], "adam": 0.0}
    assert stated.check_against_configs(md, tmp_path / "root" / "runs") >= 20


@needs_latex
def test_latex_error_is_reported_and_nothing_replaced(tmp_path):
    (tmp_path / "report.pdf").write_bytes(b"previous")
    broken = "\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n"
    with pytest.raises(MinimaError, match="Undefined control sequence"):
        latex.build_pdf(broken, [], tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").read_bytes() == b"previous"
    assert (tmp_path / "report.log").is_file()


# ---- interrupts and failures during LaTeX: the report triple is replaced together or not at all ----

FAKE_LATEXMK = """#!/bin/sh
# stands in for latexmk: records its pid, then behaves as $FAKE_LATEX says
echo $$ > "$FAKE_LATEX_PIDS"
case "$FAKE_LATEX" in
  hang) sleep 300 & echo $! >> "$FAKE_LATEX_PIDS"; wait ;;
  fail) echo "! Undefined control sequence." > report.log; exit 12 ;;
  *) printf '%%PDF-1.5 new' > report.pdf; echo "fine" > report.log ;;
esac
"""


def _fake_latex(tmp_path: Path, mode: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("latexmk", "pdflatex"):
        (bin_dir / tool).write_text(FAKE_LATEXMK)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "tmp").mkdir()
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path / "tmp"),
            "FAKE_LATEX": mode, "FAKE_LATEX_PIDS": str(tmp_path / "latex.pids")}


def _previous_report(built, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root, out = built
    target = tmp_path / "out"
    target.mkdir()
    _copy_figures(out, target)  # current figures: the render goes straight to LaTeX
    old = {name: f"previous {name}".encode() for name in ("report.md", "report.tex", "report.pdf")}
    for name, data in old.items():
        (target / name).write_bytes(data)
    return target, old


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("signum, status, group", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)])
def test_an_interrupt_during_latex_leaves_the_previous_report_and_no_temporary_files(built, tmp_path, signum, status, group):
    """Issue 25, tries 4 and 5: SIGTERM during LaTeX left a minima-report-* directory behind;
    Ctrl-C (SIGINT to the whole foreground group) printed a 30-line traceback and left the new
    report.md/.tex beside the old report.pdf."""
    out, old = _previous_report(built, tmp_path)
    env = _fake_latex(tmp_path, "hang")
    proc = subprocess.Popen([sys.executable, "-m", "report", "--summary", str(built[0] / "summary.json"), "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    pids = tmp_path / "latex.pids"
    for _ in range(1200):  # LaTeX starts once the documents are rendered
        if pids.is_file() and len(pids.read_text().split()) == 2:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert list((tmp_path / "tmp").glob("minima-report-*"))  # LaTeX is at work in its temporary directory
    os.killpg(proc.pid, signum) if group else proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert err.count("\n") == 1 and "Traceback" not in err and "left as it was" in err, err
    assert {name: (out / name).read_bytes() for name in old} == old
    assert not list((tmp_path / "tmp").iterdir()) and not list(out.glob(".*.tmp"))
    deadline = time.monotonic() + 10
    while any(_alive(int(pid)) for pid in pids.read_text().split()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(int(pid)) for pid in pids.read_text().split())  # latexmk and its pdflatex stopped


def test_a_latex_failure_replaces_nothing(built, tmp_path):
    out, old = _previous_report(built, tmp_path)
    done = subprocess.run([sys.executable, "-m", "report", "--summary", str(built[0] / "summary.json"), "--out", str(out)],
                          cwd=REPO, env=_fake_latex(tmp_path, "fail"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "LaTeX failed" in done.stderr and "left as it was" in done.stderr
    assert {name: (out / name).read_bytes() for name in old} == old and (out / "report.log").is_file()


def test_a_successful_render_replaces_all_three(built, tmp_path, monkeypatch):
    out, old = _previous_report(built, tmp_path)
    monkeypatch.setattr(os, "environ", _fake_latex(tmp_path, "ok"))
    result = render_report(built[0] / "summary.json", out / "figures", out)
    assert result.pdf == out / "report.pdf" and (out / "report.pdf").read_bytes() == b"%PDF-1.5 new"
    assert all((out / name).read_bytes() != data for name, data in old.items())
    # Without LaTeX the PDF stays while it is this .tex's (its stamp matches), and goes when it
    # was built from other sources: it would contradict the Markdown and LaTeX beside it.
    monkeypatch.setattr(os, "environ", {**os.environ, "PATH": ""})
    assert render_report(built[0] / "summary.json", out / "figures", out).pdf is None
    assert (out / "report.pdf").is_file()
    (out / PDF_STAMP).write_text("the key of other sources\n")
    render_report(built[0] / "summary.json", out / "figures", out)
    assert not (out / "report.pdf").exists() and not (out / PDF_STAMP).exists() and (out / "report.md").is_file()


@pytest.mark.parametrize("change", [
    variants.with_dinh_not_applicable, variants.with_comparable_original, variants.with_every_verdict,
    variants.with_nonpositive_trace, variants.with_fashion, lambda s: variants.with_diverged_run(s)[0],
])
def test_templates_render_every_variant(tiny_summary, change):
    summary = change(tiny_summary)
    md, tex = render_text(typed(summary), figures.skip_reasons(typed(summary)), "figures")
    assert tex.rstrip().endswith("\\end{document}") and "## 11 Limitations" in md
    for word in FORBIDDEN:
        assert word not in md and word not in tex
    if summary["original_study"]["comparable"]:
        assert "| Optimizer | Original | This study |" in md and "No comparison with the original study" not in md
    else:
        assert "No comparison with the original study is made" in md
    if not summary["dinh_info"]["applicable"]:
        assert "rescaling experiment was not run" in md and re.search(r"Figure \d+ \(rescaling experiment\) is omitted", md)
