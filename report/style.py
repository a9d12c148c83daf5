"""Names, labels, colours and the order of things, shared by the figures and the templates.

One mapping gives each optimizer its colour (Okabe & Ito 2008, "Color Universal Design",
distinguishable under the common colour-vision deficiencies) and its marker, so SGD is the
same blue in every figure whatever subset of optimizers a profile runs. Verdicts of the
published claims have one colour each, in the claims table and its figure alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from minima.schema import Configuration, Run, Summary
from minima.settings import OPTIMIZERS

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

# Study order (as declared in minima.settings): the plain method first, then its variants,
# adaptive methods, the flat-seeker.
OPTIMIZER_ORDER = OPTIMIZERS
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
# Batch sizes (or any second grid axis) in figures: marker shape in scatters, line style in curves.
LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P")
LEVEL_LINESTYLES = ("-", "--", ":", "-.")

# Datasets of a replication, in its order (primary first); a figure coloured by dataset shows no
# optimizer colours, so the two palettes never meet.
DATASET_COLOURS = (OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["green"], OKABE_ITO["purple"])
# Whether a claim replicates across datasets: (words, colour name in both outputs).
OUTCOMES = {
    "replicates": ("replicates", "vgreen"),
    "contradicted": ("contradicted", "vred"),
    "undecided": ("undecided", "vgrey"),
}

# Verdicts of the published claims: (words, colour name in both outputs, hex colour).
VERDICTS = {
    "reproduced": ("reproduced", "vgreen", OKABE_ITO["green"]),
    "not_reproduced": ("not reproduced", "vred", OKABE_ITO["vermillion"]),
    "inconclusive": ("inconclusive", "vorange", OKABE_ITO["orange"]),
    "not_testable": ("not testable", "vgrey", "#777777"),
}
KIND_LABELS = {"hessian": "Hessian", "sharpness": "Sharpness", "baseline": "Baseline"}

# Grid axes: (words, symbol for a configuration's short label).
AXES = {
    "optimizer": ("optimizer", ""),
    "lr": ("learning rate", "η"),
    "batch_size": ("batch size", "B"),
    "weight_decay": ("weight decay", "wd"),
    "label_noise": ("label noise", "noise"),
}


def optimizer_label(name: str) -> str:
    return OPTIMIZER_LABELS.get(name, name)


def axis_words(axis: str) -> str:
    return AXES.get(axis, (axis.replace("_", " "), ""))[0]


def axis_symbol(axis: str) -> str:
    return AXES.get(axis, ("", axis))[1] or axis


def verdict_words(verdict: str) -> str:
    return VERDICTS.get(verdict, (verdict.replace("_", " "), "", ""))[0]


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
    """One quantity's names: `text` for tables, the same in both outputs (plain Unicode, which the
    writers convert); `mpl` for matplotlib's mathtext; `words` for generated sentences."""

    text: str
    mpl: str
    words: str


def _label(text: str, mpl: str | None = None, words: str | None = None) -> Label:
    return Label(text, mpl if mpl is not None else text, words if words is not None else text)


# Table labels are short (the per-run tables hold a dozen of them side by side).
QUANTITY_LABELS = {
    "top_eigenvalue": _label("λ_max", r"$\lambda_{\max}$"),
    "trace": _label("tr H", r"$\mathrm{tr}\,H$"),
    "balanced_top_eigenvalue": _label("balanced λ_max", r"balanced $\lambda_{\max}$", "the balanced λ_max"),
    "min_eigenvalue": _label("λ_min", r"$\lambda_{\min}$"),
    "gradient_norm": _label("‖∇L‖", r"$\|\nabla L\|$", "the gradient norm"),
    "epsilon_sharpness": _label("ε-sharpness", r"$\epsilon$-sharpness"),
    "adaptive_worst": _label("adaptive worst", "adaptive worst-case", "adaptive worst-case sharpness"),
    "adaptive_average": _label("adaptive avg.", "adaptive average", "adaptive average-case sharpness"),
    "pacbayes_flatness": _label("PAC-B. 1/σ²", r"PAC-Bayes $1/\sigma^2$", "PAC-Bayes flatness 1/σ²"),
    "pacbayes_mag_flatness": _label("PAC-B. mag.", r"PAC-Bayes mag. $1/\sigma'^2$",
                                    "magnitude-aware PAC-Bayes flatness 1/σ′²"),
    "weight_norm": _label("‖w‖₂", r"$\|w\|_2$", "the weight norm ‖w‖₂"),
    "distance_from_init": _label("‖w − w₀‖₂", r"$\|w - w_0\|_2$", "the distance from initialization ‖w − w₀‖₂"),
    "log_lr_over_batch": _label("log(η/B)", r"$\log(\eta/B)$"),
    "epochs_to_fit": _label("epochs to fit"),
    "generalization_gap": _label("generalization gap", "gap (pp)", "the generalization gap"),
    "test_error": _label("test error", "test error (%)", "the test error"),
    "test_accuracy": _label("test accuracy", "test accuracy (%)"),
    "train_loss": _label("train loss", "training loss", "the final training loss"),
    "val_accuracy": _label("validation accuracy", "validation accuracy (%)"),
    "stability_ratio": _label("λ_max η/2(1 + β)", r"$\lambda_{\max}\eta/2(1+\beta)$", "λ_max η / (2(1 + β))"),
    "balance_log_ratio": _label("log₁₀(balanced/λ_max)", r"$\log_{10}(\mathrm{balanced}/\lambda_{\max})$",
                                "log₁₀ of balanced λ_max over λ_max"),
}

# adaptive m-sharpness variants: adaptive_linf_m128_rho0.002, adaptive_l2_m128_rho2
_M_SHARPNESS = re.compile(r"^adaptive_(linf|l2)_m(\d+)_rho([0-9.eE+-]+)$")
_NORMS = {"linf": (r"\ell_\infty", "ℓ∞"), "l2": (r"\ell_2", "ℓ₂")}


def quantity_label(name: str) -> Label | None:
    """The known label, or None: callers then escape the raw name themselves."""
    if name in QUANTITY_LABELS:
        return QUANTITY_LABELS[name]
    match = _M_SHARPNESS.match(name)
    if match is None:
        return None
    norm, m, rho = match.groups()
    mpl_norm, text_norm = _NORMS[norm]
    return Label(
        text=f"{text_norm} ρ={rho}",
        mpl=rf"adaptive ${mpl_norm}$, $\rho$={rho}",
        words=f"adaptive {text_norm} m-sharpness (m = {m}, ρ = {rho})",
    )


def mpl_text(text: str) -> str:
    """A plain string made safe for matplotlib, which reads paired `$` as mathtext."""
    return text.replace("\\", "/").replace("$", r"\$")


def claim_scale(unit: str) -> float:
    """Claims about accuracies and gaps are stated in fractions; the report prints percentage points."""
    return 100.0 if unit == "fraction" else 1.0


def claim_statistic(statistic: str, unit: str) -> str:
    return statistic + (", pp" if unit == "fraction" else "")


def words(summary: Summary, quantity: str) -> str:
    """A quantity's name for sentences: its label's words, else the summary's description."""
    label = quantity_label(quantity)
    return label.words if label is not None else summary.measures.get(quantity, quantity)


# ---- the order of optimizers, axes, configurations and runs ------------------------------------

def optimizer_names(summary: Summary) -> list[str]:
    """The profile's optimizers in study order, then any other a run used."""
    return order_optimizers([*summary.optimizers, *(r.optimizer for r in summary.runs)])


def axis_values(summary: Summary, axis: str) -> list:
    """The levels of one grid axis, in the order they are shown (optimizers in study order)."""
    if axis == "optimizer":
        return order_optimizers(summary.design.grid) if summary.design.grid else optimizer_names(summary)
    return summary.axis_levels(axis)


def second_axis(summary: Summary) -> str:
    """The hyperparameter a figure shows by marker or line style: batch size when it varies."""
    others = [a for a in summary.design.axes if a != "optimizer"]
    return "batch_size" if "batch_size" in others or not others else others[0]


def level_index(summary: Summary, run: Run, axis: str) -> int:
    """Position of the run's level of `axis` among the grid's levels (0 when not listed)."""
    levels = axis_values(summary, axis)
    level = run.hyperparameters.get(axis)
    return levels.index(level) if level in levels else 0


def configuration_label(summary: Summary, hyperparameters: Mapping[str, float | int], optimizer: str | None = None) -> str:
    """"SGD, η = 0.1, B = 32": the optimizer and the varied hyperparameters only."""
    parts = [optimizer_label(optimizer)] if optimizer else []
    for axis in summary.design.axes:
        if axis != "optimizer" and axis in hyperparameters:
            parts.append(f"{axis_symbol(axis)} = {hyperparameters[axis]:g}")
    return ", ".join(parts)


def ordered_configurations(summary: Summary) -> list[Configuration]:
    """Configurations by optimizer (study order), then by their hyperparameters."""
    order = {o: i for i, o in enumerate(optimizer_names(summary))}
    return sorted(summary.configurations, key=lambda c: (order[c.optimizer], sorted(c.hyperparameters.items())))


def ordered_runs(summary: Summary) -> list[Run]:
    """Runs by optimizer (study order), hyperparameters, then seed."""
    order = {o: i for i, o in enumerate(optimizer_names(summary))}
    return sorted(summary.runs, key=lambda r: (order[r.optimizer], sorted(r.hyperparameters.items()), r.seed))
