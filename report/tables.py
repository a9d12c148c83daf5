"""The report's tables: rows of summary facts, ready for the templates' number filters.

Each function picks values out of the summary and arranges them (one row per measure, one
column per optimizer, ...); it never computes a statistic. Numbers stay numbers here: the
templates format them once through report.formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from report import facts, formats, style

Summary = Mapping[str, Any]
UNITS = {"test_accuracy": "%", "val_accuracy": "%", "test_error": "%", "generalization_gap": "pp"}  # fractions, printed x 100
ACCURACY_ROWS = ("test_accuracy", "val_accuracy", "generalization_gap", "train_loss", "epochs_to_fit")
CURVATURE_ROWS = ("min_eigenvalue", "gradient_norm", "stability_ratio")
RUN_MEASURES = ("top_eigenvalue", "trace")
LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


@dataclass(frozen=True)
class Head:
    """A column head or quantity name, already in each output's markup."""

    name: str
    tex: formats.Tex
    md: formats.Md
    words: str  # plain text, escaped by the template


def head(summary: Summary, name: str) -> Head:
    label = style.quantity_label(name)
    if label is not None:
        return Head(name, formats.Tex(label.tex), formats.Md(formats.escape_md(label.md)), label.words)
    return Head(name, formats.tex(name), formats.md(name), str(summary["measures"].get(name, name)))


def _stat(stats: Mapping[str, Any] | None, name: str) -> dict | None:
    stat = (stats or {}).get(name)
    return dict(stat) if stat else None


# ---- claims --------------------------------------------------------------------------------

def claims(summary: Summary) -> dict:
    """One row per claim, and the distinct verdict rules (each once, lettered A, B, ...)."""
    rules: list[str] = []
    rows = []
    for i, c in enumerate(summary["claims"], 1):
        if c["rule"] not in rules:
            rules.append(c["rule"])
        words, colour, _ = style.VERDICTS.get(c["verdict"], (style.verdict_words(c["verdict"]), "vgrey", ""))
        scale = style.claim_scale(c)
        rows.append({
            "number": i, "claim": c["claim"], "source": c["source"], "test": c["test"],
            "statistic": style.claim_statistic(c), "value": None if c["value"] is None else c["value"] * scale,
            "ci": None if c["ci95"] is None else [v * scale for v in c["ci95"]], "n": c.get("n"),
            "k": c["n_clusters"], "p": c["p"], "p_holm": c["p_holm"], "method": str(c["method"]),
            "reason": str(c["reason"]), "tested": c["p"] is not None,
            "verdict": c["verdict"], "verdict_words": words, "colour": colour, "note": str(c.get("note") or ""),
            "rule": chr(ord("A") + rules.index(c["rule"])),
        })
    counts = [{"words": style.verdict_words(v), "colour": style.VERDICTS[v][1],
               "n": len(facts.claims_by_verdict(summary, v))} for v in style.VERDICTS]
    return {"rows": rows, "rules": [{"id": chr(ord("A") + i), "text": r} for i, r in enumerate(rules)],
            "counts": counts}


# ---- setup ---------------------------------------------------------------------------------

def grid(summary: Summary) -> dict:
    """Per optimizer its grid: learning rates, batch sizes and the other listed axes."""
    table = summary["design"].get("grid") or {}
    keys: list[str] = []
    for levels in table.values():
        keys += [k for k in levels if k not in keys]
    per_optimizer: dict[str, int] = {}
    for c in summary.get("configurations") or []:
        per_optimizer[c["optimizer"]] = per_optimizer.get(c["optimizer"], 0) + 1
    rows = [{"label": style.optimizer_label(o),
             "values": [", ".join(formats.value_text(v) for v in table[o].get(k) or []) or "–" for k in keys],
             "configurations": per_optimizer.get(o)}
            for o in style.order_optimizers(table)]
    return {"columns": [style.axis_words(k) for k in keys], "rows": rows}


def hparams(summary: Summary) -> dict:
    """One column per optimizer, one row per hyperparameter (None: not applicable). Why not one
    column per hyperparameter: with six optimizers that table ran 408 pt off the page."""
    table = summary["optimizers"]
    optimizers = style.order_optimizers(table)
    names: list[str] = []
    for params in table.values():
        names += [k for k in params if k not in names]
    rows = [{"label": name, "values": [formats.value_text(table[o][name]) if name in table[o] else None for o in optimizers]}
            for name in names]
    return {"columns": [style.optimizer_label(o) for o in optimizers], "rows": rows}


def tuning(summary: Summary) -> dict:
    """What the validation set chose: each grid cell's best learning rate (edge flagged) and each
    optimizer's tuned runs, their validation and test accuracy."""
    t = summary["tuning"]
    order = {o: i for i, o in enumerate(facts.optimizers(summary))}
    cells = sorted(t["lr_optima"], key=lambda c: (order.get(c["optimizer"], len(order)), sorted(c["fixed"].items())))
    return {
        "available": bool(t["available"]),
        "cells": [{"label": style.optimizer_label(c["optimizer"]),
                   "fixed": ", ".join(f"{style.axis_symbol(k)} = {formats.value_text(v)}" for k, v in c["fixed"].items()),
                   "lrs": ", ".join(formats.value_text(v) for v in c["lrs"]), "best": c["best_lr"],
                   "val": c["val_accuracy"], "edge": c["at_edge"], "n_seeds": c["n_seeds"]} for c in cells],
        "optimizers": [{"label": style.optimizer_label(o["optimizer"]), "n": o["n_cells"],
                        "lrs": ", ".join(formats.value_text(v) for v in o["chosen_lrs"]),
                        "val": o["val_accuracy"], "test": o["test_accuracy"]}
                       for o in sorted(t["per_optimizer"], key=lambda o: order.get(o["optimizer"], len(order)))],
        "n_at_edge": t["n_at_edge"],
    }


def settings(summary: Summary) -> list[dict]:
    return [{"stage": str(stage), "items": [(str(k), formats.value_text(v)) for k, v in values.items()]}
            for stage, values in summary["settings"].items() if isinstance(values, Mapping) and values]


def measures(summary: Summary) -> list[dict]:
    return [{"head": head(summary, m), "label": str(summary["measures"].get(m, m)),
             "kind": style.KIND_LABELS.get(summary["measure_kinds"][m], summary["measure_kinds"][m])}
            for m in facts.measures(summary)]


def data_descriptions(summary: Summary) -> dict[str, str]:
    """Where each stage's numbers come from, for captions: a subset or the whole training set."""
    data = summary["data"]
    name, n_train = data["display_name"], formats.words_int(data["n_train"])
    n_test, split_test = formats.words_int(data["n_test"]), data.get("split_test")
    test_subset = f" (a subset of the {formats.words_int(split_test)})" if split_test and data["n_test"] < split_test else ""
    out = {"test": f"{n_test} {name} test images{test_subset}",
           "train": f"the {n_train} {name} training images"}
    for stage, n in (summary["limitations"].get("subsets") or {}).items():
        out[stage] = (f"a fixed {formats.words_int(n)}-image subset of the {n_train} training images" if n
                      else f"the whole training set ({n_train} {name} images)")
    for stage in ("curvature", "sharpness", "landscape"):
        out.setdefault(stage, f"the whole training set ({n_train} {name} images)")
    return out


# ---- does sharpness predict generalization? ------------------------------------------------

def correlations(summary: Summary, target: str) -> dict:
    """One row per measure, grouped by kind (Hessian, sharpness, baseline)."""
    axes = facts.varied_axes(summary)
    floor = summary.get("noise_floor") or {}
    groups = []
    for kind in facts.KINDS:
        rows = [{
            "head": head(summary, c["measure"]), "tau": c["kendall_tau"], "ci": c["ci95"], "rho": c["spearman"],
            "partial": c["partial_tau"], "p": c["p_value"],
            "p_holm": c["p_holm"], "significant": c["significant"], "direction": c["direction"],
            "psi": [c["psi"].get(a) for a in axes], "psi_mean": c["psi_mean"], "beats": c["beats_baselines"],
            "baseline": kind == "baseline", "floor": (floor.get(c["measure"]) or {}).get("kendall_tau"),
        } for c in facts.correlation_rows(summary, target) if c["kind"] == kind]
        if rows:
            groups.append({"kind": style.KIND_LABELS[kind], "rows": rows})
    gap_floor = floor.get("generalization_gap") or {}
    return {"target": head(summary, target), "axes": [style.axis_words(a) for a in axes], "groups": groups,
            "floor_tau": gap_floor.get("kendall_tau"), "floor_n": gap_floor.get("n_comparisons")}


# ---- per optimizer -------------------------------------------------------------------------

def optimizer_columns(summary: Summary) -> list[dict]:
    return [{"label": style.optimizer_label(a["optimizer"]), "n": a["n"], "n_converged": a["n_converged"]}
            for a in _aggregates(summary)]


def _aggregates(summary: Summary) -> list[dict]:
    return [a for o in facts.optimizers(summary) if (a := facts.aggregate(summary, o)) is not None]


def optimizer_block(summary: Summary, quantities: tuple[str, ...] | list[str]) -> list[dict]:
    """Rows of mean ± std per optimizer (columns), over its converged runs."""
    aggs = _aggregates(summary)
    return [{"head": head(summary, q), "unit": UNITS.get(q, ""), "cells": [_stat(a["metrics"], q) for a in aggs]}
            for q in quantities if any(q in a["metrics"] for a in aggs)]


def layer_norms(summary: Summary) -> list[dict]:
    aggs = _aggregates(summary)
    layers = [layer for layer in LAYERS if any(layer in a["layer_norms"] for a in aggs)]
    layers += [k for a in aggs for k in a["layer_norms"] if k not in layers]
    return [{"layer": layer, "cells": [_stat(a["layer_norms"], layer) for a in aggs]} for layer in layers]


def extremes(summary: Summary) -> list[dict]:
    return [{"head": head(summary, e["quantity"]), "sharpest": style.optimizer_label(e["sharpest"]),
             "sharpest_mean": e["sharpest_mean"], "flattest": style.optimizer_label(e["flattest"]),
             "flattest_mean": e["flattest_mean"], "ratio": e.get("ratio")}
            for e in summary.get("extremes") or []]


# ---- the rescaling experiment --------------------------------------------------------------

def dinh(summary: Summary) -> dict:
    info = summary["dinh_info"]
    rows = sorted(summary["dinh"], key=lambda r: r["scale"])
    factors = info.get("factors") or {}
    table = [{"head": head(summary, q), "unit": UNITS.get(q, ""), "values": [r.get(q) for r in rows],
              "factor": factors.get(q)}
             for q in facts.dinh_quantities(summary)]
    return {
        "available": bool(info.get("applicable") and rows),
        "label": style.optimizer_label(str(info.get("optimizer") or "?")),
        "scales": [r["scale"] for r in rows],
        "rows": table,
    }


# ---- training, failed runs and every run ---------------------------------------------------

def configurations(summary: Summary) -> list[dict]:
    rows = facts.ordered_configurations(summary)
    return [{"configuration": c["configuration"], "label": style.optimizer_label(c["optimizer"]),
             "lr": c["hyperparameters"].get("lr"), "batch_size": c["hyperparameters"].get("batch_size"),
             "n": c["n"], "n_converged": c["n_converged"],
             **{q: _stat(c["metrics"], q) for q in ("epochs_to_fit", "test_accuracy", "generalization_gap")}}
            for c in rows]


def _run_row(summary: Summary, r: Mapping[str, Any]) -> dict:
    return {
        "run": r["run"], "label": style.optimizer_label(r["optimizer"]), "seed": r["seed"],
        "lr": r["hyperparameters"].get("lr"), "batch_size": r["hyperparameters"].get("batch_size"),
        "converged": facts.converged(r), "status": r["status"], "epochs": r["epochs"],
        "epochs_to_fit": r["epochs_to_fit"], "train_loss": r["train_loss"], "test_accuracy": r["test_accuracy"],
        "gap": {"mean": r["generalization_gap"], "std": r["gap_stderr"]},
        "stop_reason": str(r.get("stop_reason") or ""), "diverged_epoch": r.get("diverged_epoch"),
        "main": [facts.value(r, q) for q in RUN_MEASURES],
        "sharpness": [facts.value(r, q) for q in facts.measures(summary, "sharpness")],
    }


def runs(summary: Summary) -> list[dict]:
    return [_run_row(summary, r) for r in facts.ordered_runs(summary)]


def failed(summary: Summary, key: str) -> list[dict]:
    """The runs the analysis lists under limitations.capped or limitations.diverged."""
    listed = summary["limitations"].get(key) or []
    return [_run_row(summary, run) for h in listed if (run := facts.run_by_hash(summary, h)) is not None]


# ---- the original study, reproducibility ---------------------------------------------------

def original(summary: Summary) -> dict:
    study = summary["original_study"]
    rows = [{"label": style.optimizer_label(str(r.get("optimizer"))), "original": r.get("original_test_accuracy"),
             "ours": {"mean": r.get("test_accuracy_mean"), "std": r.get("test_accuracy_std")}, "n": r.get("n"),
             "difference": r.get("difference")} for r in study.get("rows") or []]
    return {"comparable": bool(study.get("comparable")), "reason": str(study.get("reason") or ""),
            "same_setup": bool(study.get("same_setup")), "rows": rows,
            "differences": [{k: str(d.get(k, "")) for k in ("item", "ours", "original")}
                            for d in study.get("differences") or []]}


ENVIRONMENT_NAMES = {"python": "Python", "torch": "PyTorch", "cuda": "CUDA", "device": "Device", "cpu": "CPU",
                     "platform": "Platform", "threads": "Threads"}


def environment(summary: Summary) -> list[tuple[str, str]]:
    return [(ENVIRONMENT_NAMES.get(k, str(k)), formats.value_text(v)) for k, v in summary["environment"].items()]


def timing(summary: Summary) -> list[tuple[str, str]]:
    return [(str(stage), formats.duration(seconds)) for stage, seconds in summary["timing"].items()]
