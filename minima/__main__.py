"""Command line: `python -m minima <stage> --profile NAME [...]`. Every stage skips work whose
outputs are current, so rerunning is cheap and an interrupted run resumes."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minima.io import MinimaError

STAGES = {
    "data": "provision the profile's data set (offline sources first) and verify its checksums",
    "plan": "write each run's config.json and a makefile of the work still to do",
    "train": "train the given runs (resumes from the last checkpoint)",
    "curvature": "Hessian top eigenvalues, trace, spectral density, gradient norm of the given runs",
    "sharpness": "sharpness measures of the given runs",
    "landscape": "1-D/2-D loss landscapes of the given runs",
    "run": "train + curvature + sharpness + landscape of the given runs",
    "study": "profile-level analyses: Dinh's rescaling experiment and the interpolation between minima",
    "summarize": "collect every result into build/summary.json (never trains; lists what is missing)",
    "bench": "curvature and training benchmarks against PyHessian and curvlinops -> build/bench.{json,md}",
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m minima",
        description="Which minima do optimizers find, how sharp are they, and does sharpness predict generalization?",
        epilog="Profiles: quick (CPU default), paper (GPU default), seed (the original study), tiny (tests), or a .toml path. "
        "`make all PROFILE=...` runs every stage in order.",
    )
    sub = top.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, help_text in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        stage.add_argument("--profile", default="auto", help="profile name or .toml path (default: auto = paper with CUDA, else quick)")
        stage.add_argument("--root", default=None, help="directory holding runs/, build/, data/ (default: current directory or $MINIMA_ROOT)")
        stage.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name == "data":
            stage.add_argument("--data-dir", type=Path, default=None, help="a directory with the four IDX files (train-images-idx3-ubyte, ...)")
        if name in ("train", "curvature", "sharpness", "landscape", "run"):
            stage.add_argument("--run", action="append", default=None, metavar="HASH", help="run hash (repeatable; default: every run of the profile)")
        if name == "plan":
            stage.add_argument("--makefile", type=Path, default=Path("build/plan.mk"), help="where to write the makefile of pending work")
        if name == "study":
            stage.add_argument("--kind", action="append", choices=("dinh", "interpolation"), default=None,
                               help="which part (repeatable; default: every part the profile asks for)")
        if name == "summarize":
            stage.add_argument("--created-by", default=None, help="the command recorded as having produced the results")
        if name == "bench":
            stage.add_argument("--out", type=Path, default=Path("build"), help="directory for bench.json and bench.md")
            stage.add_argument("--samples", type=int, default=0, help="training images for curvature timing (default: 60000 on GPU, 5000 on CPU)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        _dispatch(args)
    except MinimaError as exc:
        print(f"minima: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minima: interrupted; finished work is saved and the next call resumes", file=sys.stderr)
        return 130
    if args.stage not in ("plan",):
        print(f"minima {args.stage}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def _dispatch(args: argparse.Namespace) -> None:
    from minima import pipeline
    from minima.runtime import configure_threads

    configure_threads()
    ctx = pipeline.open_context(args.profile, root=args.root, data_dir=getattr(args, "data_dir", None), progress=not args.no_progress)
    if args.stage in ("data", "plan"):  # plan provisions the data first: `make all` starts with it
        manifest = pipeline.stage_data(ctx)
        print(f"{manifest['dataset']}: {manifest['n_train']} train + {manifest['n_test']} test images from {manifest['source']}, checksums verified")
        if args.stage == "plan":
            pending = pipeline.stage_plan(ctx, args.makefile)
            print(f"profile {ctx.profile.name}: {len(ctx.profile.runs)} runs, {len(pending)} pending" + (f" ({', '.join(pending)})" if pending else ""))
        return
    if args.stage == "study":
        pipeline.stage_study(ctx, kinds=args.kind)
        return
    if args.stage == "summarize":
        from minima import analysis

        path = analysis.write_summary(ctx, created_by=args.created_by)
        print(f"wrote {path}")
        return
    if args.stage == "bench":
        from minima import bench

        bench.main(ctx, out=args.out, samples=args.samples)
        return
    runs = [ctx.profile.run(h) for h in args.run] if args.run else list(ctx.profile.runs)
    if args.stage == "train":
        pipeline.stage_train(ctx, runs)
    elif args.stage == "run":
        pipeline.stage_run(ctx, runs)
    else:
        for run in runs:
            pipeline.stage_analyses(ctx, run, (args.stage,))


if __name__ == "__main__":
    sys.exit(main())
