r"""Escaping, once: strings from the summary, the config or a path made literal in LaTeX or Markdown.

`Tex` and `Md` mark text that is already in an output's markup (they carry `__html__`, which
the strict Jinja environments of report.render require of every printed value). escape_tex
maps TeX's special characters, the Greek letters and symbols the labels use, super- and
subscript digits and "λ_max" to LaTeX source that prints them literally; anything outside
Latin-1 (CJK, emoji) becomes "?", which pdflatex can typeset. escape_md backslash-escapes
Markdown's specials, also inside pipe-table cells.

prose_tex and prose_md convert the report's own static prose (templates/report.j2, plain
Unicode) when the template is compiled. That text is trusted and may use three inline marks:
*emphasis*, `code` and $math$ (Unicode inside: $τ_b$, $2/2^k$, $(1−α)·θ_A$), which LaTeX sets
as \emph, \texttt and math, and Markdown as *emphasis*, a code span and plain text. Values from
the summary never pass through them: their marks would be taken literally by escape_tex/escape_md.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator


class Tex(str):
    """LaTeX source that is safe to print verbatim."""

    def __html__(self) -> str:  # Jinja's autoescape passes objects with __html__ through
        return str(self)


class Md(str):
    """Markdown source that is safe to print verbatim."""

    def __html__(self) -> str:
        return str(self)


_TEX_ASCII = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    '"': r"\textquotedbl{}",
    "`": r"\textasciigrave{}",
    "'": r"\textquotesingle{}",
    "-": "-{}",  # stops T1's -- and --- ligatures from turning "--flag" into a dash
    "\n": " ",
    "\t": " ",
    "\r": " ",
}
_TEX_UNICODE = {
    "ε": r"\ensuremath{\varepsilon}",
    "σ": r"\ensuremath{\sigma}",
    "τ": r"\ensuremath{\tau}",
    "λ": r"\ensuremath{\lambda}",
    "ρ": r"\ensuremath{\rho}",
    "α": r"\ensuremath{\alpha}",
    "β": r"\ensuremath{\beta}",
    "μ": r"\ensuremath{\mu}",
    "∇": r"\ensuremath{\nabla}",
    "‖": r"\ensuremath{\|}",
    "±": r"\ensuremath{\pm}",
    "×": r"\ensuremath{\times}",
    "≈": r"\ensuremath{\approx}",
    "≤": r"\ensuremath{\leq}",
    "≥": r"\ensuremath{\geq}",
    "→": r"\ensuremath{\to}",
    "′": r"\ensuremath{'}",
    "−": r"\textminus{}",
    "–": "--",
    "—": "---",
    "…": r"\dots{}",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "\u00a0": "~",
    "\u2009": r"\,",
    "ℓ": r"\ensuremath{\ell}",
    "∞": r"\ensuremath{\infty}",
    "η": r"\ensuremath{\eta}",
    "ψ": r"\ensuremath{\psi}",
    "Ψ": r"\ensuremath{\Psi}",
    "·": r"\ensuremath{\cdot}",
    "≠": r"\ensuremath{\neq}",
    "θ": r"\ensuremath{\theta}",
}
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-"))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_SCRIPT_RUN = re.compile("λ_max|λ_min|[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+|[₀₁₂₃₄₅₆₇₈₉]+")
_MATH_WORDS = {"λ_max": r"\ensuremath{\lambda_{\max}}", "λ_min": r"\ensuremath{\lambda_{\min}}"}
# T1-encoded fonts have the Latin-1 letters; anything else (CJK, emoji) would stop pdflatex.
_LATIN1_LETTERS = {chr(c) for c in range(0xC0, 0x100)} - {"×", "÷"}
_BREAK_AFTER = set("/_-=.,:;")


def _tex_char(ch: str, breakable: bool, ascii_table: dict[str, str] = _TEX_ASCII) -> str:
    if ch in ascii_table:
        out = ascii_table[ch]
    elif ch in _TEX_UNICODE:
        out = _TEX_UNICODE[ch]
    elif " " <= ch <= "~" or ch in _LATIN1_LETTERS:
        out = ch
    else:
        out = "?"
    return out + r"\allowbreak{}" if breakable and ch in _BREAK_AFTER else out


def _tex_run(run: str) -> str:
    """λ_max as math; a run of superscript or subscript digits as one math script."""
    if run in _MATH_WORDS:
        return _MATH_WORDS[run]
    if run[0] in _SUPERSCRIPTS:
        return r"\ensuremath{^{" + "".join(_SUPERSCRIPTS[c] for c in run) + "}}"
    return r"\ensuremath{_{" + "".join(_SUBSCRIPTS[c] for c in run) + "}}"


def escape_tex(text: str, *, breakable: bool = False, ascii_table: dict[str, str] = _TEX_ASCII) -> str:
    """LaTeX source printing `text` literally; breakable adds line breaks after / _ - = etc."""
    def chars(start: int, end: int) -> Iterator[str]:
        return (_tex_char(text[i], breakable and not _inside_number(text, i), ascii_table) for i in range(start, end))

    pieces = []
    pos = 0
    for match in _SCRIPT_RUN.finditer(text):
        pieces.extend(chars(pos, match.start()))
        pieces.append(_tex_run(match.group()))
        pos = match.end()
    pieces.extend(chars(pos, len(text)))
    return "".join(pieces)


def _inside_number(text: str, i: int) -> bool:
    """A decimal point or a thousands comma between two digits (0.05, 1,024): never a line break."""
    return text[i] in ".," and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()


_MD_SPECIAL = set("\\`*_[]<>|#~$&")


def escape_md(text: str) -> str:
    """Markdown text printing `text` literally (also inside a pipe-table cell)."""
    flat = " ".join(text.split("\n"))
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in flat)


def code_md(text: str) -> str:
    """A Markdown code span: literal text, fenced by more backticks than it contains."""
    flat = " ".join(text.split("\n"))
    longest = max((len(m) for m in re.findall("`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


# ---- static prose: the report's own text, with its inline marks ------------------------------

# Prose sets apostrophes and hyphens as TeX does (a value's "--flag" must stay two hyphens; a
# sentence's "class-stratified" may break at its hyphen) and keeps line breaks, which separate
# paragraphs and the template's lines.
_PROSE_ASCII = {**_TEX_ASCII, "'": "'", "-": "-", "\n": "\n"}
_INLINE = re.compile(r"`([^`\n]+)`|\*([^*\n]+)\*|\$([^$\n]+)\$")
_MARKS = "`*$"
# In math, a letter stays a letter (italic), a Unicode symbol becomes its math command and a
# script (_b, ^k, _max, ²) a TeX script; words in scripts are upright (p_Holm).
_MATH_SCRIPT = re.compile(r"([_^])([A-Za-z0-9]+)|([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)|([₀₁₂₃₄₅₆₇₈₉]+)")
_MATH_OPERATORS = {"max": r"\max", "min": r"\min"}
_MATH_ASCII = {"%": r"\%", "{": r"\{", "}": r"\}", "#": r"\#", "&": r"\&", "~": r"\sim{}", "−": "-"}


class InlineMarkError(ValueError):
    pass


def _unmarked(text: str) -> str:
    """Text between inline marks, which must hold no mark of its own."""
    stray = next((ch for ch in text if ch in _MARKS), None)
    if stray is not None:
        raise InlineMarkError(f"unpaired {stray!r} in the report's prose: {text.strip()[:80]!r}")
    return text


def _math_char(ch: str) -> str:
    if ch in _MATH_ASCII:
        return _MATH_ASCII[ch]
    symbol = _TEX_UNICODE.get(ch)
    if symbol is not None and symbol.startswith(r"\ensuremath{"):
        return symbol[len(r"\ensuremath{"):-1] + (" " if symbol[-2].isalpha() else "")
    return ch


def _math_script(match: re.Match) -> str:
    mark, word, sup, sub = match.groups()
    if sup:
        return "^{" + "".join(_SUPERSCRIPTS[c] for c in sup) + "}"
    if sub:
        return "_{" + "".join(_SUBSCRIPTS[c] for c in sub) + "}"
    body = _MATH_OPERATORS.get(word) or (rf"\mathrm{{{word}}}" if len(word) > 1 and word.isalpha() else word)
    return f"{mark}{{{body}}}"


def math_tex(text: str) -> str:
    """LaTeX math for Unicode math: "(1−α)·θ_A" -> "(1-\\alpha )\\cdot \\theta _{A}"."""
    pieces, pos = [], 0
    for match in _MATH_SCRIPT.finditer(text):
        pieces.extend(_math_char(ch) for ch in text[pos:match.start()])
        pieces.append(_math_script(match))
        pos = match.end()
    pieces.extend(_math_char(ch) for ch in text[pos:])
    return "".join(pieces)


def _marked(text: str, plain: Callable[[str], str], code: Callable[[str], str], emphasis: Callable[[str], str],
            math: Callable[[str], str]) -> str:
    """`text` with its inline marks' spans and the plain text between them converted."""
    pieces, pos = [], 0
    for match in _INLINE.finditer(text):
        pieces.append(plain(_unmarked(text[pos:match.start()])))
        code_span, emphasized, formula = match.groups()
        if code_span is not None:
            pieces.append(code(code_span))
        elif emphasized is not None:
            pieces.append(emphasis(emphasized))
        else:
            pieces.append(math(formula))
        pos = match.end()
    pieces.append(plain(_unmarked(text[pos:])))
    return "".join(pieces)


def prose_tex(text: str) -> str:
    """LaTeX source of the report's static prose, its inline marks set (see the module's docstring)."""
    tex = _marked(text, lambda plain: escape_tex(plain, ascii_table=_PROSE_ASCII),
                  lambda code: r"\texttt{" + escape_tex(code) + "}", lambda words: r"\emph{" + prose_tex(words) + "}",
                  lambda formula: r"\ensuremath{" + math_tex(formula) + "}")
    tex = tex.replace(r" \%", r"\,\%")  # "95 %": a thin space, as typeset numbers have
    return re.sub(r"\bal\.([ \n])", r"al.\\\1", tex)  # "et al." ends no sentence: an interword space


def prose_md(text: str) -> str:
    """Markdown of the report's static prose: *emphasis* and `code` kept, $math$ as its text."""
    def plain(part: str) -> str:
        return "\n".join(escape_md(line) for line in part.split("\n"))

    return _marked(text, plain, code_md, lambda words: "*" + prose_md(words) + "*", plain)
