"""Flat exports of the summary: build/runs.csv (one row per run) and build/claims.csv (one row per
claim), for pandas, spreadsheets and experiment trackers.

Every cell is a value of summary.json, unformatted (fractions stay fractions, numbers keep their
full precision, missing values are empty cells); column names are the summary's field names,
nested ones joined by dots (`values.top_eigenvalue`, `hyperparameters.lr`). A test reads both
files back and compares them with the summary.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from minima.io import write_text
from minima.schema import Summary

RUN_FIELDS = ("run", "configuration", "dataset", "model", "optimizer", "seed", "status", "converged", "epochs",
              "epochs_to_fit", "stop_reason", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
              "test_accuracy", "generalization_gap", "gap_stderr", "weight_norm", "distance_from_init",
              "train_seconds", "train_core_seconds")
CLAIM_FIELDS = ("id", "source", "claim", "test", "statistic", "unit", "value", "ci95", "n_clusters", "n", "method",
                "p", "p_min", "p_holm", "verdict", "reason", "rule_kind", "rule", "note")


def _cell(value: Any) -> Any:
    """A CSV cell: numbers and strings as they are, lists as JSON, missing as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def run_rows(summary: Summary) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): the run's own fields (its training's wall and core-seconds among them), each
    analysis stage's wall and core-seconds, then every varied hyperparameter, then every value the
    statistics rank (measures, baselines, targets); every dataset's runs (the `dataset` column) when
    the profile is a replication."""
    runs = [run for study in summary.studies() for run in study.runs]
    hyper = list(dict.fromkeys(k for r in runs for k in r.hyperparameters))
    values = list(dict.fromkeys(k for r in runs for k in r.values))
    stages = list(dict.fromkeys(k for r in runs for k in r.analysis_seconds))
    columns = [*RUN_FIELDS, *(f"analysis_seconds.{k}" for k in stages), *(f"analysis_core_seconds.{k}" for k in stages),
               *(f"hyperparameters.{k}" for k in hyper), *(f"values.{k}" for k in values)]
    rows = [{**{f: getattr(r, f) for f in RUN_FIELDS},
             **{f"analysis_seconds.{k}": r.analysis_seconds.get(k) for k in stages},
             **{f"analysis_core_seconds.{k}": r.analysis_core_seconds.get(k) for k in stages},
             **{f"hyperparameters.{k}": r.hyperparameters.get(k) for k in hyper},
             **{f"values.{k}": r.values.get(k) for k in values}} for r in runs]
    return columns, rows


def claim_rows(summary: Summary) -> tuple[list[str], list[dict[str, Any]]]:
    """Every claim on every dataset (one row each), the dataset first."""
    return ["dataset", *CLAIM_FIELDS], [{"dataset": study.data.dataset, **{f: getattr(c, f) for f in CLAIM_FIELDS}}
                                         for study in summary.studies() for c in study.claims]


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def write_exports(summary: Summary, out_dir: Path) -> tuple[Path, Path]:
    """build/runs.csv and build/claims.csv, each written atomically."""
    runs = write_text(Path(out_dir) / "runs.csv", csv_text(*run_rows(summary)))
    claims = write_text(Path(out_dir) / "claims.csv", csv_text(*claim_rows(summary)))
    return runs, claims
