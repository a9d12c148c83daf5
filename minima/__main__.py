"""Command line: `python -m minima <stage> --profile NAME [...]`. Every stage skips work whose
outputs are current, so rerunning is cheap and an interrupted run resumes.

Errors are one line on stderr and exit status 2 (an unexpected one too: its traceback only
with --debug); an interrupt exits 130 (Ctrl-C) or 143 (SIGTERM) with one line, and the next
call resumes.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

from minima.interrupts import EXIT_STATUS, Terminated, sigterm_raises
from minima.io import MinimaError
from minima.paths import TASK_RUNS

STAGES = {
    "data": "provision the profile's data set (offline sources first) and verify its checksums",
    "plan": "write each run's config.json, build/plan.json and build/plan.mk (the work still to do)",
    "train": "train the given runs to the stop rule (resumes from the last checkpoint)",
    "curvature": "Hessian top eigenvalues, trace, spectral density, gradient norm of the given runs",
    "sharpness": "sharpness measures of the given runs",
    "landscape": "1-D/2-D loss landscapes of the given runs",
    "run": "train + curvature + sharpness + landscape of the given runs",
    "study": "profile-level analyses: Dinh's rescaling experiment and the interpolation between minima",
    "execute": "run the plan's pending tasks with an executor (local make, a Dask cluster, or SLURM)",
    "build": "plan, execute and summarize in one process: what `make all` runs before it renders the report",
    "summarize": "collect every result and the analysis into build/summary.json (never trains or changes runs/; lists what is missing or corrupt)",
    "check": "check that this Python has what minima needs (torch >= 2.4, numpy, scipy, ...); one line per problem",
    "bench": "curvature and training benchmarks against PyHessian and curvlinops -> build/bench.{json,md}",
}


BUILD_STAGES = ("plan", "execute", "summarize")
# The stages that run torch (and share the cores among make -j's processes); the others never
# import it: planning, dispatching and summarizing cost no torch import (about 2 s of CPU each)
COMPUTING_STAGES = ("train", "curvature", "sharpness", "landscape", "run", "study", "bench")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m minima",
        description="Which minima do optimizers find, how sharp are they, and does sharpness predict generalization?",
        epilog="Profiles: quick (CPU default), paper (GPU default), seed (the original study), fashion (quick's design on "
        "Fashion-MNIST), replicate (quick and fashion in one plan, summary and report), tiny (tests), or a .toml path. "
        "`make all PROFILE=...` runs every stage in order. Traced Hessian-vector programs are kept between processes in "
        "~/.cache/minima/programs ($MINIMA_PROGRAM_STORE names another directory; set to empty: none kept).",
    )
    top.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    sub = top.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, help_text in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        stage.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of an unexpected error")
        if name == "check":
            continue
        stage.add_argument("--profile", default="auto", help="profile name or .toml path (default: auto = paper with CUDA, else quick)")
        stage.add_argument("--root", default=None, help="directory holding runs/, build/, data/ (default: current directory or $MINIMA_ROOT)")
        stage.add_argument("--no-progress", action="store_true", help="no progress bars (they show only on a terminal anyway)")
        if name in ("data", "plan", "build"):
            stage.add_argument("--data-dir", type=Path, default=None, help="a directory with the four IDX files (train-images-idx3-ubyte, ...)")
        if name in ("plan", "build"):
            stage.add_argument("--task-runs", type=int, default=TASK_RUNS, metavar="N",
                               help="group configurations that differ only in learning rate into tasks of at most N runs "
                                    "(default %(default)s: a configuration's seeds with its learning-rate siblings; 1: one task per configuration)")
        if name in ("train", "curvature", "sharpness", "landscape", "run"):
            stage.add_argument("--run", action="append", default=None, metavar="HASH", help="run hash (repeatable; default: every run of the profile)")
        if name == "study":
            stage.add_argument("--kind", action="append", choices=("dinh", "interpolation"), default=None,
                               help="which part (repeatable; default: every part the profile asks for)")
        if name in ("execute", "build"):
            stage.add_argument("--executor", choices=("local", "dask", "slurm"), default="local",
                               help="local: make -j; dask: DASK_SCHEDULER_ADDRESS or a LocalCluster; slurm: dask-jobqueue")
            stage.add_argument("--jobs", type=int, default=0, help="parallel tasks / workers (default: one per core)")
            stage.add_argument("--scheduler", default=None, help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS)")
        if name in ("summarize", "build"):
            stage.add_argument("--created-by", nargs="+", default=None, metavar="WORD",
                               help="the command recorded as having produced the results, one argument per word "
                                    "(recorded quoted as a shell needs it), or as one string")
        if name == "bench":
            stage.add_argument("--out", type=Path, default=None, help="directory for bench.json and bench.md (default: ROOT/build)")
            stage.add_argument("--samples", type=int, default=0, help="training images for curvature timing (default: 60000 on GPU, 5000 on CPU)")
            stage.add_argument("--section", action="append", choices=("measurement", "curvature", "training"), default=None,
                               help="which part (repeatable; default: all): measurement = one run's curvature and sharpness "
                                    "stages, stage by stage; curvature = the engine against PyHessian and curvlinops; "
                                    "training = training throughput and CPU layouts")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C: temporary files go, locks are released
            _dispatch(args)
    except MinimaError as exc:
        print(f"minima: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        terminated = isinstance(exc, Terminated)
        print(f"minima: {'terminated' if terminated else 'interrupted'}; finished work is saved and the next call resumes",
              file=sys.stderr)
        return EXIT_STATUS[signal.SIGTERM if terminated else signal.SIGINT]
    except Exception as exc:  # the last resort: one line, the traceback only on request
        if getattr(args, "debug", False):
            traceback.print_exc()
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
        print(f"minima: unexpected error: {type(exc).__name__}: {exc}{at}; rerun with --debug for the traceback", file=sys.stderr)
        return 2
    if args.stage not in ("plan", "check"):
        print(f"minima {args.stage}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def _dispatch(args: argparse.Namespace) -> None:
    if args.stage == "build":
        # one interpreter for the three stages: each would pay torch's import (about 2 s of CPU) again
        for stage in BUILD_STAGES:
            _dispatch(argparse.Namespace(**{**vars(args), "stage": stage}))
        return
    if args.stage == "check":
        from minima.environment import check_environment

        check_environment()
        print("minima: environment ok")
        return
    from minima import pipeline
    from minima.runtime import configure_threads, show_progress

    if args.stage in COMPUTING_STAGES:
        configure_threads()
    from minima import replication

    composite = replication.load_replication(args.profile)
    if composite is not None:
        replication.dispatch(composite, args, progress=show_progress(not args.no_progress),
                             created_by=_command_text(getattr(args, "created_by", None)))
        return
    # summarize (all that `make report` runs before rendering) never changes runs/: it lists what
    # is corrupt instead of moving it aside
    ctx = pipeline.open_context(args.profile, root=args.root, data_dir=getattr(args, "data_dir", None),
                                progress=show_progress(not args.no_progress), warn=args.stage == "plan",
                                repair=args.stage != "summarize")
    if args.stage in ("data", "plan"):  # plan provisions the data first: `make all` starts with it
        manifest = pipeline.stage_data(ctx)
        print(pipeline.data_line(manifest))
        if args.stage == "plan":
            from minima.plan import write_plan

            if args.task_runs < 1:
                raise MinimaError(f"--task-runs: must be >= 1, got {args.task_runs}")
            pipeline.write_run_configs(ctx)
            plan = write_plan(ctx, task_runs=args.task_runs)
            configurations = len({r.configuration for r in ctx.profile.runs})
            print(f"profile {ctx.profile.ref}: {len(ctx.profile.runs)} runs in {configurations} configurations, "
                  f"{len(plan.tasks)} tasks, {len(plan.pending)} tasks pending")
        return
    if args.stage == "execute":
        from minima.executors import execute

        execute(ctx, executor=args.executor, jobs=args.jobs, scheduler=args.scheduler)
        return
    if args.stage == "study":
        from minima import stages

        stages.stage_study(ctx, kinds=args.kind)
        return
    if args.stage == "summarize":
        from minima import analysis

        path = analysis.write_summary(ctx, created_by=_command_text(args.created_by))
        print(f"wrote {path}")
        return
    if args.stage == "bench":
        from minima import bench

        bench.main(ctx, out=args.out or ctx.layout.build, samples=args.samples, sections=args.section)
        return
    from minima import stages  # torch: only the stages that compute import it

    runs = [ctx.profile.run(h) for h in args.run] if args.run else list(ctx.profile.runs)
    if args.stage == "train":
        stages.stage_train(ctx, runs)
    elif args.stage == "run":
        stages.stage_run(ctx, runs)
    else:
        for run in runs:
            stages.stage_analyses(ctx, run, (args.stage,))


def _command_text(words: list[str] | None) -> str | None:
    """Words as a command a shell takes back (a path with a space quoted); one word as given."""
    if not words:
        return None
    return words[0] if len(words) == 1 else shlex.join(words)


if __name__ == "__main__":
    sys.exit(main())
