"""Executors: the plan, then `make all` with EXECUTOR=local, dask (an existing scheduler and a
LocalCluster) and slurm (dask-jobqueue against fake sbatch/scancel/squeue), on a profile smaller
than tiny: 2 optimizers x 1 batch size x 2 seeds, 3 epochs, light analyses.

Every subprocess is bounded (`timeout`, or subprocess's timeout=); HOME and DASK_CONFIG point into
temporary directories; whatever the tests start listens on 127.0.0.1 only (checked with psutil).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from testkit import LIGHT_ANALYSES, REPO, derived_profile

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

PY = sys.executable
MAKE_TIMEOUT = 420
LOOPBACK = {"127.0.0.1", "::1"}
# Fields of summary.json that differ between two identical sweeps.
VOLATILE = re.compile(r"seconds|time|elapsed|wall|created|date|path|log", re.I)


# ---- helpers -------------------------------------------------------------------------------


def mini_profile(directory: Path) -> Path:
    """tiny.toml made smaller: sgd and sam, one batch size, 3 epochs, light analyses."""
    return derived_profile("tiny", directory / "mini.toml", **LIGHT_ANALYSES, optimizers=["sgd", "sam"],
                           optimizer={"sgd_momentum": None}, n_test=500, train={"batch_size": 64, "max_epochs": 3},
                           dinh={"scales": [1.0, 10.0]})


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of every command: HOME and DASK_CONFIG private, no make or Dask leftovers."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DASK_SCHEDULER_ADDRESS") and not k.startswith("DASK_")}
    (home / "home").mkdir(parents=True, exist_ok=True)
    (home / "dask-config").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home / "home"), DASK_CONFIG=str(home / "dask-config"), MINIMA_PROGRESS="0",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def make_command(profile: Path, root: Path, *variables: str) -> list[str]:
    # ENV=system with this interpreter: driver, workers and tasks all run the Python under test.
    return ["timeout", "-k", "10", str(MAKE_TIMEOUT), "make", "--no-print-directory", "-C", str(REPO), "all",
            "ENV=system", f"PYTHON={PY}", f"PROFILE={profile}", f"ROOT={root}", "PDF=0", *variables]


def make_all(profile: Path, root: Path, env: dict, *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(make_command(profile, root, *variables), env=env, capture_output=True, text=True,
                          timeout=MAKE_TIMEOUT + 30)


def minima(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", "-k", "5", str(timeout), PY, "-m", "minima", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout + 15)


def stages(profile: Path, root: Path, executor: list[str]) -> list[list[str]]:
    """What `make all` runs, less the report: plan, execute, summarize (each bounded by timeout)."""
    common = ["--profile", str(profile), "--root", str(root)]
    bound = ["timeout", "-k", "10", str(MAKE_TIMEOUT), PY, "-m", "minima"]
    return [[*bound, "plan", *common], [*bound, "execute", *common, *executor], [*bound, "summarize", *common]]


def run_stages(commands: list[list[str]], env: dict, logs: Path, during=None) -> tuple[int, str, str]:
    """Run the commands in turn, stopping at the first failure; `during(process)` watches each."""
    outs, errs = [], []
    for command in commands:
        process = spawn(command, env, logs)
        try:
            if during:
                during(process)
            code, out, err = finish(process)
        finally:
            stop(process)
        outs.append(out)
        errs.append(err)
        if code != 0:
            break
    return code, "".join(outs), "".join(errs)


def numbers(root: Path) -> dict:
    """Per-run results of build/summary.json, without timings and paths."""
    summary = json.loads((root / "build" / "summary.json").read_text())

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not VOLATILE.search(k)}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    runs = {run["run"]: strip(run) for run in summary["runs"]}
    assert runs and all("train_loss" in run and "test_accuracy" in run for run in runs.values())
    return runs


def descendants(*pids: int) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found += [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return found


def listening(processes: list[psutil.Process]) -> set[tuple[str, int, int]]:
    """(ip, port, pid) of every listening TCP socket of these processes."""
    found = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet") if hasattr(process, "net_connections") else process.connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        found |= {(c.laddr.ip, c.laddr.port, process.pid) for c in connections if c.status == psutil.CONN_LISTEN}
    return found


def assert_loopback_only(sockets: set) -> None:
    assert sockets, "nothing was listening: the check saw no process"
    wide = sorted(s for s in sockets if s[0] not in LOOPBACK)
    assert not wide, f"listening beyond 127.0.0.1: {wide}"


def watch(process: subprocess.Popen, extra_pids=lambda: [], timeout: float = MAKE_TIMEOUT) -> set:
    """Sample the listening sockets of `process`'s tree (and extra_pids) until it ends."""
    sockets: set = set()
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        sockets |= listening(descendants(process.pid, *extra_pids()))
        time.sleep(0.5)
    return sockets


def spawn(command: list[str], env: dict, logs: Path, cwd: Path = REPO) -> subprocess.Popen:
    """Start `command` with its output in files (a pipe nobody reads while we watch could fill)."""
    logs.mkdir(parents=True, exist_ok=True)
    name = f"{len(list(logs.glob('*.out'))):02d}"
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    process.logs = (logs / f"{name}.out", logs / f"{name}.err")
    return process


def finish(process: subprocess.Popen, timeout: float = MAKE_TIMEOUT) -> tuple[int, str, str]:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    out, err = (path.read_text() for path in process.logs)
    return process.returncode, out, err


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """HOME and DASK_CONFIG of this process in a temporary directory, for every test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DASK_CONFIG", str(tmp_path / "dask-config"))
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executors")


@pytest.fixture(scope="module")
def profile(work) -> Path:
    return mini_profile(work)


@pytest.fixture(scope="module")
def reference(work, profile) -> dict:
    """The sweep with EXECUTOR=local: the numbers every other executor must reproduce."""
    root = work / "local"
    done = make_all(profile, root, clean_env(work / "env-local"), "EXECUTOR=local", "JOBS=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return numbers(root)


@pytest.fixture(scope="module")
def scheduler(work):
    """A scheduler and two one-thread workers (with nannies) on 127.0.0.1, started from a
    directory where minima is not importable: the tasks must not need it in the worker."""
    where = work / "cluster"
    where.mkdir()
    env = clean_env(work / "env-cluster")
    env.pop("PYTHONPATH", None)
    file = where / "scheduler.json"
    bound = ["timeout", "-k", "10", "1200"]
    sched = spawn([*bound, PY, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                   "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(file)],
                  env, where, cwd=where)
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert file.exists(), sched.logs[1].read_text()[-2000:]
        address = json.loads(file.read_text())["address"]
        workers = spawn([*bound, PY, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(file),
                         "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                         "--dashboard-address", "127.0.0.1:0"], env, where, cwd=where)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and workers.logs[1].read_text().count("Registered to:") < 2:
            time.sleep(0.5)
        assert workers.logs[1].read_text().count("Registered to:") >= 2, workers.logs[1].read_text()[-2000:]
        yield {"address": address, "scheduler": sched, "workers": workers}
    finally:
        for process in (workers, sched):
            if process is not None:
                stop(process)


def worker_processes(workers: subprocess.Popen) -> list[psutil.Process]:
    """The worker processes the nannies spawned (multiprocessing children running a Worker)."""
    return [p for p in descendants(workers.pid)[1:] if "multiprocessing" in " ".join(_cmdline(p)) and "resource_tracker" not in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


# ---- the plan ------------------------------------------------------------------------------


def test_plan_tasks_dependencies_and_makefile_agree(work, profile):
    root = work / "plan"
    done = minima(clean_env(work / "env-plan"), "plan", "--profile", str(profile), "--root", str(root))
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads((root / "build" / "plan.json").read_text())
    assert plan["profile"] == str(profile) and Path(plan["root"]) == root.resolve()
    tasks = {task["key"]: task for task in plan["tasks"]}
    configs = [t for t in plan["tasks"] if t["key"].startswith("config-")]
    assert len(configs) == 2 and set(tasks) == {c["key"] for c in configs} | {"study-dinh", "study-interpolation"}
    runs = {run: task["key"] for task in configs for run in task["runs"]}
    assert len(runs) == 4
    for task in plan["tasks"]:
        assert task["pending"] and task["cost"] > 0 and task["resources"] == {"gpu": 0}
        assert set(task["after"]) <= set(tasks)
        if task["key"].startswith("config-"):
            assert task["command"][:3] == ["run", "--profile", str(profile)] and task["after"] == []
            assert task["command"][3::2] == ["--run"] * len(task["runs"]) and task["command"][4::2] == task["runs"]
            assert task["key"] == "config-" + json.loads((root / "runs" / task["runs"][0] / "config.json").read_text())["configuration"]
    assert tasks["study-dinh"]["command"] == ["study", "--profile", str(profile), "--kind", "dinh"]
    assert len(tasks["study-dinh"]["after"]) == 1 and sorted(tasks["study-interpolation"]["after"]) == sorted(c["key"] for c in configs)
    keys = [t["key"] for t in plan["tasks"]]
    for task in plan["tasks"]:  # longest first: a task comes before the tasks waiting on it
        assert all(keys.index(dep) < keys.index(task["key"]) for dep in task["after"])

    # plan.mk: every pending command, and `make -n` orders each after the tasks it waits for.
    makefile = (root / "build" / "plan.mk").read_text()
    for task in plan["tasks"]:
        assert "$(MINIMA) " + shlex.join(task["command"]) in makefile, task["key"]
    for line in makefile.splitlines():
        match = re.fullmatch(r"([\w.-]+):(.*)", line)
        if match and match.group(1) in tasks:
            assert set(match.group(2).split()) == set(tasks[match.group(1)]["after"]), line
    dry = subprocess.run(["timeout", "30", "make", "-n", "-j1", "-f", str(root / "build" / "plan.mk"), "MINIMA=M", "all-runs"],
                         capture_output=True, text=True, timeout=40, env=clean_env(work / "env-plan"))
    assert dry.returncode == 0, dry.stderr
    order = [line.removeprefix("M ") for line in dry.stdout.splitlines() if line.startswith("M ")]
    position = {key: order.index(shlex.join(task["command"])) for key, task in tasks.items()}
    for key, task in tasks.items():
        assert all(position[dep] < position[key] for dep in task["after"]), (key, order)


# ---- Dask: an existing scheduler -------------------------------------------------------------


def test_dask_scheduler_matches_local_and_a_rerun_submits_nothing(work, profile, reference, scheduler):
    root = work / "dask"
    env = clean_env(work / "env-dask")
    done = make_all(profile, root, env, "EXECUTOR=dask", f"DASK_SCHEDULER_ADDRESS={scheduler['address']}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if re.match(r"\[\d+/4\] ", line)]
    assert len(lines) == 4 and all(" ok in " in line for line in lines), done.stderr[-3000:]
    assert re.search(r"\[\d/4\] config-\w+ ok in [\d.]+ s \((sgd|sam) lr [\d.]+ B 64, seeds 0 1\)", done.stderr)
    assert lines[-1].split()[1] in ("study-dinh", "study-interpolation")
    assert sorted((root / "build" / "logs").iterdir()) and not list((root / "build").glob(".executor-token*"))
    assert numbers(root) == reference

    watched = [*(root / "runs").rglob("*.json"), *(root / "runs").rglob("*.pt")]
    before = {path: path.stat().st_mtime_ns for path in watched}
    again = make_all(profile, root, env, "EXECUTOR=dask", f"DASK_SCHEDULER_ADDRESS={scheduler['address']}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to do" in again.stderr and "0 tasks pending" in again.stdout
    assert not re.search(r"\[\d+/\d+\]", again.stderr)
    assert {path: path.stat().st_mtime_ns for path in watched} == before

    assert_loopback_only(listening(descendants(scheduler["scheduler"].pid, scheduler["workers"].pid)))


def test_killed_worker_its_task_is_rescheduled_and_resumes(work, profile, reference, scheduler):
    root = work / "killed"
    env = clean_env(work / "env-killed")
    killed = []

    def kill_a_busy_worker(process: subprocess.Popen) -> None:
        if "execute" not in process.args:
            return
        deadline = time.monotonic() + 180
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            if not list((root / "runs").glob("*/checkpoint.pt")) and not list((root / "runs").glob("*/model.pt")):
                continue  # wait until a run has at least one epoch behind it
            for worker in worker_processes(scheduler["workers"]):
                try:
                    tasks = [c for c in worker.children() if "minima" in _cmdline(c) and str(root) in _cmdline(c)]
                except psutil.NoSuchProcess:
                    continue
                if tasks:
                    os.kill(worker.pid, signal.SIGKILL)
                    tasks[0].wait(timeout=20)  # the task's command dies with its worker (PR_SET_PDEATHSIG)
                    killed.append(worker.pid)
                    return

    executor = ["--executor", "dask", "--scheduler", scheduler["address"]]
    code, out, err = run_stages(stages(profile, root, executor), env, work / "logs-killed", during=kill_a_busy_worker)
    assert killed, "no task ever ran on the scheduler's workers"
    assert code == 0, out[-3000:] + err[-3000:]
    assert len(re.findall(r"\[\d+/4\] \S+ ok in", err)) == 4, err[-3000:]
    assert numbers(root) == reference
    # the lost worker is named in the driver's log, and the task's log keeps both attempts
    assert re.search(r"dask: worker \S+ was lost while running \S+; Dask reschedules it", err), err[-3000:]
    (again,) = re.findall(r"\[\d+/4\] (\S+) ok in .*; attempt 2: Dask ran it again after losing its worker (\S+);", err)
    log = (root / "build" / "logs" / f"{again[0]}.log").read_text()
    assert log.count(" 1 started ") == 1 and log.count(" 2 started ") == 1 and f"its worker {again[1]} was lost" in log
    assert log.index(" 1 started ") < log.index(f"its worker {again[1]} was lost") < log.index(" 2 started ")
    deadline = time.monotonic() + 60  # the nanny restarts the worker: the next tests still have two
    while len(worker_processes(scheduler["workers"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)


def test_gpu_task_without_gpu_workers_fails_at_once(work, profile, scheduler):
    root = work / "gpu"
    env = clean_env(work / "env-gpu")
    done = minima(env, "plan", "--profile", str(profile), "--root", str(root))
    assert done.returncode == 0, done.stderr[-2000:]
    path = root / "build" / "plan.json"
    plan = json.loads(path.read_text())
    plan["tasks"][0]["resources"] = {"gpu": 1}
    path.write_text(json.dumps(plan))
    started = time.monotonic()
    done = minima(env, "execute", "--profile", str(profile), "--root", str(root), "--executor", "dask",
                  "--scheduler", scheduler["address"], timeout=60)
    assert done.returncode == 2 and time.monotonic() - started < 45
    errors = [line for line in done.stderr.splitlines() if line.startswith("minima: error:")]
    assert errors == ["minima: error: the plan needs GPU workers (resources GPU=1); none of the 2 workers offers one: "
                      "start workers with --resources GPU=1"], done.stderr
    assert not list((root / "runs").glob("*/checkpoint.pt")) and not list((root / "runs").glob("*/model.pt"))


# ---- Dask: a LocalCluster ----------------------------------------------------------------------


def test_local_cluster_failed_task_is_listed_and_the_others_finish(work, profile):
    """A run whose directory cannot be locked (its .lock is a directory: fails even as root):
    its task fails once, is not retried, the study part waiting on it is skipped, the rest ends."""
    root = work / "failing"
    env = clean_env(work / "env-failing")
    done = minima(env, "plan", "--profile", str(profile), "--root", str(root))
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads((root / "build" / "plan.json").read_text())
    tasks = {task["key"]: task for task in plan["tasks"]}
    sgd = tasks["study-dinh"]["after"][0]
    (sam,) = [key for key in tasks if key.startswith("config-") and key != sgd]
    broken = tasks[sam]["runs"][0]
    (root / "runs" / broken / ".lock").mkdir()

    process = spawn(make_command(profile, root, "EXECUTOR=dask", "JOBS=2"), env, work / "logs-failing")
    try:
        sockets = watch(process)
        code, out, err = finish(process)
    finally:
        stop(process)
    assert code != 0 and "Error 2" in err, out[-2000:] + err[-3000:]  # make: the execute stage exited 2
    assert re.search(rf"\[\d/4\] {sam} FAILED in [\d.]+ s \(sam .*\): exit 2: minima: error: .*\.lock", err), err[-3000:]
    assert re.search(rf"\[\d/4\] study-interpolation skipped: it needs {sam}, which failed", err)
    assert re.search(rf"\[\d/4\] {sgd} ok in", err) and re.search(r"\[\d/4\] study-dinh ok in", err)
    final = [line for line in err.splitlines() if line.startswith("minima: error:")][-1]
    assert "1 of 4 tasks failed" in final and sam in final and all(run in final for run in tasks[sam]["runs"])
    assert "skipped, waiting on them: study-interpolation" in final
    assert err.count(f"{sam} FAILED") == 1  # not retried
    for run in tasks[sgd]["runs"]:
        assert (root / "runs" / run / "sharpness.json").exists()
    assert not (root / "runs" / broken / "model.pt").exists()
    assert_loopback_only(sockets)


# ---- SLURM through dask-jobqueue, without SLURM ------------------------------------------------

FAKE_SBATCH = """\
#!/usr/bin/env bash
# fake sbatch: run the job script on this machine, in the background, in its own session
set -euo pipefail
state="$FAKE_SLURM_DIR"
script="${@: -1}"
exec 9>"$state/lock"; flock 9
id=$(( $(cat "$state/next" 2>/dev/null || echo 100) + 1 )); echo "$id" > "$state/next"
cp "$script" "$state/job-$id.sh"
SLURM_JOB_ID=$id setsid timeout -k 5 600 bash "$state/job-$id.sh" > "$state/job-$id.out" 2>&1 < /dev/null 9>&- &
echo $! > "$state/job-$id.pid"
echo "Submitted batch job $id"
"""
FAKE_SCANCEL = """\
#!/usr/bin/env bash
state="$FAKE_SLURM_DIR"
for id in "$@"; do
  echo "$id" >> "$state/cancelled"
  pid=$(cat "$state/job-$id.pid" 2>/dev/null) && kill -TERM -- "-$pid" 2>/dev/null || true
done
"""
FAKE_SQUEUE = """\
#!/usr/bin/env bash
echo "JOBID PARTITION NAME USER ST TIME NODES NODELIST(REASON)"
for f in "$FAKE_SLURM_DIR"/job-*.pid; do
  [ -e "$f" ] || continue; id=${f##*/job-}; id=${id%.pid}
  kill -0 "$(cat "$f")" 2>/dev/null && echo "$id debug dask-worker $USER R 0:01 1 localhost"
done
exit 0
"""
JOBQUEUE_YAML = """\
jobqueue:
  slurm:
    queue: debug
    account: minima-test
    walltime: "00:20:00"
    cores: 1
    memory: 2GB
    processes: 1
    interface: lo
    local-directory: {scratch}
    job-extra-directives: ["--qos=short"]
    worker-extra-args: ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    scheduler-options:
      host: 127.0.0.1
      dashboard_address: "127.0.0.1:0"
"""


def test_slurm_jobqueue_with_fake_sbatch_runs_the_sweep(work, profile, reference):
    where = work / "slurm"
    state, bin_dir, scratch = where / "state", where / "bin", where / "scratch"
    for directory in (state, bin_dir, scratch):
        directory.mkdir(parents=True)
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL), ("squeue", FAKE_SQUEUE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = clean_env(work / "env-slurm", FAKE_SLURM_DIR=str(state), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    Path(env["DASK_CONFIG"], "jobqueue.yaml").write_text(JOBQUEUE_YAML.format(scratch=scratch))
    root = where / "root"

    def jobs() -> list[int]:
        return [int(p.read_text()) for p in state.glob("job-*.pid") if p.read_text().strip()]

    sockets: set = set()
    code, out, err = run_stages(stages(profile, root, ["--executor", "slurm", "--jobs", "2"]), env, where / "logs",
                                during=lambda process: sockets.update(watch(process, extra_pids=jobs)))
    assert code == 0, out[-2000:] + err[-3000:] + "".join(p.read_text()[-1500:] for p in state.glob("job-*.out"))
    assert len(re.findall(r"\[\d+/4\] \S+ ok in", err)) == 4, err[-3000:]
    assert numbers(root) == reference

    scripts = sorted(state.glob("job-*.sh"))
    assert 1 <= len(scripts) <= 4  # adaptive, at most JOBS at once
    script = scripts[0].read_text()
    for directive in ("#SBATCH -p debug", "#SBATCH -A minima-test", "#SBATCH -t 00:20:00", "#SBATCH --cpus-per-task=1",
                      "#SBATCH --mem=", "#SBATCH --qos=short"):
        assert directive in script, (directive, script)
    # 20 min walltime: the workers leave after 18 min +/- 1 min, a minute before SLURM's kill.
    assert "--lifetime 1080s --lifetime-stagger 60s" in script and PY in script, script
    assert "--interface lo" in script
    deadline = time.monotonic() + 30  # scancel on close: no job outlives the sweep
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in jobs()) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in jobs() if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert_loopback_only(sockets)


# ---- units: no cluster ---------------------------------------------------------------------


def test_slurm_options_complete_the_config_and_never_replace_it():
    from minima.executors.slurm import offers_gpu, parse_walltime, slurm_options, worker_lifetime
    from minima.io import MinimaError

    assert [parse_walltime(t) for t in ("30", "10:30", "01:00:00", "1-00", "1-02:03", "1-00:00:10")] == \
        [1800, 630, 3600, 86400, 93780, 86410]
    with pytest.raises(MinimaError):
        parse_walltime("an hour")
    for walltime in (120, 600, 1800, 3600, 86400):
        lifetime, stagger = worker_lifetime(walltime)
        assert 0 < lifetime - stagger and lifetime + stagger <= walltime - min(60, walltime // 2)
    options = slurm_options({"memory": "4GB", "walltime": "01:00:00", "worker-extra-args": ["--resources", "GPU=1"]})
    assert options["cores"] == 1 and options["processes"] == 1 and options["python"] == sys.executable
    assert options["worker_extra_args"][:2] == ["--resources", "GPU=1"] and "--lifetime" in options["worker_extra_args"]
    options = slurm_options({"memory": "4GB", "cores": 8, "processes": 2, "python": "/opt/py", "walltime": "10",
                             "worker-extra-args": ["--lifetime", "5m"]})
    assert set(options) == {"worker_extra_args"} and options["worker_extra_args"] == ["--lifetime", "5m"]
    with pytest.raises(MinimaError, match="jobqueue.slurm.memory"):
        slurm_options({"cores": 1})
    assert offers_gpu("python -m distributed.cli.dask_worker tcp://x:1 --resources GPU=1 --lifetime 5s")
    assert offers_gpu('dask_worker --resources "CPU=4,GPU=2"') and not offers_gpu("dask_worker --resources CPU=4")


class FakeClient:
    """Just enough of distributed.Client for the checks before any task is submitted."""

    def __init__(self, workers: dict, answers: dict | None = None):
        self.workers, self.answers, self.submitted = workers, answers or {}, []

    def scheduler_info(self, **kwargs):
        return {"workers": self.workers}

    def run(self, function, *args, **kwargs):
        return {address: self.answers.get(address) for address in self.workers}

    def submit(self, *args, **kwargs):
        self.submitted.append(args)
        raise AssertionError("nothing may be submitted")


def _one_task_plan(root: Path, gpu: int):
    from minima.plan import Plan, Task

    task = Task("config-x", ("run", "--profile", "tiny", "--run", "ab"), ("ab",), (), {"gpu": gpu}, 1.0, True)
    return Plan("tiny", str(root), (task,))


def test_driver_checks_gpu_workers_and_the_shared_root_before_submitting(tmp_path):
    from minima.executors.dask import _root_problem, run_on
    from minima.io import MinimaError

    workers = {"tcp://127.0.0.1:1": {"resources": {}}, "tcp://127.0.0.1:2": {"resources": {}}}
    with pytest.raises(MinimaError, match=r"none of the 2 workers offers one: start workers with --resources GPU=1"):
        run_on(None, _one_task_plan(tmp_path, 1), FakeClient(workers), where="test")
    client = FakeClient(workers, {"tcp://127.0.0.1:2": "/x/build/.executor-token-1: No such file or directory"})
    with pytest.raises(MinimaError, match=rf"worker tcp://127.0.0.1:2 does not see the run root {tmp_path}.*shared file system"):
        run_on(None, _one_task_plan(tmp_path, 0), client, where="test")
    assert not client.submitted and not list((tmp_path / "build").glob(".executor-token*"))

    token = tmp_path / "token"
    token.write_text("abc")
    assert _root_problem(str(token), "abc", str(REPO), str(tmp_path), 0) is None
    assert "other content" in _root_problem(str(token), "abd", str(REPO), str(tmp_path), 0)
    assert "No such file" in _root_problem(str(tmp_path / "missing"), "abc", str(REPO), str(tmp_path), 0)
    assert "no minima code" in _root_problem(str(token), "abc", str(tmp_path), str(tmp_path), 0)


def test_driver_trusts_current_outputs_not_exit_codes(monkeypatch):
    from types import SimpleNamespace

    from minima.executors import dask as driver
    from minima.plan import Plan, Task

    task = Task("config-x", ("run", "--profile", "tiny", "--run", "ab"), ("ab",), (), {"gpu": 0}, 1.0, True)
    ctx = SimpleNamespace(profile=SimpleNamespace(ref="tiny", run=lambda run: run))
    monkeypatch.setattr(driver, "run_is_current", lambda ctx, run: False)
    assert driver._verdict(ctx, task, {"returncode": 0, "tail": ""}) == ("it exited 0 but run ab is not current", "")
    assert driver._verdict(ctx, task, {"returncode": 2, "tail": "x\nminima: error: no\n"})[0] == "exit 2: minima: error: no"
    assert driver._verdict(ctx, task, {"returncode": None, "tail": "KilledWorker: ('k', ...)\nmore"})[0] == "KilledWorker: ('k', ...)"
    monkeypatch.setattr(driver, "run_is_current", lambda ctx, run: True)
    assert driver._verdict(ctx, task, {"returncode": 0, "tail": ""}) == ("ok", "")
    study = Task("study-dinh", ("study", "--profile", "tiny", "--kind", "dinh"), (), ("config-x",), {"gpu": 0}, 2.0, True)
    monkeypatch.setattr(driver, "study_is_current", lambda ctx, kind: kind != "dinh")
    assert driver._stale(ctx, study) == ["study dinh"]
    # longest first: a task's priority counts the chain waiting on it
    short = Task("config-y", ("run",), ("cd",), (), {"gpu": 0}, 1.5, True)
    priorities = driver._priorities(Plan("tiny", "/r", (task, short, study)))
    assert priorities == {"config-x": 3.0, "config-y": 1.5, "study-dinh": 2.0}


def test_a_task_log_keeps_every_attempt_and_names_a_lost_worker(tmp_path):
    """A dying worker went unmentioned and the rescheduled attempt overwrote the first one's log."""
    from minima.executors import dask as driver

    token = tmp_path / "token"
    token.write_text("t0k3n")
    log = tmp_path / "logs" / "config-x.log"
    log.parent.mkdir()
    # the first attempt, as a worker killed mid-run leaves it: a header, some output, no footer
    log.write_text(f"{driver.ATTEMPT} s1 1 started 2026-01-01T00:00:00 on worker tcp://10.0.0.1:4000, in /x: python\n"
                   "sgd lr 0.1 seed 0 epoch 1/3: train loss 2.0\n")
    result = driver._run_task(["check"], str(tmp_path), str(REPO), str(REPO), str(log), str(token), "t0k3n", "s1")
    assert result["attempt"] == 2 and result["lost"] == ["tcp://10.0.0.1:4000"]
    text = log.read_text()
    assert text.startswith(f"{driver.ATTEMPT} s1 1 started") and "epoch 1/3: train loss 2.0\n" in text
    assert f"{driver.ATTEMPT} s1 1 ended without a footer: its worker tcp://10.0.0.1:4000 was lost\n" in text
    assert f"{driver.ATTEMPT} s1 2 started " in text and text.rstrip().endswith(f"exit {result['returncode']} after "
                                                                                  f"{result['seconds']:.1f} s")
    assert driver.ATTEMPT not in result["tail"]  # the verdict reads the command's own last lines
    note = driver._attempts_note(result)
    assert note == f"; attempt 2: Dask ran it again after losing its worker tcp://10.0.0.1:4000; every attempt is in {log}"
    # a later sweep starts from the attempts of its own sweep only
    assert driver._run_task(["check"], str(tmp_path), str(REPO), str(REPO), str(log), str(token), "t0k3n", "s2")["attempt"] == 1


def test_the_slurm_executor_keeps_ctrl_c(tmp_path):
    """Importing dask_jobqueue makes SIGINT a silent sys.exit() (status 0): an interrupted SLURM
    sweep exited as if it had finished."""
    code = ("import signal; from minima.executors.slurm import slurm_cluster_class; slurm_cluster_class(); "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_a_replication_plans_tasks_are_checked_against_their_member_profile(tmp_path):
    """A replication plan's tasks name their member profiles; the driver judges each task's
    outputs with that member's context (same root), opened once."""
    from minima.executors import dask as driver
    from minima.pipeline import open_context
    from minima.plan import Task

    ctx = open_context("tiny", root=str(tmp_path))
    member = str(REPO / "tests" / "data" / "profiles" / "tiny-fashion.toml")
    own = Task("config-a", ("run", "--profile", "tiny", "--run", "ab"), ("ab",), (), {"gpu": 0}, 1.0, True)
    other = Task("config-b", ("run", "--profile", member, "--run", "cd"), ("cd",), (), {"gpu": 0}, 1.0, True)
    assert driver._task_context(ctx, own) is ctx
    opened = driver._task_context(ctx, other)
    assert opened.profile.name == "tiny-fashion" and opened.layout.root == ctx.layout.root
    assert driver._task_context(ctx, other) is opened
    run = opened.profile.runs[0]
    described = driver._describe(ctx, Task("config-c", ("run", "--profile", member, "--run", run.run_hash),
                                            (run.run_hash,), (), {"gpu": 0}, 1.0, True))
    assert described.startswith(f"{run.optimizer.name} lr {run.optimizer.lr:g} B {run.train.batch_size}")
