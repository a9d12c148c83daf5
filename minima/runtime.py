"""Device, dtype and environment facts, chosen explicitly and recorded with every result.

torch is imported only where a tensor, a device object or the GPU itself is needed: the stages
that only plan, dispatch or summarize (`plan`, `execute`, `summarize`, `build`'s three) ask
`device_kind` and `environment`, which answer without it on a machine with no GPU driver.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Device nodes a GPU driver creates (NVIDIA's; AMD's for ROCm builds of torch): without one of
# them torch.cuda.is_available() is False, so asking torch (a 2 s import) can be skipped.
GPU_DRIVER_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version", "/dev/kfd")


def gpu_driver_present() -> bool:
    return any(Path(node).exists() for node in GPU_DRIVER_NODES)


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def device_kind(choice: str = "auto") -> str:
    """"cuda" or "cpu": what select_device(choice) gives, without importing torch where no GPU
    driver is installed (then CUDA cannot be available)."""
    if choice == "cpu" or (choice == "auto" and not gpu_driver_present()):
        return "cpu"
    return select_device(choice).type


def select_device(choice: str = "auto") -> torch.device:
    import torch

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        from minima.io import MinimaError

        raise MinimaError("device = 'cuda' was asked for but CUDA is not available; use device = 'auto' or 'cpu'")
    return torch.device(choice)


def configure_device(device: torch.device) -> None:
    """float32 means float32 on GPUs too: TF32 matmuls and convolutions (10-bit mantissas) would
    put errors of about 1e-3 into Hessian-vector products, the size of the Lanczos tolerance."""
    if device.type == "cuda":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def show_progress(requested: bool = True) -> bool:
    """Progress bars only on a terminal, and never with MINIMA_PROGRESS=0 (`make all PROGRESS=0`)
    or TQDM_DISABLE set: in a log, one plain line per epoch or stage says the same."""
    if not requested or os.environ.get("MINIMA_PROGRESS", "1") == "0" or os.environ.get("TQDM_DISABLE"):
        return False
    return sys.stderr.isatty()


def default_profile() -> str:
    return "paper" if device_kind("auto") == "cuda" else "quick"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(repo: str | os.PathLike) -> tuple[str, bool]:
    """(commit, dirty) of the code that produced the results; ('unknown', False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, check=True).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def environment(device: torch.device | str) -> dict:
    """The software and hardware a stage ran on. `device`: a torch.device, or a device_kind;
    on the CPU, with torch not yet imported, its version comes from the installed package's
    metadata and the thread count from the rule configure_threads applies."""
    on_gpu = str(device).startswith("cuda")
    if on_gpu or "torch" in sys.modules:
        import torch

        version, threads = torch.__version__, torch.get_num_threads()
    else:
        version, threads = _installed_torch_version(), thread_count()
    return {
        "python": platform.python_version(),
        "torch": version.split("+")[0],
        "cuda": torch.version.cuda if on_gpu else None,
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "cpu": cpu_name(),
        "platform": platform.platform(terse=True),
        "threads": threads,
        "argv": " ".join(sys.argv),
    }


def _installed_torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:  # a torch without package metadata: ask it
        import torch

        return torch.__version__


def parallel_jobs(makeflags: str | None = None) -> int:
    """How many processes `make -j N` may run at once (1 outside make)."""
    flags = os.environ.get("MAKEFLAGS", "") if makeflags is None else makeflags
    for word in flags.split():
        if word.startswith("-j") and word[2:].isdigit():
            return int(word[2:])
        if word == "-j":  # unbounded: assume one process per core
            return os.cpu_count() or 1
    return 1


def thread_count() -> int:
    """The threads torch runs on in a stage process: OMP_NUM_THREADS where it is set (torch reads
    it), else the cores shared among `make -j`'s processes."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, (os.cpu_count() or 1) // parallel_jobs())


def configure_threads() -> int:
    """Share the cores among `make -j` processes; oversubscribed CPU threads slow torch badly."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    threads = thread_count()
    torch.set_num_threads(threads)
    return threads
