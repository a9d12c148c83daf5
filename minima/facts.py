"""Facts the report states, computed from the runs' records (part of the analysis stage):
aggregates per optimizer and per configuration, the design's numbers, extremes, the best
optimizer, Dinh's factors and which measures move, the comparison with the original study and
every departure from it, and the limitations. Judgments are made here, never in the report.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from minima import stats
from minima.stats import is_finite
from minima.config import Profile, load_profile
from minima.data import DISPLAY_NAMES, SPLIT_SIZES
from minima.specs import LAYERS, VARIANTS
from minima.schema import RESCALED_CURVATURE, counts_as_minimum

# The original study's published test accuracies (EPFL CS-439 course project, 2022).
ORIGINAL_TEST_ACCURACY = {"sgd": 0.9903, "adahessian": 0.9889, "adam": 0.9841, "adagrad": 0.976}
MOVED_FACTOR = 10.0  # under Dinh's rescaling a measure "moves" when max/min reaches this
STABLE_FACTOR = 1.5  # ... and "stays put" below this


def nested(record: dict | None, *keys: str) -> Any:
    """record[k1][k2]..., None where a level is missing."""
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def converged_runs(runs: list[dict]) -> list[dict]:
    return [r for r in runs if counts_as_minimum(r["status"], r["converged"])]


def aggregates(runs: list[dict], optimizers: list[str], quantities: list[str]) -> list[dict]:
    """Per optimizer, over its converged runs (all its grid points and seeds)."""
    out = []
    for name in optimizers:
        mine = [r for r in runs if r["optimizer"] == name]
        fitted = converged_runs(mine)
        metrics = {}
        for q in quantities:
            mean, std, n = stats.mean_std(r["values"].get(q) for r in fitted)
            metrics[q] = {"mean": mean, "std": std, "n": n}
        layers = {}
        for layer in LAYERS:
            mean, std, n = stats.mean_std(r["layer_norms"].get(layer) for r in fitted)
            layers[layer] = {"mean": mean, "std": std, "n": n}
        out.append({"optimizer": name, "n": len(mine), "n_ok": sum(r["status"] == "ok" for r in mine),
                    "n_converged": len(fitted), "metrics": metrics, "layer_norms": layers})
    return out


def configurations(runs: list[dict], quantities: list[str]) -> list[dict]:
    """Per configuration, over its converged seeds."""
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["configuration"], []).append(r)
    out = []
    for key, mine in by.items():
        fitted = converged_runs(mine)
        metrics = {}
        for q in quantities:
            mean, std, n = stats.mean_std(r["values"].get(q) for r in fitted)
            metrics[q] = {"mean": mean, "std": std, "n": n}
        out.append({"configuration": key, "optimizer": mine[0]["optimizer"], "hyperparameters": mine[0]["hyperparameters"],
                    "n": len(mine), "n_converged": len(fitted), "metrics": metrics})
    return out


def design(profile: Profile, runs: list[dict]) -> dict[str, Any]:
    fitted = converged_runs(runs)
    gaps = [r["generalization_gap"] for r in fitted if r["generalization_gap"] is not None]
    errors = [r["gap_stderr"] for r in fitted if r["gap_stderr"] is not None]
    losses = [r["train_loss"] for r in fitted if r["train_loss"] is not None]
    return {
        "axes": list(profile.axes),
        "grid": profile.grid,
        "seeds": list(profile.study.seeds),
        "n_runs": len(runs),
        "n_configurations": len({r["configuration"] for r in runs}),
        "n_converged": len(fitted),
        "n_capped": sum(r["status"] == "ok" and not r["converged"] for r in runs),
        "n_diverged": sum(r["status"] != "ok" for r in runs),
        "gap_min": min(gaps) if gaps else None,
        "gap_max": max(gaps) if gaps else None,
        "gap_spread": (max(gaps) - min(gaps)) if gaps else None,
        "gap_stderr_median": sorted(errors)[len(errors) // 2] if errors else None,
        "train_loss_min": min(losses) if losses else None,
        "train_loss_max": max(losses) if losses else None,
        # seed-to-seed standard deviation of one configuration's gap (pooled over configurations):
        # the noise a single run's gap carries, larger than the test set's binomial error alone
        "gap_seed_sd": stats.pooled_within_sd([r["generalization_gap"] for r in fitted], [r["configuration"] for r in fitted]),
        "stop_loss": profile.train.stop_loss,
        "stop_early": profile.train.stop_early,
        "max_epochs": profile.train.max_epochs,
        "optimizers_converged": sorted({r["optimizer"] for r in fitted}),
    }


def extremes(aggregate_rows: list[dict], quantities: list[str]) -> list[dict]:
    """Which optimizer's minima are sharpest and flattest by each measure (means over converged runs)."""
    out = []
    for q in quantities:
        means = [(row["metrics"][q]["mean"], row["optimizer"]) for row in aggregate_rows if row["metrics"][q]["mean"] is not None]
        if len(means) < 2:
            continue
        (lo, flat), (hi, sharp) = min(means), max(means)
        out.append({"quantity": q, "sharpest": sharp, "sharpest_mean": hi, "flattest": flat, "flattest_mean": lo,
                    "ratio": hi / lo if lo > 0 else None, "n_optimizers": len(means)})
    return out


def extremes_tally(extreme_rows: list[dict]) -> dict | None:
    """The optimizer that is sharpest (flattest) by the most measures, and by how many (ties:
    the first measure's order)."""
    if not extreme_rows:
        return None

    def most(side: str) -> dict:
        optimizer, count = Counter(row[side] for row in extreme_rows).most_common(1)[0]
        return {"optimizer": optimizer, "measures": count}

    return {"sharpest": most("sharpest"), "flattest": most("flattest"), "n_measures": len(extreme_rows)}


# ---- selection on the validation set ----------------------------------------------------------

def selection_cell(run: dict) -> tuple:
    """What tuning holds fixed: the seed and every hyperparameter but the optimizer's own
    (learning rate, weight decay): a practitioner tunes those for a given batch size and seed."""
    fixed = {k: v for k, v in run["hyperparameters"].items() if k not in ("lr", "weight_decay")}
    return run["seed"], tuple(sorted(fixed.items()))


def _validation_rank(run: dict) -> tuple:
    """Best on validation: highest accuracy, then lowest loss, then the run hash (a total order)."""
    return -(run.get("val_accuracy") or 0.0), run.get("val_loss") or math.inf, run["run"]


def tuned(runs: list[dict], family: tuple[str, ...]) -> dict[tuple, dict]:
    """Per selection cell, the converged run of `family`'s optimizers with the best validation
    accuracy: the run one would pick without looking at the test set."""
    chosen: dict[tuple, dict] = {}
    for r in converged_runs(runs):
        if r["optimizer"] in family and r.get("val_accuracy") is not None:
            cell = selection_cell(r)
            if cell not in chosen or _validation_rank(r) < _validation_rank(chosen[cell]):
                chosen[cell] = r
    return chosen


def lr_optima(runs: list[dict], grid: dict[str, dict[str, list]]) -> list[dict]:
    """Per optimizer and fixed setting (batch size, ...), the learning rate with the best mean
    validation accuracy over the converged seeds, and whether it lies on an edge of the grid
    (an optimum at the edge may lie beyond it: the grid does not bracket it)."""
    cells: dict[tuple, dict[float, list[float]]] = {}
    for r in converged_runs(runs):
        if r.get("val_accuracy") is not None:
            fixed = tuple(sorted((k, v) for k, v in r["hyperparameters"].items() if k != "lr"))
            cells.setdefault((r["optimizer"], fixed), {}).setdefault(r["hyperparameters"]["lr"], []).append(r["val_accuracy"])
    out = []
    for (optimizer, fixed), by_lr in cells.items():
        means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
        best = max(means, key=lambda lr: (means[lr], -lr))
        by_batch = grid[optimizer].get("lr_by_batch") or {}
        lrs = by_batch.get(str(dict(fixed).get("batch_size")), grid[optimizer]["lr"])
        out.append({"optimizer": optimizer, "fixed": dict(fixed), "lrs": lrs, "best_lr": best,
                    "val_accuracy": means[best], "at_edge": len(lrs) < 3 or best in (min(lrs), max(lrs)),
                    "n_seeds": len(by_lr[best])})
    return out


def tuning(runs: list[dict], optimizers: list[str], grid: dict[str, dict[str, list]], n_val: int) -> dict[str, Any]:
    """What validation tuning picks: per optimizer, its tuned runs (one per batch size and seed)
    with their mean validation and test accuracy; the best optimizer, chosen by tuned validation
    accuracy and reported on test; and each learning-rate grid's validation optimum."""
    if not n_val:
        return {"available": False, "per_optimizer": [], "best": None, "lr_optima": [], "n_at_edge": 0}
    per = []
    for name in optimizers:
        chosen = list(tuned(runs, (name,)).values())
        if not chosen:
            continue
        val = stats.mean_std(r["val_accuracy"] for r in chosen)
        test = stats.mean_std(r["test_accuracy"] for r in chosen)
        per.append({"optimizer": name, "n_cells": len(chosen), "chosen_lrs": sorted({r["hyperparameters"]["lr"] for r in chosen}),
                    "val_accuracy": dict(zip(("mean", "std", "n"), val)), "test_accuracy": dict(zip(("mean", "std", "n"), test))})
    best = max(per, key=lambda row: (row["val_accuracy"]["mean"], row["optimizer"]), default=None)
    optima = lr_optima(runs, grid)
    return {"available": True, "per_optimizer": per, "lr_optima": optima,
            "n_at_edge": sum(row["at_edge"] for row in optima),
            "best": None if best is None else {"optimizer": best["optimizer"], **best["test_accuracy"],
                                               "val_accuracy": best["val_accuracy"]["mean"]}}


def dinh_facts(record: dict, quantities: list[str], runs: list[dict]) -> dict[str, Any]:
    """The rescaling experiment's facts; `converged` says whether the rescaled run is a minimum
    (claims use converged runs only: a capped run makes the Dinh claim not testable)."""
    rows = record.get("rows") or []
    info = {k: record.get(k) for k in ("applicable", "run", "optimizer", "seed", "layers", "note", "reference_test_accuracy")}
    info["applicable"] = bool(info["applicable"])
    info["converged"] = any(r["run"] == record.get("run") for r in converged_runs(runs))
    info.update(moved_factor=MOVED_FACTOR, stable_factor=STABLE_FACTOR)
    if info["applicable"] and not info["converged"]:
        info["note"] = f"the rescaled {info['optimizer']} run {info['run']} did not converge (capped or diverged): it is no minimum"
    if not rows:
        return {**info, "scale_min": None, "scale_max": None, "factors": {}, "moved": [], "stable": [], "nonpositive": [],
                "accuracy_min": None, "accuracy_max": None, "max_logit_change": None}
    factors, nonpositive = {}, []
    for q in quantities:
        values = [r.get(q) for r in rows if is_finite(r.get(q))]
        if not values:
            continue
        if min(values) <= 0:
            nonpositive.append(q)
            factors[q] = None
        else:
            factors[q] = max(values) / min(values)
    accuracies = [r["test_accuracy"] for r in rows if is_finite(r.get("test_accuracy"))]
    return {
        **info,
        "scale_min": min(r["scale"] for r in rows),
        "scale_max": max(r["scale"] for r in rows),
        "factors": factors,
        "moved": [q for q, f in factors.items() if f is not None and f >= MOVED_FACTOR],
        "stable": [q for q, f in factors.items() if f is not None and f < STABLE_FACTOR],
        "nonpositive": nonpositive,
        "accuracy_min": min(accuracies) if accuracies else None,
        "accuracy_max": max(accuracies) if accuracies else None,
        "max_logit_change": max((r.get("max_logit_change") or 0.0) for r in rows),
    }


def optimizer_grid(profile: Profile) -> dict[str, dict[str, Any]]:
    """Each optimizer's learning rates, its weight decay (the levels, where it varies) and its
    other (fixed) hyperparameters, for the setup table. `profile.optimizers` holds each
    optimizer's first grid point only: its weight decay is not what every run used."""
    out = {}
    for name, cfg in profile.optimizers.items():
        decays = profile.grid[name]["weight_decay"]
        params = {k: v for k, v in cfg.hyperparameters().items() if k != "lr"}
        if "weight_decay" in params:
            params["weight_decay"] = decays[0] if len(decays) == 1 else list(decays)
        out[name] = {"lr": profile.grid[name]["lr"], **params}
    return out


def original_study(profile: Profile, runs: list[dict]) -> dict[str, Any]:
    """The comparison with the original study, made only where the data set and model match."""
    seed = load_profile("seed")
    comparable = profile.study.dataset == seed.study.dataset and profile.study.model == seed.study.model
    same = {r.run_hash for r in seed.runs} <= {r.run_hash for r in profile.runs}
    reason = "" if comparable else (
        f"the original study trained the {seed.study.model!r} LeNet-5 variant on {DISPLAY_NAMES[seed.study.dataset]}; "
        f"this profile trains the {profile.study.model!r} variant on {DISPLAY_NAMES[profile.study.dataset]}")
    rows = []
    if comparable:
        for name, original in ORIGINAL_TEST_ACCURACY.items():
            mean, std, n = stats.mean_std(r["test_accuracy"] for r in runs if r["optimizer"] == name and r["status"] == "ok")
            rows.append({"optimizer": name, "original_test_accuracy": original, "test_accuracy_mean": mean,
                         "test_accuracy_std": std, "n": n, "difference": None if mean is None else mean - original})
    return {"comparable": comparable, "reason": reason, "same_setup": same, "rows": rows,
            "differences": setup_differences(profile, seed)}


def setup_differences(profile: Profile, original: Profile) -> list[dict]:
    """Where this profile departs from the packaged `seed` profile (the original study): each
    setting's value here and there (the report words and formats them)."""
    ours, theirs = VARIANTS[profile.study.model], VARIANTS[original.study.model]
    checks = [
        ("dataset", DISPLAY_NAMES[profile.study.dataset], DISPLAY_NAMES[original.study.dataset]),
        ("n_train", profile.study.n_train or SPLIT_SIZES[profile.study.dataset][0],
         original.study.n_train or SPLIT_SIZES[original.study.dataset][0]),
        ("activation", ours.activation, theirs.activation),
        ("pooling", ours.pooling, theirs.pooling),
        ("input_size", ours.input_size, theirs.input_size),
        ("max_epochs", profile.train.max_epochs, original.train.max_epochs),
        ("stop_loss", _stop_loss(profile), _stop_loss(original)),
        ("batch_size", sorted({r.train.batch_size for r in profile.runs}), sorted({r.train.batch_size for r in original.runs})),
        ("shuffle", profile.train.shuffle, original.train.shuffle),
        ("seeds", list(profile.study.seeds), list(original.study.seeds)),
    ]
    out = [_difference(setting, None, a, b) for setting, a, b in checks if _setting(a) != _setting(b)]
    for name in sorted(set(profile.grid) | set(original.grid)):
        if name not in profile.grid or name not in original.grid:
            out.append(_difference("trained", name, name in profile.grid, name in original.grid))
            continue
        mine, theirs_cfg = profile.optimizers[name].hyperparameters(), original.optimizers[name].hyperparameters()
        mine["lr"], theirs_cfg["lr"] = profile.grid[name]["lr"], original.grid[name]["lr"]
        out += [_difference(key, name, mine.get(key), theirs_cfg.get(key)) for key in sorted(set(mine) | set(theirs_cfg))
                if _setting(mine.get(key)) != _setting(theirs_cfg.get(key))]
    return out


def _setting(value: Any) -> Any:
    """A setting as JSON holds it (tuples as lists), so that equal settings compare equal."""
    return [_setting(v) for v in value] if isinstance(value, (list, tuple)) else value


def _difference(setting: str, optimizer: str | None, ours: Any, original: Any) -> dict:
    return {"setting": setting, "optimizer": optimizer, "ours": _setting(ours), "original": _setting(original)}


def _stop_loss(profile: Profile) -> float | None:
    """The training loss a run stops at, None where it trains for every epoch."""
    return profile.train.stop_loss if profile.train.stop_early else None


def limitations(profile: Profile, runs: list[dict], n_train: int) -> dict[str, Any]:
    fitted = converged_runs(runs)
    relative = [r["curvature"]["trace"]["stderr"] / r["curvature"]["trace"]["mean"] for r in fitted
                if r["curvature"] and is_finite(nested(r["curvature"], "trace", "stderr"))
                and is_finite(nested(r["curvature"], "trace", "mean")) and r["curvature"]["trace"]["mean"] > 0]
    subsets = {}
    for stage in ("curvature", "sharpness", "landscape"):
        n = getattr(profile, stage).n_samples
        subsets[stage] = n if 0 < n < n_train else None
    return {
        "n_seeds": len(profile.study.seeds),
        "subsets": subsets,
        "capped": [r["run"] for r in runs if r["status"] == "ok" and not r["converged"]],
        "diverged": [r["run"] for r in runs if r["status"] != "ok"],
        "lanczos_unconverged": sum(1 for r in fitted if nested(r["curvature"], "eigen", "converged") is False),
        "trace_rel_stderr_max": max(relative) if relative else None,
        "trace_probes": profile.curvature.trace_probes,
        "landscape_runs": "first_seed",  # pipeline.analyses_of: a landscape for each configuration's first seed
        "density_runs": profile.curvature.density_runs,
    }
