"""The report's tables: rows of summary facts, ready for the templates' number filters.

Each function picks values out of the summary and arranges them (one row per measure, one
column per optimizer, ...); it never computes a statistic. Numbers stay numbers here: the
templates format them once through report.formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from minima.schema import GAP, KINDS, Aggregate, Run, Stat, Summary, dinh_value
from report import formats, prose, style

UNITS = {"test_accuracy": "%", "val_accuracy": "%", "test_error": "%", "generalization_gap": "pp"}  # fractions, printed x 100
ACCURACY_ROWS = ("test_accuracy", "val_accuracy", "generalization_gap", "train_loss", "epochs_to_fit")
CURVATURE_ROWS = ("min_eigenvalue", "gradient_norm", "stability_ratio")
RUN_MEASURES = ("top_eigenvalue", "trace")


@dataclass(frozen=True)
class Head:
    """A column head or quantity name, already in each output's markup."""

    name: str
    tex: formats.Tex
    md: formats.Md
    words: str  # plain text, escaped by the template


def head(summary: Summary, name: str) -> Head:
    """A known quantity's label is the report's own text (converted like its prose); any other
    name comes from the summary and is escaped as a value."""
    label = style.quantity_label(name)
    if label is not None:
        return Head(name, formats.Tex(formats.prose_tex(label.text)), formats.Md(formats.prose_md(label.text)), label.words)
    return Head(name, formats.tex(name), formats.md(name), summary.measures.get(name, name))


def _stat(stat: Stat | None) -> dict | None:
    return None if stat is None else {"mean": stat.mean, "std": stat.std}


# ---- claims --------------------------------------------------------------------------------

def claims(summary: Summary) -> dict:
    """One row per claim, and the distinct verdict rules (each once, lettered A, B, ...)."""
    rules: list[str] = []
    rows = []
    for i, c in enumerate(summary.claims, 1):
        if c.rule not in rules:
            rules.append(c.rule)
        words, colour, _ = style.VERDICTS[c.verdict]
        scale = style.claim_scale(c.unit)
        rows.append({
            "number": i, "claim": c.claim, "source": c.source, "test": c.test,
            "statistic": style.claim_statistic(c.statistic, c.unit), "value": None if c.value is None else c.value * scale,
            "ci": None if c.ci95 is None else [v * scale for v in c.ci95], "n": c.n,
            "k": c.n_clusters, "p": c.p, "p_holm": c.p_holm, "method": c.method,
            "reason": c.reason, "tested": c.p is not None,
            "verdict": c.verdict, "verdict_words": words, "colour": colour, "note": c.note,
            "rule": chr(ord("A") + rules.index(c.rule)),
        })
    counts = [{"words": style.verdict_words(v), "colour": style.VERDICTS[v][1], "n": len(summary.claims_with(v))}
              for v in style.VERDICTS]
    return {"rows": rows, "rules": [{"id": chr(ord("A") + i), "text": r} for i, r in enumerate(rules)],
            "counts": counts}


# ---- setup ---------------------------------------------------------------------------------

def grid(summary: Summary) -> dict:
    """Per optimizer its grid: learning rates, batch sizes and the other listed axes."""
    table = summary.design.grid
    keys = ["lr", "weight_decay", "batch_size", "label_noise"]
    per_optimizer: dict[str, int] = {}
    for c in summary.configurations:
        per_optimizer[c.optimizer] = per_optimizer.get(c.optimizer, 0) + 1
    rows = [{"label": style.optimizer_label(o),
             "values": [", ".join(formats.value_text(v) for v in getattr(table[o], k)) or "–" for k in keys],
             "configurations": per_optimizer.get(o)}
            for o in style.order_optimizers(table)]
    return {"columns": [style.axis_words(k) for k in keys], "rows": rows}


def hparams(summary: Summary) -> dict:
    """One column per optimizer, one row per hyperparameter (None: not applicable). Why not one
    column per hyperparameter: with six optimizers that table ran 408 pt off the page."""
    table = {name: grid.model_dump(exclude_none=True) for name, grid in summary.optimizers.items()}
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
    t = summary.tuning
    order = {o: i for i, o in enumerate(style.optimizer_names(summary))}
    cells = sorted(t.lr_optima, key=lambda c: (order[c.optimizer], sorted(c.fixed.items())))
    return {
        "available": t.available,
        "cells": [{"label": style.optimizer_label(c.optimizer),
                   "fixed": ", ".join(f"{style.axis_symbol(k)} = {formats.value_text(v)}" for k, v in c.fixed.items()),
                   "lrs": ", ".join(formats.value_text(v) for v in c.lrs), "best": c.best_lr,
                   "val": c.val_accuracy, "edge": c.at_edge, "n_seeds": c.n_seeds} for c in cells],
        "optimizers": [{"label": style.optimizer_label(o.optimizer), "n": o.n_cells,
                        "lrs": ", ".join(formats.value_text(v) for v in o.chosen_lrs),
                        "val": _stat(o.val_accuracy), "test": _stat(o.test_accuracy)}
                       for o in sorted(t.per_optimizer, key=lambda o: order[o.optimizer])],
        "n_at_edge": t.n_at_edge,
    }


def settings(summary: Summary) -> list[dict]:
    return [{"stage": stage, "items": [(k, formats.value_text(v)) for k, v in values.items()]}
            for stage, values in summary.settings if values]


def measures(summary: Summary) -> list[dict]:
    return [{"head": head(summary, m), "label": summary.measures.get(m, m),
             "kind": style.KIND_LABELS[summary.measure_kinds[m]]}
            for m in summary.measures_of()]


def data_descriptions(summary: Summary) -> dict[str, str]:
    """Where each stage's numbers come from, for captions: a subset or the whole training set."""
    data = summary.data
    name, n_train = data.display_name, formats.words_int(data.n_train)
    split_test = data.split_test
    test_subset = f" (a subset of the {formats.words_int(split_test)})" if split_test and data.n_test < split_test else ""
    out = {"test": f"{formats.words_int(data.n_test)} {name} test images{test_subset}",
           "train": f"the {n_train} {name} training images"}
    for stage, n in summary.limitations.subsets:
        out[stage] = (f"a fixed {formats.words_int(n)}-image subset of the {n_train} training images" if n
                      else f"the whole training set ({n_train} {name} images)")
    return out


# ---- does sharpness predict generalization? ------------------------------------------------

def correlations(summary: Summary, target: str) -> dict:
    """One row per measure, grouped by kind (Hessian, sharpness, baseline)."""
    axes = summary.design.axes
    floor = summary.noise_floor
    groups = []
    for kind in KINDS:
        rows = [{
            "head": head(summary, c.measure), "tau": c.kendall_tau, "ci": c.ci95, "rho": c.spearman,
            "partial": c.partial_tau, "p": c.p_value,
            "p_holm": c.p_holm, "significant": c.significant, "direction": c.direction,
            "psi": [c.psi.get(a) for a in axes], "psi_mean": c.psi_mean, "beats": c.beats_baselines,
            "baseline": kind == "baseline",
            "floor": floor[c.measure].kendall_tau if c.measure in floor else None,
        } for c in summary.correlations_of(target) if c.kind == kind]
        if rows:
            groups.append({"kind": style.KIND_LABELS[kind], "rows": rows})
    gap_floor = floor.get(GAP)
    return {"target": head(summary, target), "axes": [style.axis_words(a) for a in axes], "groups": groups,
            "floor_tau": None if gap_floor is None else gap_floor.kendall_tau,
            "floor_n": None if gap_floor is None else gap_floor.n_comparisons}


# ---- replication across datasets -----------------------------------------------------------

def replication(summary: Summary) -> dict | None:
    """The replication table (one row per claim: each dataset's verdict, value, interval, k and
    Holm p, then whether it replicates) and each other dataset's correlation table; None for a
    one-dataset study."""
    part = summary.replication
    if part is None:
        return None
    numbers = {c.id: i for i, c in enumerate(summary.claims, 1)}
    rows = []
    for row in part.table:
        cells = []
        for cell in row.cells:
            scale = style.claim_scale(cell.unit or "")
            words, colour, _ = style.VERDICTS[cell.verdict] if cell.verdict else ("not tested", "vgrey", "")
            cells.append({"verdict_words": words, "colour": colour, "tested": cell.verdict is not None,
                          "value": None if cell.value is None else cell.value * scale,
                          "ci": None if cell.ci95 is None else [v * scale for v in cell.ci95],
                          "k": cell.n_clusters, "p_holm": cell.p_holm, "decided_by_p": cell.p is not None})
        words, colour = style.OUTCOMES[row.outcome]
        rows.append({"number": numbers.get(row.id), "claim": row.claim, "source": row.source, "cells": cells,
                     "outcome_words": words, "colour": colour, "reason": row.reason})
    others = [{"dataset": member.data.display_name, "profile": member.profile, "n_runs": len(member.runs),
               "n_converged": len(member.converged_runs()), "correlation": correlations(member, GAP)}
              for member in part.members]
    counts = [{"words": style.OUTCOMES[o][0], "colour": style.OUTCOMES[o][1], "n": n} for o, n in part.counts.items()]
    studies = summary.studies()
    names = style.order_optimizers({o: None for study in studies for o in study.design.grid})
    grids = [{"label": style.optimizer_label(o), "cells": [_rates(study, o) for study in studies]} for o in names]
    return {"datasets": part.datasets, "profiles": part.profiles, "rule": part.rule, "rows": rows,
            "datasets_text": formats.joined(part.datasets), "profiles_text": formats.joined(part.profiles),
            "others": others, "counts": counts, "grids": grids, "n_runs": part.n_runs, "timing_text": formats.duration(part.timing_total)}


def _rates(summary: Summary, optimizer: str) -> str:
    """An optimizer's learning rates per batch size, "32: 0.05, 0.1 · 128: 0.1, 0.2"; "–" when absent."""
    grid = summary.design.grid.get(optimizer)
    if grid is None:
        return "–"
    return " · ".join(f"{batch}: {', '.join(formats.value_text(lr) for lr in lrs)}" for batch, lrs in grid.lr_by_batch.items())


# ---- per optimizer -------------------------------------------------------------------------

def _aggregates(summary: Summary) -> list[Aggregate]:
    return [a for o in style.optimizer_names(summary) if (a := summary.aggregate(o)) is not None]


def optimizer_columns(summary: Summary) -> list[dict]:
    return [{"label": style.optimizer_label(a.optimizer), "n": a.n, "n_converged": a.n_converged}
            for a in _aggregates(summary)]


def optimizer_block(summary: Summary, quantities: tuple[str, ...] | list[str]) -> list[dict]:
    """Rows of mean ± std per optimizer (columns), over its converged runs."""
    aggs = _aggregates(summary)
    return [{"head": head(summary, q), "unit": UNITS.get(q, ""), "cells": [_stat(a.metrics.get(q)) for a in aggs]}
            for q in quantities if any(q in a.metrics for a in aggs)]


def layer_norms(summary: Summary) -> list[dict]:
    """One row per layer, in the order the analysis lists them (the network's)."""
    aggs = _aggregates(summary)
    layers = list(dict.fromkeys(layer for a in aggs for layer in a.layer_norms))
    return [{"layer": layer, "cells": [_stat(a.layer_norms.get(layer)) for a in aggs]} for layer in layers]


def extremes(summary: Summary) -> list[dict]:
    return [{"head": head(summary, e.quantity), "sharpest": style.optimizer_label(e.sharpest),
             "sharpest_mean": e.sharpest_mean, "flattest": style.optimizer_label(e.flattest),
             "flattest_mean": e.flattest_mean, "ratio": e.ratio}
            for e in summary.extremes]


# ---- the rescaling experiment --------------------------------------------------------------

def dinh(summary: Summary) -> dict:
    info = summary.dinh_info
    rows = sorted(summary.dinh, key=lambda r: r.scale)
    table = [{"head": head(summary, q), "unit": UNITS.get(q, ""), "values": [dinh_value(r, q) for r in rows],
              "factor": info.factors.get(q)}
             for q in summary.dinh_quantities()]
    return {
        "available": prose.dinh_was_run(summary),
        "label": style.optimizer_label(str(info.optimizer)),
        "scales": [r.scale for r in rows],
        "rows": table,
    }


# ---- training, failed runs and every run ---------------------------------------------------

def configurations(summary: Summary) -> list[dict]:
    return [{"configuration": c.configuration, "label": style.optimizer_label(c.optimizer),
             "lr": c.hyperparameters.get("lr"), "batch_size": c.hyperparameters.get("batch_size"),
             "n": c.n, "n_converged": c.n_converged,
             **{q: _stat(c.metrics.get(q)) for q in ("epochs_to_fit", "test_accuracy", "generalization_gap")}}
            for c in style.ordered_configurations(summary)]


def _run_row(summary: Summary, r: Run) -> dict:
    return {
        "run": r.run, "label": style.optimizer_label(r.optimizer), "seed": r.seed,
        "lr": r.hyperparameters.get("lr"), "batch_size": r.hyperparameters.get("batch_size"),
        "converged": r.is_minimum, "status": r.status, "epochs": r.epochs,
        "epochs_to_fit": r.epochs_to_fit, "train_loss": r.train_loss, "test_accuracy": r.test_accuracy,
        "gap": {"mean": r.generalization_gap, "std": r.gap_stderr},
        "stop_reason": r.stop_reason or "", "diverged_epoch": r.diverged_epoch,
        "main": [r.value(q) for q in RUN_MEASURES],
        "sharpness": [r.value(q) for q in summary.measures_of("sharpness")],
    }


def runs(summary: Summary) -> list[dict]:
    return [_run_row(summary, r) for r in style.ordered_runs(summary)]


def failed(summary: Summary, hashes: list[str]) -> list[dict]:
    """The runs the analysis lists (limitations.capped or limitations.diverged)."""
    return [_run_row(summary, run) for h in hashes if (run := summary.run_by_hash(h)) is not None]


# ---- the original study, reproducibility ---------------------------------------------------

# The original study's setup items (original_study.differences), in words; an optimizer's own
# settings are named by the optimizer and the hyperparameter's key ("SGD lr", "SAM trained").
SETTING_WORDS = {
    "dataset": "Dataset", "n_train": "Training images", "activation": "Activation", "pooling": "Pooling",
    "input_size": "Input size", "max_epochs": "Epochs (at most)", "stop_loss": "Stop at training loss",
    "batch_size": "Batch size", "shuffle": "Shuffled batches", "seeds": "Seeds",
}


def setting_words(setting: str, optimizer: str | None) -> str:
    return SETTING_WORDS.get(setting, setting) if optimizer is None else f"{style.optimizer_label(optimizer)} {setting}"


def setting_text(value: object) -> str:
    """A setting of the comparison table: 60,000; 32, 64; true; 0.1; none."""
    if isinstance(value, list):
        return ", ".join(setting_text(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return formats.value_text(value)


def original(summary: Summary) -> dict:
    study = summary.original_study
    rows = [{"label": style.optimizer_label(r.optimizer), "original": r.original_test_accuracy,
             "ours": {"mean": r.test_accuracy_mean, "std": r.test_accuracy_std}, "n": r.n,
             "difference": r.difference} for r in study.rows]
    return {"comparable": study.comparable, "reason": study.reason, "same_setup": study.same_setup, "rows": rows,
            "differences": [{"item": setting_words(d.setting, d.optimizer), "ours": setting_text(d.ours),
                             "original": setting_text(d.original)} for d in study.differences]}


ENVIRONMENT_NAMES = {"python": "Python", "torch": "PyTorch", "cuda": "CUDA", "device": "Device", "cpu": "CPU",
                     "platform": "Platform", "threads": "Threads"}


def environment(summary: Summary) -> list[tuple[str, str]]:
    return [(ENVIRONMENT_NAMES.get(k, k), formats.value_text(v)) for k, v in summary.environment]


def _runs_in(summary: Summary, stage: str) -> int:
    """How many runs a stage's time is spread over: every run for training and the total, the runs
    that have the analysis for an analysis stage, none for a study part (Dinh, interpolation)."""
    if stage in ("train", "total"):
        return len(summary.runs)
    return sum(stage in run.analysis_seconds for run in summary.runs)


def timing(summary: Summary) -> list[tuple[str, str, str, str]]:
    """Per stage: wall time (each run's stage added up), core-seconds (process CPU time), and
    core-seconds per run: what one more run costs, whatever else shared the machine."""
    core = summary.core_timing or {}
    rows = []
    for stage, seconds in summary.timing.items():
        cpu, n = core.get(stage), _runs_in(summary, stage)
        per_run = f"{formats.words_num(cpu / n, 2)} s" if cpu is not None and n else "–"
        rows.append((stage, formats.duration(seconds), formats.duration(cpu), per_run))
    return rows
