"""Replication across datasets: the rule at its boundaries, replication profiles and their bad
input, one plan over both datasets' runs, and a two-dataset tiny study through to the PDF."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from minima import data, replication
from minima.__main__ import main
from minima.io import MinimaError
from minima.schema import load_summary
from report import latex
from testkit import REPO, copy_study

PROFILES = REPO / "tests" / "data" / "profiles"  # the two-dataset test profiles
REPLICATE_TINY = PROFILES / "replicate-tiny.toml"
HAVE_FASHION = data._debian_fashion_dir() is not None
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="dataset-fashion-mnist is not installed (make fashion)")
TWO = ("MNIST", "Fashion-MNIST")


# ---- the rule ------------------------------------------------------------------------------

@pytest.mark.parametrize("verdicts, outcome", [
    (("reproduced", "reproduced"), "replicates"),
    (("not_reproduced", "not_reproduced"), "replicates"),  # a refutation replicates too
    (("reproduced", "not_reproduced"), "contradicted"),
    (("not_reproduced", "reproduced"), "contradicted"),
    (("reproduced", "inconclusive"), "undecided"),
    (("inconclusive", "not_reproduced"), "undecided"),
    (("inconclusive", "inconclusive"), "undecided"),  # the same verdict, but nothing decided
    (("reproduced", "not_testable"), "undecided"),
    (("reproduced", None), "undecided"),  # not tested on one dataset
])
def test_the_replication_rule_at_its_boundaries(verdicts, outcome):
    got, reason = replication.replicates(verdicts, TWO)
    assert got == outcome
    if outcome == "undecided":
        open_ = [d for d, v in zip(TWO, verdicts) if v not in replication.DECIDED]
        assert all(f"on {d}" in reason for d in open_)
    if outcome == "contradicted":
        assert "reproduced on" in reason and "not reproduced on" in reason


def test_with_three_datasets_two_opposite_decisions_contradict_whatever_the_third():
    names = ("A", "B", "C")
    assert replication.replicates(("reproduced", "not_reproduced", "inconclusive"), names)[0] == "contradicted"
    assert replication.replicates(("reproduced", "reproduced", "inconclusive"), names)[0] == "undecided"
    assert replication.replicates(("reproduced",) * 3, names) == ("replicates", "reproduced on every dataset")


def _study(name: str, claims: dict[str, str]) -> dict:
    return {"data": {"display_name": name}, "timing": {"total": 1.0}, "runs": [{}],
            "claims": [{"id": i, "claim": f"claim {i}", "source": "S", "verdict": v, "value": 0.1, "ci95": [0, 1],
                        "n_clusters": 6, "p": 0.03, "p_holm": 0.2, "unit": "fraction"} for i, v in claims.items()]}


def test_the_table_has_a_row_per_claim_and_a_cell_per_dataset():
    a = _study("MNIST", {"x": "reproduced", "y": "not_reproduced", "z": "inconclusive"})
    b = _study("Fashion-MNIST", {"y": "not_reproduced", "x": "not_reproduced", "w": "reproduced"})
    rows = replication.replication_table([a, b])
    assert [r["id"] for r in rows] == ["x", "y", "z", "w"]  # the primary's order, then the others'
    assert [r["outcome"] for r in rows] == ["contradicted", "replicates", "undecided", "undecided"]
    assert rows[2]["cells"][1]["verdict"] is None and "not tested on Fashion-MNIST" in rows[2]["reason"]
    assert rows[3]["cells"][0] == {k: None for k in rows[3]["cells"][0]}
    section = replication.replication_section(["p", "q"], [a, b])
    assert section["counts"] == {"replicates": 1, "contradicted": 1, "undecided": 2}
    assert section["members"] == [b] and section["n_runs"] == 2 and section["timing_total"] == 2.0


# ---- replication profiles ------------------------------------------------------------------

def test_a_replication_profile_names_its_members_primary_first():
    found = replication.load_replication(str(REPLICATE_TINY))
    assert found is not None
    assert [m.name for m in found.members] == ["tiny", "tiny-fashion"]
    assert found.datasets == ("mnist", "fashion-mnist")
    assert found.member_refs[0] == "tiny" and Path(found.member_refs[1]) == PROFILES / "tiny-fashion.toml"
    assert replication.load_replication("tiny") is None and replication.load_replication("auto") is None


def test_the_built_in_replicate_profile_runs_quick_then_fashion():
    found = replication.load_replication("replicate")
    assert [m.name for m in found.members] == ["quick", "fashion"]
    quick, fashion = found.members
    assert fashion.study.dataset == "fashion-mnist"
    # the same design: everything but the dataset and the learning rates
    for field in ("seeds", "optimizers", "n_train", "n_val", "lr_batch_scaling", "model"):
        assert getattr(quick.study, field) == getattr(fashion.study, field), field
    assert quick.train == fashion.train and quick.curvature == fashion.curvature and quick.sharpness == fashion.sharpness
    assert {n: g["batch_size"] for n, g in quick.grid.items()} == {n: g["batch_size"] for n, g in fashion.grid.items()}
    assert all(len(fashion.grid[n]["lr_by_batch"]["32"]) == 3 for n in fashion.grid)


@pytest.mark.parametrize("text, message", [
    ('replicate = ["tiny"]', "must list at least two profiles"),
    ('replicate = "tiny"', "must list at least two profiles"),
    ('replicate = ["tiny", "tiny"]', "lists a profile twice"),
    ('replicate = ["tiny", "quick"]', "both train on MNIST"),
    ('replicate = ["tiny", "tiny-fashion.toml"]\nseeds = [0]', "holds only `description` and `replicate`"),
    ('replicate = ["tiny", "nope"]', "member 'nope': unknown profile 'nope'"),
    ('replicate = ["tiny", "missing.toml"]', "member 'missing.toml': profile file not found"),
    ('replicate = ["tiny", "nested.toml"]', "member 'nested.toml' is itself a replication profile"),
    ('description = 3\nreplicate = ["tiny", "tiny-fashion.toml"]', "description must be a string"),
    ('replicate = ["tiny", "longer.toml"]', "one design on several datasets, but train.max_epochs is 9 in longer, 8 in tiny"),
    ('replicate = ["tiny", "adam.toml"]', "study.optimizers is"),
])
def test_a_bad_replication_profile_is_one_clear_error(tmp_path, capsys, text, message):
    shutil.copy(PROFILES / "tiny-fashion.toml", tmp_path / "tiny-fashion.toml")
    (tmp_path / "nested.toml").write_text('replicate = ["tiny", "tiny-fashion.toml"]\n')
    fashion = (PROFILES / "tiny-fashion.toml").read_text()
    (tmp_path / "longer.toml").write_text(fashion.replace("max_epochs = 8", "max_epochs = 9"))
    (tmp_path / "adam.toml").write_text(fashion.replace('"sgd_momentum", "sam"]', '"sgd_momentum", "sam", "adam"]'))
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(MinimaError, match="^bad.toml: ") as caught:
        replication.load_replication(str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert main(["plan", "--profile", str(path), "--root", str(tmp_path / "root"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "root" / "build" / "plan.json").exists()


def test_a_stage_of_single_runs_takes_a_member_profile(tmp_path, capsys):
    code = main(["train", "--profile", str(REPLICATE_TINY), "--root", str(tmp_path), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "replicates tiny, " in err and "`train` takes one of those profiles" in err


# ---- one plan ------------------------------------------------------------------------------

def test_a_fashion_run_is_planned_as_the_longer_one():
    """Fashion-MNIST takes about three times MNIST's epochs to fit: its tasks start first."""
    from minima.config import load_profile
    from minima.plan import _training_cost

    mnist, fashion = load_profile("tiny").runs[0], load_profile(str(PROFILES / "tiny-fashion.toml")).runs[0]
    assert (mnist.optimizer, mnist.train) == (fashion.optimizer, fashion.train)
    assert _training_cost(fashion) == pytest.approx(3.1 * _training_cost(mnist))


@needs_fashion
def test_one_plan_holds_both_datasets_runs_and_each_members_study_parts(tmp_path, capsys):
    assert main(["plan", "--profile", str(REPLICATE_TINY), "--root", str(tmp_path), "--no-progress"]) == 0
    assert "24 runs in 12 configurations on MNIST, Fashion-MNIST" in capsys.readouterr().out
    plan = json.loads((tmp_path / "build" / "plan.json").read_text())
    assert plan["profile"] == str(REPLICATE_TINY)
    datasets = {}
    for task in plan["tasks"]:
        member = task["command"][task["command"].index("--profile") + 1]
        for run in task["runs"]:
            config = json.loads((tmp_path / "runs" / run / "config.json").read_text())
            datasets.setdefault(config["dataset"], set()).add(run)
            assert (member == "tiny") == (config["dataset"] == "mnist")
    assert {k: len(v) for k, v in datasets.items()} == {"mnist": 12, "fashion-mnist": 12}
    studies = sorted(t["key"] for t in plan["tasks"] if t["command"][0] == "study")
    assert studies == ["tiny-fashion-study-dinh", "tiny-fashion-study-interpolation", "tiny-study-dinh",
                       "tiny-study-interpolation"]
    keys = {t["key"] for t in plan["tasks"]}
    assert all(set(t["after"]) <= keys for t in plan["tasks"])
    makefile = (tmp_path / "build" / "plan.mk").read_text()
    assert "tiny-fashion-study-dinh:" in makefile and "tiny-fashion.toml" in makefile
    # the plan is the replication's: executing it under a member's name is refused
    assert main(["execute", "--profile", "tiny", "--root", str(tmp_path), "--no-progress"]) == 2
    assert "is the plan of profile" in capsys.readouterr().err


# ---- the whole build -----------------------------------------------------------------------

@needs_fashion
def test_a_two_dataset_tiny_study_goes_through_to_the_pdf(tiny_build_root, tmp_path):
    """`make all` with the replication profile on a copy of the tiny build: MNIST's runs are
    current, so only the Fashion-MNIST member trains; one summary, one report, both datasets."""
    copy_study(tiny_build_root, tmp_path)
    done = subprocess.run(["make", "-C", str(REPO), "all", f"PROFILE={REPLICATE_TINY}", f"ROOT={tmp_path}", "PROGRESS=0"],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = load_summary(tmp_path / "build" / "summary.json")
    assert summary["profile"] == "replicate-tiny"
    part = summary["replication"]
    assert part["profiles"] == ["tiny", "tiny-fashion"] and part["datasets"] == list(TWO)
    member = part["members"][0]
    assert member["data"]["dataset"] == "fashion-mnist" and {r["dataset"] for r in member["runs"]} == {"fashion-mnist"}
    assert {r["dataset"] for r in summary["runs"]} == {"mnist"}
    assert [row["id"] for row in part["table"]] == [c["id"] for c in summary["claims"]]
    for row in part["table"]:
        verdicts = [summary["claims"], member["claims"]]
        expected = [next(c["verdict"] for c in claims if c["id"] == row["id"]) for claims in verdicts]
        assert [cell["verdict"] for cell in row["cells"]] == expected
        assert row["outcome"] == replication.replicates(expected, TWO)[0]
    assert sum(part["counts"].values()) == len(part["table"])
    markdown = (tmp_path / "build" / "report.md").read_text()
    assert "Replication on other data" in markdown and "Replicates?" in markdown
    assert "The same design run again on Fashion-MNIST (12 runs" in markdown
    assert (tmp_path / "build" / "figures" / "replication_scatter.png").is_file()
    with (tmp_path / "build" / "runs.csv").open() as f:
        runs = list(csv.DictReader(f))
    assert sorted({r["dataset"] for r in runs}) == ["fashion-mnist", "mnist"] and len(runs) == 24
    with (tmp_path / "build" / "claims.csv").open() as f:
        claims = list(csv.DictReader(f))
    assert len(claims) == 2 * len(summary["claims"])
    if not latex.missing_tools():
        assert (tmp_path / "build" / "report.pdf").stat().st_size > 10_000
