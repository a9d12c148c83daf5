"""Names, labels and colours shared by the figures and both templates.

One mapping gives each optimizer its colour (Okabe & Ito 2008, "Color Universal Design",
distinguishable under the common colour-vision deficiencies) and its marker, so SGD is the
same blue in every figure whatever subset of optimizers a profile runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

OKABE_ITO = {
    "blue": "#0072B2",
    "sky": "#56B4E9",
    "green": "#009E73",
    "orange": "#E69F00",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
    "yellow": "#F0E442",
}

# Study order: the plain method first, then its variants, adaptive methods, the flat-seeker.
OPTIMIZER_ORDER = ("sgd", "sgd_momentum", "adagrad", "adam", "adahessian", "sam")
OPTIMIZER_LABELS = {
    "sgd": "SGD",
    "sgd_momentum": "SGD + momentum",
    "adagrad": "AdaGrad",
    "adam": "Adam",
    "adahessian": "AdaHessian",
    "sam": "SAM",
}
_KNOWN_COLOURS = {
    "sgd": OKABE_ITO["blue"],
    "sgd_momentum": OKABE_ITO["sky"],
    "adagrad": OKABE_ITO["green"],
    "adam": OKABE_ITO["orange"],
    "adahessian": OKABE_ITO["vermillion"],
    "sam": OKABE_ITO["purple"],
}
_SPARE_COLOURS = (OKABE_ITO["black"], OKABE_ITO["yellow"], "#777777", "#444444")
_MARKERS = {"sgd": "o", "sgd_momentum": "s", "adagrad": "^", "adam": "D", "adahessian": "v", "sam": "P"}
_SPARE_MARKERS = ("X", "*", "h", "<", ">")


def optimizer_label(name: str) -> str:
    return OPTIMIZER_LABELS.get(name, name)


def optimizer_styles(names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per optimizer; unknown names take spare styles in order of appearance."""
    styles: dict[str, tuple[str, str]] = {}
    spare = 0
    for name in names:
        if name in styles:
            continue
        if name in _KNOWN_COLOURS:
            styles[name] = (_KNOWN_COLOURS[name], _MARKERS[name])
        else:
            styles[name] = (
                _SPARE_COLOURS[spare % len(_SPARE_COLOURS)],
                _SPARE_MARKERS[spare % len(_SPARE_MARKERS)],
            )
            spare += 1
    return styles


def order_optimizers(names: Iterable[str]) -> list[str]:
    """Known optimizers in study order, then the others in order of appearance."""
    seen = list(dict.fromkeys(names))
    known = [n for n in OPTIMIZER_ORDER if n in seen]
    return known + [n for n in seen if n not in OPTIMIZER_ORDER]


@dataclass(frozen=True)
class Label:
    """One quantity's name in each output: LaTeX source, Markdown text, matplotlib mathtext."""

    tex: str
    md: str
    mpl: str
    words: str  # for generated sentences (plain Unicode)


QUANTITY_LABELS = {
    "top_eigenvalue": Label(
        r"$\lambda_{\max}$", "λ_max", r"$\lambda_{\max}$", "the top Hessian eigenvalue"
    ),
    "trace": Label(r"$\operatorname{tr} H$", "tr H", r"$\mathrm{tr}\,H$", "the Hessian trace"),
    "gradient_norm": Label(
        r"$\|\nabla L\|$", "‖∇L‖", r"$\|\nabla L\|$", "the gradient norm at the end point"
    ),
    "epsilon_sharpness": Label(
        r"$\varepsilon$-sharpness", "ε-sharpness", r"$\epsilon$-sharpness", "ε-sharpness"
    ),
    "adaptive_worst": Label(
        "adaptive worst", "adaptive worst", "adaptive worst-case", "adaptive worst-case sharpness"
    ),
    "adaptive_average": Label(
        "adaptive avg.", "adaptive avg.", "adaptive average", "adaptive average-case sharpness"
    ),
    "pacbayes_flatness": Label(
        r"PAC-B.\ $1/\sigma^2$", "PAC-Bayes 1/σ²", r"PAC-Bayes $1/\sigma^2$", "PAC-Bayes 1/σ²"
    ),
    "pacbayes_mag_flatness": Label(
        r"PAC-B.\ mag.", "PAC-Bayes mag.", r"PAC-Bayes mag. $1/\sigma'^2$",
        "magnitude-aware PAC-Bayes 1/σ′²",
    ),
    "generalization_gap": Label(
        "generalization gap", "generalization gap", "generalization gap (pp)",
        "the generalization gap",
    ),
    "test_error": Label("test error", "test error", "test error (%)", "the test error"),
    "test_accuracy": Label("test accuracy", "test accuracy", "test accuracy (%)", "test accuracy"),
}

CURVATURE_QUANTITIES = ("top_eigenvalue", "trace", "gradient_norm")


def quantity_label(name: str) -> Label | None:
    """The known label, or None: callers then escape the raw name themselves."""
    return QUANTITY_LABELS.get(name)


def mpl_text(text: str) -> str:
    """A plain string made safe for matplotlib, which reads paired `$` as mathtext."""
    return text.replace("\\", "/").replace("$", r"\$")
