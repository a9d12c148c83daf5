"""Device, dtype and environment facts, chosen explicitly and recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def select_device(choice: str = "auto") -> torch.device:
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
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def show_progress(requested: bool = True) -> bool:
    """Progress bars only on a terminal, and never with MINIMA_PROGRESS=0 (`make all PROGRESS=0`)
    or TQDM_DISABLE set: in a log, one plain line per epoch or stage says the same."""
    if not requested or os.environ.get("MINIMA_PROGRESS", "1") == "0" or os.environ.get("TQDM_DISABLE"):
        return False
    return sys.stderr.isatty()


def default_profile() -> str:
    return "paper" if torch.cuda.is_available() else "quick"


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


def environment(device: torch.device) -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__.split("+")[0],
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu_name(),
        "platform": platform.platform(terse=True),
        "threads": torch.get_num_threads(),
        "argv": " ".join(sys.argv),
    }


def parallel_jobs(makeflags: str | None = None) -> int:
    """How many processes `make -j N` may run at once (1 outside make)."""
    flags = os.environ.get("MAKEFLAGS", "") if makeflags is None else makeflags
    for word in flags.split():
        if word.startswith("-j") and word[2:].isdigit():
            return int(word[2:])
        if word == "-j":  # unbounded: assume one process per core
            return os.cpu_count() or 1
    return 1


def configure_threads() -> int:
    """Share the cores among `make -j` processes; oversubscribed CPU threads slow torch badly."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    threads = max(1, (os.cpu_count() or 1) // parallel_jobs())
    torch.set_num_threads(threads)
    return threads
