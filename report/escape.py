"""Escaping, once: strings from the summary, the config or a path made literal in LaTeX or Markdown.

`Tex` and `Md` mark text that is already in an output's markup (they carry `__html__`, which
the strict Jinja environments of report.render require of every printed value). escape_tex
maps TeX's special characters, the Greek letters and symbols the labels use, super- and
subscript digits and "λ_max" to LaTeX source that prints them literally; anything outside
Latin-1 (CJK, emoji) becomes "?", which pdflatex can typeset. escape_md backslash-escapes
Markdown's specials, also inside pipe-table cells.
"""

from __future__ import annotations

import re


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
}
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-"))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_SCRIPT_RUN = re.compile("λ_max|λ_min|[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+|[₀₁₂₃₄₅₆₇₈₉]+")
_MATH_WORDS = {"λ_max": r"\ensuremath{\lambda_{\max}}", "λ_min": r"\ensuremath{\lambda_{\min}}"}
# T1-encoded fonts have the Latin-1 letters; anything else (CJK, emoji) would stop pdflatex.
_LATIN1_LETTERS = {chr(c) for c in range(0xC0, 0x100)} - {"×", "÷"}
_BREAK_AFTER = set("/_-=.,:;")


def _tex_char(ch: str, breakable: bool) -> str:
    if ch in _TEX_ASCII:
        out = _TEX_ASCII[ch]
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


def escape_tex(text: str, *, breakable: bool = False) -> str:
    """LaTeX source printing `text` literally; breakable adds line breaks after / _ - = etc."""
    pieces = []
    pos = 0
    for match in _SCRIPT_RUN.finditer(text):
        pieces.extend(_tex_char(ch, breakable) for ch in text[pos : match.start()])
        pieces.append(_tex_run(match.group()))
        pos = match.end()
    pieces.extend(_tex_char(ch, breakable) for ch in text[pos:])
    return "".join(pieces)


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
