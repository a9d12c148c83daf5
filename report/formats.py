"""Escaping and number formatting for the LaTeX and Markdown outputs.

Every value a template prints must pass through exactly one filter defined here: `text` or
`code` (escaping with report.escape) for strings, a number filter for numbers. Both outputs
register the same filter names (TEX_FILTERS, MD_FILTERS), so one template serves both. The
filters return `Tex`/`Md` strings, marked safe; the Jinja environment (report.render) refuses
to print anything else, and `text` refuses a value that is already escaped. So a string from
the summary, the config or a path is escaped exactly once, and a hostile profile name like
`a_b%c&d#e$f{g}h~i^j\\k` cannot break the LaTeX build.

Numbers: `sci` prints three significant digits, switching to a x 10^k form outside
[0.01, 10^4); `pm` prints mean +- std with both at the mean's exponent; `pct` prints
fractions in 0..1 as percentages (accuracies; gaps as percentage points, the unit in the
column head); `ci`/`cisci` a 95 % interval; `pval` a p-value; `yesno` a flag. Missing values
(None, NaN) print as an en dash. The `words_*` helpers give the same numbers as plain Unicode
for generated sentences, which the templates then escape once.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping, Sequence

import jinja2

from report.escape import Md, Tex, code_md, escape_md, escape_tex, prose_md, prose_tex  # noqa: F401  (re-exported)


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        raise TypeError(f"expected a number, got {type(x).__name__}: {x!r}") from None


# ---- plain number formats, shared by both outputs -------------------------------------------

def _mantissa_exponent(x: float, sig: int) -> tuple[str, int]:
    exponent = math.floor(math.log10(abs(x)))
    mantissa = x / 10.0**exponent
    text = f"{mantissa:.{sig - 1}f}"
    if abs(float(text)) >= 10.0:  # 9.995 rounds up to 10.00
        exponent += 1
        text = f"{x / 10.0**exponent:.{sig - 1}f}"
    return text, exponent


def _fixed_sig(x: float, sig: int) -> str:
    if x == 0:
        return "0"
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    return text


def plain_sci(x: float, sig: int = 3) -> tuple[str, int | None]:
    """(digits, exponent or None): fixed notation in [0.01, 10^4), else mantissa and exponent."""
    x = float(x)
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return _fixed_sig(x, sig), None
    return _mantissa_exponent(x, sig)


def _decimals_of(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def plain_pm(mean: float, std: float | None, sig: int = 3) -> tuple[str, str | None, int | None]:
    """(mean digits, std digits or None, shared exponent or None)."""
    digits, exponent = plain_sci(mean, sig)
    if std is None or _missing(std):
        return digits, None, exponent
    scale = 10.0 ** (exponent or 0)
    decimals = _decimals_of(digits)
    return digits, f"{float(std) / scale:.{decimals}f}", exponent


_SUPER_OUT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


# ---- LaTeX filters ------------------------------------------------------------------------

_TEX_NA = Tex("--")


def _tex_signed(text: str) -> str:
    return r"\textminus{}" + text[1:] if text.startswith("-") else text


def _string(value: Any, kind: str) -> str:
    if isinstance(value, (Tex, Md)):
        raise TypeError(f"value escaped twice: {value!r}")
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises here with the missing name
    if not isinstance(value, str):
        raise TypeError(f"{kind} filter takes strings, got {type(value).__name__}: {value!r}")
    return value


def tex(value: str, breakable: bool = False) -> Tex:
    return Tex(escape_tex(_string(value, "tex"), breakable=breakable))


def tex_code(value: str, breakable: bool = False) -> Tex:
    return Tex(r"\texttt{" + escape_tex(_string(value, "code"), breakable=breakable) + "}")


# Labels, colour names and column specs: the templates' own identifiers, printed as they are.
_IDENTIFIER = re.compile(r"^[\w:.{}\\]+$")


def _identifier(value: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise TypeError(f"not an identifier: {value!r}")
    return value


def tex_ident(value: str) -> Tex:
    return Tex(_identifier(value))


def tex_quantity(head: Any) -> Tex:
    """A quantity's label (report.tables.Head) in LaTeX."""
    return head.tex


def tex_sci(x: float | None, sig: int = 3) -> Tex:
    if _missing(x):
        return _TEX_NA
    digits, exponent = plain_sci(x, sig)
    if exponent is None:
        return Tex(_tex_signed(digits))
    return Tex(rf"\ensuremath{{{digits}{{\times}}10^{{{exponent}}}}}")


def tex_pm(stat: Mapping[str, Any] | None, sig: int = 3) -> Tex:
    """mean +- std from a {"mean", "std"} mapping, std at the mean's exponent."""
    if stat is None or _missing(stat.get("mean")):
        return _TEX_NA
    digits, spread, exponent = plain_pm(float(stat["mean"]), stat.get("std"), sig)
    if spread is None:
        return tex_sci(float(stat["mean"]), sig)
    body = f"{digits} \\pm {spread}"
    if exponent is None:
        return Tex(rf"\ensuremath{{{body}}}")
    return Tex(rf"\ensuremath{{({body}){{\times}}10^{{{exponent}}}}}")


def tex_pm_pct(stat: Mapping[str, Any] | None, decimals: int = 2) -> Tex:
    """mean +- std of a fraction, in percent (the unit goes in the column header)."""
    if stat is None or _missing(stat.get("mean")):
        return _TEX_NA
    mean = _tex_signed(f"{100 * float(stat['mean']):.{decimals}f}")
    std = stat.get("std")
    if std is None or _missing(std):
        return Tex(mean)
    return Tex(mean + rf"\ensuremath{{\pm}}{100 * float(std):.{decimals}f}")


def tex_pct(x: float | None, decimals: int = 2, unit: bool = True) -> Tex:
    if _missing(x):
        return _TEX_NA
    text = _tex_signed(f"{100 * float(x):.{decimals}f}")
    return Tex(text + (r"\,\%" if unit else ""))


def tex_num(x: float | None, decimals: int = 2) -> Tex:
    if _missing(x):
        return _TEX_NA
    return Tex(_tex_signed(f"{float(x):.{decimals}f}"))


def tex_gen(x: float | None) -> Tex:
    """A setting as written: 0.1, 32, 1e-05."""
    return _TEX_NA if _missing(x) else Tex(_tex_signed(f"{float(x):g}"))


def tex_int(x: int | None) -> Tex:
    if _missing(x):
        return _TEX_NA
    return Tex(_tex_signed(f"{int(x):,}").replace(",", "{,}"))


def _no_pair(pair: Sequence[float] | None) -> bool:
    return pair is None or len(pair) != 2 or any(_missing(v) for v in pair)


def tex_ci(pair: Sequence[float] | None, decimals: int = 2) -> Tex:
    if _no_pair(pair):
        return _TEX_NA
    lo, hi = (tex_num(v, decimals) for v in pair)
    return Tex(f"[{lo}, {hi}]")


def tex_ci_sci(pair: Sequence[float] | None, sig: int = 3) -> Tex:
    if _no_pair(pair):
        return _TEX_NA
    lo, hi = (tex_sci(v, sig) for v in pair)
    return Tex(f"[{lo}, {hi}]")


def tex_p(p: float | None) -> Tex:
    if _missing(p):
        return _TEX_NA
    return Tex(r"\ensuremath{<}0.001" if p < P_FLOOR else f"{float(p):.3f}")


def _p_is(p: float | None, shown: str) -> str:
    """A p-value as shown, with its relation to follow "p": "= 0.188"; below the floor `shown`
    already reads "< 0.001". The Markdown and LaTeX writers differ only in how they show p."""
    return shown if not _missing(p) and p < P_FLOOR else "= " + shown


def tex_p_is(p: float | None) -> Tex:
    return Tex(_p_is(p, tex_p(p)))


def tex_yesno(flag: bool | None) -> Tex:
    return _TEX_NA if flag is None else Tex(yes_no(flag))


# ---- Markdown filters ---------------------------------------------------------------------

_MD_NA = Md("–")


def md(value: str, code: bool = False) -> Md:
    text = _string(value, "md")
    return Md(code_md(text) if code else escape_md(text))


def md_text(value: str, breakable: bool = False) -> Md:
    """Markdown lets a browser break lines anywhere: `breakable` matters to LaTeX only."""
    return md(value)


def md_code(value: str, breakable: bool = False) -> Md:
    return md(value, code=True)


def md_anchor(label: str) -> Md:
    """An HTML anchor id for a label: tab:claims -> tab-claims."""
    return Md(_identifier(label).replace(":", "-"))


def md_quantity(head: Any) -> Md:
    return head.md


def md_sci(x: float | None, sig: int = 3) -> Md:
    if _missing(x):
        return _MD_NA
    digits, exponent = plain_sci(x, sig)
    return Md(digits if exponent is None else f"{digits}×10{str(exponent).translate(_SUPER_OUT)}")


def md_pm(stat: Mapping[str, Any] | None, sig: int = 3) -> Md:
    if stat is None or _missing(stat.get("mean")):
        return _MD_NA
    digits, spread, exponent = plain_pm(float(stat["mean"]), stat.get("std"), sig)
    if spread is None:
        return md_sci(float(stat["mean"]), sig)
    if exponent is None:
        return Md(f"{digits} ± {spread}")
    return Md(f"({digits} ± {spread})×10{str(exponent).translate(_SUPER_OUT)}")


def md_pm_pct(stat: Mapping[str, Any] | None, decimals: int = 2) -> Md:
    if stat is None or _missing(stat.get("mean")):
        return _MD_NA
    mean = f"{100 * float(stat['mean']):.{decimals}f}"
    std = stat.get("std")
    if std is None or _missing(std):
        return Md(mean)
    return Md(f"{mean} ± {100 * float(std):.{decimals}f}")


def md_pct(x: float | None, decimals: int = 2, unit: bool = True) -> Md:
    if _missing(x):
        return _MD_NA
    return Md(f"{100 * float(x):.{decimals}f}" + (" %" if unit else ""))


def md_num(x: float | None, decimals: int = 2) -> Md:
    if _missing(x):
        return _MD_NA
    return Md(f"{float(x):.{decimals}f}")


def md_gen(x: float | None) -> Md:
    return _MD_NA if _missing(x) else Md(f"{float(x):g}")


def md_int(x: int | None) -> Md:
    if _missing(x):
        return _MD_NA
    return Md(f"{int(x):,}")


def md_ci(pair: Sequence[float] | None, decimals: int = 2) -> Md:
    if _no_pair(pair):
        return _MD_NA
    return Md(f"[{md_num(pair[0], decimals)}, {md_num(pair[1], decimals)}]")


def md_ci_sci(pair: Sequence[float] | None, sig: int = 3) -> Md:
    if _no_pair(pair):
        return _MD_NA
    return Md(f"[{md_sci(pair[0], sig)}, {md_sci(pair[1], sig)}]")


def md_p(p: float | None) -> Md:
    if _missing(p):
        return _MD_NA
    return Md("< 0.001" if p < P_FLOOR else f"{float(p):.3f}")


def md_p_is(p: float | None) -> Md:
    return Md(_p_is(p, md_p(p)))


def md_yesno(flag: bool | None) -> Md:
    return _MD_NA if flag is None else Md(yes_no(flag))


# ---- shared text helpers (used by the sentences and the context) ----------------------------

P_FLOOR = 0.001  # p-values below this print as "< 0.001"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _minus(text: str) -> str:
    return text.replace("-", "−")


def words_sci(x: float | None, sig: int = 3) -> str:
    """Plain Unicode (for generated sentences): 1.23×10⁴, −0.5; an en dash when missing."""
    return _minus(str(md_sci(x, sig)))


def words_num(x: float | None, decimals: int = 2) -> str:
    return _minus(str(md_num(x, decimals)))


def _hundredfold(x: float | None, decimals: int, unit: str) -> str:
    return "–" if _missing(x) else _minus(f"{100 * float(x):.{decimals}f}") + (f"\u00a0{unit}" if unit else "")


def words_pct(x: float | None, decimals: int = 2, unit: bool = True) -> str:
    """A fraction as a percentage: 53.60 %."""
    return _hundredfold(x, decimals, "%" if unit else "")


def words_pp(x: float | None, decimals: int = 2, unit: bool = True) -> str:
    """A difference of fractions in percentage points: 4.71 pp."""
    return _hundredfold(x, decimals, "pp" if unit else "")


def words_ci(pair: Sequence[float] | None, decimals: int = 2) -> str:
    return _minus(str(md_ci(pair, decimals)))


def words_int(x: int | None) -> str:
    return str(md_int(x))


def joined(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, word: str, many: str | None = None) -> str:
    """"one run", "12 runs" (irregular plurals via `many`)."""
    return f"one {word}" if n == 1 else f"{n:,} {many or word + 's'}"


def duration(seconds: float | None) -> str:
    if _missing(seconds):
        return "–"
    s = float(seconds)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def value_text(value: Any) -> str:
    """A setting or hyperparameter as text: 0.001, (0.9, 0.999), true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(value_text(v) for v in value) + ")"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items())
    return str(value)


TEX_FILTERS: dict[str, Callable[..., Tex]] = {
    "text": tex,
    "code": tex_code,
    "ident": tex_ident,
    "quantity": tex_quantity,
    "sci": tex_sci,
    "pm": tex_pm,
    "pmpct": tex_pm_pct,
    "pct": tex_pct,
    "num": tex_num,
    "int": tex_int,
    "gen": tex_gen,
    "ci": tex_ci,
    "cisci": tex_ci_sci,
    "pval": tex_p,
    "p_is": tex_p_is,
    "yesno": tex_yesno,
}
MD_FILTERS: dict[str, Callable[..., Md]] = {
    "text": md_text,
    "code": md_code,
    "anchor": md_anchor,
    "quantity": md_quantity,
    "sci": md_sci,
    "pm": md_pm,
    "pmpct": md_pm_pct,
    "pct": md_pct,
    "num": md_num,
    "int": md_int,
    "gen": md_gen,
    "ci": md_ci,
    "cisci": md_ci_sci,
    "pval": md_p,
    "p_is": md_p_is,
    "yesno": md_yesno,
}
