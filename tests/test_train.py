import json

import pytest
import torch
from torch.nn import functional as F

from device_params import DEVICES
from minima import io
from minima import train as T
from minima.models import build_model
from minima.objective import evaluate, frozen_copy, params_of
from minima.optimizers import OptimizerConfig
from minima.settings import OPTIMIZERS
from minima.tensors import load_torch
from minima.train import TrainJob, TrainSettings

DT = torch.float64


def S(**kwargs) -> TrainSettings:
    """Training settings for the loop tests: the stop rule off unless a test turns it on."""
    return TrainSettings(**{"stop_loss": 0.0, **kwargs})


CONFIGS = {
    "sgd": OptimizerConfig("sgd", lr=0.05),
    "sgd_momentum": OptimizerConfig("sgd_momentum", lr=0.02),
    "adagrad": OptimizerConfig("adagrad", lr=0.01),
    "adam": OptimizerConfig("adam", lr=0.002),
    "adahessian": OptimizerConfig("adahessian", lr=0.05),
    "sam": OptimizerConfig("sam", lr=0.02, rho=0.05),
}


def _data(n_train=40, n_test=24, side=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(n_train, 1, side, side, generator=g, dtype=DT),
        torch.randint(0, 10, (n_train,), generator=g),
        torch.rand(n_test, 1, side, side, generator=g, dtype=DT),
        torch.randint(0, 10, (n_test,), generator=g),
    )


def _train(jobs, settings, data=None, dtype=DT):
    data = data if data is not None else _data()
    return T.train(jobs, settings, *data, device="cpu", dtype=dtype, progress=False)


def _weights(run_dir):
    return load_torch(run_dir / "model.pt")


# ---- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_epochs": 0}, "max_epochs:"),
        ({"max_epochs": 2.5}, "max_epochs:"),
        ({"stop_loss": -0.1}, "stop_loss:"),
        ({"label_noise": 1.0}, "label_noise:"),
        ({"epochs": 3}, "epochs: unknown key"),
        ({"batch_size": -1}, "batch_size:"),
        ({"eval_chunk": 0}, "eval_chunk:"),
        ({"checkpoint_every": 0}, "checkpoint_every:"),
        ({"shuffle": "yes"}, "shuffle:"),
        ({"stack_seeds": 1}, "stack_seeds:"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        TrainSettings(**kwargs)


def test_bad_jobs_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="^variant:"):
        TrainJob(tmp_path, "vgg", CONFIGS["sgd"], 0)
    with pytest.raises(ValueError, match="^seed:"):
        TrainJob(tmp_path, "modern", CONFIGS["sgd"], -1)
    with pytest.raises(ValueError, match="^optimizer:"):
        TrainJob(tmp_path, "modern", "sgd", 0)
    job = TrainJob(tmp_path, "modern", CONFIGS["sgd"], 0)
    with pytest.raises(ValueError, match="^jobs:"):
        _train([job, job], S(max_epochs=1))
    with pytest.raises(ValueError, match="^train_x:"):
        _train([TrainJob(tmp_path, "seed", CONFIGS["sgd"], 0)], S(max_epochs=1))


# ---- the loop against a plain eager loop -------------------------------------------------


@pytest.mark.parametrize("shuffle, variant, side", [(False, "seed", 32), (True, "modern", 28)])
def test_training_equals_a_plain_torch_loop(tmp_path, shuffle, variant, side):
    # 40 images in batches of 16: 16, 16 and a kept partial batch of 8
    data = _data(side=side)
    settings = S(max_epochs=2, batch_size=16, shuffle=shuffle)
    seed = 7
    [outcome] = _train([TrainJob(tmp_path / "run", variant, CONFIGS["sgd_momentum"], seed)], settings, data)

    model = build_model(variant, seed=seed, dtype=DT)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    order_gen = torch.Generator().manual_seed(seed)
    epoch_losses = []
    for _ in range(2):
        order = torch.randperm(40, generator=order_gen) if shuffle else torch.arange(40)
        total = 0.0
        for start in range(0, 40, 16):
            index = order[start : start + 16]
            loss = F.cross_entropy(model(data[0][index]), data[1][index])
            total += loss.item() * len(index)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch_losses.append(total / 40)

    weights = _weights(tmp_path / "run")
    assert list(weights) == [n for n, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        torch.testing.assert_close(weights[name], p.detach(), rtol=1e-12, atol=1e-14)
    metrics = io.read_json(tmp_path / "run" / "metrics.json")
    assert [h["train_loss"] for h in metrics["history"]] == pytest.approx(epoch_losses, rel=1e-12)

    # final numbers are minima.objective.evaluate on the full sets at the saved weights
    fresh = build_model(variant, seed=0, dtype=DT)
    fresh.load_state_dict(weights)
    on_test = evaluate(frozen_copy(fresh), params_of(fresh), data[2], data[3])
    on_train = evaluate(frozen_copy(fresh), params_of(fresh), data[0], data[1])
    final = {k: metrics["final"][k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
    assert final == pytest.approx(
        {"train_loss": on_train.loss, "train_accuracy": on_train.accuracy,
         "test_loss": on_test.loss, "test_accuracy": on_test.accuracy}, rel=1e-12)
    # the per-epoch full-training-set loss is evaluate() at the weights after that epoch
    assert metrics["history"][-1]["full_train_loss"] == pytest.approx(on_train.loss, rel=1e-12)
    assert outcome.test_accuracy == metrics["final"]["test_accuracy"] and outcome.status == "ok"


def test_metrics_contract_and_skip(tmp_path):
    job = TrainJob(tmp_path / "run", "modern", CONFIGS["adam"], 1)
    [first] = _train([job], S(max_epochs=2, batch_size=16))
    metrics = io.read_json(tmp_path / "run" / "metrics.json")
    assert metrics["status"] == "ok" and metrics["diverged_epoch"] is None and metrics["epochs_completed"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    keys = {"epoch", "train_loss", "train_accuracy", "full_train_loss", "full_train_accuracy", "test_loss",
            "test_accuracy", "gradient_norm", "lr", "wall_time", "cpu_time"}
    assert all(keys <= set(h) for h in metrics["history"])
    assert all(0 < h["cpu_time"] and 0 < h["wall_time"] for h in metrics["history"])
    assert all(h["lr"] == 0.002 and h["gradient_norm"] > 0 for h in metrics["history"])
    assert set(metrics["final"]) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "val_loss",
                                     "val_accuracy", "weight_norm", "distance_from_init", "layer_norms"}
    assert metrics["converged"] is False and "max_epochs = 2" in metrics["stop_reason"]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert first.skipped is False and first.epochs_completed == 2

    stamp = (tmp_path / "run" / "model.pt").stat().st_mtime_ns
    [again] = _train([job], S(max_epochs=2, batch_size=16))
    assert again.skipped is True and (tmp_path / "run" / "model.pt").stat().st_mtime_ns == stamp
    assert (again.status, again.test_accuracy, again.train_loss) == (first.status, first.test_accuracy, first.train_loss)


def test_same_seed_same_weights(tmp_path):
    jobs = [TrainJob(tmp_path / name, "modern", CONFIGS["adahessian"], 3) for name in ("a", "b")]
    _train(jobs, S(max_epochs=1, batch_size=16))
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[n], b[n]) for n in a)
    # equal weights, equal bytes: model.pt's digest changes only with the weights
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    _train([TrainJob(tmp_path / "c", "modern", CONFIGS["adahessian"], 4)], S(max_epochs=1, batch_size=16))
    assert not torch.equal(a["fc3.weight"], _weights(tmp_path / "c")["fc3.weight"])


# ---- resume after a kill -----------------------------------------------------------------


class _Killed(Exception):
    pass


@pytest.mark.parametrize(
    "stack, kill_at",
    [
        (False, "s0"),  # one by one: s0 dies after its epoch-2 checkpoint, s1 never started
        (True, "s1"),  # stacked: dies after the whole stack's epoch-2 checkpoints
        (True, "s0"),  # stacked: dies between the two runs' epoch-2 checkpoints
    ],
)
def test_resume_after_kill_equals_uninterrupted(tmp_path, monkeypatch, stack, kill_at):
    # AdaHessian with shuffling: optimizer state, batch-order and probe generators all resume
    settings = S(max_epochs=3, batch_size=16, shuffle=True, stack_seeds=stack)
    seeds = (0, 1)

    def jobs(root):
        return [TrainJob(root / f"s{s}", "modern", CONFIGS["adahessian"], s) for s in seeds]

    _train(jobs(tmp_path / "whole"), settings)

    real_save = T.save_checkpoint

    def save_then_die(run, *args):
        real_save(run, *args)
        if run.epoch == 2 and run.job.run_dir.name == kill_at:
            raise _Killed

    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _train(jobs(tmp_path / "killed"), settings)
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    killed = tmp_path / "killed"
    on_disk = [load_torch(killed / f"s{s}" / "checkpoint.pt")["epoch"]
               if (killed / f"s{s}" / "checkpoint.pt").exists() else None for s in seeds]
    assert on_disk == {(False, "s0"): [2, None], (True, "s1"): [2, 2], (True, "s0"): [2, 1]}[stack, kill_at]
    assert io.read_json(killed / "s0" / "metrics.json")["status"] == "running"
    assert not (killed / "s0" / "model.pt").exists()

    with pytest.raises(io.MinimaError, match="batch_size"):
        _train(jobs(killed), S(max_epochs=3, batch_size=8, stack_seeds=stack))

    outcomes = _train(jobs(killed), settings)
    assert [o.status for o in outcomes] == ["ok", "ok"] and not any(o.skipped for o in outcomes)
    exact = on_disk[0] == on_disk[1] or on_disk[1] is None
    for s in seeds:
        whole, resumed = _weights(tmp_path / "whole" / f"s{s}"), _weights(killed / f"s{s}")
        for n in whole:
            if exact:
                assert torch.equal(whole[n], resumed[n])
            else:  # the runs resume as two groups of one: same maths, other rounding than the stack of two
                torch.testing.assert_close(whole[n], resumed[n], rtol=1e-9, atol=1e-12)
        h_whole = io.read_json(tmp_path / "whole" / f"s{s}" / "metrics.json")["history"]
        h_resumed = io.read_json(killed / f"s{s}" / "metrics.json")["history"]
        assert len(h_whole) == len(h_resumed) == 3
        for a, b in zip(h_whole, h_resumed):
            for key in ("train_loss", "test_loss", "gradient_norm", "test_accuracy", "train_accuracy"):
                assert a[key] == (b[key] if exact else pytest.approx(b[key], rel=1e-9))


# ---- seeds trained together --------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_stacked_seeds_equal_separate_runs(tmp_path, name):
    data = _data(n_train=48, n_test=16)
    settings = dict(max_epochs=1, batch_size=16, shuffle=True, stop_loss=0.0)
    seeds = (0, 1, 2)
    jobs = lambda root: [TrainJob(root / f"s{s}", "modern", CONFIGS[name], s) for s in seeds]  # noqa: E731
    _train(jobs(tmp_path / "stacked"), TrainSettings(stack_seeds=True, **settings), data)
    _train(jobs(tmp_path / "alone"), TrainSettings(stack_seeds=False, **settings), data)
    init = params_of(build_model("modern", seed=0, dtype=DT))
    for s in seeds:
        stacked, alone = _weights(tmp_path / "stacked" / f"s{s}"), _weights(tmp_path / "alone" / f"s{s}")
        for n in stacked:
            torch.testing.assert_close(stacked[n], alone[n], rtol=1e-9, atol=1e-12)
        h = io.read_json(tmp_path / "stacked" / f"s{s}" / "metrics.json")["history"][0]
        assert h["models_in_step"] == 3
    # the models differ from each other and moved from their start
    assert not torch.allclose(_weights(tmp_path / "stacked" / "s0")["fc3.weight"], init["fc3.weight"])
    assert not torch.allclose(_weights(tmp_path / "stacked" / "s0")["fc3.weight"],
                              _weights(tmp_path / "stacked" / "s1")["fc3.weight"])


@pytest.mark.parametrize("device", DEVICES)
def test_stacked_training_on_each_device_equals_separate_runs_on_the_cpu(tmp_path, device):
    data = _data(n_train=48, n_test=16)
    seeds = (0, 1)
    # SAM: two gradients a step and no random draws, so devices must agree up to rounding
    jobs = lambda root: [TrainJob(root / f"s{s}", "modern", CONFIGS["sam"], s) for s in seeds]  # noqa: E731
    T.train(jobs(tmp_path / "dev"), S(max_epochs=1, batch_size=16, stack_seeds=True), *data, device=device, dtype=DT)
    _train(jobs(tmp_path / "cpu"), S(max_epochs=1, batch_size=16, stack_seeds=False), data)
    for s in seeds:
        a, b = _weights(tmp_path / "dev" / f"s{s}"), _weights(tmp_path / "cpu" / f"s{s}")
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-7, atol=1e-10)


# ---- divergence --------------------------------------------------------------------------


def test_huge_lr_diverges_without_raising(tmp_path):
    jobs = [TrainJob(tmp_path / "huge", "modern", OptimizerConfig("sgd", lr=1e6), 0),
            TrainJob(tmp_path / "fine", "modern", CONFIGS["sgd"], 0)]
    # float32, the training dtype of the profiles: lr 1e6 overflows within the first epoch
    huge, fine = _train(jobs, S(max_epochs=2, batch_size=16), dtype=torch.float32)
    assert (huge.status, huge.diverged_epoch, huge.epochs_completed) == ("diverged", 1, 0)
    assert (fine.status, fine.diverged_epoch, fine.epochs_completed) == ("ok", None, 2)
    metrics = json.loads((tmp_path / "huge" / "metrics.json").read_text())  # strict JSON: no NaN literals
    assert metrics["status"] == "diverged" and metrics["diverged_epoch"] == 1
    assert metrics["history"][0]["train_loss"] is None and metrics["history"][0]["test_loss"] is None
    # it keeps its last finite weights: here the initial ones, so the final loss is finite
    init = params_of(build_model("modern", seed=0, dtype=torch.float32))
    weights = _weights(tmp_path / "huge")
    assert all(torch.equal(weights[n], init[n]) for n in init)
    assert huge.test_loss is not None and huge.test_loss > 0
    assert not (tmp_path / "huge" / "checkpoint.pt").exists()
    [again] = _train(jobs[:1], S(max_epochs=2, batch_size=16), dtype=torch.float32)
    assert again.skipped and again.status == "diverged"


def test_a_diverging_model_leaves_the_stack_and_the_others_go_on(tmp_path, monkeypatch):
    real = T.batch_objective

    def poisoned(model, x, y, *, shared):
        objective = real(model, x, y, shared=shared)

        def wrapped(params):
            loss, aux = objective(params)
            if loss.shape[0] == 2 and epoch_of[0] == 2:  # model 1 blows up in epoch 2
                loss = loss * torch.tensor([1.0, float("inf")], dtype=loss.dtype)
            return loss, aux

        return wrapped

    epoch_of = [0]
    real_epoch = T.run_epoch

    def counting_epoch(*args, **kwargs):
        epoch_of[0] += 1
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(T, "batch_objective", poisoned)
    monkeypatch.setattr(T, "run_epoch", counting_epoch)
    jobs = [TrainJob(tmp_path / f"s{s}", "modern", CONFIGS["adam"], s) for s in (0, 1)]
    settings = S(max_epochs=3, batch_size=16, stack_seeds=True)
    ok, bad = _train(jobs, settings)
    assert (bad.status, bad.diverged_epoch, bad.epochs_completed) == ("diverged", 2, 1)
    assert (ok.status, ok.epochs_completed) == ("ok", 3)
    assert len(io.read_json(tmp_path / "s1" / "metrics.json")["history"]) == 2

    monkeypatch.setattr(T, "batch_objective", real)
    monkeypatch.setattr(T, "run_epoch", real_epoch)
    _train([TrainJob(tmp_path / "alone0", "modern", CONFIGS["adam"], 0)], settings)
    _train([TrainJob(tmp_path / "alone1", "modern", CONFIGS["adam"], 1)], S(max_epochs=1, batch_size=16))
    for got, want in (("s0", "alone0"), ("s1", "alone1")):  # s1 keeps its weights from the end of epoch 1
        a, b = _weights(tmp_path / got), _weights(tmp_path / want)
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-9, atol=1e-12)


# ---- the stop rule -----------------------------------------------------------------------


def _separable(n=40, seed=0):
    """Images whose class is written in one pixel: a LeNet-5 fits them in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = 0.05 * torch.randn(n, 1, 28, 28, generator=g, dtype=DT)
    x[torch.arange(n), 0, 14, 2 + 2 * y] += 4.0
    return x, y, x[:10].clone(), y[:10].clone()


def test_stops_at_the_first_epoch_whose_full_training_loss_meets_the_threshold(tmp_path):
    data = _separable()
    job = TrainJob(tmp_path / "early", "modern", OptimizerConfig("adam", lr=0.01), 0)
    [outcome] = _train([job], TrainSettings(max_epochs=40, batch_size=8, stop_loss=0.05), data)
    history = io.read_json(tmp_path / "early" / "metrics.json")["history"]
    losses = [h["full_train_loss"] for h in history]
    first = next(i for i, loss in enumerate(losses, 1) if loss <= 0.05)
    assert outcome.converged and outcome.epochs_to_fit == first == outcome.epochs_completed == len(history)
    assert all(loss > 0.05 for loss in losses[:-1])
    assert outcome.train_loss == pytest.approx(losses[-1], rel=1e-12)
    # the same run without early stopping trains every epoch and still records when it fitted
    full = TrainJob(tmp_path / "full", "modern", OptimizerConfig("adam", lr=0.01), 0)
    [kept] = _train([full], TrainSettings(max_epochs=first + 2, batch_size=8, stop_loss=0.05, stop_early=False), data)
    assert kept.converged and kept.epochs_to_fit == first and kept.epochs_completed == first + 2


def test_a_run_that_hits_the_cap_is_not_converged(tmp_path):
    job = TrainJob(tmp_path / "capped", "modern", OptimizerConfig("sgd", lr=1e-4), 0)
    [outcome] = _train([job], TrainSettings(max_epochs=2, batch_size=8, stop_loss=0.01), _separable())
    metrics = io.read_json(tmp_path / "capped" / "metrics.json")
    assert not outcome.converged and outcome.epochs_to_fit is None and outcome.epochs_completed == 2
    assert metrics["converged"] is False and metrics["stop_reason"].startswith("max_epochs = 2 reached")


def test_weight_norms_are_those_of_the_saved_and_initial_weights(tmp_path):
    job = TrainJob(tmp_path / "run", "modern", OptimizerConfig("sgd", lr=0.05), 5)
    _train([job], S(max_epochs=1, batch_size=8), _separable())
    final = io.read_json(tmp_path / "run" / "metrics.json")["final"]
    w = _weights(tmp_path / "run")
    w0 = params_of(build_model("modern", seed=5, dtype=DT))
    flat = torch.cat([w[n].reshape(-1) for n in w])
    flat0 = torch.cat([w0[n].reshape(-1) for n in w])
    assert final["weight_norm"] == pytest.approx(float(flat.norm()), rel=1e-12)
    assert final["distance_from_init"] == pytest.approx(float((flat - flat0).norm()), rel=1e-12)
    assert final["layer_norms"]["fc1"] == pytest.approx(float(w["fc1.weight"].norm()), rel=1e-12)


def test_a_corrupt_checkpoint_restarts_the_run_from_scratch(tmp_path, capsys):
    job = TrainJob(tmp_path / "run", "modern", CONFIGS["sgd"], 0)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a zip file")
    [outcome] = _train([job], S(max_epochs=1, batch_size=16))
    assert outcome.status == "ok" and (tmp_path / "run" / "checkpoint.pt.corrupt").exists()
    assert "moved to checkpoint.pt.corrupt" in capsys.readouterr().err
    [reference] = _train([TrainJob(tmp_path / "clean", "modern", CONFIGS["sgd"], 0)], S(max_epochs=1, batch_size=16))
    assert outcome.train_loss == reference.train_loss
