"""The SLURM executor: the Dask driver of `minima.executors.dask` on a dask-jobqueue SLURMCluster.

Everything about the jobs comes from the user's Dask config (`jobqueue.slurm.*` in
~/.config/dask/jobqueue.yaml, or a directory named by DASK_CONFIG): queue, account, walltime,
cores, memory, job-extra-directives (GPUs), job-script-prologue, interface, scheduler-options.
Only what SLURMCluster cannot start without is filled in here: one core and one worker process
per job when `cores` / `processes` are unset; `memory` has no sensible default and must be set.

The cluster adapts between 0 and JOBS workers. Each worker retires before its job's walltime
(`--lifetime` = walltime less a margin, staggered so they do not all leave at once): its task
goes back to the scheduler and resumes from the run's checkpoint in a fresh job.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import threading

from minima.io import MinimaError
from minima.pipeline import Context
from minima.plan import Plan

CONFIG = "jobqueue.slurm"


def run_slurm(ctx: Context, plan: Plan, *, jobs: int) -> None:
    from minima.executors.dask import run_on

    if not plan.pending:
        print("slurm: nothing to do (every task of the plan is current)", file=sys.stderr)
        return
    if not shutil.which("sbatch"):
        raise MinimaError("EXECUTOR=slurm submits jobs with sbatch, which is not on PATH here: run make on a SLURM login node")
    cluster = slurm_cluster()
    try:
        cluster.adapt(minimum=0, maximum=jobs)
        from distributed import Client

        with Client(cluster) as client:
            script = cluster.job_script()
            run_on(ctx, plan, client, where=f"SLURM jobs (up to {jobs} workers, scheduler {cluster.scheduler_address})",
                   offers_gpu=offers_gpu(script), gpu_advice=GPU_ADVICE)
    finally:
        cluster.close()


GPU_ADVICE = ("the plan needs GPU workers (resources GPU=1); the workers of your jobqueue.slurm config offer none: "
              "add \"--resources GPU=1\" to jobqueue.slurm.worker-extra-args and a GPU request (e.g. \"--gres=gpu:1\") "
              "to job-extra-directives")


def slurm_cluster_class():
    """dask_jobqueue's SLURMCluster, with this process's Ctrl-C kept: importing dask_jobqueue
    makes SIGINT call sys.exit() (status 0, no message), so an interrupted sweep looked finished."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise MinimaError("EXECUTOR=slurm needs dask-jobqueue: pip install -r requirements.txt (make venv)") from None
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
    return SLURMCluster


def slurm_cluster():
    """A SLURMCluster from the Dask config, plus the worker lifetime and the few required defaults."""
    import dask

    SLURMCluster = slurm_cluster_class()
    from minima.executors.dask import _keep_allowed_failures

    _keep_allowed_failures()  # the scheduler is created here, in this process
    config = dask.config.get(CONFIG, default={}) or {}
    kwargs = slurm_options(config)
    try:
        return SLURMCluster(**kwargs)
    except ValueError as exc:
        raise MinimaError(f"dask-jobqueue refused the {CONFIG} config: {exc}") from None


def slurm_options(config: dict) -> dict:
    """SLURMCluster keyword arguments that complete (never replace) the user's config."""

    def get(name: str):
        return config.get(name, config.get(name.replace("-", "_")))

    if not get("memory"):
        raise MinimaError(f"set {CONFIG}.memory (memory per job, e.g. \"4GB\") in your Dask config "
                          "(~/.config/dask/jobqueue.yaml or $DASK_CONFIG): see docs/scaling.md")
    kwargs: dict = {}
    if get("cores") is None:
        kwargs["cores"] = 1
    if get("processes") is None:
        kwargs["processes"] = 1
    if get("python") is None:
        kwargs["python"] = sys.executable
    walltime = get("walltime")
    args = list(get("worker-extra-args") or [])
    if walltime and not any(str(arg).startswith("--lifetime") for arg in args):
        lifetime, stagger = worker_lifetime(parse_walltime(walltime))
        args += ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]
    kwargs["worker_extra_args"] = args
    return kwargs


def worker_lifetime(walltime_s: int) -> tuple[int, int]:
    """(lifetime, stagger) in seconds: the latest a worker can leave, lifetime + stagger, stays a
    grace period (5% of the walltime, at least a minute) before SLURM's walltime kill."""
    stagger = min(120, walltime_s // 20)
    grace = max(60, walltime_s // 20)
    lifetime = walltime_s - grace - stagger
    if lifetime < walltime_s // 2:  # walltimes of a few minutes: leave at half of it
        return max(1, walltime_s // 2), 0
    return lifetime, stagger


def parse_walltime(text: str) -> int:
    """SLURM's time formats in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    value = str(text).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value)
    if not match:
        raise MinimaError(f"{CONFIG}.walltime {text!r} is not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS)")
    days, a, b, c = match.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
    elif c is not None:  # H:M:S
        hours, minutes, seconds = int(a), int(b), int(c)
    elif b is not None:  # M:S
        hours, minutes, seconds = 0, int(a), int(b)
    else:  # M
        hours, minutes, seconds = 0, int(a), 0
    total = int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise MinimaError(f"{CONFIG}.walltime {text!r} is zero")
    return total


def offers_gpu(job_script: str) -> bool:
    """Whether the workers a job script starts advertise a GPU resource (--resources GPU=n)."""
    for match in re.finditer(r"--resources[= ]+[\"']?([^\s\"']+)", job_script):
        for item in match.group(1).split(","):
            name, _, amount = item.partition("=")
            if name.strip() == "GPU":
                try:
                    if float(amount) >= 1:
                        return True
                except ValueError:
                    pass
    return False
