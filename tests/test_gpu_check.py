"""scripts/gpu_check.sh end to end on the CPU with --small: every step runs and its results land
in one folder (on a GPU machine the same script measures the real thing)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_end_to_end_on_cpu_with_small(tmp_path):
    if not (REPO / ".stamps" / "venv").exists():
        pytest.skip("needs the project's venv (make venv)")
    out = tmp_path / "out"
    done = subprocess.run([str(REPO / "scripts" / "gpu_check.sh"), "--small", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                                                              "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["profile"] == "tiny" and result["runs"] == 12 and result["tests_exit_status"] == 0
    assert {"pyhessian_over_ours", "curvlinops_over_ours"} <= set(result["bench_headline"])
    for name in ("bench.json", "bench.md", "summary.json", "report.md", "tests.xml", "steps.log", "environment.txt"):
        assert (out / name).exists(), name
    assert "environment ok" in (out / "environment.txt").read_text()


def test_gpu_check_refuses_bad_arguments(tmp_path):
    done = subprocess.run([str(REPO / "scripts" / "gpu_check.sh"), "--fast"], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown argument --fast" in done.stderr
    done = subprocess.run([str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True)
    assert done.returncode == 2 and "--out DIR is required" in done.stderr
