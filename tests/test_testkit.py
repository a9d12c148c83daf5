"""The test suite's own helpers: `derived_profile` applies each override or fails naming it."""

import tomllib

import pytest

from minima import config
from testkit import PROFILES, OverrideError, copy_study, derived_profile


def _table(path):
    return tomllib.loads(path.read_text())


def test_a_derived_profile_changes_exactly_what_was_asked(tmp_path):
    path = derived_profile("tiny", tmp_path / "d.toml", optimizers=["sgd", "sam"], interpolate=[], n_train=128,
                           train={"batch_size": 64, "checkpoint_every": 2}, optimizer={"sgd_momentum": None, "sam": {"rho": 0.1}},
                           curvature={"n_samples": 64, "density_runs": None})
    base, derived = _table(PROFILES / "tiny.toml"), _table(path)
    assert derived["optimizers"] == ["sgd", "sam"] and derived["interpolate"] == [] and derived["n_train"] == 128
    assert derived["train"] == {**base["train"], "batch_size": 64, "checkpoint_every": 2}  # a key the base leaves unset
    assert derived["optimizer"] == {"sgd": base["optimizer"]["sgd"], "sam": {"lr": 0.05, "rho": 0.1}}
    assert derived["curvature"] == {k: (64 if k == "n_samples" else v) for k, v in base["curvature"].items() if k != "density_runs"}
    for name in ("sharpness", "landscape", "dinh"):
        assert derived[name] == base[name]
    assert {k: v for k, v in derived.items() if not isinstance(v, dict) and k not in ("optimizers", "interpolate", "n_train")} == \
        {k: v for k, v in base.items() if not isinstance(v, dict) and k not in ("optimizers", "interpolate", "n_train")}
    profile = config.load_profile(str(path))
    assert len(profile.runs) == 4 and profile.study.n_train == 128 and profile.curvature.n_samples == 64


def test_a_derived_profile_keeps_strings_lists_and_an_empty_section(tmp_path):
    path = derived_profile("seed", tmp_path / "d.toml", description="café \"q\" ü", train={"max_epochs": 1})
    derived, base = _table(path), _table(PROFILES / "seed.toml")
    assert derived == {**base, "description": "café \"q\" ü", "train": {**base["train"], "max_epochs": 1}}
    assert derived["dinh"] == {} and derived["optimizer"]["adam"]["betas"] == [0.675, 0.999]


def test_a_derived_profile_may_start_from_a_path(tmp_path):
    first = derived_profile("tiny", tmp_path / "a.toml", seeds=[0])
    second = derived_profile(first, tmp_path / "b.toml", train={"max_epochs": 2})
    assert _table(second)["seeds"] == [0] and _table(second)["train"]["max_epochs"] == 2


@pytest.mark.parametrize("overrides, message", [
    ({"n_trian": 5}, r"n_trian: not a setting of the top level \(misspelled\?\)"),
    ({"train": {"max_epoch": 2}}, r"train\.max_epoch: not a setting of \[train\] \(misspelled\?\)"),
    ({"train": {"n_samples": 64}}, r"train\.n_samples: not a setting of \[train\]; it belongs in \[curvature\] or \[sharpness\] or \[landscape\]"),
    ({"max_epochs": 2}, r"max_epochs: not a setting of the top level; it belongs in \[train\]"),
    ({"curvature": {"rho": 0.1}}, r"curvature\.rho: not a setting of \[curvature\]; it belongs in \[optimizer\]"),
    ({"optimizer": {"sam": {"momentum_typo": 0.9}}}, r"optimizer\.sam\.momentum_typo: not a setting"),
    ({"optimizer": {"adam": {"lr": 0.1}}}, r"\[optimizer\.adam\]: no such section in the base"),
    ({"optimizer": {"adam": None}}, r"\[optimizer\.adam\]: no such section in the base"),
    ({"trian": {"max_epochs": 2}}, r"trian: not a setting of the top level \(misspelled\?\)"),
    ({"train": 3}, r"\[train\]: give a table of changes"),
    ({"n_train": {"x": 1}}, r"n_train: a setting takes a value, not a table"),
    ({"n_train": 256}, r"n_train = 256: a no-op, the base has that value already"),
    ({"train": {"batch_size": [32, 64]}}, r"train\.batch_size = \[32, 64\]: a no-op"),
    ({"optimizer": {"sgd": {"lr": 0.1}}}, r"optimizer\.sgd\.lr = 0\.1: a no-op"),
    ({"train": {"stop_early": True}}, r"train\.stop_early = True: a no-op"),  # unset in the base, the default
    ({"curvature": {"min_steps": None}}, r"curvature\.min_steps: cannot remove it, the base does not set it"),
    ({}, r"no overrides"),
], ids=["misspelled-top-level", "misspelled-in-section", "wrong-section", "section-key-at-top-level", "optimizer-key-in-section",
        "misspelled-optimizer-key", "missing-optimizer-section", "removing-missing-optimizer-section", "misspelled-section",
        "section-without-table", "table-for-a-value", "no-op-top-level", "no-op-list", "no-op-optimizer", "no-op-default",
        "removing-an-unset-key", "nothing"])
def test_an_override_that_does_not_apply_fails_naming_it(tmp_path, overrides, message):
    with pytest.raises(OverrideError, match=message):
        derived_profile("tiny", tmp_path / "d.toml", **overrides)
    assert not (tmp_path / "d.toml").exists()


def test_a_section_the_base_lacks_fails(tmp_path):
    base = tmp_path / "bare.toml"
    base.write_text('seeds = [0]\noptimizers = ["sgd"]\ninterpolate = []\n')
    with pytest.raises(OverrideError, match=r"\[landscape\]: no such section in the base"):
        derived_profile(base, tmp_path / "d.toml", landscape={"points_1d": 3})


def test_a_derived_profile_minima_refuses_fails(tmp_path):
    with pytest.raises(Exception, match="max_epochs: must be >= 1"):
        derived_profile("tiny", tmp_path / "d.toml", train={"max_epochs": 0})


def test_copy_study_copies_the_parts_asked_for(tmp_path):
    source = tmp_path / "source"
    for part in ("runs/r1", "data", "build"):
        (source / part).mkdir(parents=True)
    (source / "runs" / "r1" / "metrics.json").write_text("{}")
    (source / "data" / "link").symlink_to("elsewhere")
    root = copy_study(source, tmp_path / "a" / "root", parts=("runs", "data"))
    assert sorted(p.name for p in root.iterdir()) == ["data", "runs"]
    assert (root / "runs" / "r1" / "metrics.json").read_text() == "{}"
    assert (root / "data" / "link").is_symlink()
