"""End to end: the tiny profile through `make all` (built once per session by `tiny_build_root`),
a no-op rerun, `make report` alone, concurrent builds, self-repair of corrupt artifacts, study
results keyed on the models they read, and the CLI's handling of bad input."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minima.__main__ import main
from minima.io import MinimaError
from minima.schema import load_summary

import stated
from testkit import HAVE_VENV, LIGHT_ANALYSES, NEEDS_VENV, PROFILES, REPO, copy_study, derived_profile


def _make(root: Path, *targets: str, timeout: int = 900, **variables: str) -> subprocess.CompletedProcess:
    extra = [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(["make", "-C", str(REPO), *targets, "PROFILE=tiny", f"ROOT={root}", *extra],
                          capture_output=True, text=True, timeout=timeout)


def _cli(*args: str) -> int:
    return main([*args, "--no-progress"])


@pytest.fixture
def built(tiny_build_root):
    """The session's tiny study (read only)."""
    return tiny_build_root


def test_make_all_builds_a_designed_study_and_its_report(built):
    summary = load_summary(built / "build" / "summary.json")  # schema-checked
    assert summary["profile"] == "tiny" and len(summary["runs"]) == 12
    assert summary["design"]["axes"] == ["optimizer", "batch_size"] and summary["design"]["n_configurations"] == 6
    run = summary["runs"][0]
    assert {"lr", "batch_size"} == set(run["hyperparameters"]) and run["dataset"] == "mnist"
    assert run["curvature"]["top_eigenvalues"] == sorted(run["curvature"]["top_eigenvalues"], reverse=True)
    rows = summary["correlations"]
    assert rows and all(set(row["psi"]) == {"optimizer", "batch_size"} for row in rows)
    assert len(summary["claims"]) >= 6 and {c["verdict"] for c in summary["claims"]} <= {
        "reproduced", "not_reproduced", "inconclusive", "not_testable"}
    assert summary["data"]["n_train"] == 256 and summary["data"]["display_name"] == "MNIST"
    directory = built / "runs" / run["run"]
    for name in ("config.json", "metrics.json", "model.pt", "curvature.json", "sharpness.json"):
        assert (directory / name).exists(), name
    metrics = json.loads((directory / "metrics.json").read_text())
    assert len(metrics["training_set"]["indices"]) == 256 and metrics["training_set"]["indices_sha256"]
    assert json.loads((directory / "curvature.json").read_text())["data"]["n"] == 128  # a stratified subset, recorded
    assert (built / "build" / "report.md").read_text().count("|") > 100
    assert (built / "build" / "plan.json").exists() and (built / "build" / "plan.mk").exists()


def test_core_seconds_per_stage_add_up_the_runs_records(built):
    """summary.json's core_timing is the process CPU time each run recorded, stage by stage: the
    figure a measurement-cost target is judged on, whatever else shared the machine."""
    summary = load_summary(built / "build" / "summary.json")
    core, runs = summary["core_timing"], built / "runs"
    metrics = [json.loads((runs / r["run"] / "metrics.json").read_text()) for r in summary["runs"]]
    assert core["train"] == pytest.approx(sum(h["cpu_time"] for m in metrics for h in m["history"]), rel=1e-12)
    for kind in ("curvature", "sharpness", "landscape"):
        records = [json.loads((runs / r["run"] / f"{kind}.json").read_text()) for r in summary["runs"]
                   if (runs / r["run"] / f"{kind}.json").exists()]
        assert records and core[kind] == pytest.approx(sum(rec["cpu_seconds"] for rec in records), rel=1e-12), kind
        assert all(0 < rec["cpu_seconds"] for rec in records)
    (dinh,) = (runs / "_study").glob("*dinh.json")
    assert core["dinh"] == json.loads(dinh.read_text())["cpu_seconds"] > 0
    assert set(core) == set(summary["timing"])
    assert core["total"] == pytest.approx(sum(v for k, v in core.items() if k != "total"), rel=1e-12)


def test_second_make_all_does_nothing(built, tmp_path):
    root = copy_study(built, tmp_path / "root")
    watched = [*(root / "runs").rglob("*.json"), *(root / "runs").rglob("*.pt"), root / "build" / "summary.json"]
    before = {p: p.stat().st_mtime_ns for p in watched}
    result = _make(root, "all")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0 tasks pending" in result.stdout
    assert " run --profile" not in result.stdout and " study --profile" not in result.stdout
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def test_make_report_alone_rerenders_and_names_the_command(built, tmp_path):
    root = copy_study(built, tmp_path / "root")
    (root / "build" / "report.md").unlink()
    result = _make(root, "report")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "make report PROFILE=tiny" in (root / "build" / "report.md").read_text()
    assert "make all PROFILE=tiny" in (built / "build" / "report.md").read_text()


def test_make_report_lists_missing_results(tmp_path):
    if not HAVE_VENV:
        pytest.skip(NEEDS_VENV)
    result = _make(tmp_path, "report")
    assert result.returncode != 0
    assert "missing results" in result.stderr and "not trained" in result.stderr
    # The advice is the exact command that works from the checkout: a results root outside it
    # is named, and a path profile with a space is quoted as the shell needs it.
    assert f"(run `make all PROFILE=tiny ROOT={tmp_path.resolve()}`)" in result.stderr


def test_missing_results_advice_quotes_a_path_profile_and_names_the_root(tmp_path, capsys):
    profile = tmp_path / "my study.toml"
    shutil.copy(PROFILES / "tiny.toml", profile)
    root = tmp_path / "results"
    assert _cli("summarize", "--profile", str(profile), "--root", str(root)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"(run `make all 'PROFILE={profile}' ROOT={root.resolve()}`)" in error


def test_make_takes_a_path_profile_with_a_space(tmp_path):
    if not HAVE_VENV:
        pytest.skip(NEEDS_VENV)
    profile = tmp_path / "my dir" / "my study.toml"
    profile.parent.mkdir()
    shutil.copy(PROFILES / "tiny.toml", profile)
    root = tmp_path / "results"
    result = subprocess.run(["make", "-C", str(REPO), "report", f"PROFILE={profile}", f"ROOT={root}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0  # nothing is built yet: the profile reached minima whole
    assert f"missing results for profile {profile} (run `make all 'PROFILE={profile}' ROOT={root}`)" in result.stderr


def test_logs_have_no_progress_bars_off_a_terminal(built, tmp_path):
    root = copy_study(built, tmp_path / "root")
    run = json.loads((built / "build" / "summary.json").read_text())["runs"][0]["run"]
    shutil.rmtree(root / "runs" / run)
    done = subprocess.run([sys.executable, "-m", "minima", "run", "--profile", "tiny", "--root", str(root), "--run", run],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr and "epoch 1/" in done.stderr
    assert all(len(line) < 300 for line in done.stderr.splitlines())


# ---- self-repair and currency ----------------------------------------------------------------


def _first_run(root: Path) -> str:
    return json.loads((root / "build" / "summary.json").read_text())["runs"][0]["run"]


@pytest.mark.parametrize("artifact, payload", [
    ("model.pt", b"not a checkpoint"),
    ("metrics.json", b"[1, 2, 3]"),
    ("metrics.json", b'{"status": "ok"}'),
    ("curvature.json", b"\x00\xff garbage"),
    ("eigenvectors.pt", b"truncated"),
])
def test_a_corrupt_artifact_is_moved_aside_and_recomputed(built, tmp_path, capsys, monkeypatch, artifact, payload):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread, as under make -j2: the same weights, bit for bit
    root = copy_study(built, tmp_path / "root")
    run = _first_run(root)
    target = root / "runs" / run / artifact
    target.write_bytes(payload)
    assert _cli("run", "--profile", "tiny", "--root", str(root), "--run", run) == 0
    err = capsys.readouterr().err
    assert (root / "runs" / run / f"{artifact}.corrupt").exists() and "corrupt" in err
    assert _cli("study", "--profile", "tiny", "--root", str(root)) == 0  # current again: nothing to redo
    assert "minima: study" not in capsys.readouterr().err
    assert _cli("summarize", "--profile", "tiny", "--root", str(root)) == 0
    repaired = load_summary(root / "build" / "summary.json")
    original = load_summary(built / "build" / "summary.json")
    # everything is recomputed from the same seeds: the same numbers as before the damage
    assert repaired["runs"][0]["test_accuracy"] == original["runs"][0]["test_accuracy"]
    assert repaired["runs"][0]["values"]["top_eigenvalue"] == pytest.approx(original["runs"][0]["values"]["top_eigenvalue"], rel=1e-6)


def test_make_report_changes_no_run_and_names_what_is_corrupt(built, tmp_path):
    """`make report` never trains: it once moved corrupt files aside and said "recomputing"."""
    root = copy_study(built, tmp_path / "root")
    first, second = json.loads((root / "build" / "summary.json").read_text())["runs"][:2]
    (root / "runs" / first["run"] / "curvature.json").write_bytes(b"\x00 garbage")
    (root / "runs" / second["run"] / "model.pt").write_bytes(b"not a model")
    before = {p: p.read_bytes() for p in (root / "runs").rglob("*") if p.is_file()}
    result = _make(root, "report")
    assert result.returncode == 2 and "recomputing" not in result.stderr
    assert {p: p.read_bytes() for p in (root / "runs").rglob("*") if p.is_file()} == before  # nothing moved or changed
    error = result.stderr.strip().splitlines()[-2]  # the last line is make's own
    assert error.startswith(f"minima: error: missing results for profile tiny (run `make all PROFILE=tiny ROOT={root}`, "
                            "which moves corrupt files aside and recomputes them): ")
    assert f"runs/{first['run']}/curvature.json is corrupt (unreadable or incomplete result)" in error
    assert f"runs/{second['run']}/model.pt is corrupt" in error


def _without_torch(tmp_path: Path) -> dict[str, str]:
    """An environment where `import torch` fails (a package of that name that raises)."""
    blocker = tmp_path / "no-torch"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text('raise ImportError("torch is absent in this test")\n')
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)]), "MINIMA_PROGRESS": "0"}


def test_plan_execute_and_summarize_of_a_current_study_run_without_torch(built, tmp_path):
    """`build` (plan, execute, summarize) and `make report` decide what is current from the
    digests recorded beside model.pt and eigenvectors.pt: with every result current, no process
    imports torch, and the summary is the one the full build wrote."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine imports torch to choose its device")
    root = copy_study(built, tmp_path / "root", parts=("runs", "data"))
    env = _without_torch(tmp_path)
    minima = [sys.executable, "-m", "minima"]
    done = subprocess.run([*minima, "build", "--profile", "tiny", "--root", str(root)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 tasks pending" in done.stdout
    rebuilt, original = (load_summary(r / "build" / "summary.json") for r in (root, built))
    assert rebuilt["runs"] == original["runs"] and rebuilt["claims"] == original["claims"]
    assert rebuilt["data"] == original["data"] and rebuilt["model"] == original["model"]
    assert {k: v for k, v in rebuilt["environment"].items() if k != "threads"} == \
        {k: v for k, v in original["environment"].items() if k != "threads"}

    first, second = rebuilt["runs"][:2]
    model = root / "runs" / first["run"] / "model.pt"
    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))  # one bit: still a zip
    (root / "runs" / second["run"] / "eigenvectors.pt").write_bytes(b"truncated")
    done = subprocess.run([*minima, "summarize", "--profile", "tiny", "--root", str(root)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"runs/{first['run']}/model.pt is corrupt (its SHA-256 differs from the one recorded when it was written)" in done.stderr
    assert f"runs/{second['run']}/eigenvectors.pt is corrupt" in done.stderr


def test_results_without_recorded_digests_are_checked_by_loading_them(built, tmp_path):
    """Runs written before digests were recorded: their tensor files are checked as before, by
    loading them; a readable one counts, an unreadable one is corrupt."""
    from minima import pipeline

    root = copy_study(built, tmp_path / "root")
    ctx = pipeline.open_context("tiny", root=str(root), repair=False)
    first, second = ctx.profile.runs[:2]
    for run in (first, second):
        path = root / "runs" / run.run_hash / "metrics.json"
        record = json.loads(path.read_text())
        del record["model_sha256"]
        path.write_text(json.dumps(record))
    (root / "runs" / second.run_hash / "model.pt").write_bytes(b"not a model")
    assert pipeline.is_trained(ctx, first) and not pipeline.is_trained(ctx, second)
    assert "not a readable torch file" in ctx.corrupt[root / "runs" / second.run_hash / "model.pt"]


def test_the_landscape_stage_alone_brings_curvature_up_to_date_first(built, tmp_path, capsys):
    """It reads curvature's eigenvectors: with them missing it once failed ("cannot read")."""
    root = copy_study(built, tmp_path / "root")
    run = _first_run(root)
    (root / "runs" / run / "eigenvectors.pt").unlink()
    (root / "runs" / run / "landscape.json").unlink()
    assert _cli("landscape", "--profile", "tiny", "--root", str(root), "--run", run) == 0
    err = capsys.readouterr().err
    assert "minima: curvature of" in err and "minima: landscape of" in err
    assert (root / "runs" / run / "eigenvectors.pt").exists() and (root / "runs" / run / "landscape.json").exists()


def test_a_changed_model_invalidates_the_study_that_read_it(built, tmp_path):
    from minima import pipeline

    root = copy_study(built, tmp_path / "root")
    ctx = pipeline.open_context("tiny", root=str(root))
    assert pipeline.study_is_current(ctx, "dinh")
    dinh_run = pipeline.dinh_run(ctx)
    path = root / "runs" / dinh_run.run_hash / "model.pt"
    weights = torch.load(path, weights_only=True)
    weights["fc3.bias"] = weights["fc3.bias"] + 0.01
    from minima.tensors import save_torch

    save_torch(path, weights)
    assert not pipeline.study_is_current(ctx, "dinh")
    assert "study: dinh" in pipeline.missing_results(ctx)


def test_two_concurrent_make_all_train_each_run_once(tmp_path):
    if not HAVE_VENV:
        pytest.skip(NEEDS_VENV)
    profile = derived_profile("tiny", tmp_path / "two.toml", **LIGHT_ANALYSES, optimizers=["sgd", "sam"], interpolate=[],
                              optimizer={"sgd_momentum": None}, train={"batch_size": 64})  # training as in tiny: 8 epochs
    root = tmp_path / "root"
    command = ["make", "-C", str(REPO), "all", f"PROFILE={profile}", f"ROOT={root}", "JOBS=1", "PDF=0"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=900) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs[0][1][-2000:] + outs[1][1][-2000:]
    logs = outs[0][1] + outs[1][1]
    for seed in (0, 1):
        for name in ("sgd lr 0.1 seed", "sam lr 0.05 seed"):
            assert logs.count(f"{name} {seed} epoch 1/") == 1, (name, seed)
    assert len(load_summary(root / "build" / "summary.json")["runs"]) == 4
    assert (root / "build" / "report.md").is_file() and not (root / "build" / "report.pdf").exists()  # PDF=0


# ---- the CLI's handling of bad input -------------------------------------------------------------


def test_cli_bad_profile_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["plan", "--profile", "nonexistent", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minima: error: unknown profile") and "\n" not in err
    assert not any(tmp_path.iterdir())


def _profile_file(directory: Path, kind: str) -> str:
    if kind == "directory":
        return str(directory) + "/"
    if kind == "latin-1":
        (directory / "latin.toml").write_bytes(b"description = 'caf\xe9'")
        return str(directory / "latin.toml")
    (directory / "bad.toml").write_text('seeds = [0]\noptimizers = ["sgd", "lbfgs"]\ninterpolate = []\n')
    return str(directory / "bad.toml")


@pytest.mark.parametrize("kind, fragment", [("directory", "is a directory"), ("latin-1", "not UTF-8"), ("optimizer", "lbfgs")])
def test_cli_profile_problems_are_one_line(tmp_path, capsys, kind, fragment):
    (tmp_path / "p").mkdir()
    assert main(["plan", "--profile", _profile_file(tmp_path / "p", kind), "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "root").exists()


def test_build_runs_plan_execute_and_summarize_in_order_and_stops_at_a_failure(monkeypatch, tmp_path, capsys):
    """`minima build` (what `make all` runs) is the three stages in one process, each with its own
    options; a stage that fails stops the build before the next (no summary of a failed execute)."""
    import minima.__main__ as cli

    seen = []
    real = cli._dispatch

    def spy(args):
        if args.stage != "build":
            seen.append((args.stage, args.task_runs, args.executor, args.jobs, args.created_by))
            if args.stage == "execute":
                raise MinimaError("some tasks failed (make exited 2); their errors are above")
            return None
        return real(args)

    monkeypatch.setattr(cli, "_dispatch", spy)
    status = main(["build", "--profile", "tiny", "--root", str(tmp_path), "--task-runs", "3", "--jobs", "4",
                   "--created-by", "make", "all"])
    assert status == 2 and "some tasks failed" in capsys.readouterr().err
    assert seen == [("plan", 3, "local", 4, ["make", "all"]), ("execute", 3, "local", 4, ["make", "all"])]
    assert cli.BUILD_STAGES == ("plan", "execute", "summarize")


def test_build_refuses_a_bad_task_count_before_any_task_runs(built, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(built / "data", root / "data")
    assert _cli("build", "--profile", "tiny", "--root", str(root), "--task-runs", "0") == 2
    assert "--task-runs: must be >= 1, got 0" in capsys.readouterr().err
    assert not (root / "build" / "plan.json").exists() and not (root / "build" / "summary.json").exists()


def test_cli_unwritable_root_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["data", "--profile", "tiny", "--root", str(blocker)]) == 2
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err


def test_cli_last_resort_handler_prints_one_line(monkeypatch, tmp_path, capsys):
    from minima import pipeline

    def boom(*args, **kwargs):
        raise ZeroDivisionError("deliberate")

    monkeypatch.setattr(pipeline, "stage_data", boom)
    assert main(["data", "--profile", "tiny", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minima: unexpected error: ZeroDivisionError: deliberate") and "\n" not in err
    assert "--debug" in err


def test_cli_help_lists_every_stage():
    result = subprocess.run([sys.executable, "-m", "minima", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    for stage in ("data", "plan", "train", "curvature", "sharpness", "landscape", "study", "execute", "summarize", "check", "bench"):
        assert stage in result.stdout
    assert "$MINIMA_PROGRAM_STORE" in " ".join(result.stdout.split())  # where traced programs are kept


def test_corrupt_summary_is_one_line_for_the_report(tmp_path):
    (tmp_path / "summary.json").write_bytes(b"\x89PNG garbage")
    done = subprocess.run([sys.executable, "-m", "report", "--summary", str(tmp_path / "summary.json"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "corrupt file" in done.stderr
    assert not (tmp_path / "out").exists()


def test_bench_rejects_a_bad_sample_count_before_any_work(built, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(built / "data", root / "data")
    assert _cli("bench", "--profile", "tiny", "--root", str(root), "--samples", "-3") == 2
    err = capsys.readouterr().err
    assert "--samples" in err and "-3" in err
    assert not (root / "build" / "bench.json").exists()


def test_study_rejects_a_part_the_profile_lacks(tmp_path, capsys):
    profile = derived_profile("tiny", tmp_path / "p.toml", interpolate=[])
    assert _cli("study", "--profile", str(profile), "--root", str(tmp_path), "--kind", "interpolation") == 2
    assert "no interpolation part" in capsys.readouterr().err


# ---- the original study's configuration --------------------------------------------------------


def _seed_profile_cut_down(tmp_path: Path) -> Path:
    """The packaged `seed` profile with 1 epoch on 300 images and small analysis sets."""
    return derived_profile(
        "seed", tmp_path / "seed-cut.toml", n_train=300, n_test=500, train={"max_epochs": 1},
        curvature={"n_samples": 100, "trace_probes": 4, "density_probes": 1, "density_steps": 8},
        sharpness={"n_samples": 100, "pacbayes_iters": 4, "epsilon_steps": 2, "adaptive_steps": 2, "average_samples": 2,
                   "pacbayes_samples": 2, "msharp_steps": 2, "msharp_points": 64, "msharp_m": 32},
        landscape={"n_samples": 100, "points_2d": 3, "points_1d": 3, "interp_points": 3})


def test_the_original_configuration_runs_on_cpu_and_is_compared_with_the_original(built, tmp_path):
    profile = _seed_profile_cut_down(tmp_path)
    root = tmp_path / "root"
    shutil.copytree(built / "data", root / "data")
    for stage in ("run", "study", "summarize"):
        assert _cli(stage, "--profile", str(profile), "--root", str(root)) == 0, stage
    summary = load_summary(root / "build" / "summary.json")
    original = summary["original_study"]
    assert original["comparable"] and not original["same_setup"]  # MNIST and the tanh net, but 1 epoch on 300 images
    rows = {row["optimizer"]: row for row in original["rows"]}
    assert set(rows) == {"sgd", "adagrad", "adam", "adahessian"}
    assert all(row["n"] == 1 and 0.0 <= row["test_accuracy_mean"] <= 1.0 for row in rows.values())
    assert {d["setting"] for d in original["differences"]} >= {"n_train", "max_epochs"}
    assert summary["model"]["name"] == "seed" and summary["dinh"] == []
    assert not summary["dinh_info"]["applicable"] and "tanh" in summary["dinh_info"]["note"]  # Dinh needs ReLU


def test_a_modern_profile_is_not_compared_with_the_original(built):
    original = load_summary(built / "build" / "summary.json")["original_study"]
    assert not original["comparable"] and "'seed' LeNet-5 variant" in original["reason"] and original["rows"] == []
    assert {"setting": "activation", "optimizer": None, "ours": "relu", "original": "tanh"} in original["differences"]


# ---- a study where nothing converges, lists on every grid axis ------------------------------------


# Paths are data, not make syntax (issue 25, tries 2 and 3): a space split ROOT and sent results
# elsewhere, `$1` vanished from a profile name, and `$(shell ...)` in either ran.
HOSTILE_NAME = "my $(shell touch PWN) a$1b 'q' \"dq\" ü"


@pytest.fixture(scope="module")
def capped(tmp_path_factory) -> Path:
    """`stated.CAPPED` built once through `make all`, with a profile path and a ROOT that hold a
    space, `$(...)`, `$1`, both quotes and a non-ASCII letter: 18 runs of one epoch, none converged."""
    if not HAVE_VENV:
        pytest.skip(NEEDS_VENV)
    base = tmp_path_factory.mktemp("capped")
    profile, root = base / "profiles" / f"capped {HOSTILE_NAME}.toml", base / f"root {HOSTILE_NAME}"
    profile.parent.mkdir()
    profile.write_text(stated.CAPPED)
    done = subprocess.run(["make", "-C", str(REPO), "all", f"PROFILE={profile}", f"ROOT={root}", "JOBS=2", "PROGRESS=0", "PDF=0"],
                          capture_output=True, text=True, cwd=base, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_paths_with_spaces_dollars_quotes_and_unicode_are_data(capped):
    """Results land under the ROOT given, and nowhere else; nothing in a path ran as a command;
    `make report` finds them through the same paths and records the command quoted."""
    base = capped.parent
    assert sorted(p.name for p in base.iterdir()) == sorted(["profiles", capped.name])
    assert sorted(p.name for p in capped.iterdir()) == ["build", "data", "runs"]
    assert len([p for p in (capped / "runs").iterdir() if p.name != "_study"]) == 18
    assert (capped / "build" / "report.md").is_file() and (capped / "build" / "summary.json").is_file()
    assert (capped / "build" / "report.tex").is_file() and not (capped / "build" / "report.pdf").exists()  # PDF=0
    for where in (REPO, base, capped):
        assert not (where / "PWN").exists(), where
    profile = base / "profiles" / f"capped {HOSTILE_NAME}.toml"
    done = subprocess.run(["make", "-C", str(REPO), "report", f"PROFILE={profile}", f"ROOT={capped}", "PDF=0"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = load_summary(capped / "build" / "summary.json")
    assert summary["profile_ref"] == str(profile)
    assert summary["created_by"] == shlex.join(["make", "report", f"PROFILE={profile}"])
    assert not (REPO / "PWN").exists()


def test_a_dollar_in_a_profile_name_reaches_minima_whole(tmp_path):
    """`a$1b.toml` once failed as "profile file not found: .../ab.toml"."""
    if not HAVE_VENV:
        pytest.skip(NEEDS_VENV)
    profile = tmp_path / "a$1b.toml"
    shutil.copy(PROFILES / "tiny.toml", profile)
    result = subprocess.run(["make", "-C", str(REPO), "report", f"PROFILE={profile}", f"ROOT={tmp_path / 'r'}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and f"missing results for profile {profile} (run" in result.stderr


def test_a_control_character_in_a_path_stops_at_once_naming_it(tmp_path, capsys):
    assert _cli("plan", "--profile", "tiny", "--root", str(tmp_path / "a\nb")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "contains a newline (U+000A)" in err
    assert not any(tmp_path.iterdir())


def test_a_capped_run_enters_no_claim_the_dinh_check_included(capped):
    """Issue 25, try 6: with max_epochs = 1 the Dinh claim was "reproduced" on a run at 11 %
    test accuracy; the rescaling is applied to a converged run only, else the claim is not testable."""
    summary = load_summary(capped / "build" / "summary.json")
    assert summary["design"]["n_converged"] == 0 and summary["design"]["n_capped"] == 18
    assert summary["dinh"] == [] and summary["dinh_info"]["converged"] is False
    (claim,) = [c for c in summary["claims"] if c["claim"].startswith("A function-preserving rescaling")]
    assert claim["verdict"] == "not_testable" and claim["reason"].startswith("none of the 16 sgd runs converged")
    assert {c["verdict"] for c in summary["claims"]} == {"not_testable"}  # capped runs are left out of every claim
    assert "none of the 16 sgd runs converged" in (capped / "build" / "report.md").read_text()


def test_the_report_states_the_settings_each_run_used(capped):
    """Issue 25, try 1, end to end: every stated train setting and hyperparameter equals what the
    runs' config.json recorded (lists on every axis, one optimizer's own batch size)."""
    markdown = (capped / "build" / "report.md").read_text()
    assert stated.check_against_configs(markdown, capped / "runs") >= 20
