import pytest

from minima import config
from minima.io import MinimaError
from minima.settings import SettingsError, from_table


def _profile_text(extra_top: str = "", train: str = "max_epochs = 1", optimizer: str = "") -> str:
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
    from minima.replication import load_replication

    for name in config.available_profiles():
        combined = load_replication(name)
        if combined is not None:  # a replication: its members are shipped profiles too
            assert all(m.name in config.available_profiles() for m in combined.members), name
            with pytest.raises(MinimaError, match="is a replication profile"):
                config.load_profile(name)
            continue
        profile = config.load_profile(name)
        assert profile.runs, name
        assert len({r.run_hash for r in profile.runs}) == len(profile.runs)


def test_seed_profile_is_the_original_study():
    profile = config.load_profile("seed")
    assert profile.study.model == "seed" and profile.study.seeds == (100,)
    assert profile.train.max_epochs == 150 and profile.train.stop_early is False and profile.train.shuffle is False
    assert {r.train.batch_size for r in profile.runs} == {100} and profile.axes == ("optimizer",)
    assert profile.optimizers["sgd"].lr == 0.1 and profile.optimizers["adagrad"].lr == 0.0012
    assert profile.optimizers["adam"].lr == 0.004722 and tuple(profile.optimizers["adam"].betas) == (0.675, 0.999)
    assert profile.optimizers["adahessian"].hessian_power == 0.5


@pytest.mark.parametrize(
    "text, fragment",
    [
        (_profile_text(extra_top="colour = 'red'"), "unknown key 'colour'"),
        (_profile_text(train="max_epochs = 0"), "train.max_epochs: must be >= 1, got 0"),
        (_profile_text(train="max_epochs = 'two'"), "train.max_epochs: expected an integer"),
        (_profile_text(train="epochs = 3"), "train: unknown key 'epochs'"),
        (_profile_text(train="batch_size = []"), "train.batch_size: needs at least one value"),
        (_profile_text(train="batch_size = [32, 0]"), "train.batch_size: must be >= 1, got 0"),
        (_profile_text(train="batch_size = [32, 32]"), "listed twice"),
        (_profile_text(train="label_noise = 1.5"), "train.label_noise: must be < 1"),
        (_profile_text(optimizer="[optimizer.adam]\nlr = [0.1, -1.0]"), "optimizer.adam.lr: must be > 0"),
        (_profile_text(extra_top="n_train = 1000000"), "n_train: 1000000 exceeds the 60000 images of the MNIST training split"),
        (_profile_text(extra_top="n_test = 50000"), "n_test: 50000 exceeds the 10000 images"),
        (_profile_text(optimizer="[optimizer.adam]\nlr = -1.0"), "lr"),
        (_profile_text(optimizer="[optimizer.adam]\nmomentum_typo = 0.9"), "unknown key 'momentum_typo'"),
        (_profile_text(optimizer="[optimizer.lbfgs]\nlr = 1.0"), "optimizer.lbfgs"),
        (_profile_text().replace('["sgd", "adam"]\ninterpolate', '["sgd", "rmsprop"]\ninterpolate'), "rmsprop"),
        (_profile_text(extra_top="seeds = [1, 1]").replace("seeds = [0]\n", ""), "seeds"),
        (_profile_text(extra_top="model = 'resnet'"), "model: must be one of 'modern' or 'seed', got 'resnet'"),
        ("seeds = [", "invalid TOML"),
    ],
)
def test_bad_profiles_fail_with_one_line_naming_the_problem(tmp_path, text, fragment):
    with pytest.raises(MinimaError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_a_huge_bad_value_is_quoted_short(tmp_path):
    with pytest.raises(MinimaError) as info:
        _load(tmp_path, _profile_text(train=f"max_epochs = '{'x' * 50000}'"))
    message = str(info.value)
    assert "train.max_epochs: expected an integer, got 'xxx" in message and len(message) < 200


def test_unknown_profile_lists_the_choices():
    with pytest.raises(MinimaError, match="quick"):
        config.load_profile("nonexistent")


def test_run_hash_changes_only_with_what_decides_the_weights(tmp_path):
    base = _load(tmp_path, _profile_text())
    changed_lr = _load(tmp_path, _profile_text(optimizer="[optimizer.adam]\nlr = 0.002"))
    changed_curvature = _load(tmp_path, _profile_text() + "\n[curvature]\nn_samples = 10\n")
    bookkeeping = _load(tmp_path, _profile_text(train="max_epochs = 1\ntest_every = 5\neval_chunk = 100"))
    subset = _load(tmp_path, _profile_text(extra_top="n_train = 512"))
    other_subset = _load(tmp_path, _profile_text(extra_top="n_train = 512\ndata_seed = 1"))
    hashes = lambda p: {(r.optimizer.name, r.seed): r.run_hash for r in p.runs}  # noqa: E731
    assert hashes(base) == hashes(changed_curvature) == hashes(bookkeeping)
    assert hashes(base)[("sgd", 0)] == hashes(changed_lr)[("sgd", 0)]
    assert hashes(base)[("adam", 0)] != hashes(changed_lr)[("adam", 0)]
    assert len(set(hashes(base).values()) | set(hashes(subset).values()) | set(hashes(other_subset).values())) == 6


def test_grid_expands_to_the_product_of_its_axes_times_seeds(tmp_path):
    profile = _load(tmp_path, _profile_text(
        extra_top="seeds = [0, 1]", train="max_epochs = 1\nbatch_size = [32, 128]\nlabel_noise = [0.0, 0.2]",
        optimizer="[optimizer.adam]\nlr = [0.001, 0.003]\nweight_decay = [0.0, 0.0005]\nbatch_size = 64",
    ).replace("seeds = [0]\n", ""))
    sgd = [r for r in profile.runs if r.optimizer.name == "sgd"]
    adam = [r for r in profile.runs if r.optimizer.name == "adam"]
    assert len(sgd) == 1 * 2 * 2 * 2  # lr x batch x noise x seeds
    assert len(adam) == 2 * 2 * 1 * 2 * 2  # lr x weight decay x its own batch size x noise x seeds
    assert {r.train.batch_size for r in adam} == {64}
    assert profile.axes == ("optimizer", "lr", "batch_size", "weight_decay", "label_noise")
    assert len({r.run_hash for r in profile.runs}) == len(profile.runs)
    assert len({r.configuration for r in profile.runs}) == len(profile.runs) // 2  # seeds share a configuration
    run = next(r for r in adam if r.optimizer.lr == 0.003 and r.optimizer.weight_decay == 0.0005)
    assert dict(run.levels)["lr"] == 1 and dict(run.levels)["weight_decay"] == 1 and dict(run.levels)["optimizer"] == 1
    assert profile.hyperparameters(run) == {"lr": 0.003, "batch_size": 64, "weight_decay": 0.0005,
                                           "label_noise": run.train.label_noise}
    assert profile.grid["adam"]["lr"] == [0.001, 0.003]


def test_single_values_stay_valid_and_vary_nothing(tmp_path):
    profile = _load(tmp_path, _profile_text(train="max_epochs = 1\nbatch_size = 64"))
    assert profile.axes == ("optimizer",) and len(profile.runs) == 2
    assert profile.hyperparameters(profile.runs[0]) == {"lr": 0.1, "batch_size": 64}


def test_profile_paths_that_are_not_files_fail_in_one_line(tmp_path):
    with pytest.raises(MinimaError, match="is a directory"):
        config.load_profile(str(tmp_path) + "/")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("description = 'caf\xe9'".encode("latin-1"))
    with pytest.raises(MinimaError, match="not UTF-8"):
        config.load_profile(str(bad))


def test_silent_surprises_are_warned_about(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    config.load_profile(str(empty), warn=True)
    big = tmp_path / "big.toml"
    big.write_text(_profile_text(extra_top="n_train = 100", train="max_epochs = 1\nbatch_size = 512"))
    config.load_profile(str(big), warn=True)
    err = capsys.readouterr().err
    assert "is empty: every default applies" in err
    assert "batch size 512 exceeds the 100 training images" in err


def test_from_table_names_the_table_and_key():
    from minima.train import TrainSettings

    assert from_table(TrainSettings, {"max_epochs": 3}, "train").max_epochs == 3
    for bad, fragment in (({"max_epochs": 1.5}, "train.max_epochs: expected an integer"),
                          ({"shuffle": 1}, "train.shuffle: expected true or false"),
                          ({"stop_loss": "x"}, "train.stop_loss: expected a number"),
                          ({"colour": 1}, "train: unknown key 'colour'")):
        with pytest.raises(SettingsError, match=fragment):
            from_table(TrainSettings, bad, "train")


def test_lr_batch_scaling_moves_each_batch_sizes_grid(tmp_path):
    text = _profile_text(extra_top="n_train = 1024\nlr_batch_scaling = \"sqrt\"", train="batch_size = [32, 128]",
                         optimizer="").replace("lr = 0.1", "lr = [0.05, 0.1, 0.2]")
    profile = _load(tmp_path, text)
    sgd = [r for r in profile.runs if r.optimizer.name == "sgd"]
    by_batch = {b: sorted(r.optimizer.lr for r in sgd if r.train.batch_size == b) for b in (32, 128)}
    assert by_batch == {32: [0.05, 0.1, 0.2], 128: [0.1, 0.2, 0.4]}  # x sqrt(128 / 32) = 2, exactly
    assert profile.grid["sgd"]["lr_by_batch"] == {"32": [0.05, 0.1, 0.2], "128": [0.1, 0.2, 0.4]}
    # the rate 0.1 at B = 32 and at B = 128 is the same optimizer configuration (the pair at equal lr)
    same = {r.optimizer for r in sgd if r.optimizer.lr == 0.1}
    assert len(same) == 1
    assert {dict(r.levels)["lr"] for r in sgd if r.train.batch_size == 128 and r.optimizer.lr == 0.1} == {0}
    linear = _load(tmp_path, text.replace('"sqrt"', '"linear"'))
    assert sorted({r.optimizer.lr for r in linear.runs if r.optimizer.name == "sgd" and r.train.batch_size == 128}) == [0.2, 0.4, 0.8]
    with pytest.raises(MinimaError, match="lr_batch_scaling"):
        _load(tmp_path, text.replace('"sqrt"', '"cubic"'))


def test_the_validation_set_size_enters_the_run_hash_and_is_limited_by_the_split(tmp_path):
    base = _load(tmp_path, _profile_text(extra_top="n_train = 1024"))
    assert base.runs[0].n_val == 10000
    smaller = _load(tmp_path, _profile_text(extra_top="n_train = 1024\nn_val = 500"))
    assert smaller.runs[0].n_val == 500 and smaller.runs[0].run_hash != base.runs[0].run_hash
    crowded = _load(tmp_path, _profile_text(extra_top="n_train = 55000"))
    assert crowded.runs[0].n_val == 5000  # what the training subset leaves
    whole = _load(tmp_path, _profile_text(extra_top="n_train = 0"))
    assert whole.runs[0].n_val == 0 and whole.study.validation_size == 0
