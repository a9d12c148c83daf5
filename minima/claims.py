"""Published claims about sharpness and generalization, tested on the study's own runs.

Each claim gets a statistic computed from converged runs, a 95 % interval that respects the
clustering of runs into configurations, and a verdict by one of three stated rules:

- directional (the claim says an effect has a sign): `reproduced` when the interval lies
  entirely on the claimed side of zero, `not_reproduced` when it lies entirely on the other
  side, `inconclusive` when it contains zero;
- non-inferiority (the claim says "as good or better", margin d): `reproduced` when the
  interval's lower end is above -d, `not_reproduced` when its upper end is below -d,
  `inconclusive` otherwise;
- no reliable ranking (the claim says a measure does *not* predict, margin t): `reproduced`
  when the interval's upper end is below t, `not_reproduced` when its lower end is above t,
  `inconclusive` otherwise;

and `not_testable` when the design lacks what the test needs (say a second batch size, SAM and
its base optimizer at equal settings, or a ReLU network for the rescaling), with the reason.

Sources: Keskar et al. 2017 (ICLR), Foret et al. 2021 (ICLR), Wilson et al. 2017 (NeurIPS),
Jiang et al. 2020 (ICLR), Andriushchenko et al. 2023 (ICML), Dinh et al. 2017 (ICML),
Yao et al. 2021 (AAAI).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from minima import facts, stats
from minima.stats import is_finite

VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_testable")
NONINFERIORITY_MARGIN = 0.0025  # 0.25 percentage points of test accuracy
NO_RANKING_MARGIN = 0.3  # a Psi below this is not a reliable ranking
DINH_MOVE = 10.0  # a rescaling "changes" lambda_max when max/min over the scales exceeds this
DINH_SAME_FUNCTION = 1e-3  # relative change of the logits that still counts as the same function
RESAMPLES = 2000
SEED = 0
RULES = {
    "directional": "reproduced if the 95 % interval lies on the claimed side of 0, not reproduced if on the other side, else inconclusive",
    "noninferiority": f"reproduced if the 95 % interval's lower end is above −{100 * NONINFERIORITY_MARGIN:g} pp, not reproduced if its upper end is below it, else inconclusive",
    "no_ranking": f"reproduced if the 95 % interval's upper end is below {NO_RANKING_MARGIN}, not reproduced if its lower end is above it, else inconclusive",
    "dinh": f"reproduced if λ_max changes by more than {DINH_MOVE:g}× while the logits change by less than {DINH_SAME_FUNCTION:g} (relative) and test accuracy is identical",
    "ranking": "reproduced if the 95 % interval of Kendall τ between the two optimizer rankings lies below 1 (the ranking changes), not reproduced if the rankings agree in every resample, else inconclusive",
}


# source, claim, test, statistic of the claims whose wording does not depend on the design
TEXTS = {
    "wilson": ("Wilson et al. 2017", "Adaptive methods (Adam, AdaGrad) generalize worse than SGD (with or without momentum)",
               "every converged run (all reach training loss ≤ stop_loss): family means, configurations resampled within family",
               "mean gap(adaptive) − mean gap(SGD family)"),
    "yao": ("Yao et al. 2021", "AdaHessian reaches Adam's test accuracy or better",
            "each optimizer tuned over its learning rates at every batch size and seed (converged runs)",
            "mean over (batch size, seed) of best-over-lr accuracy(AdaHessian) − accuracy(Adam)"),
    "jiang": ("Jiang et al. 2020", "Magnitude-aware PAC-Bayes flatness predicts generalization better than λ_max",
              "granulated Kendall coefficient Ψ over the grid's axes; groups resampled within each axis, paired",
              "Ψ(magnitude-aware PAC-Bayes) − Ψ(λ_max) against the gap"),
    "andriushchenko": ("Andriushchenko et al. 2023", "Adaptive sharpness does not reliably rank generalization across hyperparameters",
                       "granulated Ψ against the gap of each adaptive m-sharpness variant (ℓ∞ and ℓ₂, normalized logits, "
                       "m = 128, every radius); the variant with the largest Ψ, groups resampled within each axis",
                       "largest Ψ among the adaptive m-sharpness variants"),
    "dinh": ("Dinh et al. 2017", "A function-preserving rescaling changes Hessian sharpness",
             "rescale two layers of one trained ReLU network by (a, 1/a) over a log grid of a; same logits, same test accuracy",
             "λ_max max/min over the scales"),
    "ranking": ("Dinh et al. 2017", "The optimizers' ranking by λ_max reflects per-layer weight norms (it changes when they are equalized)",
                "rank optimizers by mean λ_max before and after the function-preserving rescaling that equalizes every "
                "layer's weight norm; configurations resampled", "Kendall τ between the two optimizer rankings"),
}

# What each rule compares the interval with, and the claimed side of it (for tables and plots).
REFERENCES = {"directional": 0.0, "noninferiority": -NONINFERIORITY_MARGIN, "no_ranking": NO_RANKING_MARGIN,
              "dinh": DINH_MOVE, "ranking": 1.0}


def _claim(claim: str, source: str, test: str, statistic: str, value: float | None, ci: tuple | None,
           verdict: str, rule: str, n: int = 0, note: str = "", *, unit: str, side: str) -> dict[str, Any]:
    """One row. `unit`: fraction (accuracies, gaps), log10_ratio, psi, tau or factor; `side`:
    where the claim puts the statistic relative to the rule's reference (above or below)."""
    assert verdict in VERDICTS and side in ("above", "below")
    return {"claim": claim, "source": source, "test": test, "statistic": statistic, "value": value,
            "ci95": list(ci) if ci is not None else None, "verdict": verdict, "rule": RULES[rule], "rule_kind": rule,
            "reference": REFERENCES[rule], "side": side, "unit": unit, "n": n, "note": note}




def directional(ci: tuple | None, sign: int) -> str:
    if ci is None or not all(map(is_finite, ci)):
        return "inconclusive"
    lo, hi = sign * ci[0], sign * ci[1]
    lo, hi = min(lo, hi), max(lo, hi)
    if lo > 0:
        return "reproduced"
    if hi < 0:
        return "not_reproduced"
    return "inconclusive"


def noninferior(ci: tuple | None, margin: float) -> str:
    if ci is None or not all(map(is_finite, ci)):
        return "inconclusive"
    if ci[0] > -margin:
        return "reproduced"
    if ci[1] < -margin:
        return "not_reproduced"
    return "inconclusive"


def no_ranking(ci: tuple | None, margin: float) -> str:
    if ci is None or not all(map(is_finite, ci)):
        return "inconclusive"
    if ci[1] < margin:
        return "reproduced"
    if ci[0] > margin:
        return "not_reproduced"
    return "inconclusive"


def _key(run: dict, drop: str) -> tuple:
    return (run["optimizer"] if drop != "optimizer" else None, run["seed"],
            tuple(sorted((a, i) for a, i in run["levels"].items() if a != drop)))


def matched_pairs(runs: list[dict], pair: Callable[[dict], str | None], match: Callable[[dict], tuple]) -> list[tuple[dict, dict]]:
    """(a, b) runs equal under `match` where `pair` labels one "a" and the other "b"."""
    table: dict[tuple, dict[str, dict]] = {}
    for r in runs:
        label = pair(r)
        if label is not None:
            table.setdefault(match(r), {})[label] = r
    return [(cell["a"], cell["b"]) for cell in table.values() if "a" in cell and "b" in cell]


def _paired(pairs: list[tuple[dict, dict]], value: Callable[[dict, dict], float | None]) -> tuple[float | None, tuple | None, int]:
    diffs, clusters = [], []
    for a, b in pairs:
        d = value(a, b)
        if is_finite(d):
            diffs.append(d)
            clusters.append((a["configuration"], b["configuration"]))
    if len(diffs) < 2:
        return (diffs[0] if diffs else None), None, len(diffs)
    estimate, ci = stats.paired_difference_ci(diffs, clusters, n_boot=RESAMPLES, seed=SEED)
    return estimate, (ci if all(map(is_finite, ci)) else None), len(diffs)


def _log_ratio(q: str) -> Callable[[dict, dict], float | None]:
    def value(a: dict, b: dict) -> float | None:
        x, y = a["values"].get(q), b["values"].get(q)
        return math.log10(x / y) if is_finite(x) and is_finite(y) and x > 0 and y > 0 else None

    return value


def _difference(q: str) -> Callable[[dict, dict], float | None]:
    def value(a: dict, b: dict) -> float | None:
        x, y = a["values"].get(q), b["values"].get(q)
        return x - y if is_finite(x) and is_finite(y) else None

    return value


# ---- the claims ----------------------------------------------------------------------------


def keskar(summary: dict) -> list[dict]:
    runs = facts.converged(summary["runs"])
    source, rule = "Keskar et al. 2017", "directional"
    sizes = sorted({r["hyperparameters"]["batch_size"] for r in runs})
    claims = [("Larger batches find sharper minima", "top_eigenvalue", _log_ratio, "mean log₁₀(λ_max(B large) / λ_max(B small))", "log10_ratio"),
              ("Larger batches generalize worse (larger gap)", "generalization_gap", _difference, "mean gap(B large) − gap(B small)", "fraction")]
    if len(sizes) < 2:
        return [_claim(c, source, "matched runs differing only in batch size", s, None, None, "not_testable", rule,
                       note="the grid has one batch size", unit=u, side="above") for c, _, _, s, u in claims]
    small, large = sizes[0], sizes[-1]
    pairs = matched_pairs(runs, lambda r: {large: "a", small: "b"}.get(r["hyperparameters"]["batch_size"]),
                          lambda r: _key(r, "batch_size"))
    out = []
    for claim, quantity, build, statistic, unit in claims:
        value, ci, n = _paired(pairs, build(quantity))
        test = f"pairs of converged runs equal but for the batch size ({large} vs {small}): same optimizer, learning rate, seed"
        out.append(_claim(claim, source, test, statistic, value, ci, directional(ci, +1) if n >= 2 else "not_testable", rule, n,
                          "" if n >= 2 else "fewer than two matched pairs converged", unit=unit, side="above"))
    return out


def foret(summary: dict) -> list[dict]:
    runs = facts.converged(summary["runs"])
    source, rule = "Foret et al. 2021", "directional"
    base = (summary.get("optimizers", {}).get("sam") or {}).get("sam_base", "sgd_momentum")
    claims = [("SAM finds flatter minima than its base optimizer", "top_eigenvalue", _log_ratio, f"mean log₁₀(λ_max(SAM) / λ_max({base}))", "log10_ratio"),
              ("SAM generalizes better than its base optimizer (smaller gap)", "generalization_gap", _difference, f"mean gap(SAM) − gap({base})", "fraction")]
    pairs = matched_pairs(runs, lambda r: {"sam": "a", base: "b"}.get(r["optimizer"]),
                          lambda r: (r["seed"], r["hyperparameters"]["lr"], r["hyperparameters"]["batch_size"],
                                     tuple(sorted((a, i) for a, i in r["levels"].items() if a not in ("optimizer", "lr")))))
    out = []
    for claim, quantity, build, statistic, unit in claims:
        test = f"pairs of converged runs, SAM and {base} at the same learning rate, batch size and seed"
        value, ci, n = _paired(pairs, build(quantity))
        if n < 2:
            out.append(_claim(claim, source, test, statistic, value, None, "not_testable", rule, n,
                              f"fewer than two converged SAM/{base} pairs at equal settings", unit=unit, side="below"))
        else:
            out.append(_claim(claim, source, test, statistic, value, ci, directional(ci, -1), rule, n, unit=unit, side="below"))
    return out


def wilson(summary: dict) -> list[dict]:
    runs = facts.converged(summary["runs"])
    source, claim, test, statistic = TEXTS["wilson"]
    rule = "directional"
    adaptive = [r for r in runs if r["optimizer"] in ("adam", "adagrad")]
    plain = [r for r in runs if r["optimizer"] in ("sgd", "sgd_momentum")]
    if len({r["configuration"] for r in adaptive}) < 2 or len({r["configuration"] for r in plain}) < 2:
        return [_claim(claim, source, test, statistic, None, None, "not_testable", rule, len(adaptive) + len(plain),
                       "needs two converged configurations of each family", unit="fraction", side="above")]
    value, ci = _family_difference(adaptive, plain, "generalization_gap")
    return [_claim(claim, source, test, statistic, value, ci, directional(ci, +1), rule, len(adaptive) + len(plain),
                   unit="fraction", side="above")]


def _family_difference(a: list[dict], b: list[dict], q: str) -> tuple[float, tuple | None]:
    """mean(a) - mean(b), with a bootstrap that resamples configurations within each family."""
    runs = [(r, family) for family, members in (("a", a), ("b", b)) for r in members if is_finite(r["values"].get(q))]
    values = np.array([r["values"][q] for r, _ in runs])
    in_a = np.array([family == "a" for _, family in runs])

    def difference(i: np.ndarray) -> float:
        return float(values[i][in_a[i]].mean() - values[i][~in_a[i]].mean())

    ci = stats.cluster_bootstrap(difference, [r["configuration"] for r, _ in runs], strata=in_a.tolist(),
                                 n_boot=RESAMPLES, seed=SEED)
    return difference(np.arange(len(runs))), (ci if all(map(is_finite, ci)) else None)


def yao(summary: dict) -> list[dict]:
    runs = facts.converged(summary["runs"])
    source, claim, test, statistic = TEXTS["yao"]
    rule = "noninferiority"
    best: dict[tuple, dict[str, dict]] = {}
    for r in runs:
        if r["optimizer"] in ("adahessian", "adam"):
            cell = best.setdefault((r["hyperparameters"]["batch_size"], r["seed"]), {})
            if r["optimizer"] not in cell or r["values"]["test_accuracy"] > cell[r["optimizer"]]["values"]["test_accuracy"]:
                cell[r["optimizer"]] = r
    pairs = [(c["adahessian"], c["adam"]) for c in best.values() if "adahessian" in c and "adam" in c]
    value, ci, n = _paired(pairs, _difference("test_accuracy"))
    if n < 2:
        return [_claim(claim, source, test, statistic, value, None, "not_testable", rule, n,
                       "fewer than two (batch size, seed) cells with both optimizers converged", unit="fraction", side="above")]
    return [_claim(claim, source, test, statistic, value, ci, noninferior(ci, NONINFERIORITY_MARGIN), rule, n,
                   unit="fraction", side="above")]


def _correlation(summary: dict, measure: str, target: str = "generalization_gap") -> dict | None:
    return next((c for c in summary["correlations"] if c["measure"] == measure and c["target"] == target), None)


def psi_groups(runs: list[dict], axes: list[str]) -> dict[str, list]:
    """For each varied axis, each run's group: the runs sharing every other axis's level and the
    seed (learning rates are matched across optimizers by their index in each optimizer's list)."""
    return {axis: [(tuple(sorted((a, i) for a, i in r["levels"].items() if a != axis)), r["seed"]) for r in runs]
            for axis in axes}


def _groups(summary: dict) -> tuple[list[dict], dict[str, list]]:
    runs = facts.converged(summary["runs"])
    return runs, psi_groups(runs, summary["design"]["axes"])


def jiang(summary: dict) -> list[dict]:
    source, claim, test, statistic = TEXTS["jiang"]
    rule = "directional"
    runs, groups = _groups(summary)
    if not summary["design"]["axes"]:
        return [_claim(claim, source, test, statistic, None, None, "not_testable", rule, len(runs), "the grid varies no axis",
                       unit="psi", side="above")]
    y = [r["values"]["generalization_gap"] for r in runs]
    value, ci = stats.psi_difference_ci([r["values"].get("pacbayes_mag_flatness") for r in runs],
                                        [r["values"].get("top_eigenvalue") for r in runs], y, groups, n_boot=RESAMPLES, seed=SEED)
    ci = ci if ci is not None and all(map(is_finite, ci)) else None
    if not is_finite(value):
        return [_claim(claim, source, test, statistic, None, None, "not_testable", rule, len(runs), "no group has two converged runs",
                       unit="psi", side="above")]
    return [_claim(claim, source, test, statistic, value, ci, directional(ci, +1), rule, len(runs), unit="psi", side="above")]


def andriushchenko(summary: dict) -> list[dict]:
    """Reads Psi and its interval from the summary's correlation rows (the same numbers the
    correlation table shows) rather than resampling again."""
    source, claim, test, statistic = TEXTS["andriushchenko"]
    rule = "no_ranking"
    faithful = [m for m, k in summary["measure_kinds"].items() if k == "sharpness" and m.startswith("adaptive_") and "_m" in m]
    n = len(facts.converged(summary["runs"]))
    if not faithful or not summary["design"]["axes"]:
        return [_claim(claim, source, test, statistic, None, None, "not_testable", rule, n,
                       "no adaptive m-sharpness measured" if not faithful else "the grid varies no axis", unit="psi", side="below")]
    rows = [row for row in map(lambda m: _correlation(summary, m), faithful) if row and is_finite(row["psi_mean"])]
    if not rows:
        return [_claim(claim, source, test, statistic, None, None, "not_testable", rule, n, "no group has two converged runs",
                       unit="psi", side="below")]
    best = max(rows, key=lambda row: (row["psi_mean"], row["measure"]))
    ci = best["psi_ci95"]
    return [_claim(claim, source, test, statistic, best["psi_mean"], ci, no_ranking(ci, NO_RANKING_MARGIN), rule, n,
                   f"variant: {best['measure']}", unit="psi", side="below")]


def dinh(summary: dict) -> list[dict]:
    info = summary["dinh_info"]
    source, claim, test, statistic = TEXTS["dinh"]
    out = []
    if not info.get("applicable") or not info.get("converged"):  # claims use converged runs only
        out.append(_claim(claim, source, test, statistic, None, None, "not_testable", "dinh", 0, info.get("note") or "not run",
                          unit="factor", side="above"))
    else:
        factor = (info.get("factors") or {}).get("top_eigenvalue")
        same = (info.get("max_logit_change") or 0.0) <= DINH_SAME_FUNCTION and info.get("accuracy_min") == info.get("accuracy_max")
        if not same:
            verdict, note = "inconclusive", "the rescaled network's logits or accuracy changed: rounding, not the argument"
        else:
            verdict, note = ("reproduced" if factor is not None and factor > DINH_MOVE else "not_reproduced"), ""
        out.append(_claim(claim, source, test, statistic, factor, None, verdict, "dinh", len(summary["dinh"]), note,
                          unit="factor", side="above"))
    out.append(_ranking_claim(summary))
    return out


def _ranking_claim(summary: dict) -> dict:
    source, claim, test, statistic = TEXTS["ranking"]
    rule = "ranking"
    runs = [r for r in facts.converged(summary["runs"]) if is_finite(r["values"].get("balanced_top_eigenvalue")) and is_finite(r["values"].get("top_eigenvalue"))]
    optimizers = sorted({r["optimizer"] for r in runs})
    if len(optimizers) < 3:
        return _claim(claim, source, test, statistic, None, None, "not_testable", rule, len(runs),
                      "needs three optimizers with converged ReLU runs", unit="tau", side="below")

    def tau(sample: list[dict]) -> float:
        raw, balanced = [], []
        for name in optimizers:
            mine = [r for r in sample if r["optimizer"] == name]
            if not mine:
                return math.nan
            raw.append(np.mean([math.log(r["values"]["top_eigenvalue"]) for r in mine]))
            balanced.append(np.mean([math.log(r["values"]["balanced_top_eigenvalue"]) for r in mine]))
        return stats.kendall_tau(raw, balanced)

    value = tau(runs)
    lo, hi = stats.cluster_bootstrap(lambda i: tau([runs[j] for j in i]), [r["configuration"] for r in runs],
                                     n_boot=RESAMPLES, seed=SEED)
    ci = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
    same = 1.0 - 1e-9  # tau of identical rankings, up to rounding
    if ci is None:
        verdict = "inconclusive"
    elif ci[1] < same:
        verdict = "reproduced"
    elif ci[0] >= same:
        verdict = "not_reproduced"
    else:
        verdict = "inconclusive"
    return _claim(claim, source, test, statistic, value, ci, verdict, rule, len(runs), unit="tau", side="below")


def evaluate(summary: dict) -> list[dict]:
    """Every claim's row, in the order the report shows them."""
    return [*keskar(summary), *foret(summary), *wilson(summary), *jiang(summary), *andriushchenko(summary),
            *dinh(summary), *yao(summary)]
