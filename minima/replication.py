"""Replication across datasets: one design run on several datasets, and which verdicts replicate.

A replication profile names ordinary profiles, one per dataset, and nothing else:

    description = "The quick design on MNIST and on Fashion-MNIST"
    replicate = ["quick", "fashion"]

Each member keeps its own grid (learning rates centred on its own dataset's validation optimum by
a pilot), its own runs, study parts and claims; the members share the run root, one plan and
therefore every executor (local, Dask, SLURM). The first member is the primary: the report's body
is its study. summary.json is the primary's summary plus a `replication` section holding every
other member's whole summary and one row per claim with each dataset's verdict and whether the
verdict replicates, by REPLICATION_RULE.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from minima.config import Profile, load_profile, resolve_profile_path
from minima.data import DISPLAY_NAMES
from minima.io import MinimaError
from minima.plan import Plan, longest_first
from minima.settings import to_table

KEY = "replicate"
OUTCOMES = ("replicates", "contradicted", "undecided")
DECIDED = ("reproduced", "not_reproduced")
REPLICATION_RULE = ("a claim replicates when every dataset decides it and all decide it the same way (reproduced on "
                    "all, or not reproduced on all); it is contradicted when one dataset reproduces it and another "
                    "does not; otherwise (inconclusive, not testable or not tested on some dataset) it is undecided")


@dataclass(frozen=True)
class Replication:
    """A replication profile: its name, file, description and member profiles (primary first)."""

    name: str
    ref: str
    path: Path
    description: str
    members: tuple[Profile, ...]

    @property
    def member_refs(self) -> tuple[str, ...]:
        return tuple(member.ref for member in self.members)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(member.study.dataset for member in self.members)


def _table(path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_profile reports what is wrong with it


def load_replication(ref: str) -> Replication | None:
    """The replication profile `ref` names, or None when it names an ordinary profile."""
    if ref == "auto":
        return None
    path = resolve_profile_path(ref)
    table = _table(path)
    if table is None or KEY not in table:
        return None
    where = path.name
    extra = sorted(set(table) - {KEY, "description"})
    if extra:
        raise MinimaError(f"{where}: a replication profile holds only `description` and `{KEY}`; "
                          f"move {extra[0]!r} into its member profiles")
    names = table[KEY]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise MinimaError(f"{where}: {KEY} must list at least two profiles, got {names!r}")
    if len(set(names)) != len(names):
        raise MinimaError(f"{where}: {KEY} lists a profile twice: {names!r}")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise MinimaError(f"{where}: description must be a string")
    members = tuple(_member(path, name) for name in names)
    seen: dict[str, str] = {}
    for member in members:
        dataset = member.study.dataset
        if dataset in seen:
            raise MinimaError(f"{where}: {seen[dataset]} and {member.ref} both train on {DISPLAY_NAMES[dataset]}; "
                              "a replication needs one profile per dataset")
        seen[dataset] = member.ref
    for member in members[1:]:
        difference = design_difference(members[0], member)
        if difference:
            raise MinimaError(f"{where}: a replication runs one design on several datasets, but {difference}")
    return Replication(path.stem, ref, path, description, members)


def _design(profile: Profile) -> dict[str, Any]:
    """Everything a profile decides but its dataset, description and learning rates."""
    tables = profile.settings_json()
    tables["study"] = {k: v for k, v in tables["study"].items() if k not in ("dataset", "description")}
    tables["optimizer"] = {name: {k: v for k, v in to_table(config).items() if k != "lr"}
                           for name, config in profile.optimizers.items()}
    tables["grid"] = {name: {k: v for k, v in grid.items() if k not in ("lr", "lr_by_batch")}
                      for name, grid in profile.grid.items()}
    tables["grid_lr_counts"] = {name: {b: len(lrs) for b, lrs in grid["lr_by_batch"].items()}
                                for name, grid in profile.grid.items()}
    return tables


def design_difference(primary: Profile, other: Profile) -> str:
    """'' when the two profiles differ only in dataset, description and learning rates; else the
    first setting that differs, named as a TOML key."""
    a, b = _flat(_design(primary)), _flat(_design(other))
    for key in [*a, *(k for k in b if k not in a)]:  # the study's keys first, then the tables
        if a.get(key) != b.get(key):
            return f"{key} is {b.get(key)!r} in {other.name}, {a.get(key)!r} in {primary.name}"
    return ""


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _member(path: Path, name: str) -> Profile:
    """A member by name (minima/profiles) or by path (relative to the replication profile's folder)."""
    ref = name
    if name.endswith(".toml") or "/" in name:
        candidate = Path(name)
        ref = str(candidate if candidate.is_absolute() else (path.parent / candidate).resolve())
    if is_replication(ref):
        raise MinimaError(f"{path.name}: member {name!r} is itself a replication profile")
    try:
        return load_profile(ref)
    except MinimaError as exc:
        raise MinimaError(f"{path.name}: member {name!r}: {exc}") from None


def is_replication(ref: str) -> bool:
    """Whether `ref` names a replication profile (without validating it)."""
    try:
        path = resolve_profile_path(ref)
    except MinimaError:
        return False
    table = _table(path)
    return table is not None and KEY in table


# ---- the plan ------------------------------------------------------------------------------

def merge_plans(replication: Replication, root: Path, plans: Sequence[Plan]) -> Plan:
    """One plan over every member's tasks. Run tasks are keyed by their configurations' hashes,
    which include the dataset, so they cannot collide; each member's study parts (Dinh,
    interpolation) get the member's name in their key."""
    tasks: dict[str, Any] = {}
    for member, plan in zip(replication.members, plans):
        renamed = {t.key: f"{member.name}-{t.key}" for t in plan.tasks if t.key.startswith("study-")}
        for task in plan.tasks:
            key = renamed.get(task.key, task.key)
            tasks.setdefault(key, replace(task, key=key, after=tuple(renamed.get(a, a) for a in task.after)))
    return Plan(replication.ref, str(root), tuple(longest_first(list(tasks.values()))))


# ---- the verdicts --------------------------------------------------------------------------

def replicates(verdicts: Sequence[str | None], datasets: Sequence[str]) -> tuple[str, str]:
    """(outcome, reason) of one claim over the datasets, by REPLICATION_RULE; None: not tested there."""
    decided = {v for v in verdicts if v in DECIDED}
    if len(decided) > 1:
        yes = [d for d, v in zip(datasets, verdicts) if v == "reproduced"]
        no = [d for d, v in zip(datasets, verdicts) if v == "not_reproduced"]
        return "contradicted", f"reproduced on {', '.join(yes)}, not reproduced on {', '.join(no)}"
    open_ = [(d, v) for d, v in zip(datasets, verdicts) if v not in DECIDED]
    if not open_:
        verdict = verdicts[0]
        return "replicates", f"{'reproduced' if verdict == 'reproduced' else 'not reproduced'} on every dataset"
    words = {"inconclusive": "inconclusive", "not_testable": "not testable", None: "not tested"}
    return "undecided", "; ".join(f"{words.get(v, v)} on {d}" for d, v in open_)


def _claim_cell(claim: dict | None) -> dict[str, Any]:
    keys = ("verdict", "value", "ci95", "n_clusters", "p", "p_holm", "unit")
    return {key: None for key in keys} if claim is None else {key: claim.get(key) for key in keys}


def replication_table(summaries: Sequence[dict]) -> list[dict[str, Any]]:
    """One row per claim (the primary's order, then claims only other datasets tested): each
    dataset's verdict, value, interval, clusters and p, and the claim's outcome."""
    datasets = [s["data"]["display_name"] for s in summaries]
    by_dataset = [{c["id"]: c for c in s["claims"]} for s in summaries]
    ids = list(dict.fromkeys(c["id"] for s in summaries for c in s["claims"]))
    rows = []
    for claim_id in ids:
        found = [claims.get(claim_id) for claims in by_dataset]
        first = next(c for c in found if c is not None)
        outcome, reason = replicates([c and c["verdict"] for c in found], datasets)
        rows.append({"id": claim_id, "claim": first["claim"], "source": first["source"],
                     "cells": [_claim_cell(c) for c in found], "outcome": outcome, "reason": reason})
    return rows


def replication_section(profiles: Sequence[str], summaries: Sequence[dict]) -> dict[str, Any]:
    """The `replication` section of summary.json from each member's summary (primary first)."""
    table = replication_table(summaries)
    return {
        "profiles": list(profiles),
        "datasets": [s["data"]["display_name"] for s in summaries],
        "rule": REPLICATION_RULE,
        "table": table,
        "counts": {outcome: sum(row["outcome"] == outcome for row in table) for outcome in OUTCOMES},
        "timing_total": sum(s["timing"]["total"] for s in summaries),
        "n_runs": sum(len(s["runs"]) for s in summaries),
        "members": list(summaries[1:]),
    }


def compose_summary(replication: Replication, summaries: Sequence[dict]) -> dict[str, Any]:
    """The primary's summary, named after the replication profile, with the replication section."""
    primary = dict(summaries[0])
    primary.update(profile=replication.name, profile_ref=replication.ref,
                   profile_description=replication.description or primary["profile_description"])
    primary["replication"] = replication_section([member.name for member in replication.members], summaries)
    return primary


# ---- the command line ----------------------------------------------------------------------

def dispatch(replication: Replication, args: Any, *, progress: bool, created_by: str | None = None) -> None:
    """`python -m minima STAGE --profile <replication>`: data, plan, execute and summarize act on
    every member (one plan, one summary); a stage of single runs takes a member profile."""
    from minima import analysis, pipeline

    def context(member: Profile, **kwargs: Any) -> pipeline.Context:
        return pipeline.open_context(member.ref, root=args.root, progress=progress, **kwargs)

    if args.stage in ("data", "plan"):
        contexts = [context(member, data_dir=args.data_dir, warn=args.stage == "plan") for member in replication.members]
        for ctx in contexts:
            manifest = pipeline.stage_data(ctx)
            print(pipeline.data_line(manifest))
        if args.stage == "plan":
            _plan(replication, contexts, args.task_runs)
        return
    if args.stage == "execute":
        from minima.executors import execute

        execute(context(replication.members[0]), executor=args.executor, jobs=args.jobs, scheduler=args.scheduler,
                plan_ref=replication.ref)
        return
    if args.stage == "summarize":
        contexts = [context(member, repair=False) for member in replication.members]
        path = analysis.write_summary_of(
            contexts[0].layout.summary,
            lambda created_by: compose_summary(replication, [analysis.build_summary(ctx, created_by) for ctx in contexts]),
            created_by, f"python -m minima summarize --profile {replication.ref}")
        print(f"wrote {path}")
        return
    raise MinimaError(f"profile {replication.ref} replicates {', '.join(replication.member_refs)}: "
                      f"`{args.stage}` takes one of those profiles")


def _plan(replication: Replication, contexts: Sequence[Any], task_runs: int) -> None:
    from minima import pipeline
    from minima.io import write_json, write_text
    from minima.plan import build_plan, makefile

    if task_runs < 1:
        raise MinimaError(f"--task-runs: must be >= 1, got {task_runs}")
    plans = []
    for ctx in contexts:
        pipeline.write_run_configs(ctx)
        plans.append(build_plan(ctx, task_runs))
    layout = contexts[0].layout
    plan = merge_plans(replication, layout.root, plans)
    write_json(layout.plan, plan.to_json())
    write_text(layout.plan_makefile, makefile(plan))
    runs = sum(len(ctx.profile.runs) for ctx in contexts)
    configurations = sum(len({r.configuration for r in ctx.profile.runs}) for ctx in contexts)
    print(f"profile {replication.ref}: {runs} runs in {configurations} configurations on "
          f"{', '.join(DISPLAY_NAMES[d] for d in replication.datasets)}, {len(plan.tasks)} tasks, "
          f"{len(plan.pending)} tasks pending")
