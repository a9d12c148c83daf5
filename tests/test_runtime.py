import subprocess
import sys

import pytest
import torch

from minima import runtime
from testkit import REPO


def test_parallel_jobs_reads_make_flags():
    assert runtime.parallel_jobs("") == 1
    assert runtime.parallel_jobs("-j4 --jobserver-auth=3,4") == 4
    assert runtime.parallel_jobs("w -j3") == 3


def test_device_auto_is_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.select_device("auto").type == expected
    assert runtime.default_profile() == ("paper" if expected == "cuda" else "quick")


def test_environment_names_versions():
    env = runtime.environment(torch.device("cpu"))
    assert env["torch"] == torch.__version__.split("+")[0] and env["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine imports torch to name its device")
def test_device_kind_and_environment_need_no_torch_on_a_machine_without_a_gpu_driver(monkeypatch):
    """What `plan` and `summarize` ask: the same answers as torch gives, from a process that never
    imports it (OMP_NUM_THREADS unset: the thread count is the make -j rule, as configure_threads sets it)."""
    if runtime.gpu_driver_present():
        pytest.skip("a GPU driver is installed: device_kind asks torch")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MAKEFLAGS": "-j2"}
    code = ("import json, sys; from minima import runtime; "
            "print(json.dumps([runtime.device_kind('auto'), runtime.device_kind('cpu'), runtime.default_profile(), "
            "runtime.environment('cpu'), 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    kind, cpu, profile, env_record, imported = json.loads(done.stdout)
    assert (kind, cpu, profile, imported) == ("cpu", "cpu", "quick", False)
    monkeypatch.setenv("MAKEFLAGS", "-j2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = torch.get_num_threads()
    try:
        runtime.configure_threads()
        in_torch = runtime.environment(torch.device("cpu"))
    finally:
        torch.set_num_threads(previous)
    assert {k: v for k, v in env_record.items() if k != "argv"} == {k: v for k, v in in_torch.items() if k != "argv"}


def test_thread_count_follows_omp_num_threads_then_the_make_jobs(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.thread_count() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("MAKEFLAGS", "-j1")
    assert runtime.thread_count() == max(1, runtime.os.cpu_count() or 1)
    monkeypatch.setenv("MAKEFLAGS", f"-j{4 * (runtime.os.cpu_count() or 1)}")
    assert runtime.thread_count() == 1


def test_progress_bars_only_on_a_terminal_and_never_when_switched_off(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("MINIMA_PROGRESS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(runtime.sys, "stderr", Stream(True))
    assert runtime.show_progress() and not runtime.show_progress(False)
    monkeypatch.setenv("MINIMA_PROGRESS", "0")
    assert not runtime.show_progress()
    monkeypatch.delenv("MINIMA_PROGRESS")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not runtime.show_progress()
    monkeypatch.delenv("TQDM_DISABLE")
    monkeypatch.setattr(runtime.sys, "stderr", Stream(False))
    assert not runtime.show_progress()


def test_float32_on_a_gpu_is_not_tf32():
    """The flags are process-wide torch settings, so the test sets them back afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        runtime.configure_device(torch.device("cpu"))
        assert torch.backends.cuda.matmul.allow_tf32  # a CPU run changes nothing
        runtime.configure_device(torch.device("cuda"))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
