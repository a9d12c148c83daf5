"""The Dask executor: the plan's pending tasks on a Dask cluster.

The cluster is the scheduler at an address (`--scheduler` / DASK_SCHEDULER_ADDRESS) with the
workers already connected to it, or a LocalCluster on 127.0.0.1 (JOBS one-thread worker
processes), or, through `run_on` (`minima.executors.slurm`), any cluster a Client reaches.

Each task is one Dask task that runs `python -m minima <command> --root ROOT` in a subprocess on
a worker, so a worker needs neither minima nor torch importable in its own process: the task
functions below travel by value. Results come back through the shared run root, never through
Dask: when a task ends, the driver checks that its runs (or its study part) are current and
trusts that, not the exit status.

(Over 450 lines on purpose: the driver's failure semantics -- dependencies, GPU and shared-root
checks, rescheduling, currency after each task, the final listing -- read best in one place;
`minima.executors.slurm` only builds a cluster for it.)

Semantics:
- a task starts only after the tasks in its `after` have succeeded; when one failed, the tasks
  waiting on it are skipped (and reported);
- a command that fails is not retried (retries=0) and the others go on; at the end the failed
  tasks and their runs are listed and MinimaError is raised (the CLI exits 2). `make all` again
  redoes only what is missing;
- a lost worker's task is rescheduled by Dask (distributed.scheduler.allowed-failures >= 1) and
  the run resumes from its last epoch checkpoint; the task's subprocess dies with its worker;
- longest work first: a task's priority is its cost plus that of everything waiting on it.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from minima import paths
from minima.io import MinimaError
from minima.pipeline import Context, run_is_current, study_is_current
from minima.plan import Plan, Task, critical_paths

ROOT_WAIT_S = 10.0  # how long a worker waits for the token file (NFS attribute caches lag)
WORKER_WAIT_S = 60.0  # for a first worker to connect to an existing scheduler
TAIL_CHARS = 2000
TOKEN_NAME = ".executor-token"


def run_dask(ctx: Context, plan: Plan, *, jobs: int, scheduler: str | None = None) -> None:
    if not plan.pending:
        print("dask: nothing to do (every task of the plan is current)", file=sys.stderr)
        return
    _require_distributed()
    from distributed import Client

    _keep_allowed_failures()
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise MinimaError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            _wait_for_workers(client, scheduler)
            _warn_allowed_failures(client)
            run_on(ctx, plan, client, where=scheduler)
        finally:
            client.close()
        return
    cluster = local_cluster(jobs, gpu=_local_gpu(plan))
    try:
        with Client(cluster) as client:
            run_on(ctx, plan, client, where=f"a local cluster of {jobs} workers")
    finally:
        cluster.close()


def local_cluster(jobs: int, *, gpu: bool = False):
    """JOBS one-thread worker processes on 127.0.0.1, no dashboard (the scheduler's small HTTP
    server, which it always starts, on a free loopback port); with `gpu`, each worker offers
    GPU=1 (they share this machine's GPUs, as `make -j` processes do)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        resources={"GPU": 1} if gpu else None, silence_logs=logging.ERROR)


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MinimaError("EXECUTOR=dask needs dask and distributed: pip install -r requirements.txt (make venv)") from None


def _keep_allowed_failures() -> None:
    """Schedulers started here (LocalCluster, SLURMCluster) reschedule a lost worker's task."""
    import dask

    key = "distributed.scheduler.allowed-failures"
    if int(dask.config.get(key, 3)) < 1:
        dask.config.set({key: 1})


def _warn_allowed_failures(client) -> None:
    try:
        allowed = client.run_on_scheduler(_scheduler_allowed_failures)
    except Exception:  # an older or locked-down scheduler: not worth failing for
        return
    if allowed is not None and allowed < 1:
        print(f"dask: warning: the scheduler's distributed.scheduler.allowed-failures is {allowed}: a task whose worker "
              "is lost fails instead of being rescheduled", file=sys.stderr)


def _wait_for_workers(client, address: str) -> None:
    if _workers(client):
        return
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise MinimaError(f"no Dask worker connected to the scheduler at {address} within {WORKER_WAIT_S:g} s: "
                          f"start some with `dask worker {address} --nthreads 1`") from None


def _workers(client) -> dict[str, dict]:
    """{address: info} of every worker connected now."""
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # a distributed without n_workers: it returns them all
        info = client.scheduler_info()
    return info.get("workers") or {}


def _local_gpu(plan: Plan) -> bool:
    if not any(task.resources.get("gpu") for task in plan.pending):
        return False
    import torch

    return torch.cuda.is_available()


# ---- the driver ------------------------------------------------------------------------------


@dataclass
class _Sweep:
    """Book-keeping of one sweep: what is done, failed, skipped, and the lines that say so."""

    total: int
    bar: Any = None
    finished: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def say(self, line: str) -> None:
        """One finished (or skipped) task: its line, and the bar one step on."""
        self.finished += 1
        self.write(f"[{self.finished}/{self.total}] {line}")
        if self.bar is not None:
            self.bar.update(1)

    def write(self, text: str) -> None:
        tqdm.write(text, file=sys.stderr)  # above the bar where there is one; a plain line otherwise


def run_on(ctx: Context, plan: Plan, client, *, where: str, offers_gpu: bool | None = None,
           gpu_advice: str | None = None) -> None:
    """Run the plan's pending tasks with `client`; raise MinimaError listing the failures.

    `offers_gpu`: whether the cluster's workers offer GPU=1 (None: look at the workers connected
    now; an adaptive cluster that has none yet says it from its worker spec)."""
    tasks = plan.pending
    if not tasks:
        print("dask: nothing to do (every task of the plan is current)", file=sys.stderr)
        return
    workers = _workers(client)
    if any(task.resources.get("gpu") for task in tasks):
        if offers_gpu is None:
            offers_gpu = any(float((w.get("resources") or {}).get("GPU", 0)) >= 1 for w in workers.values())
        if not offers_gpu:
            raise MinimaError(gpu_advice or (
                f"the plan needs GPU workers (resources GPU=1); none of the {len(workers)} workers offers one: "
                "start workers with --resources GPU=1"))
    root = Path(plan.root)
    token_path, token = _write_token(root)
    try:
        bad = _check_root(client, str(token_path), token) if workers else {}
        if bad:
            address, problem = next(iter(bad.items()))
            raise MinimaError(_root_message(address, problem, root, len(bad)))
        _sweep(ctx, plan, client, where=where, token=(str(token_path), token))
    finally:
        try:
            token_path.unlink()
        except OSError:
            pass


def _write_token(root: Path) -> tuple[Path, str]:
    token = secrets.token_hex(16)
    path = root / "build" / f"{TOKEN_NAME}-{token[:8]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token)
    except OSError as exc:
        raise MinimaError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path, token


def _check_root(client, token_path: str, token: str) -> dict[str, str]:
    """{worker address: problem} for every connected worker that does not see the run root."""
    answers = client.run(_by_value(_root_problem), token_path, token, _code_dir(), os.getcwd(), ROOT_WAIT_S, on_error="return")
    return {address: (answer if isinstance(answer, str) else f"{type(answer).__name__}: {answer}")
            for address, answer in answers.items() if answer is not None}


def _root_message(address: str, problem: str, root: Path, n_bad: int) -> str:
    others = f" (and {n_bad - 1} other workers)" if n_bad > 1 else ""
    return (f"worker {address}{others} does not see the run root {root} ({problem}): results come back through a "
            "shared file system (NFS, Lustre...); mount it, and this code, at the same path on every worker")


def _code_dir() -> str:
    return str(paths.REPO_DIR)


def _priorities(plan: Plan) -> dict[str, float]:
    """A task's critical path: Dask starts the highest first."""
    return {key: round(path, 6) for key, path in critical_paths(plan.tasks).items()}


def _sweep(ctx: Context, plan: Plan, client, *, where: str, token: tuple[str, str]) -> None:
    from distributed import as_completed

    tasks = {task.key: task for task in plan.pending}
    done = {task.key for task in plan.tasks if not task.pending}
    known = {task.key for task in plan.tasks}
    priority = _priorities(plan)
    nonce = secrets.token_hex(4)
    waiting = dict(tasks)
    running: dict[str, Task] = {}  # Dask key -> task
    submitted: list = []
    sweep = _Sweep(total=len(tasks))
    workers = len(_workers(client))
    logs = Path(plan.root) / "build" / "logs"
    for key in tasks:  # a task's log holds this sweep's attempts, each after a header line
        (logs / f"{key}.log").unlink(missing_ok=True)
    print(f"dask: {len(tasks)} tasks on {where} ({workers} workers now); logs in {logs}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    completed = as_completed()

    def submit_ready() -> None:
        for key, task in list(waiting.items()):
            if all(dep in done or dep not in known for dep in task.after):
                del waiting[key]
                future = client.submit(
                    _by_value(_run_task), list(task.command), plan.root, os.getcwd(), _code_dir(), str(logs / f"{key}.log"), *token,
                    nonce, key=f"minima-{key}-{nonce}", priority=priority[key], retries=0, pure=False,
                    resources={"GPU": 1} if task.resources.get("gpu") else None)
                running[future.key] = task
                submitted.append(future)
                completed.add(future)

    def skip_dependents() -> None:
        changed = True
        while changed:
            changed = False
            for key, task in list(waiting.items()):
                blocked = [dep for dep in task.after if dep in sweep.failed or dep in sweep.skipped]
                if blocked:
                    del waiting[key]
                    why = "failed" if blocked[0] in sweep.failed else "was skipped"
                    sweep.skipped[key] = blocked[0]
                    sweep.say(f"{key} skipped: it needs {blocked[0]}, which {why}")
                    changed = True

    # a bar on a terminal only (ctx.progress: --no-progress, PROGRESS=0, TQDM_DISABLE)
    with tqdm(total=len(tasks), unit="task", desc="sweep", file=sys.stderr, dynamic_ncols=True,
              disable=not ctx.progress) as sweep.bar:
        _watch_workers(client, sweep, running)
        try:
            submit_ready()
            for future in completed:
                task = running.pop(future.key)
                try:
                    result = future.result()
                except Exception as exc:  # KilledWorker, a lost scheduler: the task did not finish
                    result = {"returncode": None, "tail": f"{type(exc).__name__}: {exc}", "seconds": None}
                if result.get("root_problem"):
                    raise MinimaError(_root_message(result.get("worker") or "?", result["root_problem"], Path(plan.root), 1))
                verdict, note = _verdict(ctx, task, result)
                seconds = result.get("seconds")
                took = f" in {seconds:.1f} s" if seconds is not None else ""
                note += _attempts_note(result)
                if verdict == "ok":
                    done.add(task.key)
                    sweep.say(f"{task.key} ok{took} ({_describe(ctx, task)}){note}")
                else:
                    sweep.failed[task.key] = verdict
                    sweep.say(f"{task.key} FAILED{took} ({_describe(ctx, task)}): {verdict}{note}")
                    tail = [line for line in (result.get("tail") or "").splitlines() if line.strip()]
                    if len(tail) > 1 and result.get("returncode") is not None:  # the lines before its error
                        where_log = f" ({result['log']})" if result.get("log") else ""
                        sweep.write(f"    last lines of its output{where_log}:")
                        sweep.write("\n".join("      " + line for line in tail[-8:]))
                    skip_dependents()
                submit_ready()
        except BaseException:  # an error or an interrupt: cancel what has not run (running commands finish)
            try:
                client.cancel([f for f in submitted if not f.done()])
            except Exception:
                pass
            raise
        finally:
            _unwatch_workers(client)
    elapsed = time.perf_counter() - started
    if sweep.failed or sweep.skipped:
        raise MinimaError(_failure_message(sweep, tasks, elapsed))
    print(f"dask: {len(tasks)} tasks done in {elapsed:.1f} s", file=sys.stderr, flush=True)


def _watch_workers(client, sweep: _Sweep, running: dict[str, Task]) -> None:
    """One line when a worker leaves the cluster while it runs tasks of this sweep: Dask then
    reschedules them (the second attempt resumes from the run's checkpoint), and a lost worker
    was otherwise never mentioned."""

    def removed(event) -> None:
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        mine = [task.key for key in message.get("processing-tasks") or () if (task := running.get(key))]
        if mine:
            how = "left" if message.get("expected") else "was lost"
            sweep.write(f"dask: worker {message.get('worker', '?')} {how} while running {', '.join(mine)}; "
                        "Dask reschedules it, and the run resumes from its last checkpoint")

    try:
        client.subscribe_topic("all", removed)
    except Exception:  # an older distributed: the task's own log still records both attempts
        pass


def _unwatch_workers(client) -> None:
    try:
        client.unsubscribe_topic("all")
    except Exception:
        pass


def _attempts_note(result: dict) -> str:
    """'; attempt 2: ...' when the task ran more than once in this sweep (its worker was lost)."""
    attempt, lost = result.get("attempt") or 1, result.get("lost") or []
    if attempt < 2:
        return ""
    where = f" {', '.join(lost)}" if lost else ""
    return f"; attempt {attempt}: Dask ran it again after losing its worker{where}; every attempt is in {result.get('log') or 'its log'}"


def _verdict(ctx: Context, task: Task, result: dict) -> tuple[str, str]:
    """('ok', note) when the task's outputs are current, else ('why it failed', '')."""
    code = result.get("returncode")
    try:
        stale = _stale(ctx, task)
    except Exception as exc:  # an unreadable result is not a current one
        stale = [f"{type(exc).__name__}: {exc}"]
    if not stale:
        note = f"; note: it exited {code}, but its outputs are current" if code not in (0, None) else ""
        return "ok", note
    if code is None:  # no exit status: an exception (its first line), e.g. KilledWorker
        lines = [line for line in (result.get("tail") or "").splitlines() if line.strip()]
        return (lines[0] if lines else "the task did not finish"), ""
    if code == 0:
        return f"it exited 0 but {', '.join(stale)} {'is' if len(stale) == 1 else 'are'} not current", ""
    last = [line for line in (result.get("tail") or "").splitlines() if line.strip()]
    return f"exit {code}" + (f": {last[-1].strip()}" if last else ""), ""


def _task_context(ctx: Context, task: Task) -> Context:
    """The context of the profile the task's command names: a replication plan's tasks name their
    member profiles, which share the root."""
    ref = next(iter(_option(task, "--profile")), ctx.profile.ref)
    if ref == ctx.profile.ref:
        return ctx
    cache = ctx._cache.setdefault("member_contexts", {})
    if ref not in cache:
        from minima.pipeline import open_context

        cache[ref] = open_context(ref, root=str(ctx.layout.root), progress=ctx.progress)
    return cache[ref]


def _stale(ctx: Context, task: Task) -> list[str]:
    ctx = _task_context(ctx, task)
    stale = [f"run {run}" for run in task.runs if not run_is_current(ctx, ctx.profile.run(run))]
    stale += [f"study {kind}" for kind in _study_kinds(task) if not study_is_current(ctx, kind)]
    return stale


def _option(task: Task, name: str) -> list[str]:
    """Every value the task's command gives the option `name`, in order."""
    command = list(task.command)
    return [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == name]


def _study_kinds(task: Task) -> list[str]:
    if not task.command or task.command[0] != "study":
        return []
    return _option(task, "--kind") or [task.key.removeprefix("study-")]


def _describe(ctx: Context, task: Task) -> str:
    ctx = _task_context(ctx, task)
    if task.runs:
        runs = [ctx.profile.run(run) for run in task.runs]
        first = runs[0]
        lrs = ", ".join(f"{lr:g}" for lr in dict.fromkeys(run.optimizer.lr for run in runs))
        seeds = " ".join(str(seed) for seed in dict.fromkeys(run.seed for run in runs))
        return f"{first.optimizer.name} lr {lrs} B {first.train.batch_size}, seed{'s' if len(runs) > 1 else ''} {seeds}"
    return " ".join(task.command[:1] + tuple(_study_kinds(task)))


def _failure_message(sweep: _Sweep, tasks: dict[str, Task], elapsed: float) -> str:
    failed = "; ".join(f"{key}" + (f" (runs {', '.join(tasks[key].runs)})" if tasks[key].runs else "") for key in sweep.failed)
    text = f"{len(sweep.failed)} of {len(tasks)} tasks failed after {elapsed:.0f} s: {failed}"
    if sweep.skipped:
        text += f"; skipped, waiting on them: {', '.join(sweep.skipped)}"
    return text + "; their errors are above and in build/logs/; `make all` again redoes only what is missing"


# ---- worker side -----------------------------------------------------------------------------
# Pickled by value (see the end of this file): they use the standard library only, so a worker
# needs neither minima nor torch in its own process.


def _scheduler_allowed_failures(dask_scheduler=None) -> int | None:
    return getattr(dask_scheduler, "allowed_failures", None)


def _root_problem(token_path: str, token: str, code_dir: str, cwd: str, wait: float) -> str | None:
    """None when this machine sees the token (and the code at the same path), else what is wrong."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(token_path) as handle:
                seen = handle.read()
            problem = None if seen == token else f"{token_path} holds other content"
        except OSError as exc:
            problem = f"{token_path}: {exc.strerror or exc}"
        if problem is None or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if problem is None and not os.path.isfile(os.path.join(code_dir, "minima", "__main__.py")):
        problem = f"no minima code at {code_dir}"
    if problem is None and not os.path.isdir(cwd):
        problem = f"no directory {cwd}"
    return problem


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has Linux send SIGTERM to the child when the worker (the forking thread,
    which waits for the child until it ends) dies: a killed worker leaves no training behind."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the worker died before the signal was armed
            os._exit(143)

    return arm


def _tail(path: str | None, text: str | None = None, start: int = 0) -> str:
    """The last TAIL_CHARS of `text`, or of the file at `path` from offset `start` (this attempt's output)."""
    if text is None:
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(start, handle.tell() - TAIL_CHARS))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
    return text[-TAIL_CHARS:]


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:
        return None


def _task_environment() -> dict[str, str]:
    """The worker's environment, less what a Dask nanny adds for its own worker process: its
    MALLOC_TRIM_THRESHOLD_ makes glibc return memory eagerly, which slows torch a lot (a third
    more wall time on the tiny profile, four times the system time)."""
    env = dict(os.environ)
    try:
        import dask

        added = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    except Exception:
        added = {}
    for name in ("MALLOC_TRIM_THRESHOLD_",):
        if name in added and env.get(name) == str(added[name]):
            del env[name]
    return env


ATTEMPT = "==== minima task attempt"  # a task log's header and footer lines start with this


def _attempts(log_path: str, sweep: str) -> list[dict]:
    """The attempts this sweep's earlier runs of the task wrote into its log: {'worker', 'ended',
    'lost'} (a header without a footer: its worker died with it, or is dying now)."""
    found: list[dict] = []
    try:
        with open(log_path, errors="replace") as handle:
            for line in handle:
                if not line.startswith(f"{ATTEMPT} {sweep} "):
                    continue
                words = line.split()
                if "started" in words:
                    found.append({"worker": words[words.index("worker") + 1].rstrip(","), "ended": False, "lost": False})
                elif found:
                    found[-1].update(ended=True, lost=line.rstrip().endswith("was lost"))
    except OSError:
        pass
    return found


def _run_task(command: list[str], root: str, cwd: str, code_dir: str, log_path: str, token_path: str, token: str,
              sweep: str = "-") -> dict:
    """One task on a worker: `python -m minima COMMAND --root ROOT` with this worker's Python.

    Returns returncode, the tail of its output, its wall time, the worker and which attempt this
    is; the output itself goes to `log_path` (or is captured, when that cannot be written),
    appended after the earlier attempts of this sweep (one whose worker died has a header and
    no footer), each between a header and a footer line."""
    import datetime
    import subprocess

    problem = _root_problem(token_path, token, code_dir, cwd, ROOT_WAIT_S)
    if problem:
        return {"root_problem": problem, "worker": _worker_address()}
    env = _task_environment()
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join([code_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    argv = [sys.executable, "-m", "minima", *command, "--root", root]
    earlier = _attempts(log_path, sweep)
    attempt, worker = len(earlier) + 1, _worker_address() or "?"
    started = time.monotonic()
    try:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        log = open(log_path, "a")
        if earlier and not earlier[-1]["ended"]:
            log.write(f"{ATTEMPT} {sweep} {attempt - 1} ended without a footer: its worker {earlier[-1]['worker']} was lost\n")
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        log.write(f"{ATTEMPT} {sweep} {attempt} started {stamp} on worker {worker}, in {cwd}: {' '.join(argv)}\n")
        log.flush()
        start = log.tell()
    except OSError:
        log = None
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              stdout=log if log else subprocess.PIPE, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent(), text=True)
        seconds = time.monotonic() - started
        tail = _tail(log_path if log else None, None if log else done.stdout, start if log else 0)
        if log:
            log.write(f"{ATTEMPT} {sweep} {attempt} ended: exit {done.returncode} after {seconds:.1f} s\n")
    finally:
        if log:
            log.close()
    return {"returncode": done.returncode, "tail": tail, "seconds": seconds, "worker": worker,
            "log": log_path if log else None, "attempt": attempt,
            "lost": [e["worker"] for e in earlier if e["lost"] or not e["ended"]]}


def _by_value(function: Callable) -> Callable:
    """`function` in a closure: Dask pickles the task graph with plain pickle first, which would
    send module functions by reference (the scheduler and workers would have to import minima);
    a closure makes it fall back to cloudpickle, which sends this module's functions by value."""

    def call(*args: Any) -> Any:
        return function(*args)

    return call


def _register_by_value() -> None:
    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    except (ImportError, ValueError, AttributeError):
        pass


_register_by_value()
