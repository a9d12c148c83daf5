"""Executors: one plan (`build/plan.json`, written by `python -m minima plan`), three ways to run it.

- `local` (default): GNU make runs `build/plan.mk`, generated from the same plan, with -j JOBS;
- `dask`: the pending tasks go to a Dask cluster: the scheduler at DASK_SCHEDULER_ADDRESS (or
  --scheduler), else a LocalCluster on 127.0.0.1 (`minima.executors.dask`);
- `slurm`: a dask-jobqueue SLURMCluster configured from the user's Dask config
  (`minima.executors.slurm`).

Every task is idempotent (its stages skip current work), so executors may run a task twice
without harm; results come back through the shared run root, never through the executor.
docs/scaling.md says how to set each one up, and what happens when a task or a worker fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

from minima.io import MinimaError
from minima.pipeline import Context
from minima.plan import Plan, read_plan, recipe_word


def load(ctx: Context, profile_ref: str | None = None) -> Plan:
    """The plan of `profile_ref` (default: the context's profile; a replication profile's plan
    holds every member's tasks and is executed from its primary member's context)."""
    ref = profile_ref or ctx.profile.ref
    path = ctx.layout.plan
    if not path.exists():
        raise MinimaError(f"no plan at {path}: run `python -m minima plan --profile {ref}` first (make all does)")
    plan = read_plan(path)
    if plan.profile != ref:
        raise MinimaError(f"{path} is the plan of profile {plan.profile!r}, not {ref!r}: plan again")
    return plan


def default_jobs() -> int:
    return os.cpu_count() or 1


def execute(ctx: Context, *, executor: str, jobs: int = 0, scheduler: str | None = None,
            plan_ref: str | None = None) -> None:
    plan = load(ctx, plan_ref)
    jobs = jobs or default_jobs()
    if executor == "local":
        run_local(ctx, jobs)
    elif executor == "dask":
        from minima.executors.dask import run_dask

        run_dask(ctx, plan, jobs=jobs, scheduler=scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"))
    elif executor == "slurm":
        from minima.executors.slurm import run_slurm

        run_slurm(ctx, plan, jobs=jobs)
    else:
        raise MinimaError(f"unknown executor {executor!r}; choose local, dask or slurm")


def run_local(ctx: Context, jobs: int) -> None:
    """make -j over build/plan.mk; the recipes call this interpreter (its path quoted for the
    shell and `$` doubled, as make expands a variable given on its command line)."""
    minima = f"{recipe_word(sys.executable)} -m minima"
    command = ["make", "--no-print-directory", f"-j{jobs}", "-f", str(ctx.layout.plan_makefile), f"MINIMA={minima}", "all-runs"]
    # plan.mk's make is not a sub-make of `make all`: MAKEFLAGS would hand it the user's PROFILE=
    # and ROOT= as its own command-line variables, which it expands (a `$(shell ...)` in a path
    # ran there), and -j here sets its parallelism anyway
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    env["MINIMA_ROOT"] = str(ctx.layout.root)
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        raise MinimaError(f"some tasks failed (make exited {done.returncode}); their errors are above")
