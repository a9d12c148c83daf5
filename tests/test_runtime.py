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
