"""What the numbers say, in sentences: the abstract, the limitations and the checklist.

Everything here is a pure function of the summary. Sentences are plain Unicode (λ, τ, ±, ×10⁴);
the templates escape them once for LaTeX or Markdown. Every sharpness measure in this study is
oriented so that larger means sharper (the PAC-Bayes "flatness" 1/σ² of Jiang et al. 2020
grows as the admissible noise σ shrinks), so "sharpest" is the largest mean over seeds.

A correlation counts as found when its 95 % bootstrap interval of Kendall τ excludes zero
(Jiang et al. 2020 rank measures the same way).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from minima import stats
from report import style
from report.formats import duration, value_text, words_sci

HESSIAN_QUANTITIES = ("top_eigenvalue", "trace")
TARGET = "generalization_gap"
MOVED_FACTOR = 10.0  # a measure "moves" under rescaling when max/min exceeds this
STABLE_FACTOR = 1.5  # ... and "stays put" below this
SEEDS_FOR_ERROR_BARS = 5

ACTIVATIONS = {"relu": "ReLU", "tanh": "tanh"}
POOLINGS = {"max": "max", "avg": "average"}

# The course project this study generalizes (EPFL CS-439, 2022); see DESIGN.md.
ORIGINAL_SETUP = {
    "activation": "tanh",
    "pooling": "avg",
    "input_size": 32,
    "epochs": 150,
    "batch_size": 100,
    "shuffle": False,
    "seeds": (100,),
    "optimizers": {
        "sgd": {"lr": 0.1},
        "adagrad": {"lr": 0.0012},
        "adam": {"lr": 0.004722, "betas": (0.675, 0.999)},
        "adahessian": {"lr": 0.1, "hessian_power": 0.5},
    },
}


# ---- reading values out of the summary -----------------------------------------------------

def get_path(obj: Any, *keys: Any) -> Any:
    for key in keys:
        if obj is None:
            return None
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def run_value(run: Mapping[str, Any], quantity: str) -> float | None:
    """One run's value of a curvature quantity, sharpness measure or metric; None if absent."""
    if quantity == "top_eigenvalue":
        value = get_path(run, "curvature", "top_eigenvalues", 0)
    elif quantity == "trace":
        value = get_path(run, "curvature", "trace", "mean")
    elif quantity == "gradient_norm":
        value = get_path(run, "curvature", "gradient_norm")
    elif quantity == "test_error":
        acc = run.get("test_accuracy")
        value = 1.0 - acc if _finite(acc) else None
    elif quantity in run and not isinstance(run.get(quantity), (dict, list)):
        value = run.get(quantity)
    else:
        value = get_path(run, "sharpness", quantity)
    return float(value) if _finite(value) else None


def ok_runs(summary: Mapping[str, Any]) -> list[dict]:
    return [r for r in summary["runs"] if r.get("status") == "ok"]


def optimizers_of(summary: Mapping[str, Any]) -> list[str]:
    listed = list((summary.get("optimizers") or {}).keys())
    found = style.order_optimizers(r["optimizer"] for r in summary["runs"])
    return listed + [o for o in found if o not in listed]


def measures_of(summary: Mapping[str, Any]) -> list[str]:
    """Sharpness measure names: the summary's list, else those found in the runs."""
    listed = list((summary.get("measures") or {}).keys())
    if listed:
        return listed
    found: dict[str, None] = {}
    for run in summary["runs"]:
        found.update(dict.fromkeys(run.get("sharpness") or {}))
    return list(found)


def words(summary: Mapping[str, Any], quantity: str) -> str:
    label = style.quantity_label(quantity)
    if label is not None:
        return label.words
    return str((summary.get("measures") or {}).get(quantity, quantity))


def aggregate(summary: Mapping[str, Any], optimizer: str, quantity: str) -> dict:
    """{"mean", "std", "n"} over the optimizer's ok runs: the summary's aggregate if present."""
    values = [run_value(r, quantity) for r in ok_runs(summary) if r["optimizer"] == optimizer]
    mean, std, n = stats.mean_std(values)
    for row in summary.get("aggregates") or []:
        given = get_path(row, "metrics", quantity)
        if row.get("optimizer") == optimizer and isinstance(given, Mapping) and _finite(given.get("mean")):
            std_given = given.get("std")
            return {"mean": float(given["mean"]), "std": std_given if _finite(std_given) else None, "n": n}
    return {"mean": mean, "std": std, "n": n}


# ---- findings ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Extreme:
    """Which optimizer's minimum is sharpest and flattest by one measure (means over seeds)."""

    quantity: str
    sharpest: str
    sharpest_mean: float
    flattest: str
    flattest_mean: float
    n_optimizers: int


@dataclass(frozen=True)
class Best:
    optimizer: str
    mean: float
    std: float | None
    n: int


@dataclass(frozen=True)
class CorrelationFinding:
    measure: str
    target: str
    kendall_tau: float | None
    spearman: float | None
    ci95: tuple[float, float] | None
    n: int
    significant: bool  # the 95 % interval excludes zero


@dataclass(frozen=True)
class DinhFinding:
    optimizer: str
    seed: int | None
    scale_min: float
    scale_max: float
    accuracy_min: float | None
    accuracy_max: float | None
    factors: tuple[tuple[str, float | None], ...]  # quantity -> max/min over scales (None: sign change)


@dataclass(frozen=True)
class Diverged:
    run: str
    optimizer: str
    seed: int
    epoch: int | None


@dataclass(frozen=True)
class Difference:
    """One setting where a profile departs from the original study."""

    item: str
    ours: str
    original: str


@dataclass(frozen=True)
class CheckItem:
    item: str
    answer: str
    section: str  # a label defined in both templates


@dataclass(frozen=True)
class Findings:
    extremes: tuple[Extreme, ...]
    best: Best | None
    correlations: tuple[CorrelationFinding, ...]
    dinh: DinhFinding | None
    diverged: tuple[Diverged, ...]
    same_setup: bool
    correlation_text: str
    dinh_text: tuple[str, ...]
    abstract: tuple[str, ...]
    discussion: tuple[str, ...]
    limitations: tuple[str, ...]
    differences: tuple[Difference, ...]
    checklist: tuple[CheckItem, ...]


def extremes(summary: Mapping[str, Any]) -> tuple[Extreme, ...]:
    out = []
    for quantity in (*HESSIAN_QUANTITIES, *measures_of(summary)):
        means = [
            (agg["mean"], opt)
            for opt in optimizers_of(summary)
            if (agg := aggregate(summary, opt, quantity))["mean"] is not None
        ]
        if len(means) < 2:
            continue
        (lo, flat), (hi, sharp) = min(means), max(means)
        out.append(Extreme(quantity, sharp, hi, flat, lo, len(means)))
    return tuple(out)


def best_accuracy(summary: Mapping[str, Any]) -> Best | None:
    rows = [
        (agg["mean"], opt, agg)
        for opt in optimizers_of(summary)
        if (agg := aggregate(summary, opt, "test_accuracy"))["mean"] is not None
    ]
    if not rows:
        return None
    mean, opt, agg = max(rows, key=lambda r: r[0])
    return Best(opt, mean, agg["std"], agg["n"])


def correlation_findings(summary: Mapping[str, Any]) -> tuple[CorrelationFinding, ...]:
    out = []
    for row in summary.get("correlations") or []:
        tau, ci = row.get("kendall_tau"), row.get("ci95")
        ci = tuple(float(v) for v in ci) if ci and len(ci) == 2 and all(map(_finite, ci)) else None
        tau = float(tau) if _finite(tau) else None
        rho = float(row["spearman"]) if _finite(row.get("spearman")) else None
        significant = tau is not None and ci is not None and (ci[0] > 0 or ci[1] < 0)
        out.append(
            CorrelationFinding(
                measure=str(row.get("measure")),
                target=str(row.get("target")),
                kendall_tau=tau,
                spearman=rho,
                ci95=ci,
                n=int(row.get("n") or 0),
                significant=significant,
            )
        )
    return tuple(out)


def _factor(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if _finite(v)]
    if not kept or min(kept) <= 0:
        return None
    return max(kept) / min(kept)


def dinh_finding(summary: Mapping[str, Any]) -> DinhFinding | None:
    rows = summary.get("dinh") or []
    info = summary.get("dinh_info") or {}
    scales = [r["scale"] for r in rows if _finite(r.get("scale"))]
    if not scales or info.get("applicable") is False:
        return None
    accs = [r.get("test_accuracy") for r in rows if _finite(r.get("test_accuracy"))]
    quantities = [q for q in (*HESSIAN_QUANTITIES, *measures_of(summary)) if any(q in r for r in rows)]
    return DinhFinding(
        optimizer=str(info.get("optimizer") or "?"),
        seed=info.get("seed") if isinstance(info.get("seed"), int) else None,
        scale_min=min(scales),
        scale_max=max(scales),
        accuracy_min=min(accs) if accs else None,
        accuracy_max=max(accs) if accs else None,
        factors=tuple((q, _factor([r.get(q) for r in rows])) for q in quantities),
    )


def diverged_runs(summary: Mapping[str, Any]) -> tuple[Diverged, ...]:
    return tuple(
        Diverged(r["run"], r["optimizer"], r["seed"], r.get("diverged_epoch"))
        for r in summary["runs"]
        if r.get("status") != "ok"
    )


def same_setup(summary: Mapping[str, Any]) -> bool:
    rows = summary.get("original_study") or []
    if rows:
        return all(bool(r.get("same_setup")) for r in rows)
    return summary.get("profile") == "seed"


# ---- sentences -----------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{100 * x:.2f}\u00a0%"


def _tau(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


def _ci(ci: tuple[float, float]) -> str:
    return f"[{_tau(ci[0])}, {_tau(ci[1])}]"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str) -> str:
    return f"one {word}" if n == 1 else f"{n} {word}s"


def _label(name: str) -> str:
    return style.optimizer_label(name)


def _seed_count(summary: Mapping[str, Any]) -> int:
    seeds = summary.get("seeds")
    if seeds:
        return len(seeds)
    per_opt = Counter(r["optimizer"] for r in summary["runs"])
    return max(per_opt.values())


def _setup_sentence(summary: Mapping[str, Any]) -> str:
    model = summary.get("model") or {}
    data = summary.get("data") or {}
    opts = [_label(o) for o in optimizers_of(summary)]
    parts = []
    if model.get("activation"):
        parts.append(f"{ACTIVATIONS.get(model['activation'], model['activation'])} activations")
    if model.get("pooling"):
        parts.append(f"{POOLINGS.get(model['pooling'], model['pooling'])} pooling")
    if isinstance(model.get("n_params"), int):
        parts.append(f"{model['n_params']:,} parameters")
    arch = ", ".join(parts)
    dataset = str(data.get("dataset") or (summary["runs"][0].get("dataset") or "the data")).upper()
    return (
        f"We train LeNet-5{f' ({arch})' if arch else ''} on {dataset} with "
        f"{_plural(len(opts), 'optimizer')} ({_join(opts)}) and "
        f"{_plural(_seed_count(summary), 'seed')} each, and measure the curvature of every "
        "minimum found: top Hessian eigenvalues, trace, spectral density, "
        f"{_plural(len(measures_of(summary)), 'sharpness measure')} and loss-landscape slices."
    )


def _best_sentence(best: Best) -> str:
    if best.std is None:
        return (
            f"{_label(best.optimizer)} reaches the best test accuracy, "
            f"{100 * best.mean:.2f}\u00a0% ({_plural(best.n, 'run')})."
        )
    return (
        f"{_label(best.optimizer)} reaches the best mean test accuracy, "
        f"{100 * best.mean:.2f} ± {100 * best.std:.2f}\u00a0% (mean ± std over {best.n} seeds)."
    )


def _extreme_sentences(summary: Mapping[str, Any], found: Sequence[Extreme]) -> list[str]:
    if not found:
        return []
    out = []
    lead = found[0]
    ratio = lead.sharpest_mean / lead.flattest_mean if lead.flattest_mean > 0 else None
    out.append(
        f"By {words(summary, lead.quantity)}, {_label(lead.sharpest)} found the sharpest minimum "
        f"(mean {words_sci(lead.sharpest_mean)}) and {_label(lead.flattest)} the flattest "
        f"({words_sci(lead.flattest_mean)})"
        + (f", a factor of {ratio:.3g} apart." if ratio is not None else ".")
    )
    rest = found[1:]
    if rest:
        sharp = Counter(e.sharpest for e in rest).most_common(1)[0]
        flat = Counter(e.flattest for e in rest).most_common(1)[0]
        m = len(rest)
        if sharp[1] == m and flat[1] == m:
            out.append(
                f"All {m} other measures agree that {_label(sharp[0])} is sharpest and "
                f"{_label(flat[0])} flattest."
            )
        else:
            out.append(
                f"The other {m} measures name {_label(sharp[0])} sharpest {sharp[1]} times and "
                f"{_label(flat[0])} flattest {flat[1]} times."
            )
    return out


def _correlation_sentence(summary: Mapping[str, Any], found: Sequence[CorrelationFinding]) -> str:
    gap = [c for c in found if c.target == TARGET and c.kendall_tau is not None]
    if not gap:
        n = max((c.n for c in found), default=len(ok_runs(summary)))
        return (
            f"With {_plural(n, 'run')}, there are too few to rank-correlate sharpness with the "
            "generalization gap."
        )
    strongest = max(gap, key=lambda c: abs(c.kendall_tau))
    sig = sorted((c for c in gap if c.significant), key=lambda c: -abs(c.kendall_tau))
    n = max(c.n for c in gap)

    def detail(c: CorrelationFinding) -> str:
        ci = f", 95\u00a0% CI {_ci(c.ci95)}" if c.ci95 else ""
        return f"Kendall τ = {_tau(c.kendall_tau)}{ci}, n = {c.n}"

    if not sig:
        return (
            f"No measure correlates with the generalization gap across the {n} runs: every 95\u00a0% "
            f"bootstrap interval of Kendall τ includes zero (strongest: {words(summary, strongest.measure)}, "
            f"{detail(strongest)})."
        )
    top = sig[0]
    if len(sig) == 1:
        return (
            f"Only {words(summary, top.measure)} correlates with the generalization gap "
            f"({detail(top)}); every other interval includes zero."
        )
    return (
        f"{len(sig)} of {len(gap)} measures correlate with the generalization gap across {n} runs "
        f"(95\u00a0% bootstrap interval of Kendall τ excludes zero); the strongest is "
        f"{words(summary, top.measure)} ({detail(top)})."
    )


def _factor_text(f: float | None) -> str:
    return "a sign change" if f is None else f"a factor of {words_sci(f)}"


def _dinh_sentences(summary: Mapping[str, Any], d: DinhFinding | None) -> list[str]:
    info = summary.get("dinh_info") or {}
    if d is None:
        note = str(info.get("note") or "")
        if info.get("applicable") is False:
            return [
                "The rescaling argument of Dinh et al. (2017) is not tested on this profile"
                + (f": {note}." if note else ".")
            ]
        return []
    factors = dict(d.factors)
    acc = ""
    if d.accuracy_min is not None:
        spread = 100 * (d.accuracy_max - d.accuracy_min)
        acc = f"leaves the test accuracy at {_pct(d.accuracy_min)} (spread {spread:.2f} points) but "
    hess = [
        f"{words(summary, q)} by {_factor_text(factors[q])}"
        for q in HESSIAN_QUANTITIES
        if q in factors
    ]
    first = (
        f"Rescaling the {_label(d.optimizer)} network"
        + (f" (seed {d.seed})" if d.seed is not None else "")
        + f" by function-preserving layer factors from {d.scale_min:g} to "
        f"{d.scale_max:g} {acc}changes {_join(hess) or 'its curvature'}."
    )
    measures = [q for q in factors if q not in HESSIAN_QUANTITIES]
    moved = [q for q in measures if factors[q] is None or factors[q] >= MOVED_FACTOR]
    stable = [q for q in measures if factors[q] is not None and factors[q] < STABLE_FACTOR]
    second = []
    if moved:
        verb = "moves" if len(moved) == 1 else "move"
        second.append(f"{_join([words(summary, q) for q in moved])} {verb} with it")
    if stable:
        worst = max(factors[q] for q in stable)
        verb = "stays" if len(stable) == 1 else "stay"
        second.append(f"{_join([words(summary, q) for q in stable])} {verb} within a factor of {worst:.3f}")
    out = [first]
    if second:
        out.append("Of the sharpness measures, " + ", while ".join(second) + ".")
    return out


def _diverged_sentence(summary: Mapping[str, Any], div: Sequence[Diverged]) -> list[str]:
    if not div:
        return []
    names = _join([f"{_label(d.optimizer)} seed {d.seed}" for d in div])
    total = len(summary["runs"])
    verb = "is" if len(div) == 1 else "are"
    return [f"{len(div)} of {total} runs diverged ({names}) and {verb} excluded from the statistics."]


def _original_sentence(summary: Mapping[str, Any], same: bool) -> list[str]:
    rows = [
        r
        for r in summary.get("original_study") or []
        if _finite(r.get("original_test_accuracy")) and _finite(r.get("test_accuracy_mean"))
    ]
    if not rows:
        return []
    diffs = [100 * (r["test_accuracy_mean"] - r["original_test_accuracy"]) for r in rows]
    worst = max(diffs, key=abs)
    setup = "with the original setup" if same else "with a setup that differs from the original"
    return [
        f"Compared with the original study's single-seed test accuracies, ours ({setup}) differ "
        f"by at most {abs(worst):.2f} percentage points."
    ]


def abstract_sentences(summary: Mapping[str, Any], f: Findings) -> tuple[str, ...]:
    out = [_setup_sentence(summary)]
    if f.best is not None:
        out.append(_best_sentence(f.best))
    out += _extreme_sentences(summary, f.extremes)
    out.append(_correlation_sentence(summary, f.correlations))
    out += _dinh_sentences(summary, f.dinh)
    out += _diverged_sentence(summary, f.diverged)
    out += _original_sentence(summary, f.same_setup)
    return tuple(out)


def discussion_sentences(summary: Mapping[str, Any], f: Findings) -> tuple[str, ...]:
    out = []
    if f.dinh is not None:
        factors = dict(f.dinh.factors)
        top = factors.get("top_eigenvalue")
        if top is not None and top >= MOVED_FACTOR:
            out.append(
                "The rescaled networks compute the same function, yet their top Hessian eigenvalue "
                f"spans {math.log10(top):.1f} orders of magnitude: Hessian-based sharpness describes "
                "the parametrization, not the function (Dinh et al. 2017). A correlation of such a "
                "measure with generalization across optimizers says which parametrizations the "
                "optimizers reach, not that flat functions generalize."
            )
    gap = [c for c in f.correlations if c.target == TARGET and c.kendall_tau is not None]
    sig = [c for c in gap if c.significant]
    if gap:
        n = max(c.n for c in gap)
        if sig:
            out.append(
                f"With n = {n} runs, significant rank correlations come from differences between "
                "optimizers as much as from the minima themselves; a per-optimizer analysis with "
                "more seeds would separate the two."
            )
        else:
            out.append(
                f"With n = {n} runs, the bootstrap intervals are wide: the data cannot rule out a "
                "moderate correlation either way."
            )
    if f.extremes:
        flat = Counter(e.flattest for e in f.extremes).most_common(1)[0][0]
        if flat == "sam":
            out.append("SAM, which explicitly seeks flat regions, found the flattest minima by most measures.")
    return tuple(out)


def _setting(summary: Mapping[str, Any], stage: str, key: str) -> Any:
    return get_path(summary, "settings", stage, key)


def _subset_limitations(summary: Mapping[str, Any]) -> list[str]:
    out = []
    n_train = get_path(summary, "data", "n_train")
    stages = (
        ("curvature", "Curvature (eigenvalues, trace, density)"),
        ("sharpness", "Sharpness"),
        ("landscape", "The loss landscapes"),
    )
    for stage, what in stages:
        n = _setting(summary, stage, "n_samples")
        if _finite(n) and _finite(n_train) and n < n_train:
            out.append(f"{what} used {int(n):,} of the {int(n_train):,} training images, not the full set.")
    return out


def _estimator_limitation(summary: Mapping[str, Any]) -> list[str]:
    rel = []
    for run in ok_runs(summary):
        mean = get_path(run, "curvature", "trace", "mean")
        err = get_path(run, "curvature", "trace", "stderr")
        if _finite(mean) and _finite(err) and mean > 0:
            rel.append(err / mean)
    if not rel:
        return []
    probes = get_path(ok_runs(summary)[0], "curvature", "trace", "n_probes")
    probes_text = f" with {probes} probes" if isinstance(probes, int) else ""
    return [
        f"Trace and spectral density are stochastic estimates (Hutchinson{probes_text}, relative "
        f"standard error up to {100 * max(rel):.1f}\u00a0%; stochastic Lanczos quadrature)."
    ]


def limitation_sentences(summary: Mapping[str, Any], f: Findings) -> tuple[str, ...]:
    out = []
    seeds = _seed_count(summary)
    if seeds == 1:
        out.append(
            "One seed per optimizer: there are no error bars, and differences between optimizers "
            "may be seed noise."
        )
    elif seeds < SEEDS_FOR_ERROR_BARS:
        out.append(
            f"Only {seeds} seeds per optimizer: each standard deviation rests on {seeds} values and "
            f"the rank correlations on {len(ok_runs(summary))} runs, so their bootstrap intervals are wide."
        )
    out += _subset_limitations(summary)
    epochs = _setting(summary, "train", "epochs")
    grads = [g for r in ok_runs(summary) if (g := run_value(r, "gradient_norm")) is not None]
    if _finite(epochs) and epochs < 20:
        tail = f" (final gradient norm up to {words_sci(max(grads))})" if grads else ""
        out.append(f"Training ran for {int(epochs)} epochs only; the end points may not be minima{tail}.")
    if f.diverged:
        runs = _plural(len(f.diverged), "run")
        verb = "is" if len(f.diverged) == 1 else "are"
        out.append(f"{runs[0].upper()}{runs[1:]} diverged and {verb} excluded from every mean and correlation.")
    unconverged = [r for r in ok_runs(summary) if get_path(r, "curvature", "eigen", "converged") is False]
    if unconverged:
        out.append(
            f"Lanczos did not reach its tolerance for {_plural(len(unconverged), 'run')}; "
            "their eigenvalues are less accurate."
        )
    out += _estimator_limitation(summary)
    info = summary.get("dinh_info") or {}
    if info.get("applicable") is False or not summary.get("dinh"):
        note = str(info.get("note") or "")
        out.append("The rescaling experiment was not run on this profile" + (f": {note}." if note else "."))
    if any(r.get("landscape") for r in summary["runs"]):
        out.append("Loss landscapes are drawn for one seed per optimizer.")
    dataset = str(get_path(summary, "data", "dataset") or "one dataset").upper()
    out.append(
        f"One architecture (LeNet-5) and one dataset ({dataset}): the conclusions may not "
        "transfer to larger networks."
    )
    return tuple(out)


def _hparam_differences(summary: Mapping[str, Any]) -> list[Difference]:
    out = []
    ours = summary.get("optimizers") or {}
    for opt, theirs in ORIGINAL_SETUP["optimizers"].items():
        if opt not in ours:
            out.append(Difference(_label(opt), "not run", "run"))
            continue
        for key, value in theirs.items():
            mine = value_text(ours[opt].get(key))
            if mine != value_text(value):
                out.append(Difference(f"{_label(opt)} {key}", mine, value_text(value)))
    for opt in ours:
        if opt not in ORIGINAL_SETUP["optimizers"]:
            out.append(Difference(_label(opt), "run", "not run"))
    return out


def setup_differences(summary: Mapping[str, Any]) -> tuple[Difference, ...]:
    """Where this profile's setup differs from the original study's."""
    model = summary.get("model") or {}
    checks = [
        ("Activation", model.get("activation"), ORIGINAL_SETUP["activation"]),
        ("Pooling", model.get("pooling"), ORIGINAL_SETUP["pooling"]),
        ("Input size", model.get("input_size"), ORIGINAL_SETUP["input_size"]),
        ("Epochs", _setting(summary, "train", "epochs"), ORIGINAL_SETUP["epochs"]),
        ("Batch size", _setting(summary, "train", "batch_size"), ORIGINAL_SETUP["batch_size"]),
        ("Shuffled batches", _setting(summary, "train", "shuffle"), ORIGINAL_SETUP["shuffle"]),
        ("Seeds", tuple(summary.get("seeds") or ()), ORIGINAL_SETUP["seeds"]),
    ]
    out = [
        Difference(name, value_text(ours), value_text(theirs))
        for name, ours, theirs in checks
        if ours is not None and ours != () and value_text(ours) != value_text(theirs)
    ]
    return tuple(out + _hparam_differences(summary))


def checklist(summary: Mapping[str, Any], f: Findings) -> tuple[CheckItem, ...]:
    seeds = _seed_count(summary)
    commit = str(summary.get("git_commit") or "unknown")[:12]
    dirty = " (uncommitted changes)" if summary.get("git_dirty") else ""
    device = str(get_path(summary, "environment", "device") or "unknown device")
    total = duration(get_path(summary, "timing", "total"))
    n_corr = max((c.n for c in f.correlations if c.kendall_tau is not None), default=0)
    errors = (
        "no: one seed per optimizer"
        if seeds < 2
        else f"yes: sample standard deviation over {seeds} seeds, n stated"
    )
    tests = (
        f"yes: Kendall τ with bootstrap 95\u00a0% intervals over {n_corr} runs"
        if n_corr
        else "no: too few runs"
    )
    prior = "yes: the original study's accuracies" + ("" if f.same_setup else " (setup differs)")
    return (
        CheckItem("Code and exact command", f"yes: commit {commit}{dirty}, command in the appendix", "app:repro"),
        CheckItem("Data and preprocessing", "yes: source, SHA-256 checksums, preprocessing", "sec:data"),
        CheckItem("Hyperparameters", "yes: per optimizer, generated from the config", "tab:hparams"),
        CheckItem("Random seeds", f"yes: {_plural(seeds, 'seed')} listed", "sec:setup"),
        CheckItem("Error bars", errors, "tab:main"),
        CheckItem("Statistical tests", tests, "sec:correlation"),
        CheckItem("Compute", f"yes: {device}, {total} in total, time per stage", "app:repro"),
        CheckItem("Failed runs reported", f"yes: {_plural(len(f.diverged), 'diverged run')}", "sec:diverged"),
        CheckItem("Comparison with prior work", prior, "sec:original"),
        CheckItem("Limitations", "yes: generated from the settings", "sec:limitations"),
    )


def findings(summary: Mapping[str, Any]) -> Findings:
    base = Findings(
        extremes=extremes(summary),
        best=best_accuracy(summary),
        correlations=correlation_findings(summary),
        dinh=dinh_finding(summary),
        diverged=diverged_runs(summary),
        same_setup=same_setup(summary),
        correlation_text="",
        dinh_text=(),
        abstract=(),
        discussion=(),
        limitations=(),
        differences=(),
        checklist=(),
    )
    return Findings(
        **{
            **base.__dict__,
            "correlation_text": _correlation_sentence(summary, base.correlations),
            "dinh_text": tuple(_dinh_sentences(summary, base.dinh)),
            "abstract": abstract_sentences(summary, base),
            "discussion": discussion_sentences(summary, base),
            "limitations": limitation_sentences(summary, base),
            "differences": setup_differences(summary),
            "checklist": checklist(summary, base),
        }
    )
