"""python -m report --summary build/summary.json --figures build/figures --out build [--no-pdf]

Writes report.md, report.tex and report.pdf, and the flat exports runs.csv and claims.csv.

Exit status 0 when the report is written (also when LaTeX is missing: the Markdown is, and
one line says how to get the PDF), 2 on a user-fixable error (missing or corrupt summary,
LaTeX failure, --require-pdf without LaTeX), with a one-line message on stderr; 130 on Ctrl-C
and 143 on SIGTERM, with one line: report.md, .tex and .pdf are replaced together or not at all.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

from minima import paths
from minima.interrupts import EXIT_STATUS, Terminated, sigterm_raises
from minima.io import MinimaError
from minima.schema import read_summary
from report.export import write_exports
from report.render import render_report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    build = paths.layout().build
    parser = argparse.ArgumentParser(
        prog="python -m report", description=__doc__.splitlines()[0],
        epilog="Exit status: 0 written; 2 a user-fixable error (one line); 130 on Ctrl-C, 143 on SIGTERM (one line). "
               "report.md, .tex and .pdf are replaced together or not at all.")
    parser.add_argument("--summary", type=Path, default=build / "summary.json", help="summary.json to render")
    parser.add_argument("--out", type=Path, default=build, help="directory for report.md/.tex/.pdf")
    parser.add_argument("--figures", type=Path, default=None, help="figure directory (default: OUT/figures)")
    pdf = parser.add_mutually_exclusive_group()
    pdf.add_argument("--no-pdf", action="store_true", help="write Markdown and LaTeX only")
    pdf.add_argument("--require-pdf", action="store_true", help="fail when the PDF cannot be built")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures = args.figures if args.figures is not None else args.out / "figures"
    try:
        with sigterm_raises():
            result = render_report(
                args.summary, figures, args.out, pdf=not args.no_pdf, require_pdf=args.require_pdf
            )
    except MinimaError as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        # LaTeX and its temporary directory are gone by now (the exception unwound through them)
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        state = "the new report was written first" if getattr(exc, "written", False) else \
            f"the previous report in {args.out} is left as it was"
        print(f"report: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}; {state}", file=sys.stderr)
        return EXIT_STATUS[signum]
    written = [result.markdown, result.tex] + ([result.pdf] if result.pdf else [])
    written += write_exports(read_summary(args.summary), args.out)
    print("report: wrote " + ", ".join(str(p) for p in written))
    if result.note and not args.no_pdf:
        print(f"report: {result.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
