"""Looking facts up in a validated summary (schema 2): selections, never statistics.

The analysis (package `minima`) computed every number and judgment; these helpers only find
them: which runs converged, which measures are of a kind, the correlation row of a measure,
an optimizer's aggregate row. Nothing here averages, ranks or tests.
"""

from __future__ import annotations

from typing import Any, Mapping

from report import style

TARGET = "generalization_gap"
KINDS = ("hessian", "sharpness", "baseline")


def get_path(obj: Any, *keys: Any) -> Any:
    for key in keys:
        if obj is None:
            return None
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def words(summary: Mapping[str, Any], quantity: str) -> str:
    """A quantity's name for sentences: its label's words, else the summary's description."""
    label = style.quantity_label(quantity)
    return label.words if label is not None else str(summary["measures"].get(quantity, quantity))


def converged(run: Mapping[str, Any]) -> bool:
    return run["status"] == "ok" and bool(run["converged"])


def converged_runs(summary: Mapping[str, Any]) -> list[dict]:
    return [r for r in summary["runs"] if converged(r)]


def ok_runs(summary: Mapping[str, Any]) -> list[dict]:
    return [r for r in summary["runs"] if r["status"] == "ok"]


def value(run: Mapping[str, Any], quantity: str) -> float | None:
    return (run.get("values") or {}).get(quantity)


def optimizers(summary: Mapping[str, Any]) -> list[str]:
    """The profile's optimizers in study order, then any other a run used."""
    return style.order_optimizers([*summary["optimizers"], *(r["optimizer"] for r in summary["runs"])])


def measures(summary: Mapping[str, Any], *kinds: str) -> list[str]:
    """Measure names of the given kinds (all kinds when none given), in the summary's order."""
    wanted = kinds or KINDS
    return [m for m, kind in summary["measure_kinds"].items() if kind in wanted]


def correlation_rows(summary: Mapping[str, Any], target: str = TARGET) -> list[dict]:
    return [c for c in summary["correlations"] if c["target"] == target]


def correlation(summary: Mapping[str, Any], measure: str, target: str = TARGET) -> dict | None:
    return next((c for c in correlation_rows(summary, target) if c["measure"] == measure), None)


def aggregate(summary: Mapping[str, Any], optimizer: str) -> dict | None:
    return next((a for a in summary["aggregates"] if a["optimizer"] == optimizer), None)


def varied_axes(summary: Mapping[str, Any]) -> list[str]:
    return list(summary["design"]["axes"])


def grid_values(summary: Mapping[str, Any], axis: str) -> list:
    """The levels of one axis over the whole grid, in first-seen order (optimizers for "optimizer")."""
    grid = summary["design"].get("grid") or {}
    if axis == "optimizer":
        return style.order_optimizers(grid) if grid else optimizers(summary)
    levels: list = []
    for table in grid.values():
        for level in table.get(axis) or []:
            if level not in levels:
                levels.append(level)
    return sorted(levels)


def second_axis(summary: Mapping[str, Any]) -> str:
    """The hyperparameter a figure shows by marker or line style: batch size when it varies."""
    others = [a for a in varied_axes(summary) if a != "optimizer"]
    return "batch_size" if "batch_size" in others or not others else others[0]


def level_index(summary: Mapping[str, Any], run: Mapping[str, Any], axis: str) -> int:
    """Position of the run's level of `axis` among the grid's levels (0 when not listed)."""
    levels = grid_values(summary, axis)
    level = run["hyperparameters"].get(axis)
    return levels.index(level) if level in levels else 0


def configuration_label(summary: Mapping[str, Any], hyperparameters: Mapping[str, Any],
                        optimizer: str | None = None) -> str:
    """"SGD, η = 0.1, B = 32": the optimizer and the varied hyperparameters only."""
    parts = [style.optimizer_label(optimizer)] if optimizer else []
    for axis in varied_axes(summary):
        if axis != "optimizer" and axis in hyperparameters:
            parts.append(f"{style.axis_symbol(axis)} = {hyperparameters[axis]:g}")
    return ", ".join(parts)


def runs_with(summary: Mapping[str, Any], *path: str) -> list[dict]:
    """Runs (that did not diverge) whose record has something at `path`."""
    return [r for r in ok_runs(summary) if get_path(r, *path)]


def first_per_optimizer(summary: Mapping[str, Any], *path: str) -> list[dict]:
    """For each optimizer, its first run (in the summary's order) that has something at `path`."""
    chosen: dict[str, dict] = {}
    for run in runs_with(summary, *path):
        chosen.setdefault(run["optimizer"], run)
    return [chosen[o] for o in optimizers(summary) if o in chosen]


def claims_by_verdict(summary: Mapping[str, Any], verdict: str) -> list[dict]:
    return [c for c in summary["claims"] if c["verdict"] == verdict]


def dinh_quantities(summary: Mapping[str, Any]) -> list[str]:
    """What the rescaling rows measured: the Hessian quantities, the sharpness measures, accuracy."""
    wanted = ["top_eigenvalue", "trace", *measures(summary, "sharpness"), "test_accuracy"]
    return [q for q in wanted if any(isinstance(r.get(q), (int, float)) for r in summary["dinh"])]


def run_by_hash(summary: Mapping[str, Any], run_hash: str) -> dict | None:
    return next((r for r in summary["runs"] if r["run"] == run_hash), None)



def _hyperparameter_key(hyperparameters: Mapping[str, Any]) -> list:
    return sorted(hyperparameters.items())


def ordered_configurations(summary: Mapping[str, Any]) -> list[dict]:
    """Configurations by optimizer (study order), then by their hyperparameters."""
    order = {o: i for i, o in enumerate(optimizers(summary))}
    return sorted(summary.get("configurations") or [], key=lambda c: (
        order.get(c["optimizer"], len(order)), _hyperparameter_key(c["hyperparameters"])))


def ordered_runs(summary: Mapping[str, Any]) -> list[dict]:
    """Runs by optimizer (study order), hyperparameters, then seed."""
    order = {o: i for i, o in enumerate(optimizers(summary))}
    return sorted(summary["runs"], key=lambda r: (
        order.get(r["optimizer"], len(order)), _hyperparameter_key(r["hyperparameters"]), r["seed"]))
