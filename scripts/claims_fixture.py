"""Extract what the claims read from a built summary into a test fixture.

    python scripts/claims_fixture.py build/summary.json tests/data/quick_claims.json

The fixture keeps, per run, the fields the claims and correlations use (identity, grid position,
convergence, validation accuracy, every ranked value) and, per claim, the verdict and p-values the
analysis wrote; tests/test_claims.py recomputes the correlations and the claims from it and
checks that they come out the same under any random state and run order. Regenerate it after a
change that is meant to move a verdict (and say so in the commit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RUN_FIELDS = ("run", "configuration", "optimizer", "seed", "status", "converged", "hyperparameters", "levels",
              "val_accuracy", "val_loss", "values")
SUMMARY_FIELDS = ("profile", "git_commit", "design", "measure_kinds", "measures", "optimizers", "data", "dinh", "dinh_info")


def extract(summary: dict) -> dict:
    return {
        **{key: summary[key] for key in SUMMARY_FIELDS},
        "runs": [{key: run[key] for key in RUN_FIELDS} for run in summary["runs"]],
        "expected": [{key: claim[key] for key in ("id", "verdict", "p", "p_holm", "value")} for claim in summary["claims"]],
    }


def main() -> None:
    source, target = map(Path, sys.argv[1:3])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(extract(json.loads(source.read_text())), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
