"""The PDF's source and the Markdown say the same: both are rendered from templates/report.j2, and
with their markup stripped they are the same sequence of words and numbers, in the same order.

What the writers add of their own is left out on both sides: LaTeX's commands, labels, column
specs and the repeated head of a long table; Markdown's anchors, links, section and caption
numbers (LaTeX computes those itself) and table rules.
"""

import difflib
import re

import pytest

import variants
from report import escape, figures
from report.render import render_text
from variants import typed

# LaTeX commands whose arguments are layout, not text: how many {...} groups each takes.
LAYOUT_ARGS = {"label": 1, "autoref": 1, "includegraphics": 1, "refstepcounter": 1, "setlength": 2,
               "multicolumn": 2, "verdict": 1, "begin": 1, "end": 1}
TABULAR = re.compile(r"\\begin\{(tabular|longtable)\}")
# Unicode the escaper writes as a command, read back: \tau -> τ, \textminus{} -> −.
_COMMANDS = {}
for _char, _tex in {**escape._TEX_ASCII, **escape._TEX_UNICODE}.items():
    _name = re.fullmatch(r"\\ensuremath\{(\\[A-Za-z]+)\}|(\\[A-Za-z]+)\{\}", _tex)
    if _name:
        _COMMANDS[_name.group(1) or _name.group(2)] = " " if _char == "\\" else _char
_COMMANDS.update({r"\max": "max", r"\min": "min", r"\mathrm": "", r"\allowbreak": ""})
_DIGITS = str.maketrans(dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹₀₁₂₃₄₅₆₇₈₉", "0123456789" * 2)))
_SCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹]+|[₀₁₂₃₄₅₆₇₈₉]+")


def tokens(text: str) -> list[str]:
    """Words and numbers in order (a super- or subscript is a number of its own: 10⁴, log₁₀);
    punctuation, symbols and spacing do not count."""
    text = _SCRIPT_RUN.sub(lambda m: " " + m.group().translate(_DIGITS) + " ", text)
    return re.findall(r"\d+(?:[.,]\d+)*|[^\W\d_]+", text)


def _group_end(text: str, start: int) -> int:
    """The index after the balanced {...} group that opens at `start`."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced group at {start}")


def _drop_arguments(text: str, name: str, count: int) -> str:
    """\\name[opt]{a}{b}... -> \\name with its first `count` groups (and an optional [...]) removed."""
    out, pos = [], 0
    pattern = re.compile(rf"\\{name}(?![A-Za-z])")
    for match in pattern.finditer(text):
        if match.start() < pos:
            continue
        out.append(text[pos:match.end()])
        pos = match.end()
        if text.startswith("[", pos):
            pos = text.index("]", pos) + 1
        for _ in range(count):
            while text[pos].isspace():
                pos += 1
            pos = _group_end(text, pos)
        if text.startswith("[", pos):  # \begin{figure}[htbp], \begin{description}[...]
            pos = text.index("]", pos) + 1
    out.append(text[pos:])
    return "".join(out)


def plain_latex(tex: str) -> str:
    body = tex[tex.index(r"\begin{document}") + len(r"\begin{document}"):tex.index(r"\end{document}")]
    body = re.sub(r"\\endfirsthead.*?\\endhead", "", body, flags=re.S)  # a long table's repeated head
    for match in reversed(list(TABULAR.finditer(body))):  # the column spec
        end = _group_end(body, match.end())
        body = body[:match.end()] + body[end:]
    for name, count in LAYOUT_ARGS.items():
        body = _drop_arguments(body, name, count)
    body = re.sub(r"\\addlinespace\[[^\]]*\]|\\\\\[[^\]]*\]", " ", body)
    body = re.sub(r"\\[A-Za-z]+(\{\})?", lambda m: _COMMANDS.get(m.group(0).removesuffix("{}"), " "), body)
    # an escaped character stands for itself (escaped braces are text, not grouping: a space)
    body = re.sub(r"\\(.)", lambda m: " " if m.group(1) in "\\{}" else m.group(1), body)
    return body.replace("{", "").replace("}", "")


def plain_markdown(md: str) -> str:
    md = re.sub(r'^<a id="[^"]*"></a>$|^!\[[^\]]*\]\([^)]*\)$|^\|[-:|]+\|$|^\*\*Abstract\.\*\*$', "", md, flags=re.M)
    md = re.sub(r"\[[^\]]*\]\(#[^)]*\)", "", md)  # a reference: LaTeX's \autoref is dropped too
    md = re.sub(r"^#+ (Appendix [A-Z]: |[\d.]+ )?", "", md, flags=re.M)  # heading numbers
    md = re.sub(r"\*(Table \d+:|Figure \d+\.\*)", "*", md)  # caption numbers
    md = re.sub(r"Figure \d+ \(", "Figure (", md)
    md = re.sub(r"`+[^`]*`+", lambda m: m.group().replace("\\", " "), md)  # a code span escapes nothing
    return re.sub(r"\\(.)", r"\1", md.replace("<br>", " "))


def _latin1(text: str) -> str:
    """What pdflatex can set: the escaper writes anything else as "?"."""
    known = set(escape._TEX_UNICODE) | set(escape._SUPERSCRIPTS) | set(escape._SUBSCRIPTS)
    return "".join(c if ord(c) < 0x100 or c in known else "?" for c in text)


def _first_difference(a: list[str], b: list[str]) -> str:
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            return (f"Markdown {' '.join(a[max(0, i1 - 12):i2 + 3])!r}\n"
                    f"LaTeX    {' '.join(b[max(0, j1 - 12):j2 + 3])!r}")
    return ""


@pytest.mark.parametrize("change", [
    lambda s: s, variants.with_dinh_not_applicable, variants.with_comparable_original, variants.with_every_verdict,
    variants.with_significant_correlation, variants.with_replication, variants.edge_cases,
], ids=["tiny", "dinh_not_applicable", "comparable_original", "every_verdict", "significant_correlation", "replication",
     "edge_cases"])
def test_latex_and_markdown_state_the_same_words_and_numbers(tiny_summary, change):
    summary = typed(change(tiny_summary))
    md, tex = render_text(summary, figures.skip_reasons(summary), "figures")
    from_md, from_tex = tokens(_latin1(plain_markdown(md))), tokens(plain_latex(tex))
    assert len(from_md) > 3000
    assert from_md == from_tex, _first_difference(from_md, from_tex)


def test_the_strippers_keep_text_and_drop_markup():
    tex = (r"\begin{document}\section{Data}\label{sec:data} \ensuremath{\tau _{b}} = 1{,}024 "
           r"(\autoref{tab:x}) \begin{tabular}{@{}p{3.3cm}r@{}} a\_b & \textminus{}0.5\,\% \\ \end{tabular}"
           r"\multicolumn{8}{@{}l}{\emph{Hessian}} \verdict{vgreen}{reproduced}\end{document}")
    md = '<a id="sec-data"></a>\n## 2.2 Data\nτ\\_b = 1,024 ([Table 3](#tab-x))\n| a\\_b | -0.5 % |\n|---|--:|\n| *Hessian* |\n**reproduced**'
    assert tokens(plain_latex(tex)) == tokens(plain_markdown(md)) == [
        "Data", "τ", "b", "1,024", "a", "b", "0.5", "Hessian", "reproduced"]


def test_the_body_holds_every_sentence_and_the_writers_only_markup():
    """No prose in the writers: every letter of templates/markup/*.j2 outside tags and comments
    is LaTeX or Markdown syntax, never a sentence (one source for prose)."""
    from minima import paths

    for name in ("latex.j2", "markdown.j2"):
        source = (paths.TEMPLATES_DIR / "markup" / name).read_text()
        text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", source, flags=re.S)
        text = re.sub(r"\\[A-Za-z]+|\[[^\]]*\]|\{[^{}]*\}|<[^>]*>", " ", text)
        words = {w for w in re.findall(r"[A-Za-z]{4,}", text)}
        assert words <= {"Figure", "Table", "Appendix", "Abstract", "omitted"}, (name, sorted(words))
