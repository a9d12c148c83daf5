"""End to end: the tiny profile through `make all` to the PDF and the Markdown, then a no-op rerun,
then `make report` alone; plus the CLI's handling of bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minima.__main__ import main

REPO = Path(__file__).resolve().parents[1]
HAVE_VENV = (REPO / ".stamps" / "venv").exists()


def _make(root: Path, *targets: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-C", str(REPO), *targets, "PROFILE=tiny", f"ROOT={root}"],
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not HAVE_VENV:
        pytest.skip("needs `make venv` first (make test does it)")
    root = tmp_path_factory.mktemp("study")
    result = _make(root, "all")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def test_make_all_writes_the_report_and_summary(built):
    root = built
    build = root / "build"
    summary = json.loads((build / "summary.json").read_text())
    for key in ("profile", "git_commit", "created_by", "runs", "dinh", "correlations"):
        assert key in summary
    assert summary["profile"] == "tiny" and len(summary["runs"]) == 6
    run = summary["runs"][0]
    for key in ("run", "dataset", "model", "optimizer", "seed", "status", "epochs", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "curvature", "sharpness"):
        assert key in run
    curvature = run["curvature"]
    assert curvature["top_eigenvalues"] == sorted(curvature["top_eigenvalues"], reverse=True)
    assert {"mean", "stderr"} <= set(curvature["trace"])
    assert 0.0 <= run["test_accuracy"] <= 1.0
    assert len(summary["dinh"]) == 3 and {"scale", "top_eigenvalue", "trace", "test_accuracy"} <= set(summary["dinh"][0])
    assert (build / "report.md").stat().st_size > 1000
    if shutil.which("pdftotext") and shutil.which("latexmk"):
        text = subprocess.run(["pdftotext", str(build / "report.pdf"), "-"], capture_output=True, text=True).stdout
        assert "tiny" in text
    runs_dir = root / "runs" / run["run"]
    for name in ("config.json", "metrics.json", "model.pt", "curvature.json", "sharpness.json", "landscape.json"):
        assert (runs_dir / name).exists(), name
    assert "indices" in json.loads((runs_dir / "curvature.json").read_text())


def test_second_make_all_is_a_no_op(built):
    root = built
    # Wall time is `make bench`'s business, not a test's: here, prove that nothing was redone.
    watched = [*(root / "runs").rglob("*.json"), *(root / "runs").rglob("*.pt"), *(root / "build").rglob("*.pdf"), root / "build" / "summary.json"]
    before = {p: p.stat().st_mtime_ns for p in watched}
    result = _make(root, "all")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0 pending" in result.stdout
    assert " run --profile" not in result.stdout and " study --profile" not in result.stdout
    assert {p: p.stat().st_mtime_ns for p in watched} == before


def test_make_report_alone_rerenders(built):
    root = built
    (root / "build" / "report.md").unlink()
    result = _make(root, "report")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (root / "build" / "report.md").exists()


def test_make_report_lists_missing_results(tmp_path):
    if not HAVE_VENV:
        pytest.skip("needs `make venv` first (make test does it)")
    result = _make(tmp_path, "report")
    assert result.returncode != 0
    assert "missing results" in result.stderr and "model.pt" in result.stderr


def test_cli_bad_profile_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["plan", "--profile", "nonexistent", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minima: error: unknown profile") and "\n" not in err
    assert not any(tmp_path.iterdir())


def test_cli_unknown_optimizer_fails_before_any_work(tmp_path, capsys):
    profile = tmp_path / "bad.toml"
    profile.write_text('seeds = [0]\noptimizers = ["sgd", "lbfgs"]\ninterpolate = []\n[train]\nepochs = 1\n')
    assert main(["plan", "--profile", str(profile), "--root", str(tmp_path / "root")]) == 2
    assert "lbfgs" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_cli_unwritable_root_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["data", "--profile", "tiny", "--root", str(blocker)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_cli_help_lists_every_stage():
    result = subprocess.run([sys.executable, "-m", "minima", "--help"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    for stage in ("data", "plan", "train", "curvature", "sharpness", "landscape", "study", "summarize", "bench"):
        assert stage in result.stdout


def test_corrupt_checkpoint_is_a_clear_error(built, tmp_path, capsys):
    root = built
    copy = tmp_path / "root"
    shutil.copytree(root / "runs", copy / "runs")
    shutil.copytree(root / "data", copy / "data")
    run = sorted(p for p in (copy / "runs").iterdir() if (p / "model.pt").exists())[0]
    (run / "model.pt").write_bytes(b"not a checkpoint")
    before = (run / "curvature.json").read_bytes()
    assert main(["curvature", "--profile", "tiny", "--root", str(copy), "--run", run.name, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "corrupt checkpoint" in err and run.name in err
    assert (run / "curvature.json").read_bytes() == before


def test_bench_rejects_a_bad_sample_count_before_any_work(built, tmp_path, capsys):
    copy = tmp_path / "root"
    shutil.copytree(built / "data", copy / "data")
    assert main(["bench", "--profile", "tiny", "--root", str(copy), "--out", str(copy / "build"), "--samples", "-3"]) == 2
    err = capsys.readouterr().err
    assert "--samples" in err and "-3" in err
    assert not (copy / "build" / "bench.json").exists()


def test_plan_chains_the_dinh_study_to_the_run_it_reads_and_runs_it_first(tmp_path):
    from minima.config import load_profile

    makefile = tmp_path / "plan.mk"
    assert main(["plan", "--profile", "tiny", "--root", str(tmp_path), "--makefile", str(makefile)]) == 0
    lines = makefile.read_text().splitlines()
    profile = load_profile("tiny")
    dinh_run = profile.first_seed_run(profile.study.dinh_optimizer).run_hash
    order = next(line for line in lines if line.startswith("all-runs:")).split()[1:]
    assert order[0] == f"train-{dinh_run}" and order[-1] == "study"
    sam_runs = {f"train-{r.run_hash}" for r in profile.runs if r.optimizer.name == "sam"}
    assert set(order[1:3]) == sam_runs  # the costliest runs next (SAM takes two gradients a step)
    assert len(order) == len(profile.runs) + 1  # every run once, plus the study
    recipe = lines[lines.index(f"train-{dinh_run}:") + 1 : lines.index(f"train-{dinh_run}:") + 3]
    assert f"--run {dinh_run}" in recipe[0] and recipe[1].endswith("study --profile " + str(profile.path) + " --kind dinh")
    study = lines[lines.index(next(line for line in lines if line.startswith("study:"))) + 1]
    assert study.strip().endswith(f"study --profile {profile.path}")


def test_study_rejects_a_part_the_profile_lacks(tmp_path, capsys):
    profile = tmp_path / "p.toml"
    text = (Path(__file__).resolve().parents[1] / "minima" / "profiles" / "tiny.toml").read_text()
    profile.write_text(text.replace('interpolate = ["sgd", "adam"]', "interpolate = []"))
    assert main(["study", "--profile", str(profile), "--root", str(tmp_path), "--kind", "interpolation"]) == 2
    assert "no interpolation part" in capsys.readouterr().err


def _seed_profile_cut_down(tmp_path: Path) -> Path:
    """The packaged `seed` profile with 1 epoch on 300 images and small analysis sets."""
    text = (REPO / "minima" / "profiles" / "seed.toml").read_text()
    text = text.replace('dinh_optimizer = "sgd"', 'dinh_optimizer = "sgd"\nn_train = 300\nn_test = 500')
    text = text.replace("epochs = 150", "epochs = 1")
    text = text.replace("[curvature]\nn_samples = 0", "[curvature]\nn_samples = 100\ntrace_probes = 4\ndensity_probes = 1\ndensity_steps = 8")
    text = text.replace("n_samples = 10000", "n_samples = 100")
    text = text.replace("pacbayes_iters = 16", "pacbayes_iters = 4\nepsilon_steps = 2\nadaptive_steps = 2\naverage_samples = 2\npacbayes_samples = 2")
    text = text.replace("points_2d = 21", "points_2d = 3\npoints_1d = 3\ninterp_points = 3")
    path = tmp_path / "seed-cut.toml"
    path.write_text(text)
    return path


def test_the_original_configuration_runs_on_cpu_and_is_compared_with_the_original(built, tmp_path):
    import json as _json

    from minima.analysis import reproduces_original
    from minima.config import load_profile

    profile = _seed_profile_cut_down(tmp_path)
    root = tmp_path / "root"
    shutil.copytree(built / "data", root / "data")
    for stage in ("run", "study", "summarize"):
        assert main([stage, "--profile", str(profile), "--root", str(root), "--no-progress"]) == 0, stage
    summary = _json.loads((root / "build" / "summary.json").read_text())
    rows = {row["optimizer"]: row for row in summary["original_study"]}
    assert set(rows) == {"sgd", "adagrad", "adam", "adahessian"}
    assert all(row["n"] == 1 and 0.0 <= row["test_accuracy_mean"] <= 1.0 for row in rows.values())
    assert not any(row["same_setup"] for row in rows.values())  # 1 epoch on 300 images is not the original
    assert reproduces_original(load_profile("seed")) and not reproduces_original(load_profile(str(profile)))
    assert summary["model"]["name"] == "seed" and summary["dinh"] == []
    assert not summary["dinh_info"]["applicable"] and "tanh" in summary["dinh_info"]["note"]  # Dinh needs ReLU
