"""The analysis stage: every run's results -> build/summary.json, the report's only input.

Per optimizer: mean +- sample std over seeds of every measure, with n stated. Across runs: Kendall
tau and Spearman rho of each measure against the generalization gap and the test error, with
bootstrap 95% intervals (Jiang et al. 2020). Nothing here trains or measures; missing results
are an error that lists them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from minima import paths, pipeline
from minima.config import Profile, load_profile
from minima.io import MinimaError, read_json, write_text
from minima.models import VARIANTS
from minima.objective import num_params, params_of
from minima.models import build_model
from minima.runtime import environment, git_state
from minima.settings import to_table
from minima.sharpness import DESCRIPTIONS, MEASURES
from minima.stats import correlate, mean_std

# The original study's published test accuracies (EPFL CS-439, 2022; DESIGN.md).
ORIGINAL_TEST_ACCURACY = {"sgd": 0.9903, "adahessian": 0.9889, "adam": 0.9841, "adagrad": 0.976}
CURVATURE_MEASURES = ("top_eigenvalue", "trace", "gradient_norm")
TARGETS = ("generalization_gap", "test_error")
BOOTSTRAP_SEED = 0


def _history(metrics: dict) -> dict[str, list]:
    keys = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "gradient_norm", "lr", "wall_time")
    return {key: [row.get(key) for row in metrics.get("history", [])] for key in keys}


def _analysis(directory: Path, name: str) -> dict | None:
    record = read_json(directory / name)
    return None if record.get("status") == "skipped" else record


def _curvature_summary(record: dict | None) -> dict | None:
    if record is None:
        return None
    keys = ("top_eigenvalues", "min_eigenvalue", "trace", "gradient_norm", "n_samples", "density", "eigen", "n_hvp", "seconds")
    return {key: record.get(key) for key in keys}


def _gap(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def run_summary(ctx: pipeline.Context, run) -> dict[str, Any]:
    directory = ctx.run_dir(run)
    metrics = read_json(directory / paths.METRICS_JSON)
    final = metrics.get("final") or {}
    curvature = _curvature_summary(_analysis(directory, paths.CURVATURE_JSON))
    sharpness_record = _analysis(directory, paths.SHARPNESS_JSON)
    landscape_record = _analysis(directory, paths.LANDSCAPE_JSON)
    train_acc, test_acc = final.get("train_accuracy"), final.get("test_accuracy")
    return {
        "run": run.run_hash,
        "dataset": run.dataset,
        "model": run.model,
        "optimizer": run.optimizer.name,
        "seed": run.seed,
        "status": metrics["status"],
        "diverged_epoch": metrics.get("diverged_epoch"),
        "epochs": metrics.get("epochs_completed"),
        "train_loss": final.get("train_loss"),
        "train_accuracy": train_acc,
        "test_loss": final.get("test_loss"),
        "test_accuracy": test_acc,
        "generalization_gap": _gap(train_acc, test_acc),
        "loss_gap": _gap(final.get("test_loss"), final.get("train_loss")),
        "hyperparameters": run.optimizer.hyperparameters(),
        "history": _history(metrics),
        "curvature": curvature,
        "sharpness": {m: sharpness_record.get(m) for m in MEASURES} if sharpness_record else None,
        "sharpness_details": sharpness_record.get("details") if sharpness_record else None,
        "landscape": {k: v for k, v in landscape_record.items() if k in ("eigen_1d", "random_1d", "eigen_2d", "random_2d")}
        if landscape_record and "eigen_1d" in landscape_record
        else None,
        "train_seconds": sum(row.get("wall_time") or 0.0 for row in metrics.get("history", [])),
        "analysis_seconds": {
            kind: (read_json(directory / name).get("stage_seconds") or 0.0) for name, kind in pipeline.ANALYSES
        },
    }


def measure_value(run: dict, measure: str) -> float | None:
    curvature = run.get("curvature") or {}
    if measure == "top_eigenvalue":
        return (curvature.get("top_eigenvalues") or [None])[0]
    if measure == "trace":
        return (curvature.get("trace") or {}).get("mean")
    if measure == "gradient_norm":
        return curvature.get("gradient_norm")
    if measure in ("test_accuracy", "train_loss", "train_accuracy", "test_loss", "generalization_gap", "loss_gap"):
        return run.get(measure)
    if measure == "test_error":
        return None if run.get("test_accuracy") is None else 1.0 - run["test_accuracy"]
    return (run.get("sharpness") or {}).get(measure)


AGGREGATED = ("test_accuracy", "train_accuracy", "train_loss", "test_loss", "generalization_gap") + CURVATURE_MEASURES + MEASURES


def aggregates(runs: list[dict], optimizers: list[str]) -> list[dict]:
    out = []
    for name in optimizers:
        mine = [r for r in runs if r["optimizer"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        metrics = {}
        for measure in AGGREGATED:
            mean, std, n = mean_std(measure_value(r, measure) for r in ok)
            metrics[measure] = {"mean": mean, "std": std, "n": n}
        out.append({"optimizer": name, "n": len(mine), "n_ok": len(ok), "metrics": metrics})
    return out


def correlations(runs: list[dict]) -> list[dict]:
    ok = [r for r in runs if r["status"] == "ok"]
    rows = []
    for measure in CURVATURE_MEASURES + MEASURES:
        for target in TARGETS:
            result = correlate([measure_value(r, measure) for r in ok], [measure_value(r, target) for r in ok], seed=BOOTSTRAP_SEED)
            rows.append(
                {"measure": measure, "target": target, "kendall_tau": result.kendall_tau, "spearman": result.spearman, "ci95": list(result.ci95) if result.ci95 else None, "n": result.n}
            )
    return rows


def reproduces_original(profile: Profile) -> bool:
    """Whether the profile trains exactly the original study's runs (the packaged `seed` profile's
    run hashes: model, data, seed, batch order, epochs and every optimizer hyperparameter)."""
    return {r.run_hash for r in load_profile("seed").runs} <= {r.run_hash for r in profile.runs}


def original_study(ctx: pipeline.Context, runs: list[dict]) -> list[dict]:
    rows = []
    same = reproduces_original(ctx.profile)
    for name, original in ORIGINAL_TEST_ACCURACY.items():
        mine = [r["test_accuracy"] for r in runs if r["optimizer"] == name and r["status"] == "ok"]
        mean, std, n = mean_std(mine)
        rows.append({"optimizer": name, "original_test_accuracy": original, "test_accuracy_mean": mean, "test_accuracy_std": std, "n": n, "same_setup": same})
    return rows


def _timing(runs: list[dict], study: dict[str, dict]) -> dict[str, float]:
    timing = {"train": sum(r["train_seconds"] for r in runs)}
    for kind in ("curvature", "sharpness", "landscape"):
        timing[kind] = sum(r["analysis_seconds"][kind] for r in runs)
    for kind, record in study.items():
        timing[kind] = record.get("stage_seconds") or 0.0
    timing["total"] = sum(timing.values())
    return timing


def build_summary(ctx: pipeline.Context, created_by: str) -> dict[str, Any]:
    missing = pipeline.missing_results(ctx)
    if missing:
        listing = "; ".join(missing[:8]) + (f"; and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise MinimaError(f"missing results for profile {ctx.profile.name} (run `make all PROFILE={ctx.profile.name}`): {listing}")
    profile = ctx.profile
    runs = [run_summary(ctx, run) for run in profile.runs]
    manifest = read_json(ctx.layout.data / profile.study.dataset / "manifest.json")
    study = {kind: read_json(pipeline._study_path(ctx, kind)) for kind in pipeline._study_kinds(ctx)}
    dinh = study["dinh"]
    interp = study.get("interpolation")
    commit, dirty = git_state(paths.REPO_DIR)
    spec = VARIANTS[profile.study.model]
    model = build_model(profile.study.model, seed=0)
    summary = {
        "schema": 1,
        "profile": profile.name,
        "profile_description": profile.study.description,
        "git_commit": commit,
        "git_dirty": dirty,
        "created_by": created_by,
        "environment": environment(ctx.device),
        "timing": _timing(runs, study),
        "data": {
            "dataset": profile.study.dataset,
            "source": manifest["source"],
            "sha256": manifest["sha256"],
            "n_train": profile.study.n_train or manifest["n_train"],
            "n_test": profile.study.n_test or manifest["n_test"],
            "preprocessing": ctx_preprocessing(ctx),
        },
        "model": {**to_table(spec), "variant": spec.name, "n_params": num_params(params_of(model))},
        "settings": {k: v for k, v in profile.settings_json().items() if k != "study"},
        "study": to_table(profile.study),
        "seeds": list(profile.study.seeds),
        "optimizers": {name: cfg.hyperparameters() for name, cfg in profile.optimizers.items()},
        "measures": dict(DESCRIPTIONS),
        "runs": runs,
        "aggregates": aggregates(runs, list(profile.study.optimizers)),
        "dinh": dinh.get("rows", []),
        "dinh_info": {k: dinh.get(k) for k in ("applicable", "run", "optimizer", "seed", "layers", "note")},
        "correlations": correlations(runs),
        "interpolation": interp and {k: v for k, v in interp.items() if k not in ("settings", "stage_seconds")},
        "original_study": original_study(ctx, runs),
    }
    return summary


def ctx_preprocessing(ctx: pipeline.Context) -> str:
    from minima.data import describe_preprocessing

    return describe_preprocessing(ctx.profile.study.dataset, ctx.profile.study.model)


def write_summary(ctx: pipeline.Context, created_by: str | None) -> Path:
    """Write summary.json only when its content changed, so `make` sees unchanged results as current."""
    path = ctx.layout.summary
    if created_by is None and path.exists():
        try:
            created_by = read_json(path).get("created_by")
        except MinimaError:
            created_by = None
    summary = build_summary(ctx, created_by or f"python -m minima summarize --profile {ctx.profile.name}")
    summary["environment"].pop("argv", None)
    text = json.dumps(_finite_or_none(summary), indent=1, allow_nan=False) + "\n"
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return path


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: a diverged run's non-finite numbers become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value
