"""The Python side of the two writers: the body template's static prose converted once, when the
template is compiled, and Markdown's numbers of sections, tables and figures.

templates/report.j2 holds every sentence, caption and table of the report once, in plain
Unicode; templates/markup/latex.j2 and markdown.j2 are macro libraries with the same macros
(section, table, row, figure, ref, ...), one per output. `StaticProse` converts the body's
literal text (its `data` tokens, never a value) with escape.prose_tex or prose_md, so the body
needs no escaping of its own; values pass through the output's filters (report.formats).

LaTeX numbers sections, tables and figures itself and resolves \\autoref in its second pass.
Markdown has no such machinery: `Numbering` counts them in the same order, and a reference made
before the thing it names (the Design section names the section on failed runs) is resolved by
rendering twice, the second render reading the first one's numbers.
"""

from __future__ import annotations

from typing import Callable, Iterator

from jinja2 import Environment
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream

from report.escape import Md

BODY = "report.j2"
REF_WORDS = {"section": "Section", "appendix": "Appendix", "table": "Table", "figure": "Figure"}


class StaticProse(Extension):
    """Converts the literal text of the body template for the environment's output."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.extend(static_prose=None)

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        convert: Callable[[str], str] | None = self.environment.static_prose  # type: ignore[attr-defined]
        for token in stream:
            if token.type == "data" and stream.name == BODY and convert is not None:
                yield Token(token.lineno, "data", convert(token.value))
            else:
                yield token


class Numbering:
    """Markdown's numbers, in LaTeX's order: sections 1, 2, ... (subsections 2.1, ...), appendix
    sections A, B, ...; tables and figures 1, 2, ... `known` holds a previous render's numbers,
    which resolve references to things defined further down."""

    def __init__(self, known: dict[str, tuple[str, str]] | None = None) -> None:
        self.known = dict(known or {})
        self.defined: dict[str, tuple[str, str]] = {}
        self.counts = {"table": 0, "figure": 0}
        self.sections = [0, 0]
        self.appendix = False

    def start_appendix(self) -> Md:
        self.appendix, self.sections = True, [0, 0]
        return Md("")

    def define(self, kind: str, label: str) -> Md:
        """The next number of a section, subsection, table or figure, recorded under its label."""
        if kind == "section":
            self.sections = [self.sections[0] + 1, 0]
            number = chr(ord("A") + self.sections[0] - 1) if self.appendix else str(self.sections[0])
            word = "appendix" if self.appendix else "section"
        elif kind == "subsection":
            self.sections[1] += 1
            number, word = f"{self.sections[0]}.{self.sections[1]}", "section"
        else:
            self.counts[kind] += 1
            number, word = str(self.counts[kind]), kind
        self.defined[label] = (word, number)
        return Md(number)

    def current(self, kind: str) -> Md:
        """The number of the table or figure defined last."""
        return Md(str(self.counts[kind]))

    def words(self, label: str) -> Md:
        """"Table 3" for a label; "?" before the second render knows it (as LaTeX's first pass)."""
        word, number = self.defined.get(label) or self.known.get(label) or ("", "?")
        return Md(f"{REF_WORDS.get(word, word)} {number}".strip())
