import torch

from minima import runtime


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
