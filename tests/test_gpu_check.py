"""scripts/gpu_check.sh end to end on the CPU with --small: every step runs and its results land
in one folder (on a GPU machine the same script measures the real thing)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from testkit import HAVE_VENV, NEEDS_VENV, SCRIPTS, copy_study

BENCH_SAMPLES = 128


def test_gpu_check_runs_end_to_end_on_cpu_with_small(tmp_path, tiny_build_root):
    """From a copy of the session's tiny study (less one run, trained again by the profile step),
    the bench's measurement section alone (--small; the full script benches every section)."""
    if not HAVE_VENV:
        pytest.skip(NEEDS_VENV)
    out = tmp_path / "out"
    # the figures too: the retrained run is bit for bit the same, so the report finds them current
    # (figure drawing is tested on the session's build; here it would cost 13 s of CPU again)
    root = copy_study(tiny_build_root, out / "root", parts=("runs", "data", "build/figures"))
    summary = json.loads((tiny_build_root / "build" / "summary.json").read_text())
    (run,) = [r for r in summary["runs"] if r["optimizer"] == "sgd_momentum" and r["seed"] == 0
              and r["hyperparameters"]["batch_size"] == 32]
    shutil.rmtree(root / "runs" / run["run"])
    # the session's program store (conftest): the bench and the retrained run load the traced
    # Hessian-vector program instead of tracing it again (about 3 s of CPU each)
    store = {"MINIMA_PROGRAM_STORE": os.environ["MINIMA_PROGRAM_STORE"]} if "MINIMA_PROGRAM_STORE" in os.environ else {}
    done = subprocess.run([str(SCRIPTS / "gpu_check.sh"), "--small", "--samples", str(BENCH_SAMPLES), "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                                                              "HOME": str(tmp_path), **store})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["profile"] == "tiny" and result["runs"] == 12 and result["tests_exit_status"] == 0
    assert result["bench_sections"] == ["measurement"] and result["measurement_headline"]  # --small
    assert result["core_timing"]["total"] > 0
    for name in ("bench.json", "bench.md", "summary.json", "report.md", "tests.xml", "steps.log", "environment.txt"):
        assert (out / name).exists(), name
    assert "environment ok" in (out / "environment.txt").read_text()
    steps = (out / "steps.log").read_text()
    assert f"bench on {BENCH_SAMPLES} training images" in steps and "profile tiny" in steps
    assert (root / "runs" / run["run"] / "model.pt").exists()  # the profile step trained the missing run
    assert "seed 0 epoch 1/" in (out / "profile.log").read_text()


def test_gpu_check_refuses_bad_arguments(tmp_path):
    done = subprocess.run([str(SCRIPTS / "gpu_check.sh"), "--fast"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument --fast" in done.stderr
    done = subprocess.run([str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True)
    assert done.returncode == 2 and "--out DIR is required" in done.stderr
    for samples in (["--samples", "0"], ["--samples", "many"], ["--samples"]):
        done = subprocess.run([str(SCRIPTS / "gpu_check.sh"), "--out", str(tmp_path / "out"), *samples],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "--samples" in done.stderr, samples
    assert not (tmp_path / "out").exists()
