"""`python -m minima check` (make ENV=system): one line naming what is missing or too old."""

import subprocess
import sys

import pytest

from minima import environment
from minima.io import MinimaError
from testkit import REPO


def test_this_environment_passes():
    assert environment.problems() == []
    environment.check_environment()


def test_missing_and_old_packages_are_named_in_one_line(monkeypatch):
    required = {"torch": ("torch", "99.0"), "numpy": ("numpy", "1.0"), "no_such_module_xyz": ("no-such-package", "1.0")}
    found = environment.problems(required)
    assert found[0].startswith("torch ") and "is older than 99.0" in found[0]
    assert found[1] == "no-such-package (>= 1.0) is missing (ModuleNotFoundError)"
    monkeypatch.setattr(environment, "REQUIRED", required)
    with pytest.raises(MinimaError) as info:
        environment.check_environment()
    assert "\n" not in str(info.value) and "no-such-package" in str(info.value)


def test_the_check_command_fails_in_one_line_where_torch_cannot_import(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('blocked for this test')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "minima", "check"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("minima: error: this Python cannot run minima: torch (>= 2.4) is missing")
    assert done.stderr.count("\n") == 1
