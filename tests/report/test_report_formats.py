import math

import jinja2
import pytest

from report import formats
from report.formats import Md, Tex
from report.render import md_environment, tex_environment

HOSTILE = "a_b%c&d#e$f{g}h~i^j\\k"


def test_escape_tex_every_special_character():
    assert formats.escape_tex(HOSTILE) == (
        r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )


def test_escape_tex_unicode_and_superscripts():
    assert formats.escape_tex("τ = 0.5 ± 0.1") == r"\ensuremath{\tau} = 0.5 \ensuremath{\pm} 0.1"
    assert formats.escape_tex("1.2×10⁻³") == r"1.2\ensuremath{\times}10\ensuremath{^{-3}}"
    assert formats.escape_tex("é") == "é"  # T1 fonts have Latin-1 letters
    assert formats.escape_tex("中\U0001f600") == "??"  # would stop pdflatex


def test_escape_tex_breakable_and_dashes():
    assert formats.escape_tex("--x") == "-{}-{}x"  # no en-dash ligature in commands
    assert formats.escape_tex("a/b", breakable=True) == r"a/\allowbreak{}b"


def test_a_breakable_text_never_breaks_inside_a_number():
    out = formats.escape_tex("p 0.062 > 0.05; 1,024 images. Done,x", breakable=True)
    assert "0.062" in out and "0.05;" in out and "1,024" in out
    assert r"images.\allowbreak{}" in out and r"Done,\allowbreak{}x" in out


def test_a_p_value_after_p_carries_its_relation():
    assert formats.tex_p_is(0.188) == "= 0.188" and formats.md_p_is(0.188) == "= 0.188"
    assert formats.tex_p_is(1e-5) == r"\ensuremath{<}0.001" and formats.md_p_is(1e-5) == "< 0.001"
    assert formats.md_p_is(None).startswith("= ")


def test_tex_filter_escapes_exactly_once():
    once = formats.tex("50%")
    assert once == r"50\%" and isinstance(once, Tex)
    with pytest.raises(TypeError, match="escaped twice"):
        formats.tex(once)
    with pytest.raises(TypeError, match="strings"):
        formats.tex(3.0)


def test_escape_md():
    assert formats.escape_md("a_b*c|d") == r"a\_b\*c\|d"
    assert formats.code_md("x`y") == "``x`y``"
    assert formats.code_md("`x") == "`` `x ``"


def test_sci_switches_notation():
    assert formats.plain_sci(123.456) == ("123", None)
    assert formats.plain_sci(0.012345) == ("0.0123", None)
    assert formats.plain_sci(12345.0) == ("1.23", 4)
    assert formats.plain_sci(-0.00099999) == ("-1.00", -3)  # rounds up into the next decade
    assert formats.plain_sci(0.0) == ("0", None)
    assert formats.tex_sci(2.5e-5) == r"\ensuremath{2.50{\times}10^{-5}}"
    assert formats.md_sci(2.5e-5) == "2.50×10⁻⁵"
    assert formats.tex_sci(-1.5) == r"\textminus{}1.50"


def test_pm_shares_the_mean_exponent():
    stat = {"mean": 12345.0, "std": 678.0}
    assert formats.md_pm(stat) == "(1.23 ± 0.07)×10⁴"
    assert formats.tex_pm(stat) == r"\ensuremath{(1.23 \pm 0.07){\times}10^{4}}"
    assert formats.md_pm({"mean": 0.5, "std": None}) == "0.500"
    assert formats.md_pm_pct({"mean": 0.98765, "std": 0.0012}) == "98.77 ± 0.12"


def test_missing_values_print_a_dash():
    for value in (None, math.nan, math.inf):
        assert formats.tex_sci(value) == "--"
        assert formats.md_pct(value) == "–"
    assert formats.tex_ci(None) == "--"
    assert formats.md_pm(None) == "–"


def test_pct_int_ci():
    assert formats.tex_pct(0.98765) == r"98.77\,\%"
    assert formats.md_pct(0.98765, 1, False) == "98.8"
    assert formats.tex_int(60000) == "60{,}000"
    assert formats.md_ci((-0.1234, 0.5)) == "[-0.12, 0.50]"
    assert formats.tex_ci((-0.1234, 0.5)) == r"[\textminus{}0.12, 0.50]"


def test_templates_refuse_unfiltered_values():
    tex = tex_environment()
    assert tex.from_string("{{ x|text }}").render(x=HOSTILE) == formats.escape_tex(HOSTILE)
    for source, value in (("{{ x }}", "a_b"), ("{{ x }}", 1.5), ("{{ x|text|text }}", "a")):
        with pytest.raises(TypeError):
            tex.from_string(source).render(x=value)
    with pytest.raises(jinja2.UndefinedError):
        tex.from_string("{{ y|text }}").render()
    md = md_environment()
    assert md.from_string("{{ x|text }} {{ n|pct }}").render(x="a_b", n=0.5) == r"a\_b 50.00 %"
    with pytest.raises(TypeError):
        md.from_string("{{ x }}").render(x="plain")


def test_both_outputs_have_the_same_filters():
    assert set(formats.TEX_FILTERS) - {"ident"} == set(formats.MD_FILTERS) - {"anchor"}


def test_static_prose_marks():
    assert formats.prose_tex("*converged* runs, `runs/<hash>/`, $τ_b$ and 95 % of $2/2^k$") == (
        r"\emph{converged} runs, \texttt{runs/\textless{}hash\textgreater{}/}, \ensuremath{\tau _{b}} and "
        r"95\,\% of \ensuremath{2/2^{k}}")
    assert formats.prose_md("*converged* runs, `runs/<hash>/`, $τ_b$ and 95 %") == (
        r"*converged* runs, `runs/<hash>/`, τ\_b and 95 %")
    assert formats.prose_tex("line one's\nline-two") == "line one's\nline-two"  # prose hyphens, apostrophes, lines
    with pytest.raises(ValueError, match="unpaired"):
        formats.prose_tex("a *dangling mark")


def test_value_text():
    assert formats.value_text([0.9, 0.999]) == "(0.9, 0.999)"
    assert formats.value_text(True) == "true"
    assert formats.value_text(1e-8) == "1e-08"
    assert formats.duration(30.0) == "30.0 s" and formats.duration(600.0) == "10.0 min"
    assert isinstance(formats.md("x"), Md)


def test_escape_tex_math_words_and_subscripts():
    assert formats.escape_tex("λ_max and λ_min") == r"\ensuremath{\lambda_{\max}} and \ensuremath{\lambda_{\min}}"
    assert formats.escape_tex("‖w − w₀‖₂") == (
        r"\ensuremath{\|}w \textminus{} w\ensuremath{_{0}}\ensuremath{\|}\ensuremath{_{2}}")
    assert formats.escape_tex("ℓ∞ ψ Ψ η") == (
        r"\ensuremath{\ell}\ensuremath{\infty} \ensuremath{\psi} \ensuremath{\Psi} \ensuremath{\eta}")
    assert formats.escape_tex("lambda_max") == r"lambda\_max"  # only the Greek spelling is math


def test_p_values_flags_and_settings():
    assert formats.md_p(0.0421) == "0.042" and formats.md_p(0.0002) == "< 0.001"
    assert formats.tex_p(0.0002) == r"\ensuremath{<}0.001" and formats.tex_p(None) == "--"
    assert formats.md_yesno(True) == "yes" and formats.md_yesno(False) == "no" and formats.md_yesno(None) == "–"
    assert formats.tex_gen(0.1) == "0.1" and formats.md_gen(32) == "32" and formats.tex_gen(-1e-5) == r"\textminus{}1e-05"
    assert formats.md_ci_sci((0.000123, 0.5)) == "[1.23×10⁻⁴, 0.500]"


def test_words_use_unicode_minus_and_units():
    assert formats.words_num(-0.333) == "−0.33"
    assert formats.words_pp(0.0471) == "4.71\u00a0pp" and formats.words_pp(0.0471, unit=False) == "4.71"
    assert formats.words_pct(0.536) == "53.60\u00a0%"
    assert formats.words_ci((-1.0, 0.5)) == "[−1.00, 0.50]"
    assert formats.words_pct(None) == "–"
    assert formats.joined(["a", "b", "c"]) == "a, b and c" and formats.plural(1, "run") == "one run"
