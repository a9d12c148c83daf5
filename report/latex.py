"""Build the PDF with latexmk, reproducibly, without touching the output until it succeeds.

latexmk runs pdflatex in a private temporary directory holding report.tex and copies of the
figure PDFs (so no path, however odd, reaches TeX), in a process group of its own that is stopped
when this process is interrupted; the caller then writes the PDF into place together with the
Markdown and LaTeX sources. Byte-identical rebuilds: SOURCE_DATE_EPOCH with FORCE_SOURCE_DATE=1 pins every
date pdfTeX would take from the clock, and the template sets \\pdfinfoomitdate=1,
\\pdftrailerid{} and \\pdfsuppressptexinfo=-1 (no dates, no random /ID, no temp-dir file
names of included figures).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from minima.io import MinimaError, write_bytes, write_text

TOOLS = ("latexmk", "pdflatex")
INSTALL_HINT = (
    "apt-get install latexmk texlive-latex-base texlive-latex-recommended "
    "texlive-fonts-recommended texlive-latex-extra, then make report"
)
LATEXMK = ("latexmk", "-norc", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error")
TIMEOUT_S = 300
SOURCE_DATE_EPOCH = "0"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def missing_message(markdown: Path) -> str:
    return (
        f"wrote {markdown}; no PDF because {' and '.join(missing_tools()) or 'LaTeX'} "
        f"is not installed: {INSTALL_HINT}"
    )


# a line or table wider than the text by more than this runs visibly into the margin or off the page
OVERFULL_TOLERANCE_PT = 5.0


def overfull_points(log: str) -> list[float]:
    """How far each overfull line of a TeX log runs past its box, in points."""
    return [float(width) for width in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]


def _first_error(log: str) -> str:
    """The first TeX error line (file:line: message or ! message) of a log."""
    for line in log.splitlines():
        if line.startswith("!") or re.match(r"^\S+\.tex:\d+: ", line):
            return line.strip()
    return "see the log"


def compile_pdf(tex_source: str, figure_pdfs: Iterable[Path], log_path: Path) -> bytes:
    """The PDF of tex_source (which includes figures/<name>.pdf), as bytes: nothing beside the
    report is touched, except `log_path`, written when LaTeX fails. MinimaError on failure."""
    with tempfile.TemporaryDirectory(prefix="minima-report-") as tmp:
        work = Path(tmp)
        (work / "figures").mkdir()
        for fig in figure_pdfs:
            shutil.copyfile(fig, work / "figures" / Path(fig).name)
        (work / "report.tex").write_text(tex_source)
        env = {
            **os.environ,
            "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
            "FORCE_SOURCE_DATE": "1",
            "TEXMFOUTPUT": str(work),
        }
        returncode, output = _run([*LATEXMK, "report.tex"], work, env)
        log_file = work / "report.log"
        log = log_file.read_text(errors="replace") if log_file.exists() else output
        built = work / "report.pdf"
        if returncode != 0 or not built.is_file():
            kept = write_text(log_path, log)
            raise MinimaError(f"LaTeX failed: {_first_error(log)} (full log: {kept}); the previous report is left as it was")
        Path(log_path).unlink(missing_ok=True)
        too_wide = [w for w in overfull_points(log) if w > OVERFULL_TOLERANCE_PT]
        if too_wide:  # the PDF is still worth having; the reader would lose what runs off the page
            print(f"report: warning: {len(too_wide)} line(s) of the PDF run past the margin, by up to "
                  f"{max(too_wide):.0f} pt", file=sys.stderr)
        return built.read_bytes()


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """latexmk in a process group of its own, stopped with every pdflatex it started when this
    process is interrupted or the build times out, before its temporary directory is removed."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MinimaError(f"latexmk did not finish within {TIMEOUT_S} s") from None
    finally:
        if proc.poll() is None:
            _stop(proc)
    return proc.returncode, output


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.stdout is not None:
        proc.stdout.close()


def build_pdf(tex_source: str, figure_pdfs: Iterable[Path], out_pdf: Path) -> Path:
    """Compile tex_source to out_pdf (written atomically); MinimaError on failure."""
    out_pdf = Path(out_pdf)
    return write_bytes(out_pdf, compile_pdf(tex_source, figure_pdfs, out_pdf.with_suffix(".log")))
