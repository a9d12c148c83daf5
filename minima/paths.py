"""Every path the pipeline reads or writes, in one place.

The root defaults to the current working directory (the repo root under `make`), and can be
moved with the MINIMA_ROOT environment variable so tests run in a temporary directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"
REPO_DIR = PACKAGE_DIR.parent
TEMPLATES_DIR = REPO_DIR / "templates"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def figures(self) -> Path:
        return self.build / "figures"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def summary(self) -> Path:
        return self.build / "summary.json"

    @property
    def plan(self) -> Path:
        return self.build / "plan.json"

    @property
    def plan_makefile(self) -> Path:
        return self.build / "plan.mk"

    @property
    def study(self) -> Path:
        """Profile-level analyses (Dinh experiment, interpolation) live beside the runs."""
        return self.runs / "_study"

    def run_dir(self, run_hash: str) -> Path:
        return self.runs / run_hash


def layout(root: str | os.PathLike | None = None) -> Layout:
    chosen = root if root is not None else os.environ.get("MINIMA_ROOT", os.getcwd())
    return Layout(Path(chosen).resolve())


# Names of the per-run files, shared by the stages that write and the ones that read them.
CONFIG_JSON = "config.json"
METRICS_JSON = "metrics.json"
MODEL_PT = "model.pt"
CHECKPOINT_PT = "checkpoint.pt"
CURVATURE_JSON = "curvature.json"
SHARPNESS_JSON = "sharpness.json"
LANDSCAPE_JSON = "landscape.json"
EIGENVECTORS_PT = "eigenvectors.pt"
LOCK = ".lock"  # held while a process trains or analyses the run

# Runs per task of a plan at most (a configuration's seeds, with its learning-rate siblings while
# they fit): each task pays the interpreter, torch's import and the data load once. Here, with the
# other layout constants, so that the command line states the default without importing torch.
TASK_RUNS = 9
