"""build/runs.csv and build/claims.csv hold the summary's values, one row per run and per claim."""

import csv
import io

import pytest

from report import export
from variants import typed


def _read(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _number(cell: str):
    return None if cell == "" else float(cell)


def test_runs_csv_matches_the_summary(tiny_summary):
    columns, rows = export.run_rows(typed(tiny_summary))
    read = _read(export.csv_text(columns, rows))
    assert [r["run"] for r in read] == [r["run"] for r in tiny_summary["runs"]]
    for row, run in zip(read, tiny_summary["runs"]):
        assert row["optimizer"] == run["optimizer"] and row["converged"] == str(run["converged"])
        assert _number(row["test_accuracy"]) == run["test_accuracy"]  # full precision, a fraction
        assert _number(row["val_accuracy"]) == run["val_accuracy"]
        assert _number(row["hyperparameters.lr"]) == run["hyperparameters"]["lr"]
        assert _number(row["train_seconds"]) == pytest.approx(run["train_seconds"], rel=1e-15)
        assert _number(row["train_core_seconds"]) == run.get("train_core_seconds")  # None: cached before it was kept
        for stage, seconds in run["analysis_seconds"].items():
            assert _number(row[f"analysis_seconds.{stage}"]) == pytest.approx(seconds, rel=1e-15)
            core = (run.get("analysis_core_seconds") or {}).get(stage)
            assert _number(row[f"analysis_core_seconds.{stage}"]) == (None if core is None else pytest.approx(core, rel=1e-15))
        for name, value in run["values"].items():
            assert _number(row[f"values.{name}"]) == (None if value is None else pytest.approx(value, rel=1e-15))


def test_claims_csv_matches_the_summary(tiny_summary, tmp_path):
    runs_path, claims_path = export.write_exports(typed(tiny_summary), tmp_path)
    read = _read(claims_path.read_text())
    assert runs_path.name == "runs.csv" and len(_read(runs_path.read_text())) == len(tiny_summary["runs"])
    assert [(r["id"], r["verdict"], r["reason"]) for r in read] == [
        (c["id"], c["verdict"], c["reason"]) for c in tiny_summary["claims"]]
    for row, claim in zip(read, tiny_summary["claims"]):
        assert _number(row["p_holm"]) == claim["p_holm"] and _number(row["value"]) == claim["value"]
