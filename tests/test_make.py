"""`make ... ENV=system`: an existing Python (here the venv's interpreter, standing in for a
user's conda or CUDA environment) runs everything, and no venv is created."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the tracked (and new, not ignored) files: no .venv, no .stamps."""
    if not (REPO / ".stamps" / "venv").exists():
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


def test_make_all_with_env_system_uses_that_python_and_makes_no_venv(checkout, tmp_path):
    done = _make(checkout, "all", "PROFILE=tiny", f"ROOT={tmp_path}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (checkout / ".venv").exists() and "pip install" not in done.stdout
    assert (tmp_path / "build" / "summary.json").exists() and (tmp_path / "build" / "report.md").exists()
    assert "minima: environment ok" in done.stdout


def test_make_test_with_env_system_runs_the_suite_with_that_python(checkout):
    done = _make(checkout, "test", "TESTS=tests/test_io.py", "PROFILE=tiny")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " passed" in done.stdout or "passed" in done.stdout.splitlines()[-1] or done.stdout.strip().endswith("]")
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
