import pytest

from minima import config
from minima.io import MinimaError
from minima.settings import SettingsError, from_table


def _profile_text(extra_top: str = "", train: str = "epochs = 1", optimizer: str = "") -> str:
    return f"""
description = "t"
seeds = [0]
optimizers = ["sgd", "adam"]
interpolate = ["sgd", "adam"]
{extra_top}
[train]
{train}
[optimizer.sgd]
lr = 0.1
{optimizer}
"""


def _load(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return config.load_profile(str(path))


def test_every_shipped_profile_loads():
    for name in config.available_profiles():
        profile = config.load_profile(name)
        assert profile.runs, name
        assert len({r.run_hash for r in profile.runs}) == len(profile.runs)


def test_seed_profile_is_the_original_study():
    profile = config.load_profile("seed")
    assert profile.study.model == "seed" and profile.study.seeds == (100,)
    assert profile.train.epochs == 150 and profile.train.batch_size == 100 and profile.train.shuffle is False
    assert profile.optimizers["sgd"].lr == 0.1 and profile.optimizers["adagrad"].lr == 0.0012
    assert profile.optimizers["adam"].lr == 0.004722 and tuple(profile.optimizers["adam"].betas) == (0.675, 0.999)
    assert profile.optimizers["adahessian"].hessian_power == 0.5


@pytest.mark.parametrize(
    "text, fragment",
    [
        (_profile_text(extra_top="colour = 'red'"), "unknown key 'colour'"),
        (_profile_text(train="epochs = 0"), "epochs"),
        (_profile_text(train="epochs = 'two'"), "train.epochs: expected an integer"),
        (_profile_text(optimizer="[optimizer.adam]\nlr = -1.0"), "lr"),
        (_profile_text(optimizer="[optimizer.adam]\nmomentum_typo = 0.9"), "unknown key 'momentum_typo'"),
        (_profile_text(optimizer="[optimizer.lbfgs]\nlr = 1.0"), "optimizer.lbfgs"),
        (_profile_text().replace('["sgd", "adam"]\ninterpolate', '["sgd", "rmsprop"]\ninterpolate'), "rmsprop"),
        (_profile_text(extra_top="seeds = [1, 1]").replace("seeds = [0]\n", ""), "seeds"),
        (_profile_text(extra_top="model = 'resnet'"), "unknown model 'resnet'"),
        ("seeds = [", "invalid TOML"),
    ],
)
def test_bad_profiles_fail_with_one_line_naming_the_problem(tmp_path, text, fragment):
    with pytest.raises(MinimaError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_unknown_profile_lists_the_choices():
    with pytest.raises(MinimaError, match="quick"):
        config.load_profile("nonexistent")


def test_run_hash_changes_only_with_what_decides_the_weights(tmp_path):
    base = _load(tmp_path, _profile_text())
    changed_lr = _load(tmp_path, _profile_text(optimizer="[optimizer.adam]\nlr = 0.002"))
    changed_curvature = _load(tmp_path, _profile_text() + "\n[curvature]\nn_samples = 10\n")
    hashes = lambda p: {(r.optimizer.name, r.seed): r.run_hash for r in p.runs}  # noqa: E731
    assert hashes(base) == hashes(changed_curvature)
    assert hashes(base)[("sgd", 0)] == hashes(changed_lr)[("sgd", 0)]
    assert hashes(base)[("adam", 0)] != hashes(changed_lr)[("adam", 0)]


def test_settings_types_are_checked():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class S:
        a: int = 1
        b: float = 0.5
        c: tuple[float, ...] = (1.0,)
        d: bool = False

    assert from_table(S, {"a": 2, "b": 1, "c": [1, 2], "d": True}, "s") == S(2, 1.0, (1.0, 2.0), True)
    for bad in ({"a": 1.5}, {"a": True}, {"b": "x"}, {"c": 3}, {"d": 1}):
        with pytest.raises(SettingsError):
            from_table(S, bad, "s")
