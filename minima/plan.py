"""The plan: every task of a profile, with its key, command, resources, cost and dependencies.

One plan feeds every executor. `python -m minima plan` writes `build/plan.json` and, from the
same tasks, `build/plan.mk`, so `make -j` (the local executor) and Dask can never disagree.

Tasks: a configuration's seeds, with the configurations that differ from it only in learning
rate while the task holds at most `TASK_RUNS` runs (one process pays the interpreter and data
start-up once for them; `plan --task-runs 1` gives one task per configuration and seed group,
finer for large clusters), then the study parts: the Dinh rescaling after the task
of the run it reads, the interpolation after both of its runs' tasks. A task is idempotent
(keyed by the run hashes; every stage skips current work), so an executor may run it again.

Costs are relative estimates used only to start the longest work first, so the workers stay
busy until the end: optimizer step cost x steps per epoch x time per step, where a step costs
a fixed overhead worth `STEP_OVERHEAD` images plus the batch.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from minima.config import RunConfig
from minima.io import write_json, write_text
from minima.paths import TASK_RUNS
from minima.pipeline import (Context, analyses_of, analysis_is_current, is_trained, study_is_current, study_kinds,
                             study_runs)

# Cost of one step in gradient evaluations, measured on CPU (LeNet-5, batch 128): SAM takes two
# gradients, AdaHessian a gradient plus a Hessian-vector product.
STEP_COST = {"adahessian": 2.5, "sam": 2.0}
STEP_OVERHEAD = 64  # images' worth of fixed cost per optimizer step (CPU, LeNet-5)
ANALYSIS_COST = 0.3  # an untrained run's analyses, relative to its training
STUDY_COST = {"dinh": 2.0, "interpolation": 0.05}  # relative to one run's training
# Epochs to fit the stop rule, relative to MNIST: a 1,024-image Fashion-MNIST subset took 62.6
# epochs where MNIST took 19.9 (means over the first 28 and 36 runs of the replicate study, the
# same optimizers), so a plan over both datasets starts the Fashion-MNIST tasks first.
EPOCHS_TO_FIT = {"mnist": 1.0, "fashion-mnist": 3.1}


@dataclass(frozen=True)
class Task:
    key: str
    command: tuple[str, ...]  # arguments of `python -m minima`
    runs: tuple[str, ...]  # run hashes it makes current
    after: tuple[str, ...]  # keys of the tasks it waits for
    resources: dict[str, int]
    cost: float
    pending: bool  # false: its outputs are current, executors skip it

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "command": list(self.command), "runs": list(self.runs), "after": list(self.after)}


@dataclass(frozen=True)
class Plan:
    profile: str
    root: str
    tasks: tuple[Task, ...]

    @property
    def pending(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task.pending)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "root": self.root, "tasks": [task.to_json() for task in self.tasks]}


def _training_cost(run: RunConfig) -> float:
    n = run.n_train or 60000
    epochs = EPOCHS_TO_FIT.get(run.dataset, 1.0)
    return STEP_COST.get(run.optimizer.name, 1.0) * n * (1 + STEP_OVERHEAD / run.train.batch_size) * epochs


def task_groups(runs: tuple[RunConfig, ...], task_runs: int) -> list[list[RunConfig]]:
    """Runs grouped into tasks: a configuration's seeds always together, and configurations that
    differ only in learning rate together while the task stays within `task_runs` runs (each
    process then pays the interpreter start, the data load and torch's first-call warm-up once
    for several runs: about 6 s a task on a 2-core CPU)."""
    configurations: dict[str, list[RunConfig]] = {}
    for run in runs:
        configurations.setdefault(run.configuration, []).append(run)
    families: dict[tuple, list[list[RunConfig]]] = {}
    for members in configurations.values():
        run = members[0]
        family = (run.optimizer.name, run.optimizer.weight_decay, run.train.batch_size, run.train.label_noise)
        families.setdefault(family, []).append(members)
    groups = []
    for family in families.values():
        current: list[RunConfig] = []
        for members in family:
            if current and len(current) + len(members) > task_runs:
                groups.append(current)
                current = []
            current = current + members
        groups.append(current)
    return groups


def _task_key(runs: list[RunConfig]) -> str:
    """A task's name from the configurations it trains: config-<hash> for one, else a hash of the list."""
    configurations = sorted({r.configuration for r in runs})
    if len(configurations) == 1:
        return f"config-{configurations[0]}"
    return "configs-" + hashlib.sha256(",".join(configurations).encode()).hexdigest()[:12]


def build_plan(ctx: Context, task_runs: int = TASK_RUNS) -> Plan:
    profile, ref = ctx.profile, ctx.profile.ref
    resources = {"gpu": 1 if ctx.device_kind == "cuda" else 0}
    unit = max(_training_cost(run) for run in profile.runs)
    tasks, key_of = [], {}
    for runs in task_groups(profile.runs, task_runs):
        key = _task_key(runs)
        cost = 0.0
        for run in runs:
            key_of[run.run_hash] = key
            if not is_trained(ctx, run):
                cost += _training_cost(run) * (1 + ANALYSIS_COST)
                continue
            kinds = analyses_of(ctx, run)
            if not all(analysis_is_current(ctx, run, kind) for kind in kinds):
                cost += _training_cost(run) * ANALYSIS_COST * len(kinds) / 3
        command = ("run", "--profile", ref, *[arg for run in runs for arg in ("--run", run.run_hash)])
        tasks.append(Task(key, command, tuple(r.run_hash for r in runs), (), resources, cost / unit, cost > 0))
    for kind in study_kinds(ctx):
        after = tuple(dict.fromkeys(key_of[run.run_hash] for run in study_runs(ctx, kind)))
        pending = not study_is_current(ctx, kind)
        tasks.append(Task(f"study-{kind}", ("study", "--profile", ref, "--kind", kind), (), after, resources,
                          STUDY_COST[kind] if pending else 0.0, pending))
    return Plan(ref, str(ctx.layout.root), tuple(longest_first(tasks)))


def critical_paths(tasks: Iterable[Task]) -> dict[str, float]:
    """Each task's cost plus the costliest chain of tasks waiting on it."""
    tasks = list(tasks)
    waiting: dict[str, list[Task]] = {}
    for task in tasks:
        for key in task.after:
            waiting.setdefault(key, []).append(task)
    memo: dict[str, float] = {}

    def path(task: Task) -> float:
        if task.key not in memo:
            memo[task.key] = task.cost + max((path(t) for t in waiting.get(task.key, [])), default=0.0)
        return memo[task.key]

    return {task.key: path(task) for task in tasks}


def longest_first(tasks: list[Task]) -> list[Task]:
    """Descending by critical path: the longest chains start first, so the cores end busy."""
    paths = critical_paths(tasks)
    return sorted(tasks, key=lambda t: -paths[t.key])


def makefile(plan: Plan) -> str:
    """GNU make text of the plan: one phony target per task, `all-runs` over all of them.

    GNU make never goes back to a target whose prerequisites were still running when it passed
    it, so a study part that waits on exactly one task is chained into that task's recipe, which
    then comes early in the order and overlaps the other work under `make -j`.
    """
    chained: dict[str, list[Task]] = {}
    for task in plan.tasks:
        if len(task.after) == 1 and task.pending:
            chained.setdefault(task.after[0], []).append(task)
    riders = {t.key for ts in chained.values() for t in ts}
    lines = ["# Generated by `python -m minima plan` from build/plan.json: the work still to do.", ".PHONY: all-runs"]
    for task in plan.tasks:
        if task.key in riders:
            continue
        lines += [f".PHONY: {task.key}", f"{task.key}: {' '.join(task.after)}".rstrip()]
        for step in ([task] if task.pending else []) + chained.get(task.key, []):
            lines.append("\t$(MINIMA) " + " ".join(recipe_word(arg) for arg in step.command))
    targets = " ".join(task.key for task in plan.tasks if task.key not in riders)
    lines += [f"all-runs: {targets}", ""]
    return "\n".join(lines)


def recipe_word(arg: str) -> str:
    """One argument in a make recipe: quoted for the shell, `$` doubled for make (a profile named
    `a$1b.toml` reached minima as `ab.toml`, and one named `x$(shell touch PWN).toml` ran)."""
    return shlex.quote(arg).replace("$", "$$")


def write_plan(ctx: Context, json_path: Path | None = None, mk_path: Path | None = None, task_runs: int = TASK_RUNS) -> Plan:
    plan = build_plan(ctx, task_runs)
    write_json(json_path or ctx.layout.plan, plan.to_json())
    write_text(mk_path or ctx.layout.plan_makefile, makefile(plan))
    return plan


def read_plan(path: Path) -> Plan:
    from minima.io import read_json

    record = read_json(path, require=("profile", "root", "tasks"))
    tasks = tuple(
        Task(t["key"], tuple(t["command"]), tuple(t["runs"]), tuple(t["after"]), dict(t["resources"]), float(t["cost"]), bool(t["pending"]))
        for t in record["tasks"]
    )
    return Plan(record["profile"], record["root"], tasks)


__all__ = ["Plan", "Task", "build_plan", "makefile", "read_plan", "recipe_word", "task_groups", "write_plan"]
