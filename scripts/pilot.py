"""The learning-rate pilot: train a ladder of learning rates and read off validation optima.

    python scripts/pilot.py [--profile docs/pilot.toml] [--root /tmp/minima-pilot] [--jobs 2]

Trains every run of the profile (training only: `python -m minima train`, in `--jobs` processes
of one thread each), then writes ROOT/pilot.md and prints it: per optimizer, batch size and
learning rate, the mean validation accuracy over the seeds, how many seeds converged, and the
mean epochs to fit. The grid a profile takes from it should hold each (optimizer, batch size)'s
validation optimum strictly inside, converge every run within the epoch cap, and keep the
epochs (the cost) affordable. Nothing here reads the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minima.config import load_profile  # noqa: E402
from minima.plan import _training_cost  # noqa: E402


def train(profile: str, root: Path, jobs: int) -> None:
    runs = sorted(load_profile(profile).runs, key=_training_cost, reverse=True)
    shares = [runs[i::jobs] for i in range(jobs)]  # longest first, dealt round-robin
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for share in shares:
        args = [sys.executable, "-m", "minima", "train", "--profile", profile, "--root", str(root), "--no-progress"]
        for run in share:
            args += ["--run", run.run_hash]
        procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    if any(p.wait() for p in procs):
        raise SystemExit("pilot: a training process failed; rerun to resume")


def table(profile: str, root: Path) -> str:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for run in load_profile(profile).runs:
        metrics = json.loads((root / "runs" / run.run_hash / "metrics.json").read_text())
        cells[(run.optimizer.name, run.train.batch_size, run.optimizer.lr)].append(metrics)
    lines = ["| optimizer | B | lr | val acc % (mean over seeds) | converged | epochs to fit | best |",
             "|---|--:|--:|--:|--:|--:|:-:|"]
    best: dict[tuple, float] = {}
    for (name, batch, lr), group in cells.items():
        mean = statistics.fmean(m["final"]["val_accuracy"] for m in group)
        if mean > best.get((name, batch), (-1.0, 0))[0]:
            best[(name, batch)] = (mean, lr)
    for (name, batch, lr), group in sorted(cells.items()):
        val = statistics.fmean(m["final"]["val_accuracy"] for m in group)
        fitted = [m["epochs_to_fit"] for m in group if m["converged"]]
        epochs = f"{statistics.fmean(fitted):.1f}" if fitted else "–"
        mark = "*" if best[(name, batch)][1] == lr else ""
        lines.append(f"| {name} | {batch} | {lr:g} | {100 * val:.2f} | {len(fitted)}/{len(group)} | {epochs} | {mark} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=str(REPO / "docs" / "pilot.toml"))
    parser.add_argument("--root", type=Path, default=Path("/tmp/minima-pilot"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "minima", "plan", "--profile", args.profile, "--root", str(args.root)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    train(args.profile, args.root, args.jobs)
    text = table(args.profile, args.root)
    (args.root / "pilot.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
