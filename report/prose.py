"""The report's sentences: pure functions from a validated summary to plain-Unicode text.

Every number and judgment comes from the summary (package `minima` computed them); these
functions only choose words for the facts given: a correlation's `direction` and
`significant`, a claim's `verdict`, Dinh's `moved`/`stable`/`nonpositive` lists. A
correlation that no Holm-adjusted test supports has an *undetermined* direction, never "no
correlation"; a quantity that takes values <= 0 under the rescaling has no factor, which is
said as such. The templates escape each sentence once for LaTeX or Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass

from minima.schema import GAP, RESCALED_CURVATURE, Claim, Correlation, DinhInfo, Summary
from report import style
from report.formats import (
    duration, joined, plural, words_ci, words_int, words_num, words_pct, words_pp, words_sci,
)
from report.style import words


def _verb(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


# ---- the design ----------------------------------------------------------------------------

def axis_levels(summary: Summary, axis: str) -> str:
    """"SGD, SGD + momentum and SAM", "32 and 64", or "2 levels per optimizer"."""
    if axis == "optimizer":
        return joined([style.optimizer_label(o) for o in style.axis_values(summary, axis)])
    tables = summary.design.grid.values()
    per_batch = {len(lrs) for table in tables for lrs in (table.lr_by_batch or {}).values()}
    if axis == "lr" and any(len(set(map(tuple, (t.lr_by_batch or {}).values()))) > 1 for t in tables):
        # each batch size runs its own grid (lr_batch_scaling): the levels are counted within one
        return f"{'–'.join(str(k) for k in sorted(per_batch))} levels per optimizer and batch size"
    lists = {tuple(getattr(table, axis, None) or ()) for table in tables}
    if len(lists) == 1:
        return joined([f"{v:g}" for v in next(iter(lists))])
    sizes = sorted({len(levels) for levels in lists})
    return f"{'–'.join(str(k) for k in sizes)} levels per optimizer"


def axes_text(summary: Summary) -> str:
    axes = summary.design.axes
    if not axes:
        return "no hyperparameter varies"
    return joined([f"the {style.axis_words(a)} over {axis_levels(summary, a)}" for a in axes])


def stop_rule(summary: Summary) -> str:
    design = summary.design
    return (f"full-training-set cross-entropy ≤ {design.stop_loss:g} "
            f"within at most {plural(design.max_epochs, 'epoch')}")


def design_sentence(summary: Summary) -> str:
    d, data = summary.design, summary.data
    seeds = ", ".join(str(s) for s in d.seeds)
    fits = [f"{d.n_converged} of the {d.n_runs} runs converged to the stop rule ({stop_rule(summary)})"]
    if d.n_capped:
        fits.append(f"{d.n_capped} {_verb(d.n_capped, 'was', 'were')} capped")
    if d.n_diverged:
        fits.append(f"{d.n_diverged} diverged")
    spread = (f"the generalization gaps of the converged runs span {words_pp(d.gap_spread)} "
              f"({words_pp(d.gap_min, unit=False)} to {words_pp(d.gap_max)})"
              if d.gap_spread is not None else "no run converged, so the gaps have no spread")
    validation = (f"; whatever is chosen is chosen on {words_int(data.n_val)} validation images disjoint from both"
                  if data.n_val else "")
    return (
        f"We train LeNet-5 on {words_int(data.n_train)} {data.display_name} training images in "
        f"{plural(d.n_runs, 'run')}: {plural(d.n_configurations, 'configuration')} ({axes_text(summary)}) "
        f"× {plural(len(d.seeds), 'seed')} ({seeds}); {joined(fits)}; {spread}; test accuracy is measured on "
        f"{words_int(data.n_test)} test images{validation}."
    )


# ---- claims --------------------------------------------------------------------------------

def _named(claims: list[Claim]) -> str:
    return "; ".join(f"{c.source}, “{c.claim}”" for c in claims)


def claims_sentence(summary: Summary, where: str = "") -> str:
    """"Of 10 published claims tested, 3 are reproduced (...), 1 not reproduced (...), 4 inconclusive
    and 2 not testable": every claim's verdict, those reproduced or not by name."""
    claims = summary.claims
    if not claims:
        return "No published claim was tested."
    parts = []
    for verdict in style.VERDICTS:
        chosen = summary.claims_with(verdict)
        if not chosen:
            continue
        verb = "" if parts else _verb(len(chosen), "is ", "are ")
        text = f"{len(chosen)} {verb}{style.verdict_words(verdict)}"
        if verdict in ("reproduced", "not_reproduced"):
            text += f" ({_named(chosen)})"
        parts.append(text)
    return f"Of {plural(len(claims), 'published claim')} tested{where}, {joined(parts)}."


# ---- correlations --------------------------------------------------------------------------

def _tested(summary: Summary, target: str) -> list[Correlation]:
    return [c for c in summary.correlations_of(target) if c.kind != "baseline"]


def _tau_detail(row: Correlation) -> str:
    ci = f", 95 % CI {words_ci(row.ci95)}" if row.ci95 else ""
    return f"τ = {words_num(row.kendall_tau)}{ci}"


def correlation_sentence(summary: Summary, target: str = GAP) -> str:
    rows = _tested(summary, target)
    name = words(summary, target)
    if not rows:
        return f"No measure was correlated with {name}."
    computed = [r for r in rows if r.kendall_tau is not None]
    if not computed:
        return (f"Too few converged runs ({summary.design.n_converged}) to rank-correlate the measures with "
                f"{name}: every direction is undetermined.")
    sample = f"n = {computed[0].n} converged runs in {plural(computed[0].n_clusters, 'configuration')}"
    found = [r for r in rows if r.significant and r.direction != "undetermined"]
    if not found:
        return (f"For every sharpness and Hessian measure, the direction of the rank correlation with {name} is "
                f"undetermined: no Holm-adjusted jackknife test is significant ({sample}).")
    by_direction = []
    for direction in ("positive", "negative"):
        mine = [r for r in found if r.direction == direction]
        if mine:
            listed = joined([f"{words(summary, r.measure)} ({_tau_detail(r)})" for r in mine])
            by_direction.append(f"a {direction} one for {listed}")
    rest = len(rows) - len(found)
    tail = f"; for the other {plural(rest, 'measure')} the direction is undetermined" if rest else ""
    return (f"Holm-adjusted jackknife tests over configurations ({sample}) find a rank correlation with {name}: "
            f"{'; '.join(by_direction)}{tail}.")


def baselines_sentence(summary: Summary, target: str = GAP) -> str:
    rows = [r for r in _tested(summary, target) if r.beats_baselines is not None and r.versus_baseline is not None]
    if not rows:
        return ""
    best = rows[0].versus_baseline.baseline
    best_row = summary.correlation(best, target)
    reference = (f"the best baseline, {words(summary, best)} (Ψ = {words_num(best_row.psi_mean)})"
                 if best_row else "the best baseline")
    winners = [f"{words(summary, r.measure)} (difference {words_num(r.versus_baseline.difference)}, 95 % CI "
               f"{words_ci(r.versus_baseline.ci95)})" for r in rows if r.beats_baselines]
    if not winners:
        return (f"No sharpness or Hessian measure beats {reference} against {words(summary, target)}: for none does the "
                "95 % interval of its Ψ minus the baseline's |Ψ| lie above 0.")
    return (f"Against {words(summary, target)}, {plural(len(winners), 'measure')} of {len(rows)} "
            f"{_verb(len(winners), 'beats', 'beat')} {reference}, the 95 % interval of the Ψ difference lying above 0: "
            f"{joined(winners)}.")


def noise_floor_sentence(summary: Summary) -> str:
    floor = summary.noise_floor.get(GAP)
    if floor is None or not floor.n_comparisons:
        return "With one seed per configuration (or no converged pair of seeds) there is no seed-to-seed noise floor."
    spread = (f"; one configuration's gap varies between seeds with a standard deviation of {words_pp(floor.seed_sd)}"
              if floor.seed_sd is not None else "")
    return (f"Between seeds, the generalization gap ranks the configurations with Kendall "
            f"τ = {words_num(floor.kendall_tau)} ({plural(floor.n_comparisons, 'comparison')} of two "
            f"configurations under two seeds){spread}; each measure's own seed-to-seed τ is its noise floor.")


# ---- the rescaling experiment (Dinh et al. 2017) -------------------------------------------

def _no_factor(info: DinhInfo, q: str) -> bool:
    return q in info.nonpositive or info.factors.get(q) is None


def _factors(summary: Summary, info: DinhInfo, quantities: list[str], verb: str) -> str:
    """"changes λ_max by a factor of 15.9 and tr H by a factor of 8.42" (verb: "changes")."""
    listed = [f"{words(summary, q)} by a factor of {words_sci(info.factors[q])}"
              for q in quantities if not _no_factor(info, q)]
    return f"{verb} {joined(listed)}" if listed else ""


def _changed(summary: Summary, info: DinhInfo, quantities: list[str]) -> str:
    """"ε-sharpness changes by a factor of 2.36 and X by a factor of 3.10"."""
    listed = [q for q in quantities if not _no_factor(info, q)]
    if not listed:
        return ""
    first, *rest = [f"{words(summary, q)} by a factor of {words_sci(info.factors[q])}" for q in listed]
    return joined([first.replace(" by a factor", " changes by a factor", 1), *rest])


def _nonpositive(summary: Summary, info: DinhInfo, quantities: list[str]) -> str:
    """"tr H takes values ≤ 0, so no factor is defined"."""
    listed = [words(summary, q) for q in quantities if _no_factor(info, q)]
    if not listed:
        return ""
    return f"{joined(listed)} {_verb(len(listed), 'takes', 'take')} values ≤ 0, so no factor is defined"


def _accuracy_text(info: DinhInfo) -> str:
    lo, hi = info.accuracy_min, info.accuracy_max
    if lo is None:
        return ""
    if lo == hi:
        return f"leaves the test accuracy at {words_pct(lo)}"
    return f"leaves the test accuracy between {words_pct(lo)} and {words_pct(hi)}"


def dinh_was_run(summary: Summary) -> bool:
    return summary.dinh_info.applicable and bool(summary.dinh)


def _rescaled_curvature(info: DinhInfo) -> list[str]:
    return [q for q in RESCALED_CURVATURE if q in info.factors]


def dinh_sentences(summary: Summary) -> tuple[str, ...]:
    info = summary.dinh_info
    if not dinh_was_run(summary):
        note = info.note or ""
        return (f"The rescaling experiment of Dinh et al. (2017) was not run{': ' + note if note else ''}.",)
    layers = joined(info.layers or []) or "two layers"
    hessian = _rescaled_curvature(info)
    logit_text = (f" (the logits change by at most {words_sci(info.max_logit_change)} relative to their largest magnitude)"
                  if info.max_logit_change is not None else "")
    changes = _factors(summary, info, hessian, "changes")
    first = (
        f"Rescaling layers {layers} of the trained {style.optimizer_label(str(info.optimizer))} network "
        f"(seed {info.seed}, run {info.run}{_capped(summary, info)}) by a and 1/a, for a from {info.scale_min:g} to "
        f"{info.scale_max:g}, {_accuracy_text(info)}" + (f" and {changes}" if changes else "") + f"{logit_text}."
        + (f" {_capital(_nonpositive(summary, info, hessian))}." if _nonpositive(summary, info, hessian) else "")
    )
    sharp = [q for q in summary.measures_of("sharpness") if q in info.factors or q in info.nonpositive]
    moved = [words(summary, q) for q in sharp if q in info.moved]
    stable = [words(summary, q) for q in sharp if q in info.stable]
    between = [q for q in sharp if q not in info.moved and q not in info.stable]
    parts = [
        f"{joined(moved)} {_verb(len(moved), 'moves', 'move')} with it" if moved else "",
        _changed(summary, info, between),
        _nonpositive(summary, info, between),
        f"{joined(stable)} {_verb(len(stable), 'stays', 'stay')} put" if stable else "",
    ]
    parts = [p for p in parts if p]
    second = ("Of the sharpness measures, " + "; ".join(parts) + ".") if parts else ""
    return tuple(s for s in (first, second) if s)


def _capped(summary: Summary, info: DinhInfo) -> str:
    run = summary.run_by_hash(info.run)
    return ", which did not reach the stop rule" if run is not None and not run.is_minimum else ""


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def dinh_abstract(summary: Summary) -> str:
    info = summary.dinh_info
    if not dinh_was_run(summary):
        return dinh_sentences(summary)[0]
    hessian = _rescaled_curvature(info)
    changes = _factors(summary, info, hessian, "changes")
    nonpositive = _nonpositive(summary, info, hessian)
    sharp = [q for q in summary.measures_of("sharpness") if q in info.factors]
    stable = [q for q in sharp if q in info.stable]
    tail = "".join(f"; {t}" for t in (nonpositive, f"{len(stable)} of the {len(sharp)} sharpness measures stay put"
                                      if sharp else "") if t)
    return (f"A function-preserving rescaling of {plural(len(info.layers or []), 'layer')} of one trained "
            f"network {_accuracy_text(info)}" + (f" and {changes}" if changes else "") + f"{tail}.")


# ---- the abstract, discussion, limitations and checklist -----------------------------------

def abstract(summary: Summary) -> tuple[str, ...]:
    out = [design_sentence(summary), claims_sentence(summary), correlation_sentence(summary)]
    baselines = baselines_sentence(summary)
    if baselines:
        out.append(baselines)
    out.append(dinh_abstract(summary))
    if summary.replication is not None:
        out.append(replication_sentence(summary))
    return tuple(out)


# ---- replication across datasets -----------------------------------------------------------

def _claim_names(summary: Summary, ids: list[str]) -> str:
    named = {c.id: c for study in summary.studies() for c in study.claims}
    return "; ".join(f"{named[i].source}, “{named[i].claim}”" for i in ids)


def replication_sentence(summary: Summary) -> str:
    """"Run again on Fashion-MNIST (108 runs, 106 converged), 3 of 19 claims replicate (...), 1 is
    contradicted (...) and 15 are undecided": every outcome, those decided by name."""
    part = summary.replication
    assert part is not None
    others = [f"{m.data.display_name} ({plural(m.design.n_runs, 'run')}, {m.design.n_converged} converged)"
              for m in part.members]
    parts = []
    for outcome in ("replicates", "contradicted", "undecided"):
        ids = [row.id for row in part.table if row.outcome == outcome]
        if not ids:
            continue
        verb = {"replicates": _verb(len(ids), "replicates", "replicate"),
                "contradicted": _verb(len(ids), "is contradicted", "are contradicted"),
                "undecided": _verb(len(ids), "is undecided", "are undecided")}[outcome]
        names = f" ({_claim_names(summary, ids)})" if outcome != "undecided" else ""
        parts.append(f"{len(ids)} {verb}{names}")
    return (f"The same design run again on {joined(others)}: of the {plural(len(part.table), 'claim')} tested on "
            f"{joined(part.datasets)}, {joined(parts)}.")


def replication_sentences(summary: Summary) -> tuple[str, ...]:
    """Per other dataset: its design, its claims' verdicts and its correlations with the gap."""
    part = summary.replication
    if part is None:
        return ()
    out = []
    for member in part.members:
        out += [design_sentence(member), claims_sentence(member, f" on {member.data.display_name}"),
                correlation_sentence(member)]
    return tuple(out)


def _extremes_sentence(summary: Summary) -> str:
    rows, tally = summary.extremes, summary.extremes_tally
    if not rows or tally is None:
        return ""
    lead, sharp, flat = rows[0], tally.sharpest, tally.flattest
    ratio = f" (ratio of the means {words_sci(lead.ratio)})" if lead.ratio is not None else ""
    return (
        f"By {words(summary, lead.quantity)}, {style.optimizer_label(lead.sharpest)} found the sharpest minima "
        f"on average and {style.optimizer_label(lead.flattest)} the flattest{ratio}; over all {tally.n_measures} measures, "
        f"{style.optimizer_label(sharp.optimizer)} is sharpest by {sharp.measures} and "
        f"{style.optimizer_label(flat.optimizer)} flattest by {flat.measures}."
    )


def discussion(summary: Summary) -> tuple[str, ...]:
    d = summary.design
    out = []
    if d.gap_spread is not None and d.gap_stderr_median is not None:
        seed = (f", and a configuration's gap varies between seeds with a standard deviation of "
                f"{words_pp(d.gap_seed_sd)}" if d.gap_seed_sd is not None else "")
        out.append(f"The converged runs' generalization gaps span {words_pp(d.gap_spread)}; the median standard "
                   f"error of one run's gap from the finite test set alone is {words_pp(d.gap_stderr_median)}{seed}.")
    best = summary.best
    if best is not None and best.mean is not None:
        spread = f" ± {words_pct(best.std, unit=False)}" if best.std is not None else ""
        out.append(f"Tuned on the validation set (per batch size and seed, the learning rate with the best validation "
                   f"accuracy), {style.optimizer_label(best.optimizer)} reaches the best validation accuracy, "
                   f"{words_pct(best.val_accuracy)}; its test accuracy is {words_pct(best.mean, unit=False)}{spread} % "
                   f"(n = {best.n} tuned runs). The test set chose nothing.")
    extremes = _extremes_sentence(summary)
    if extremes:
        out.append(extremes)
    info = summary.dinh_info
    if info.applicable and "top_eigenvalue" in info.moved:
        out.append(f"The rescaled networks compute the same function, yet λ_max changes by a factor of "
                   f"{words_sci(info.factors['top_eigenvalue'])}: its value depends on the parametrization, "
                   "not only on the function (Dinh et al. 2017).")
    baselines = baselines_sentence(summary)
    if baselines:
        out.append(baselines)
    return tuple(out)


def _subsets_sentence(summary: Summary) -> str:
    used = [(stage, n) for stage, n in summary.limitations.subsets if n]
    if not used:
        return ""
    listed = joined([f"{stage} {words_int(n)}" for stage, n in used])
    return (f"Some stages used a fixed subset of the {words_int(summary.data.n_train)} training images ({listed} images), "
            "not all of it.")


# Which runs an analysis covers (limitations.landscape_runs, density_runs), in words.
COVERAGE = {"all": "every run", "first_seed": "first seed of each configuration"}


def coverage(which: str) -> str:
    return COVERAGE.get(which, which)


def limitations(summary: Summary) -> tuple[str, ...]:
    lim, d = summary.limitations, summary.design
    n_seeds = lim.n_seeds
    out = [f"Only {n_seeds} seeds per configuration: a configuration's standard deviation rests on at most "
           f"{n_seeds} values, and the intervals resample only {d.n_configurations} configurations."
           if n_seeds > 1 else "One seed per configuration: there are no error bars and no seed-to-seed noise floor."]
    subsets = _subsets_sentence(summary)
    if subsets:
        out.append(subsets)
    out += _design_limits(summary)
    for n, what in ((d.n_capped, "did not reach the stop rule (capped)"), (d.n_diverged, "diverged")):
        if n:
            out.append(f"{n} of {d.n_runs} runs {what}; they are listed but enter no aggregate, correlation or claim.")
    if lim.lanczos_unconverged:
        out.append(f"Lanczos did not reach its tolerance for {plural(lim.lanczos_unconverged, 'converged run')}; "
                   "their eigenvalues are less accurate.")
    if lim.trace_rel_stderr_max is not None:
        out.append(f"The trace is a Hutchinson estimate ({plural(lim.trace_probes, 'probe')}; relative "
                   f"standard error up to {words_pct(lim.trace_rel_stderr_max, 1)}); spectral densities are "
                   "stochastic Lanczos quadrature estimates.")
    if lim.landscape_runs == lim.density_runs:
        out.append(f"Loss landscapes and spectral densities are computed for the {coverage(lim.landscape_runs)} only.")
    else:
        out.append(f"Loss landscapes are computed for the {coverage(lim.landscape_runs)} only. "
                   f"Spectral densities are computed for the {coverage(lim.density_runs)} only.")
    info = summary.dinh_info
    if not info.applicable:
        out.append(f"The rescaling experiment was not run: {info.note or 'not applicable'}.")
    original = summary.original_study
    if not original.comparable:
        out.append(f"No comparison with the original study: {original.reason or 'not comparable'}.")
    out.append(f"One architecture (LeNet-5, {summary.model.variant} variant) and one data set "
               f"({summary.data.display_name}): the conclusions may not transfer to other networks or data.")
    return tuple(out)


def _design_limits(summary: Summary) -> list[str]:
    """Grid edges, the confounds the design leaves, and the claims' multiplicity correction."""
    out = []
    tuning = summary.tuning
    if not tuning.available:
        out.append("There is no validation set, so nothing is tuned: every comparison that needs tuning is not testable.")
    else:
        cells = tuning.lr_optima
        edges = [c for c in cells if c.at_edge]
        if edges:
            listed = joined([f"{style.optimizer_label(c.optimizer)} at B = {c.fixed.get('batch_size', '?')}"
                             for c in edges[:6]]) + (f" and {len(edges) - 6} more" if len(edges) > 6 else "")
            out.append(f"For {len(edges)} of {len(cells)} optimizer and batch-size cells the validation optimum lies at an "
                       f"edge of the learning-rate grid ({listed}): the best learning rate may lie beyond it.")
        else:
            out.append(f"In all {len(cells)} optimizer and batch-size cells the validation optimum lies strictly inside the "
                       "learning-rate grid.")
    out.append("Batch-size effects at a fixed learning rate also change η/B, the SGD noise scale; the claims at fixed η/B "
               "separate the two but rest on fewer configuration pairs.")
    d = summary.design
    if d.train_loss_min is not None:
        out.append(f"The stop rule bounds the final training loss without equalizing it (it ranges from "
                   f"{words_sci(d.train_loss_min)} to {words_sci(d.train_loss_max)}); the correlation table gives "
                   "Kendall's partial τ given it, and it is a baseline.")
    family = [c for c in summary.claims if c.p_holm is not None]
    if family:
        alpha = summary.statistics.alpha
        out.append(f"Holm's correction runs over the {len(family)} claims decided by a p-value, controlling the "
                   f"family-wise error at {words_pct(alpha, 0)}; claims whose clusters cannot reach p < {alpha:g} are "
                   "inconclusive and stay outside the family.")
    return out


@dataclass(frozen=True)
class CheckItem:
    item: str
    answer: str
    section: str  # the key of the section that answers it


def checklist(summary: Summary) -> tuple[CheckItem, ...]:
    d = summary.design
    commit = summary.git_commit[:12]
    dirty = " (uncommitted changes)" if summary.git_dirty else ""
    n_seeds = len(d.seeds)
    errors = ("yes: mean ± sample standard deviation over the converged runs, n stated; each run's gap with its "
              "standard error" if n_seeds > 1 else "no: one seed per configuration")
    original = summary.original_study
    prior = ("yes: the original study's test accuracies" if original.comparable
             else f"no: {original.reason or 'not comparable'}")
    return (
        CheckItem("Code and exact command", f"yes: commit {commit}{dirty}, command in the appendix", "repro"),
        CheckItem("Data and preprocessing", "yes: source, SHA-256 checksums, the subset's indices, preprocessing", "data"),
        CheckItem("Hyperparameters", "yes: the grid and every optimizer's settings", "design"),
        CheckItem("Random seeds", f"yes: {plural(n_seeds, 'seed')} per configuration, listed", "design"),
        CheckItem("Error bars", errors, "optimizers"),
        CheckItem("Statistics", "Kendall τ with jackknife intervals over configurations, exact sign-flip tests on cluster "
                  "means for the claims, Holm; no result depends on a random seed", "correlation"),
        CheckItem("Selection", "learning rates and the best optimizer chosen on a validation set; the test set only reports",
                  "design"),
        CheckItem("Published claims", f"yes: {plural(len(summary.claims), 'claim')}, each with its rule and verdict", "claims"),
        CheckItem("Failed runs reported", f"yes: {d.n_capped} capped, {d.n_diverged} diverged, listed", "failed"),
        CheckItem("Comparison with prior work", prior, "original"),
        CheckItem("Compute", f"yes: {summary.environment.device}, {duration(summary.timing.get('total'))} in total, "
                  "time per stage", "repro"),
        CheckItem("Limitations", "yes: generated from the summary", "limitations"),
    )
