"""Published claims about sharpness and generalization, tested on the study's own runs.

Each claim is stated in its paper's terms and tested on converged runs only. Its row carries the
statistic, a 95 % interval, the number of clusters (the unit of inference), the method, the raw
p and the Holm-adjusted p over the whole family of tested claims, and a verdict by the rule of
`minima.verdicts` with the reason. Every number is a deterministic function of the runs: no
claim depends on a random seed.

- Paired claims (Keskar, Foret, Wilson, Yao, Kaur) compare matched runs. The cluster of a pair
  is its pair of configurations (the same pair under every seed): the claim's p is the exact
  sign-flip test on the cluster means and its interval the t-interval on them
  (`stats.paired_cluster_test`), so 3 clusters can never give p below 0.25 and the verdict says so.
- Tuned comparisons (Foret vs SGD, Wilson, Yao) tune each optimizer's learning rate on the
  validation set, separately for every batch size and seed, and compare the chosen runs' *test*
  error: nothing is ever chosen on the test set.
- Claims about predictors (Jiang, Andriushchenko) compare granulated coefficients Psi of all
  converged runs; their interval and p come from the jackknife that deletes one configuration
  at a time (`stats.psi_jackknife`).
- Checks (Dinh's rescaling) and bounds (linear stability) are deterministic statements about
  computed numbers and take no p-value; they are outside the Holm family.

Sources: Keskar et al. 2017 (ICLR), Foret et al. 2021 (ICLR), Wilson et al. 2017 (NeurIPS),
Yao et al. 2021 (AAAI), Jiang et al. 2020 (ICLR), Andriushchenko et al. 2023 (ICML), Dinh et
al. 2017 (ICML), Wu et al. 2018 (NeurIPS), Cohen et al. 2021 (ICLR), Kaur et al. 2023 (PMLR,
ICBINB workshop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from minima import facts, stats, verdicts
from minima.schema import counts_as_minimum
from minima.stats import is_finite

NONINFERIORITY_MARGIN = 0.0025  # Yao: AdaHessian no more than 0.25 pp of test accuracy below Adam
GAP_EQUIVALENCE_MARGIN = 0.005  # Kaur: a gap change within 0.5 pp counts as unchanged
DINH_SAME_FUNCTION = 1e-3  # relative change of the logits that still counts as the same function
STABILITY_BOUND = 1.0  # lambda_max eta / (2 (1 + beta)) at most 1 (Wu et al. 2018; Cohen et al. 2021)
SGD_FAMILY = ("sgd", "sgd_momentum")
RULES = {
    "directional": (f"reproduced if the Holm-adjusted p is below α = {verdicts.ALPHA:g} with the estimate on the claimed "
                    "side, not reproduced if below α on the other side, else inconclusive (also when the clusters "
                    "cannot reach α)"),
    "noninferiority": (f"reproduced if the Holm-adjusted p of the test at −{100 * NONINFERIORITY_MARGIN:g} pp is below "
                       f"α = {verdicts.ALPHA:g} with the estimate above it, not reproduced if below α with the estimate "
                       "under it, else inconclusive"),
    "equivalence": (f"reproduced if the Holm-adjusted p of the two one-sided tests at ±{100 * GAP_EQUIVALENCE_MARGIN:g} pp "
                    f"is below α = {verdicts.ALPHA:g}, not reproduced if the 95 % interval lies outside ±"
                    f"{100 * GAP_EQUIVALENCE_MARGIN:g} pp, else inconclusive"),
    "check": (f"reproduced if λ_max changes by a factor of at least {facts.MOVED_FACTOR:g}× while the logits change by "
              f"less than {DINH_SAME_FUNCTION:g} (relative) and the test accuracy is identical"),
    "bound": f"reproduced if λ_max η / (2(1 + β)) ≤ {STABILITY_BOUND:g} for every converged run of SGD and SGD + momentum",
}


@dataclass(frozen=True)
class Spec:
    """What a claim says and how its statistic reads; the test fills in the numbers."""

    id: str
    source: str
    claim: str
    test: str
    statistic: str
    unit: str  # fraction (accuracies, gaps), log10_ratio, psi, ratio or factor
    rule_kind: str
    side: str = "above"  # where the claim puts the statistic relative to its reference
    reference: float = 0.0
    margin: float = 0.0


def _row(spec: Spec, *, value: float | None = None, ci: tuple | None = None, n: int = 0, n_clusters: int = 0,
         method: str = "", p: float | None = None, p_min: float | None = None, condition: bool | None = None,
         reason: str = "", note: str = "") -> dict[str, Any]:
    """One claim's row, without verdict: `evaluate` adds p_holm, verdict and reason."""
    finite = value is not None and is_finite(value)
    return {
        "id": spec.id, "claim": spec.claim, "source": spec.source, "test": spec.test, "statistic": spec.statistic,
        "value": float(value) if finite else None,
        "ci95": [float(ci[0]), float(ci[1])] if finite and ci is not None and all(map(is_finite, ci)) else None,
        "n": n, "n_clusters": n_clusters, "method": method, "p": p if finite else None,
        "p_min": p_min if finite else None, "p_holm": None, "condition": condition,
        "rule": RULES[spec.rule_kind], "rule_kind": spec.rule_kind, "reference": spec.reference,
        "side": spec.side, "margin": spec.margin, "unit": spec.unit, "reason": reason, "note": note,
        "verdict": None,
    }


def _untestable(spec: Spec, reason: str, n: int = 0) -> dict[str, Any]:
    return _row(spec, n=n, reason=reason)


# ---- matched runs ----------------------------------------------------------------------------

Pair = tuple[dict, dict]


def _value(run: dict, quantity: str) -> float | None:
    value = run["values"].get(quantity)
    return float(value) if is_finite(value) else None


def _other_levels(run: dict, *dropped: str) -> tuple:
    return tuple(sorted((axis, level) for axis, level in run["levels"].items() if axis not in dropped))


def batch_pairs(runs: list[dict], *, scaled_lr: bool) -> tuple[list[Pair], tuple[int, int] | None]:
    """(large-batch run, small-batch run) pairs, same optimizer, seed and other settings, at the
    smallest and largest batch size; at the same learning rate, or (scaled_lr) at a learning rate
    scaled by the batch ratio (the same lr/B, hence the same SGD noise scale)."""
    sizes = sorted({r["hyperparameters"]["batch_size"] for r in runs})
    if len(sizes) < 2:
        return [], None
    small, large = sizes[0], sizes[-1]
    factor = large / small if scaled_lr else 1.0
    index = {}
    for r in runs:
        if r["hyperparameters"]["batch_size"] == large:
            key = (r["optimizer"], r["seed"], _other_levels(r, "lr", "batch_size"))
            index.setdefault(key, []).append(r)
    pairs = []
    for r in runs:
        if r["hyperparameters"]["batch_size"] != small:
            continue
        target = r["hyperparameters"]["lr"] * factor
        for partner in index.get((r["optimizer"], r["seed"], _other_levels(r, "lr", "batch_size")), []):
            if math.isclose(partner["hyperparameters"]["lr"], target, rel_tol=1e-9):
                pairs.append((partner, r))
    return pairs, (small, large)


def optimizer_pairs(runs: list[dict], a: str, b: str) -> list[Pair]:
    """(a run, b run) pairs at the same learning rate, batch size, seed and other settings."""
    index = {}
    for r in runs:
        if r["optimizer"] == b:
            index[(r["seed"], r["hyperparameters"]["lr"], _other_levels(r, "optimizer", "lr"))] = r
    return [(r, index[key]) for r in runs if r["optimizer"] == a
            and (key := (r["seed"], r["hyperparameters"]["lr"], _other_levels(r, "optimizer", "lr"))) in index]


def tuned_pairs(runs: list[dict], a: Iterable[str], b: Iterable[str]) -> list[Pair]:
    best_a, best_b = facts.tuned(runs, tuple(a)), facts.tuned(runs, tuple(b))
    return [(best_a[cell], best_b[cell]) for cell in best_a if cell in best_b]


def _difference(quantity: str, log: bool = False) -> Callable[[dict, dict], float | None]:
    def value(a: dict, b: dict) -> float | None:
        x, y = _value(a, quantity), _value(b, quantity)
        if x is None or y is None or (log and (x <= 0 or y <= 0)):
            return None
        return math.log10(x / y) if log else x - y

    return value


def paired(spec: Spec, pairs: list[Pair], difference: Callable[[dict, dict], float | None], *,
           note: str = "", needs: str = "two matched pairs") -> dict[str, Any]:
    """A paired claim: cluster means of the differences about the claim's reference (or margins)."""
    kept = [(d, (a["configuration"], b["configuration"])) for a, b in pairs if (d := difference(a, b)) is not None]
    if not kept:
        return _untestable(spec, f"needs {needs}; the converged runs have none")
    values, clusters = [d for d, _ in kept], [c for _, c in kept]
    if spec.rule_kind == "equivalence":
        return _equivalence(spec, values, clusters, note)
    test = stats.paired_cluster_test(values, clusters, null=spec.reference)
    return _row(spec, value=test.estimate, ci=test.ci95, n=test.n_pairs, n_clusters=test.n_clusters,
                method=test.method, p=test.p, p_min=test.p_min, note=note)


def _equivalence(spec: Spec, values: list[float], clusters: list, note: str) -> dict[str, Any]:
    """Two one-sided sign-flip tests at +-margin (TOST): p is the larger one-sided p."""
    means, n = stats.cluster_means(values, clusters)
    margin, k = spec.margin, len(means)
    one_sided = []
    for bound, sign in ((-margin, +1), (margin, -1)):  # H0: mean <= -margin; H0: mean >= +margin
        shifted = means - bound
        p_two = stats.sign_flip_pvalue(shifted)
        one_sided.append(p_two / 2 if sign * shifted.sum() > 0 else 1 - p_two / 2)
    test = stats.paired_cluster_test(values, clusters)
    return _row(spec, value=test.estimate, ci=test.ci95, n=n, n_clusters=k,
                method=f"two one-sided exact sign-flip tests on cluster means at ±{margin:g}, t-interval",
                p=max(one_sided), p_min=stats.smallest_pvalue(k) / 2, note=note)


# ---- the claims ------------------------------------------------------------------------------

KESKAR = "Keskar et al. 2017"
KESKAR_QUANTITIES = (("top_eigenvalue", "sharper minima (larger λ_max)", "λ_max", "log10_ratio"),
                     ("epsilon_sharpness", "sharper minima (larger ε-sharpness)", "ε-sharpness", "log10_ratio"),
                     ("generalization_gap", "a larger generalization gap", "gap", "fraction"))


def keskar(summary: dict) -> list[dict]:
    runs = facts.converged_runs(summary["runs"])
    out = []
    for scaled, words in ((False, "at the same learning rate"), (True, "at the same η/B (η scaled with B)")):
        pairs, sizes = batch_pairs(runs, scaled_lr=scaled)
        for quantity, effect, symbol, unit in KESKAR_QUANTITIES:
            log = unit == "log10_ratio"
            small, large = sizes or ("small", "large")
            statistic = (f"mean log₁₀({symbol}(B = {large}) / {symbol}(B = {small}))" if log
                         else f"mean {symbol}(B = {large}) − {symbol}(B = {small})")
            spec = Spec(f"keskar_{quantity}_{'scaled' if scaled else 'fixed'}_lr", KESKAR,
                        f"Larger batches find {effect}, {words}",
                        f"pairs of converged runs differing only in the batch size ({large} vs {small}), {words}, same "
                        "optimizer and seed", statistic, unit, "directional")
            if sizes is None:
                out.append(_untestable(spec, "the grid has one batch size"))
            else:
                note = (f"η/B is {large / small:g}× smaller at the larger batch: the SGD noise scale changes with B"
                        if not scaled else "the noise scale η/B is held fixed")
                out.append(paired(spec, pairs, _difference(quantity, log), note=note,
                                  needs="runs whose learning rates differ by the batch ratio" if scaled else "two batch sizes"))
    return out


def foret(summary: dict) -> list[dict]:
    runs = facts.converged_runs(summary["runs"])
    source = "Foret et al. 2021"
    base = (summary.get("optimizers", {}).get("sam") or {}).get("sam_base", "sgd_momentum")
    pairs = optimizer_pairs(runs, "sam", base)
    same = f"pairs of converged runs, SAM and {base} at the same learning rate, batch size and seed"
    rows = [
        paired(Spec("foret_sharpness", source, f"SAM finds flatter minima than its base optimizer ({base})", same,
                    f"mean log₁₀(λ_max(SAM) / λ_max({base}))", "log10_ratio", "directional", side="below"),
               pairs, _difference("top_eigenvalue", log=True), needs=f"SAM and {base} at equal settings"),
        paired(Spec("foret_error", source, f"SAM reaches a lower test error than its base optimizer ({base})", same,
                    f"mean test error(SAM) − test error({base})", "fraction", "directional", side="below"),
               pairs, _difference("test_error"), needs=f"SAM and {base} at equal settings"),
    ]
    spec = Spec("foret_vs_sgd", source, "SAM reaches a lower test error than plain SGD, each tuned on validation",
                "per batch size and seed, each optimizer's run with the best validation accuracy over its learning rates",
                "mean test error(SAM) − test error(SGD)", "fraction", "directional", side="below")
    rows.append(_tuned_row(summary, spec, ("sam",), ("sgd",),
                           note="SAM takes two gradients per step: twice SGD's compute per epoch"))
    return rows


def _tuned_row(summary: dict, spec: Spec, a: tuple[str, ...], b: tuple[str, ...], *, quantity: str = "test_error",
               note: str = "") -> dict:
    """A comparison of each side's validation-tuned runs on the test set."""
    if not summary["data"].get("n_val"):
        return _untestable(spec, "the study has no validation set, and nothing is tuned on the test set")
    runs = facts.converged_runs(summary["runs"])
    return paired(spec, tuned_pairs(runs, a, b), _difference(quantity), note=note,
                  needs=f"converged runs of {' and '.join(a + b)} under the same batch size and seed")


def wilson(summary: dict) -> list[dict]:
    source = "Wilson et al. 2017"
    test = ("per batch size and seed, the run with the best validation accuracy over each method's learning rates "
            "(SGD family: SGD and SGD + momentum together); test errors compared")
    return [_tuned_row(summary, Spec(f"wilson_{name}", source,
                                     f"{label}, tuned on validation, reaches a higher test error than SGD (with or without momentum)",
                                     test, f"mean test error({label}) − test error(SGD family)", "fraction", "directional"),
                       (name,), SGD_FAMILY)
            for name, label in (("adam", "Adam"), ("adagrad", "AdaGrad"))]


def yao(summary: dict) -> list[dict]:
    spec = Spec("yao", "Yao et al. 2021", "AdaHessian, tuned on validation, reaches Adam's test accuracy or better",
                "per batch size and seed, each optimizer's run with the best validation accuracy over its learning rates",
                "mean test accuracy(AdaHessian) − test accuracy(Adam)", "fraction", "noninferiority",
                reference=-NONINFERIORITY_MARGIN, margin=NONINFERIORITY_MARGIN)
    return [_tuned_row(summary, spec, ("adahessian",), ("adam",), quantity="test_accuracy")]


# ---- predictors: granulated coefficients ------------------------------------------------------

def psi_groups(runs: list[dict], axes: list[str]) -> dict[str, list]:
    """For each varied axis, each run's group: the runs sharing the seed and every other axis's
    value, so that within a group only that axis changes. Learning rates are matched by value
    within an optimizer (a batch-size group holds the same optimizer at the same rate, also when
    each batch size has its own grid) and by their position in each list across optimizers."""

    def key(run: dict, axis: str) -> tuple:
        levels = {a: level for a, level in run["levels"].items() if a != axis}
        if axis != "optimizer" and "lr" in levels:
            levels["lr"] = run["hyperparameters"]["lr"]
        return tuple(sorted(levels.items())), run["seed"]

    return {axis: [key(r, axis) for r in runs] for axis in axes}


def _psi_claim(spec: Spec, summary: dict, measures: list[str], signs: list[float], note: str = "") -> dict:
    runs = facts.converged_runs(summary["runs"])
    axes = summary["design"]["axes"]
    if not axes:
        return _untestable(spec, "the grid varies no axis", len(runs))
    gap = [_value(r, "generalization_gap") for r in runs]
    xs = [[_value(r, m) for r in runs] for m in measures]
    result = stats.psi_jackknife(xs, signs, gap, psi_groups(runs, axes), [r["configuration"] for r in runs])
    if result is None:
        return _untestable(spec, "Ψ is undefined: no group has two converged runs with both values", len(runs))
    return _row(spec, value=result.estimate, ci=result.ci95, n=len(runs), n_clusters=result.n_clusters,
                method="jackknife over configurations (delete one), t-interval and t-test", p=result.p, note=note)


def jiang(summary: dict) -> list[dict]:
    source, measure = "Jiang et al. 2020", "pacbayes_mag_flatness"
    test = "granulated Kendall coefficient Ψ against the gap over the grid's axes, paired on the same converged runs"
    first = Spec("jiang_lambda", source, "Magnitude-aware PAC-Bayes flatness predicts generalization better than λ_max",
                 test, "Ψ(magnitude-aware PAC-Bayes) − Ψ(λ_max)", "psi", "directional")
    rows = [_psi_claim(first, summary, [measure, "top_eigenvalue"], [1.0, -1.0])]
    others = [m for m, kind in summary["measure_kinds"].items() if kind in ("hessian", "sharpness") and m != measure]
    best = _best_psi(summary, others)
    second = Spec("jiang_best", source, "Magnitude-aware PAC-Bayes flatness predicts generalization better than every "
                  "other measure", test + "; the other measure is the one with the largest Ψ here",
                  f"Ψ(magnitude-aware PAC-Bayes) − Ψ({best or 'best other'})", "psi", "directional")
    if best is None:
        rows.append(_untestable(second, "no other measure has a defined Ψ"))
    else:
        rows.append(_psi_claim(second, summary, [measure, best], [1.0, -1.0],
                               note=f"the comparison measure, {best}, was chosen as the best on these same runs, which "
                                    "favours it"))
    return rows


def _best_psi(summary: dict, measures: list[str]) -> str | None:
    rows = [c for c in summary["correlations"] if c["target"] == "generalization_gap" and c["measure"] in measures
            and c["psi_mean"] is not None]
    return max(rows, key=lambda c: (c["psi_mean"], c["measure"]))["measure"] if rows else None


def andriushchenko(summary: dict) -> list[dict]:
    """Per adaptive m-sharpness variant: |psi_lr| of sharpness against the learning rate minus
    |Psi| of sharpness against the gap, jackknifed over configurations."""
    source = "Andriushchenko et al. 2023"
    variants = [m for m, k in summary["measure_kinds"].items() if k == "sharpness" and m.startswith("adaptive_") and "_m" in m]
    runs = facts.converged_runs(summary["runs"])
    axes = summary["design"]["axes"]
    out = []
    for measure in variants:
        # the measure's description cites the same paper as the claim: cited once, by the claim
        label = summary["measures"].get(measure, measure).removesuffix(f" ({source})")
        spec = Spec(f"andriushchenko_{measure}", source,
                    f"Adaptive sharpness tracks the learning rate more than generalization ({label})",
                    "|ψ_lr| (Kendall τ of the sharpness with η, within groups where only η varies) against |Ψ| of the "
                    "sharpness with the gap; jackknife over configurations",
                    "|ψ_lr(sharpness, η)| − |Ψ(sharpness, gap)|", "psi", "directional")
        if "lr" not in axes:
            out.append(_untestable(spec, "the grid has one learning rate per optimizer"))
            continue
        groups = psi_groups(runs, axes)
        x = [_value(r, measure) for r in runs]
        lr = [r["hyperparameters"]["lr"] for r in runs]
        gap = [_value(r, "generalization_gap") for r in runs]
        lr_full = stats.granulated_tau(x, lr, {"lr": groups["lr"]})
        gap_full = stats.granulated_tau(x, gap, groups)
        if lr_full.psi_mean is None or gap_full.psi_mean is None:
            out.append(_untestable(spec, "ψ_lr or Ψ is undefined on the converged runs", len(runs)))
            continue

        def statistic(keep, x=x, lr=lr, gap=gap, groups=groups, lr_full=lr_full, gap_full=gap_full):
            if keep.all():
                return abs(lr_full.psi_mean) - abs(gap_full.psi_mean)
            return (abs(stats.psi_without(x, lr, {"lr": groups["lr"]}, lr_full, ~keep))
                    - abs(stats.psi_without(x, gap, groups, gap_full, ~keep)))

        result = stats.cluster_jackknife(statistic, [r["configuration"] for r in runs])
        if result is None:
            out.append(_untestable(spec, "too few configurations for the jackknife", len(runs)))
            continue
        out.append(_row(spec, value=result.estimate, ci=result.ci95, n=len(runs), n_clusters=result.n_clusters,
                        method="jackknife over configurations (delete one), t-interval and t-test", p=result.p,
                        note="the paper measured modern networks and fine-tuning; here LeNet-5 trained from scratch"))
    return out


# ---- checks and bounds -----------------------------------------------------------------------

def dinh(summary: dict) -> list[dict]:
    info = summary["dinh_info"]
    spec = Spec("dinh_rescaling", "Dinh et al. 2017", "A function-preserving rescaling changes Hessian sharpness",
                "rescale two layers of one converged ReLU network by (a, 1/a) over a log grid of a; same logits, same "
                "test accuracy", "λ_max max/min over the scales", "factor", "check", reference=facts.MOVED_FACTOR)
    if not info.get("applicable"):
        return [_untestable(spec, info.get("note") or "not run")]
    run = next((r for r in summary["runs"] if r["run"] == info.get("run")), None)
    if run is None or not counts_as_minimum(run["status"], run["converged"]) or info.get("converged") is False:
        return [_untestable(spec, info.get("note") or "the rescaled run did not converge: a capped run is no minimum")]
    factor = (info.get("factors") or {}).get("top_eigenvalue")
    same = (info.get("max_logit_change") or 0.0) <= DINH_SAME_FUNCTION and info.get("accuracy_min") == info.get("accuracy_max")
    return [_row(spec, value=factor, n=len(summary["dinh"]), condition=same, method="deterministic check",
                 note=f"run {info.get('run')} ({info.get('optimizer')}, seed {info.get('seed')})")]


def stability(summary: dict) -> list[dict]:
    """lambda_max eta / (2 (1 + beta)) of every converged SGD-family run against 1."""
    spec = Spec("stability", "Wu et al. 2018; Cohen et al. 2021",
                "Minima that SGD finds at step η are linearly stable: λ_max ≤ 2/η (heavy ball: 2(1 + β)/η)",
                "every converged run of SGD and SGD + momentum; λ_max on the training set",
                "largest λ_max η / (2(1 + β))", "ratio", "bound", side="below", reference=STABILITY_BOUND)
    ratios = [r["values"]["stability_ratio"] for r in facts.converged_runs(summary["runs"])
              if r["optimizer"] in SGD_FAMILY and is_finite(r["values"].get("stability_ratio"))]
    if not ratios:
        return [_untestable(spec, "no converged SGD or SGD + momentum run")]
    below = sum(ratio <= STABILITY_BOUND for ratio in ratios)
    return [_row(spec, value=max(ratios), n=len(ratios), method="deterministic bound",
                 note=f"{below} of {len(ratios)} runs below the bound; median ratio {sorted(ratios)[len(ratios) // 2]:.2g}")]


def kaur(summary: dict) -> list[dict]:
    runs = facts.converged_runs(summary["runs"])
    pairs, sizes = batch_pairs(runs, scaled_lr=True)
    spec = Spec("kaur_gap", "Kaur et al. 2023",
                "Scaling the learning rate with the batch size leaves the generalization gap unchanged (while λ_max moves)",
                f"pairs of converged runs at the same η/B ({sizes[1] if sizes else 'large'} vs {sizes[0] if sizes else 'small'}), "
                "same optimizer and seed", "mean gap(B large, η large) − gap(B small, η small)", "fraction", "equivalence",
                side="either", margin=GAP_EQUIVALENCE_MARGIN)
    if sizes is None:
        return [_untestable(spec, "the grid has one batch size")]
    return [paired(spec, pairs, _difference("generalization_gap"), note="λ_max under the same scaling: Keskar's row at "
                   "the same η/B", needs="runs whose learning rates differ by the batch ratio")]


# ---- the family ------------------------------------------------------------------------------

def evaluate(summary: dict) -> list[dict]:
    """Every claim's row, in the order the report shows them: Holm over the tested claims, then
    each verdict and its reason by `verdicts.decide`."""
    rows = [*keskar(summary), *foret(summary), *wilson(summary), *yao(summary), *jiang(summary),
            *andriushchenko(summary), *kaur(summary), *stability(summary), *dinh(summary)]
    family = [row for row in rows if verdicts.can_reject(row)]
    for row, adjusted in zip(family, stats.holm([row["p"] for row in family])):
        row["p_holm"] = adjusted
    for row in rows:
        row["verdict"], row["reason"] = verdicts.decide(row)
    return rows
