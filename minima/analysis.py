"""The analysis stage: every run's results -> build/summary.json, the report's only input.

Nothing here trains or measures; everything the report states is computed here (the report
only formats it). Missing results are an error that lists them.

The design decides the statistics (docs/methods.md, "Statistics"):
- only *converged* runs (full training cross-entropy <= stop_loss, no divergence) enter the
  correlations: runs capped before fitting are reported and left out;
- runs of one configuration (differing only by seed) are correlated, so intervals resample
  configurations (cluster bootstrap) and p-values permute configurations within seeds;
- Kendall tau and Spearman rho of every measure against the generalization gap and the test
  error; Jiang et al.'s granulated coefficient psi per grid axis and their mean Psi; Holm's
  correction across the sharpness measures of one target; baselines every measure must beat
  (||w||, ||w - w0||, log(lr / B), epochs to fit); the seed-to-seed noise floor;
- the published claims and their verdicts (`minima.claims`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from minima import claims as claims_stage
from minima import facts, paths, pipeline, stats, verdicts
from minima.claims import psi_groups
from minima.config import VALIDATION_RULE
from minima.data import DISPLAY_NAMES, describe_preprocessing, subset_sha256
from minima.facts import converged_runs, nested
from minima.io import MinimaError, finite_or_none, json_text, read_json, read_json_or_none, write_text
from minima.runtime import environment, git_state
from minima.schema import RESCALED_CURVATURE, SCHEMA_VERSION, TARGETS, validate_summary
from minima.settings import to_table
from minima.specs import VARIANTS, measure_names
from minima.specs import descriptions as sharpness_descriptions

# The measures ranked against generalization besides the sharpness measures, each with its description.
BASELINE_MEASURES = {
    "weight_norm": "weight norm ‖w‖₂ (baseline)",
    "distance_from_init": "distance from initialization ‖w − w₀‖₂ (baseline)",
    "log_lr_over_batch": "log(learning rate / batch size) (baseline)",
    "epochs_to_fit": "epochs to fit the training set (baseline)",
    "train_loss": "final training loss (baseline: the stop rule bounds it, it does not equalize it)",
}
HESSIAN_MEASURES = {
    "top_eigenvalue": "largest Hessian eigenvalue",
    "trace": "Hessian trace",
    "balanced_top_eigenvalue": "largest Hessian eigenvalue after equalizing the layers' weight norms",
}


# ---- per-run records ------------------------------------------------------------------------




def _drawn_size(ctx: pipeline.Context, indices, split: str) -> int:
    """Images in a subset drawn from a split (indices None: the whole split)."""
    return ctx.split_size(split) if indices is None else len(indices)


def run_record(ctx: pipeline.Context, run) -> dict[str, Any]:
    directory = ctx.run_dir(run)
    metrics = pipeline.metrics(ctx, run)
    if metrics is None:
        raise MinimaError(f"missing or corrupt {directory / paths.METRICS_JSON}: run `{pipeline.advice(ctx)}`")
    final = metrics["final"] or {}
    kinds = pipeline.analyses_of(ctx, run)
    records = {kind: read_json(pipeline.analysis_path(ctx, run, kind)) for kind in kinds}
    curvature, sharpness, landscape = (records.get(k) for k in ("curvature", "sharpness", "landscape"))
    names = measure_names(ctx.profile.sharpness)
    train_acc, test_acc = final.get("train_accuracy"), final.get("test_accuracy")
    n_test = _drawn_size(ctx, ctx.drawn(run)["test"], "test")
    gap = None if train_acc is None or test_acc is None else train_acc - test_acc
    record = {
        "run": run.run_hash,
        "configuration": run.configuration,
        "dataset": run.dataset,
        "model": run.model,
        "optimizer": run.optimizer.name,
        "seed": run.seed,
        "status": metrics["status"],
        "converged": bool(metrics["converged"]),
        "epochs": metrics["epochs_completed"],
        "epochs_to_fit": metrics.get("epochs_to_fit"),
        "stop_reason": metrics.get("stop_reason"),
        "diverged_epoch": metrics.get("diverged_epoch"),
        "train_loss": final.get("train_loss"),
        "train_accuracy": train_acc,
        "test_loss": final.get("test_loss"),
        "test_accuracy": test_acc,
        "val_loss": final.get("val_loss"),
        "val_accuracy": final.get("val_accuracy"),
        "generalization_gap": gap,
        # binomial standard error of the test accuracy: the training set is fixed, the test set a sample
        "gap_stderr": None if test_acc is None else math.sqrt(test_acc * (1 - test_acc) / n_test),
        "hyperparameters": ctx.profile.hyperparameters(run),
        "levels": dict(run.levels),
        "weight_norm": final.get("weight_norm"),
        "distance_from_init": final.get("distance_from_init"),
        "layer_norms": final.get("layer_norms") or {},
        "curvature": _curvature_summary(curvature),
        "sharpness": {m: sharpness.get(m) for m in names} if sharpness else None,
        "landscape": {k: landscape[k] for k in ("eigen_1d", "eigen_normalized_1d", "random_1d", "eigen_2d", "random_2d")}
        if landscape else None,
        "history": _history(metrics),
        "train_seconds": sum(row.get("wall_time") or 0.0 for row in metrics["history"]),
        "analysis_seconds": {kind: records[kind].get("stage_seconds") or 0.0 for kind in kinds},
        "train_core_seconds": _total([row.get("cpu_time") for row in metrics["history"]]),
        "analysis_core_seconds": {kind: records[kind].get("cpu_seconds") for kind in kinds},
    }
    record["values"] = _values(record, names)
    record["values"]["stability_ratio"] = _stability_ratio(run, record["values"]["top_eigenvalue"])
    raw, balanced = record["values"]["top_eigenvalue"], record["values"]["balanced_top_eigenvalue"]
    # how much of lambda_max the layers' scales carry: log10 of lambda_max after the
    # function-preserving rescaling that equalizes the layers' weight norms, over lambda_max
    record["values"]["balance_log_ratio"] = (math.log10(balanced / raw) if raw and balanced and raw > 0 and balanced > 0
                                             else None)
    return record


def _stability_ratio(run, top_eigenvalue: float | None) -> float | None:
    """lambda_max eta / (2 (1 + beta)): above 1, gradient descent with heavy-ball momentum beta at
    step eta is linearly unstable at this minimum (Wu et al. 2018; Cohen et al. 2021). Plain and
    heavy-ball SGD only: the bound does not hold for adaptive, Nesterov or SAM steps."""
    config = run.optimizer
    if config.name not in ("sgd", "sgd_momentum") or config.nesterov or top_eigenvalue is None:
        return None
    return top_eigenvalue * config.lr / (2.0 * (1.0 + (config.momentum or 0.0)))


def _curvature_summary(record: dict | None) -> dict | None:
    if record is None:
        return None
    keys = ("top_eigenvalues", "min_eigenvalue", "trace", "gradient_norm", "loss", "n_samples", "density", "eigen", "n_hvp", "seconds")
    out = {key: record.get(key) for key in keys}
    out["balanced_top_eigenvalue"] = nested(record, "balanced", "top_eigenvalue")
    out["balancing_scales"] = nested(record, "balanced", "scales")
    return out


def _history(metrics: dict) -> dict[str, list]:
    keys = ("epoch", "train_loss", "train_accuracy", "full_train_loss", "full_train_accuracy", "test_loss",
            "test_accuracy", "gradient_norm", "lr", "wall_time")
    return {key: [row.get(key) for row in metrics["history"]] for key in keys}


def _values(record: dict, sharpness_names: tuple[str, ...]) -> dict[str, float | None]:
    """Every quantity the statistics rank, flat: Hessian measures, sharpness measures, baselines, targets."""
    curvature = record["curvature"] or {}
    hp = record["hyperparameters"]
    values = {
        "top_eigenvalue": (curvature.get("top_eigenvalues") or [None])[0],
        "trace": nested(curvature, "trace", "mean"),
        "balanced_top_eigenvalue": curvature.get("balanced_top_eigenvalue"),
        "min_eigenvalue": curvature.get("min_eigenvalue"),
        "gradient_norm": curvature.get("gradient_norm"),
        **{m: (record["sharpness"] or {}).get(m) for m in sharpness_names},
        "weight_norm": record["weight_norm"],
        "distance_from_init": record["distance_from_init"],
        "log_lr_over_batch": math.log(hp["lr"] / hp["batch_size"]),
        "epochs_to_fit": record["epochs_to_fit"],
        "generalization_gap": record["generalization_gap"],
        "test_error": None if record["test_accuracy"] is None else 1.0 - record["test_accuracy"],
        "test_accuracy": record["test_accuracy"],
        "val_accuracy": record["val_accuracy"],
        "train_loss": record["train_loss"],
    }
    return {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in values.items()}


# ---- correlations --------------------------------------------------------------------------


def measure_kinds(sharpness_names: tuple[str, ...]) -> dict[str, str]:
    return {**{m: "hessian" for m in HESSIAN_MEASURES}, **{m: "sharpness" for m in sharpness_names},
            **{m: "baseline" for m in BASELINE_MEASURES}}


def correlations(runs: list[dict], axes: list[str], kinds: dict[str, str]) -> list[dict]:
    """Every measure against every target over the converged runs: tau (and its partial form given
    the final training loss, which the stop rule bounds but does not equalize), rho, Psi per axis,
    jackknife intervals and p over configurations, Holm over the tested measures of a target, and
    whether the measure's Psi beats the best baseline's (interval of the paired difference)."""
    fitted = converged_runs(runs)
    clusters = [r["configuration"] for r in fitted]
    groups = psi_groups(fitted, axes)
    loss = [r["values"].get("train_loss") for r in fitted]
    rows = []
    for target in TARGETS:
        y = [r["values"][target] for r in fitted]
        block = []
        for measure, kind in kinds.items():
            x = [r["values"].get(measure) for r in fitted]
            result = stats.correlate(x, y, clusters=clusters, covariate=None if measure == "train_loss" else loss)
            granulated = stats.granulated_tau(x, y, groups)
            psi = stats.psi_jackknife([x], [1.0], y, groups, clusters)
            block.append({
                "measure": measure, "target": target, "kind": kind,
                "kendall_tau": result.kendall_tau, "spearman": result.spearman,
                "ci95": list(result.ci95) if result.ci95 else None, "p_value": result.p_value,
                "partial_tau": result.partial_tau,
                "partial_ci95": list(result.partial_ci95) if result.partial_ci95 else None,
                "n": result.n, "n_clusters": result.n_clusters,
                "psi": {a: granulated.psi.get(a) for a in axes}, "psi_mean": granulated.psi_mean,
                "psi_ci95": list(psi.ci95) if psi is not None else None,
                "psi_groups": dict(granulated.n_groups),
            })
        tested = [row for row in block if row["kind"] != "baseline"]
        for row, adjusted in zip(tested, stats.holm([row["p_value"] for row in tested])):
            row["p_holm"] = adjusted
        for row in block:
            row.setdefault("p_holm", None)  # baselines are references, not tests: no family, no adjustment
            row["significant"] = row["p_holm"] is not None and row["p_holm"] < verdicts.ALPHA
            row["direction"] = _direction(row)
        _beats_baselines(block, fitted, y, groups, clusters)
        rows += block
    return rows


def _direction(row: dict) -> str:
    """positive / negative when the Holm-adjusted jackknife test rejects tau = 0, else undetermined."""
    if not row["significant"] or row["kendall_tau"] is None:
        return "undetermined"
    return "positive" if row["kendall_tau"] > 0 else "negative"


def _beats_baselines(block: list[dict], runs: list[dict], y: list, groups: dict, clusters: list) -> None:
    """A measure beats the baselines when the jackknife interval of Psi(measure) minus the best
    baseline's |Psi| (the baseline with the largest |Psi|, sign-adjusted: baselines get credit in
    either direction) lies above 0. Why an interval: point estimates 0.06 apart are noise."""
    references = [r for r in block if r["kind"] == "baseline" and r["psi_mean"] is not None]
    best = max(references, key=lambda r: (abs(r["psi_mean"]), r["measure"]), default=None)
    for row in block:
        row["beats_baselines"], row["versus_baseline"] = None, None
        if row["kind"] == "baseline" or best is None or row["psi_mean"] is None:
            continue
        sign = 1.0 if best["psi_mean"] >= 0 else -1.0
        xs = [[r["values"].get(m) for r in runs] for m in (row["measure"], best["measure"])]
        difference = stats.psi_jackknife(xs, [1.0, -sign], y, groups, clusters)
        if difference is None:
            continue
        row["beats_baselines"] = difference.ci95[0] > 0
        row["versus_baseline"] = {"baseline": best["measure"], "difference": difference.estimate,
                                  "ci95": list(difference.ci95)}


def noise_floor(runs: list[dict], quantities: list[str]) -> dict[str, dict]:
    """Per quantity, how well one seed's ranking of the configurations predicts another's, and the
    seed-to-seed standard deviation within a configuration."""
    fitted = converged_runs(runs)
    configs = [r["configuration"] for r in fitted]
    out = {}
    for q in quantities:
        values = [r["values"].get(q) for r in fitted]
        agreement = stats.seed_agreement(values, configs, [r["seed"] for r in fitted])
        out[q] = {"swap_rate": agreement.swap_rate, "kendall_tau": agreement.kendall_tau,
                  "n_comparisons": agreement.n_comparisons, "seed_sd": stats.pooled_within_sd(values, configs)}
    return out


# ---- the summary ---------------------------------------------------------------------------


def build_summary(ctx: pipeline.Context, created_by: str) -> dict[str, Any]:
    missing = pipeline.missing_results(ctx)
    if missing:
        listing = "; ".join(missing[:6]) + (f"; and {len(missing) - 6} more" if len(missing) > 6 else "")
        fix = ", which moves corrupt files aside and recomputes them" if ctx.corrupt else ""
        raise MinimaError(f"missing results for profile {ctx.profile.ref} (run `{pipeline.advice(ctx)}`{fix}): {listing}")
    profile = ctx.profile
    runs = [run_record(ctx, run) for run in profile.runs]
    manifest = read_json(ctx.layout.data / profile.study.dataset / "manifest.json", require=("source", "sha256"))
    study = {kind: read_json(pipeline.study_path(ctx, kind)) for kind in pipeline.study_kinds(ctx)}
    names = measure_names(profile.sharpness)
    kinds = measure_kinds(names)
    sharp_quantities = [m for m in kinds if kinds[m] != "baseline"]
    quantities = ["test_accuracy", "val_accuracy", "train_loss", "generalization_gap", "min_eigenvalue", "gradient_norm",
                  "stability_ratio", "balance_log_ratio", *kinds]
    aggregate_rows = facts.aggregates(runs, list(profile.study.optimizers), quantities)
    correlation_rows = correlations(runs, list(profile.axes), kinds)
    extreme_rows = facts.extremes(aggregate_rows, sharp_quantities)
    dinh = facts.dinh_facts(study["dinh"], [*RESCALED_CURVATURE, *names], runs)
    facts_design = facts.design(profile, runs)
    drawn = ctx.drawn(profile.runs[0])  # the subsets' indices, from the labels alone: no image is loaded here
    train_indices, val_indices, test_indices = drawn["train"], drawn["validation"], drawn["test"]
    tuning = facts.tuning(runs, list(profile.study.optimizers), profile.grid, len(val_indices))
    commit, dirty = git_state(paths.REPO_DIR)
    spec = VARIANTS[profile.study.model]
    interp = study.get("interpolation")
    summary = {
        "schema": SCHEMA_VERSION,
        "profile": profile.name,
        "profile_ref": profile.ref,
        "profile_description": profile.study.description,
        "git_commit": commit,
        "git_dirty": dirty,
        "created_by": created_by,
        "environment": {k: v for k, v in environment(ctx.device_kind).items() if k != "argv"},
        "timing": _timing(runs, study),
        "core_timing": _core_timing(runs, study),
        "data": {
            "dataset": profile.study.dataset,
            "display_name": DISPLAY_NAMES[profile.study.dataset],
            "source": manifest["source"],
            "sha256": manifest["sha256"],
            "n_train": _drawn_size(ctx, train_indices, "train"),
            "n_test": _drawn_size(ctx, test_indices, "test"),
            "split_train": manifest.get("n_train"),
            "split_test": manifest.get("n_test"),
            "train_indices_sha256": subset_sha256(train_indices),
            "train_subset": "class-stratified" if train_indices is not None else "the whole split",
            "test_subset": "class-stratified" if test_indices is not None else "the whole split",
            "n_val": len(val_indices),
            "val_indices_sha256": subset_sha256(val_indices),
            "validation_rule": VALIDATION_RULE,
            "data_seed": profile.study.data_seed,
            "preprocessing": describe_preprocessing(profile.study.dataset, profile.study.model),
        },
        "model": {**to_table(spec), "variant": spec.name, "n_params": spec.n_params},
        "settings": {k: v for k, v in profile.settings_json().items() if k != "study"},
        "study": to_table(profile.study),
        "seeds": list(profile.study.seeds),
        "optimizers": facts.optimizer_grid(profile),
        "measures": {**HESSIAN_MEASURES, **sharpness_descriptions(profile.sharpness), **BASELINE_MEASURES},
        "measure_kinds": kinds,
        "targets": list(TARGETS),
        "design": facts_design,
        "runs": runs,
        "aggregates": aggregate_rows,
        "configurations": facts.configurations(runs, quantities),
        "correlations": correlation_rows,
        "noise_floor": noise_floor(runs, ["generalization_gap", *kinds]),
        "extremes": extreme_rows,
        "extremes_tally": facts.extremes_tally(extreme_rows),
        "tuning": tuning,
        "best": tuning["best"],
        "dinh": study["dinh"].get("rows", []),
        "dinh_info": dinh,
        "interpolation": interp and {k: v for k, v in interp.items() if k not in ("inputs", "stage_seconds", "cpu_seconds", "data")},
        "original_study": facts.original_study(profile, runs),
        "limitations": facts.limitations(profile, runs, _drawn_size(ctx, train_indices, "train")),
    }
    summary["claims"] = claims_stage.evaluate(summary)
    summary["statistics"] = {
        "alpha": verdicts.ALPHA,
        "correlation_interval": "jackknife over configurations (each deleted once), t-interval on k − 1 degrees of freedom",
        "correlation_test": "two-sided jackknife t-test of τ = 0; Holm over the Hessian and sharpness measures of a target",
        "partial": "Kendall's partial τ given the final training loss (the stop rule is a threshold, not an equal loss)",
        "claims_paired": "exact sign-flip randomization on cluster means (a cluster: the configuration pair over its seeds), "
                         "t-interval on the cluster means; the smallest two-sided p with k clusters is 2/2^k",
        "claims_predictors": "jackknife over configurations of the paired Ψ difference",
        "claims_holm": "Holm over every claim decided by a p-value",
        "holm_over": ["hessian", "sharpness"],
        "beats_baselines": "jackknife 95 % interval of Ψ(measure) − |Ψ(best baseline)| above 0",
        "runs": "converged runs only (full training loss ≤ stop_loss, not diverged)",
        "selection": "learning rates (and the best optimizer) chosen on the validation set, reported on the test set",
        "deterministic": True,
        "n_converged": facts_design["n_converged"],
    }
    return summary


def _total(values: list[float | None]) -> float | None:
    """The sum, or None when a value was not recorded (results cached before CPU time was kept)."""
    return None if any(v is None for v in values) else float(sum(values))


def _per_stage(runs: list[dict], study: dict[str, dict], train: str, analyses: str, part: str) -> dict[str, float | None]:
    """Seconds per stage, added up over the runs (fields `train` and `analyses` of each run record,
    `part` of each study part's record), and their total; None where some result lacks its figure."""
    timing = {"train": _total([r[train] for r in runs])}
    for kind in pipeline.ANALYSES:
        timing[kind] = _total([r[analyses][kind] for r in runs if kind in r[analyses]])
    for kind, record in study.items():
        timing[kind] = record.get(part)
    timing["total"] = _total(list(timing.values()))
    return timing


def _timing(runs: list[dict], study: dict[str, dict]) -> dict[str, float]:
    """Wall seconds per stage (every result records them)."""
    return _per_stage(runs, study, "train_seconds", "analysis_seconds", "stage_seconds")


def _core_timing(runs: list[dict], study: dict[str, dict]) -> dict[str, float | None]:
    """Core-seconds (process CPU time) per stage, keyed like `timing`: what the work cost whatever
    else ran on the machine. A stage reads None when some of its results predate the record."""
    return _per_stage(runs, study, "train_core_seconds", "analysis_core_seconds", "cpu_seconds")


def write_summary(ctx: pipeline.Context, created_by: str | None) -> Path:
    """Write summary.json (validated against the schema) only when its content changed, so
    `make` sees unchanged results as current."""
    path = ctx.layout.summary
    return write_summary_of(path, lambda recorded: build_summary(ctx, recorded), created_by,
                            f"python -m minima summarize --profile {ctx.profile.ref}")


def write_summary_of(path: Path, build, created_by: str | None, default_command: str) -> Path:
    """build(created_by) -> summary, validated and written to `path` when its content changed;
    created_by None keeps the command recorded in the summary already there."""
    if created_by is None:
        created_by = (read_json_or_none(path) or {}).get("created_by") or default_command
    summary = finite_or_none(build(created_by))
    validate_summary(summary, where="summary (as built)")
    text = json_text(summary)
    if not path.exists() or path.read_text(errors="replace") != text:
        write_text(path, text)
    return path
