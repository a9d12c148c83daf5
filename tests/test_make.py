"""`make ... ENV=system`: an existing Python (here the venv's interpreter, standing in for a
user's conda or CUDA environment) runs everything, and no venv is created."""

import ast
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testkit import HAVE_VENV, REPO, copy_study


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the tracked (and new, not ignored) files: no .venv, no .stamps."""
    if not HAVE_VENV:
        pytest.skip("needs the project's venv (make venv) to stand in for a system Python")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    target = tmp_path_factory.mktemp("checkout")
    for name in listed:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def _make(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(checkout), *args, "ENV=system", f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, timeout=1200)


def test_make_all_with_env_system_uses_that_python_and_makes_no_venv(checkout, tmp_path, tiny_build_root):
    """From the session's tiny study, less one run and the report: that run is trained again, and
    the summary and report are made, all by the Python given."""
    root = copy_study(tiny_build_root, tmp_path / "root", parts=("runs", "data", "build/figures"))  # current figures: not drawn again
    summary = json.loads((tiny_build_root / "build" / "summary.json").read_text())
    (run,) = [r for r in summary["runs"] if r["optimizer"] == "sgd_momentum" and r["seed"] == 1
              and r["hyperparameters"]["batch_size"] == 64]
    shutil.rmtree(root / "runs" / run["run"])
    done = _make(checkout, "all", "PROFILE=tiny", f"ROOT={root}", "PROGRESS=0", "PDF=0")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (checkout / ".venv").exists() and "pip install" not in done.stdout
    assert f"{sys.executable} -m minima build --profile" in done.stdout  # make's echo of its recipe
    assert re.search(r"\b1 tasks? pending", done.stdout), done.stdout[-2000:]
    assert done.stderr.count(" seed 1 epoch 1/") == 1 and done.stderr.count(" epoch 1/") == 1, done.stderr[-2000:]
    assert (root / "runs" / run["run"] / "model.pt").exists()
    assert (root / "build" / "summary.json").exists() and (root / "build" / "report.md").exists()
    assert "minima: environment ok" in done.stdout
    assert "--no-pdf" in done.stdout and not (root / "build" / "report.pdf").exists()  # PDF=0


@pytest.mark.parametrize("value", ["yes", "", "2"])
def test_a_bad_pdf_value_stops_make_in_one_line(value):
    done = subprocess.run(["make", "-n", "-C", str(REPO), "all", f"PDF={value}"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"PDF must be 0 or 1, got '{value}'" in done.stderr


def _tests_in(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_make_test_with_env_system_runs_the_suite_with_that_python(checkout, tmp_path, tiny_build_root):
    root = copy_study(tiny_build_root, tmp_path / "root", parts=("data",))  # `make test` prepares the data first
    junit = tmp_path / "io.xml"
    done = _make(checkout, "test", f"TESTS=tests/test_io.py --junitxml={junit}", "TEST_JOBS=1", "PROFILE=tiny", f"ROOT={root}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{sys.executable} -m pytest tests/test_io.py --junitxml={junit}" in done.stdout  # make's echo of its recipe
    # pytest's summary line, and its JUnit report: every test of test_io.py ran and passed
    counts = ET.parse(junit).getroot().find("testsuite").attrib
    cases = {case.attrib["name"].split("[")[0] for case in ET.parse(junit).getroot().iter("testcase")}
    assert cases == _tests_in(checkout / "tests" / "test_io.py")
    assert int(counts["failures"]) == int(counts["errors"]) == int(counts["skipped"]) == 0
    (summary,) = [line for line in done.stdout.splitlines() if re.search(r"\d+ \w+ in [\d.]+s", line)]
    assert re.fullmatch(rf"{counts['tests']} passed in [\d.]+s( \([\d:]+\))?", summary), done.stdout[-2000:]
    assert not (checkout / ".venv").exists()


def test_a_python_without_torch_is_named_in_one_line(checkout, tmp_path):
    blocker = tmp_path / "blocked"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text("raise ImportError('not installed here')\n")
    done = subprocess.run(["make", "-C", str(checkout), "all", "ENV=system", f"PYTHON={sys.executable}", "PROFILE=tiny",
                           f"ROOT={tmp_path / 'root'}"], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(blocker), "HOME": str(tmp_path)})
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("minima: error:")]
    assert errors == ["minima: error: this Python cannot run minima: torch (>= 2.4) is missing (ImportError) "
                      "(install them, or use the default ENV=venv, which installs pinned versions)"]
    assert not (tmp_path / "root").exists()
