"""Training stage: LeNet-5 runs, one directory each, resumable, optionally many seeds at once.

A run is (variant, optimizer config, seed). The seed decides the initial weights (via
`build_model`), the batch order (a CPU generator seeded with `seed`) and AdaHessian's probes
(a generator on the training device seeded with `seed + 2**40`, a separate stream so that
switching shuffling on or off does not change the probes). Same seed, same weights on CPU.

Seeds trained together (`stack_seeds`): the K runs of one optimizer config keep their
parameters stacked along a leading axis, the forward pass is
`torch.func.vmap(functional_call)` over that axis (each model on its own minibatch, gathered
with its own permutation), and the optimizer step is vectorized over it
(`minima.optimizers`). Models never interact, so a stacked run equals K separate runs up to
floating-point reassociation.

Per run, written atomically into its directory: `checkpoint.pt` (parameters, optimizer
state, generator states, epoch, history) every `checkpoint_every` epochs, so a killed run
resumes where its checkpoint left it and ends with the same weights as an uninterrupted one
(bit for bit when the runs of a stack were checkpointed at the same epoch; a stack killed
between its runs' checkpoints resumes as smaller stacks, equal up to rounding);
`metrics.json` after every epoch; at the end `model.pt`, a plain LeNet-5 state_dict, after
which the checkpoint is removed.

metrics.json: {"status": "running" | "ok" | "diverged", "diverged_epoch": int | null,
"epochs_completed": epochs behind the saved weights, "history": per epoch {"epoch",
"train_loss" and "train_accuracy" (means over the epoch's minibatches, weighted by batch
size, at the weights each batch saw), "test_loss", "test_accuracy" (end of epoch),
"gradient_norm" (mean minibatch gradient norm), "lr", "wall_time" (seconds of training in
that epoch, evaluation excluded; shared by the models of a stack), "models_in_step"},
"final": loss and accuracy on the full training and test sets at the saved weights, or null}.
Non-finite numbers are written as null.

Divergence: after each epoch a model whose training loss or parameters are not finite is
marked diverged at that epoch, leaves the stack, and keeps the weights it had at the start of
that epoch (its last finite ones); the others go on.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.func import functional_call, vmap
from torch.nn import functional as F
from tqdm import tqdm

from minima import io, optimizers
from minima.models import VARIANTS, build_model, variant
from minima.objective import evaluate, frozen_copy, params_of
from minima.optimizers import OptimizerConfig, OptimizerState, Params
from minima.paths import CHECKPOINT_PT, METRICS_JSON, MODEL_PT

_PROBE_STREAM = 2**40  # offset of the probe generator's seed from the batch-order generator's
_CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 128
    shuffle: bool = True  # False: batches in the fixed order 0..N-1, as the original study
    stack_seeds: bool = False  # train the seeds of one optimizer config at once (vmap)
    eval_chunk: int = 5000
    checkpoint_every: int = 1  # epochs

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_chunk", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: must be an integer > 0, got {value!r}")
        for name in ("shuffle", "stack_seeds"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TrainJob:
    run_dir: Path
    variant: str  # "modern" | "seed"
    optimizer: OptimizerConfig
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.variant not in VARIANTS:
            raise ValueError(f"variant: unknown model variant {self.variant!r}; choose one of {sorted(VARIANTS)}")
        if not isinstance(self.optimizer, OptimizerConfig):
            raise ValueError(f"optimizer: must be an OptimizerConfig, got {type(self.optimizer).__name__}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    status: str  # "ok" | "diverged"
    diverged_epoch: int | None
    epochs_completed: int  # epochs behind the saved weights
    train_loss: float | None  # full training set, final weights; None where not finite
    train_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    skipped: bool  # True when the run was already finished on disk


@dataclass
class _Run:
    """Working state of one run while it trains (ours alone, never the caller's)."""

    job: TrainJob
    params: Params  # stacked with K = 1
    state: OptimizerState
    order: torch.Generator
    probes: torch.Generator
    history: list[dict]
    epoch: int


@dataclass(frozen=True)
class _Data:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def train(
    jobs: Sequence[TrainJob],
    settings: TrainSettings,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    progress: bool = True,
) -> list[TrainOutcome]:
    """Train (or resume, or skip) every job; outcomes in the order of `jobs`.

    With `settings.stack_seeds`, jobs sharing variant, optimizer config and resume epoch are
    trained as one stack; otherwise one after another.
    """
    device = torch.device(device)
    _check_distinct(jobs)
    data = _Data(
        train_x.to(device=device, dtype=dtype),
        train_y.to(device=device, dtype=torch.long),
        test_x.to(device=device, dtype=dtype),
        test_y.to(device=device, dtype=torch.long),
    )
    outcomes: dict[Path, TrainOutcome] = {}
    pending: list[_Run] = []
    for job in jobs:
        _check_images(data, job.variant)
        finished = finished_outcome(job.run_dir)
        if finished is not None:
            (job.run_dir / CHECKPOINT_PT).unlink(missing_ok=True)
            outcomes[job.run_dir] = finished
        else:
            pending.append(_start(job, settings, device, dtype))
    for group in _groups(pending, settings):
        for run, outcome in _train_group(group, settings, data, progress):
            outcomes[run.job.run_dir] = outcome
    return [outcomes[job.run_dir] for job in jobs]


def _check_distinct(jobs: Sequence[TrainJob]) -> None:
    seen: set[Path] = set()
    for job in jobs:
        if job.run_dir in seen:
            raise ValueError(f"jobs: run_dir {job.run_dir} appears more than once")
        seen.add(job.run_dir)


def _check_images(data: _Data, variant_name: str) -> None:
    side = variant(variant_name).input_size
    for name in ("train_x", "test_x"):
        x = getattr(data, name)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, side, side):
            raise ValueError(f"{name}: variant {variant_name!r} needs images [N, 1, {side}, {side}], got {list(x.shape)}")


def _groups(runs: list[_Run], settings: TrainSettings) -> list[list[_Run]]:
    if not settings.stack_seeds:
        return [[run] for run in runs]
    groups: dict[tuple, list[_Run]] = {}
    for run in runs:
        groups.setdefault((run.job.variant, run.job.optimizer, run.epoch), []).append(run)
    return list(groups.values())


# ---- starting and resuming ---------------------------------------------------------------


def finished_outcome(run_dir: Path) -> TrainOutcome | None:
    """The outcome of a run already finished on disk, or None."""
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_PT).exists() or not (run_dir / METRICS_JSON).exists():
        return None
    metrics = io.read_json(run_dir / METRICS_JSON)
    if metrics.get("status") not in ("ok", "diverged"):
        return None
    final = metrics.get("final") or {}
    return TrainOutcome(
        run_dir=run_dir,
        status=metrics["status"],
        diverged_epoch=metrics.get("diverged_epoch"),
        epochs_completed=metrics["epochs_completed"],
        train_loss=final.get("train_loss"),
        train_accuracy=final.get("train_accuracy"),
        test_loss=final.get("test_loss"),
        test_accuracy=final.get("test_accuracy"),
        skipped=True,
    )


def _job_record(job: TrainJob) -> dict[str, Any]:
    # a JSON round trip turns tuples into lists, as they come back from a checkpoint
    return json.loads(json.dumps({"variant": job.variant, "seed": job.seed, "optimizer": asdict(job.optimizer)}))


def _trajectory_settings(settings: TrainSettings) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint (epochs may grow)."""
    return {"batch_size": settings.batch_size, "shuffle": settings.shuffle}


def _start(job: TrainJob, settings: TrainSettings, device: torch.device, dtype: torch.dtype) -> _Run:
    if (job.run_dir / CHECKPOINT_PT).exists():
        return _resume(job, settings, device, dtype)
    return _fresh(job, device, dtype)


def _fresh(job: TrainJob, device: torch.device, dtype: torch.dtype) -> _Run:
    model = build_model(job.variant, seed=job.seed, dtype=dtype, device=device)
    params = {n: p.unsqueeze(0) for n, p in params_of(model).items()}
    return _Run(
        job=job,
        params=params,
        state=optimizers.init_state(job.optimizer, params),
        order=torch.Generator().manual_seed(job.seed),
        probes=torch.Generator(device=device).manual_seed(job.seed + _PROBE_STREAM),
        history=[],
        epoch=0,
    )


def _resume(job: TrainJob, settings: TrainSettings, device: torch.device, dtype: torch.dtype) -> _Run:
    path = job.run_dir / CHECKPOINT_PT
    ckpt = io.load_torch(path)
    expected = {
        "format": _CHECKPOINT_FORMAT,
        "job": _job_record(job),
        "settings": _trajectory_settings(settings),
        "dtype": str(dtype),
        "device_type": device.type,
    }
    for key, value in expected.items():
        if ckpt.get(key) != value:
            raise io.MinimaError(
                f"checkpoint {path} was written for {key}={ckpt.get(key)!r}, this run has {value!r}; delete it to retrain"
            )
    if ckpt["epoch"] > settings.epochs:
        raise io.MinimaError(f"checkpoint {path} is at epoch {ckpt['epoch']}, beyond epochs={settings.epochs}")

    def stacked(tensors: dict[str, torch.Tensor]) -> Params:
        return {n: t.to(device=device, dtype=dtype).unsqueeze(0) for n, t in tensors.items()}

    order = torch.Generator()
    order.set_state(ckpt["order_generator"])
    probes = torch.Generator(device=device)
    probes.set_state(ckpt["probe_generator"])
    state = OptimizerState(ckpt["optimizer_step"], {b: stacked(v) for b, v in ckpt["optimizer_buffers"].items()})
    return _Run(job, stacked(ckpt["params"]), state, order, probes, list(ckpt["history"]), ckpt["epoch"])


def _save_checkpoint(run: _Run, settings: TrainSettings, dtype: torch.dtype) -> None:
    def single(tensors: Params) -> dict[str, torch.Tensor]:
        return {n: t[0].detach().cpu().clone() for n, t in tensors.items()}

    io.save_torch(
        run.job.run_dir / CHECKPOINT_PT,
        {
            "format": _CHECKPOINT_FORMAT,
            "job": _job_record(run.job),
            "settings": _trajectory_settings(settings),
            "dtype": str(dtype),
            "device_type": run.probes.device.type,
            "epoch": run.epoch,
            "params": single(run.params),
            "optimizer_step": run.state.step,
            "optimizer_buffers": {b: single(v) for b, v in run.state.buffers.items()},
            "order_generator": run.order.get_state(),
            "probe_generator": run.probes.get_state(),
            "history": run.history,
        },
    )


# ---- the training loop -------------------------------------------------------------------


def batch_objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, shared: bool) -> optimizers.Objective:
    """params [K, ...] -> (mean cross-entropy [K], correct predictions [K]) on one minibatch.

    `shared`: all models see the same batch x [B, ...]; otherwise x is [K, B, ...].
    """

    def single(p: Params, xb: torch.Tensor, yb: torch.Tensor):
        logits = functional_call(model, p, (xb,))
        return F.cross_entropy(logits, yb), (logits.argmax(-1) == yb).sum()

    batched = vmap(single, in_dims=(0, None, None) if shared else (0, 0, 0))

    def objective(params: Params):
        if next(iter(params.values())).shape[0] == 1:  # one model: vmap's batching rules only cost time
            loss, correct = single({n: p[0] for n, p in params.items()}, x if shared else x[0], y if shared else y[0])
            return loss.unsqueeze(0), correct.unsqueeze(0)
        return batched(params, x, y)

    return objective


@dataclass(frozen=True)
class _EpochStats:
    loss_sum: torch.Tensor  # [K] sum over samples of the minibatch mean loss
    correct: torch.Tensor  # [K]
    gradient_norm_sum: torch.Tensor  # [K]
    samples: int
    batches: int


def _epoch(
    config: OptimizerConfig,
    model: torch.nn.Module,
    params: Params,
    state: OptimizerState,
    runs: Sequence[_Run],
    data: _Data,
    settings: TrainSettings,
    bar: tqdm,
    limit: int | None = None,
) -> tuple[Params, OptimizerState, _EpochStats]:
    """One pass over the training set (or its first `limit` batches) for every stacked model."""
    n, size = len(data.train_y), settings.batch_size
    device = data.train_x.device
    order = None
    if settings.shuffle:
        order = torch.stack([torch.randperm(n, generator=run.order) for run in runs]).to(device)
    probes = [run.probes for run in runs]
    k = len(runs)
    loss_sum = torch.zeros(k, dtype=data.train_x.dtype, device=device)
    correct = torch.zeros(k, dtype=torch.long, device=device)
    grad_norm = torch.zeros(k, dtype=data.train_x.dtype, device=device)
    samples = batches = 0
    for start in range(0, n, size):
        if limit is not None and batches >= limit:
            break
        if order is None:
            xb, yb = data.train_x[start : start + size], data.train_y[start : start + size]
        else:
            index = order[:, start : start + size]
            xb, yb = data.train_x[index], data.train_y[index]
        objective = batch_objective(model, xb, yb, shared=order is None)
        result = optimizers.step(config, params, state, objective, probes)
        params, state = result.params, result.state
        b = yb.shape[-1]
        loss_sum += result.loss * b
        correct += result.aux
        grad_norm += result.gradient_norm
        samples, batches = samples + b, batches + 1
        bar.update(1)
        if not bar.disable and batches % 20 == 0:
            bar.set_postfix(loss=f"{(loss_sum / samples).mean().item():.4f}")
    return params, state, _EpochStats(loss_sum, correct, grad_norm, samples, batches)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _all_finite(params: Params) -> torch.Tensor:
    flags = [torch.isfinite(p.reshape(p.shape[0], -1)).all(1) for p in params.values()]
    return torch.stack(flags).all(0)


def _slice(params: Params, k: int) -> Params:
    return {n: p[k : k + 1] for n, p in params.items()}


def _train_group(
    runs: list[_Run], settings: TrainSettings, data: _Data, progress: bool
) -> list[tuple[_Run, TrainOutcome]]:
    first = runs[0].job
    config, dtype = first.optimizer, data.train_x.dtype
    model = frozen_copy(build_model(first.variant, seed=0, dtype=dtype, device=data.train_x.device))
    params = optimizers.concat([run.params for run in runs])
    state = optimizers.concat_states([run.state for run in runs])
    active, done = list(runs), []
    n_batches = math.ceil(len(data.train_y) / settings.batch_size)
    for epoch in range(runs[0].epoch + 1, settings.epochs + 1):
        label = f"{config.name} seed {first.seed}" if len(active) == 1 else f"{config.name} x{len(active)}"
        with tqdm(total=n_batches, desc=f"{label} epoch {epoch}/{settings.epochs}", unit="batch",
                  file=sys.stderr, disable=not progress, leave=False, dynamic_ncols=True) as bar:
            started = time.perf_counter()
            new_params, new_state, stats = _epoch(config, model, params, state, active, data, settings, bar)
            ok = (torch.isfinite(stats.loss_sum) & _all_finite(new_params)).tolist()
            wall = time.perf_counter() - started
        for k, run in enumerate(active):
            run.history.append(_history_entry(epoch, k, stats, ok[k], model, new_params, data, settings, config, wall))
            if progress:
                tqdm.write(_summary_line(run, epoch, settings), file=sys.stderr)
        keep = [k for k in range(len(active)) if ok[k]]
        for k in range(len(active)):
            if not ok[k]:
                run = active[k]
                run.params, run.state = _slice(params, k), optimizers.select_state(state, [k])
                done.append((run, _finish(run, model, data, settings, diverged_epoch=epoch)))
        params, state = optimizers.select(new_params, keep), optimizers.select_state(new_state, keep)
        active = [active[k] for k in keep]
        for k, run in enumerate(active):
            run.params, run.state, run.epoch = _slice(params, k), optimizers.select_state(state, [k]), epoch
            if epoch % settings.checkpoint_every == 0 or epoch == settings.epochs:
                _save_checkpoint(run, settings, dtype)
            io.write_json(run.job.run_dir / METRICS_JSON, _metrics(run, "running", None, run.epoch, None))
        if not active:
            break
    for run in active:
        done.append((run, _finish(run, model, data, settings, diverged_epoch=None)))
    return done


def _history_entry(epoch, k, stats, ok, model, params, data, settings, config, wall) -> dict[str, Any]:
    test_loss = test_accuracy = None
    if ok:
        result = evaluate(model, {n: p[k] for n, p in params.items()}, data.test_x, data.test_y, settings.eval_chunk)
        test_loss, test_accuracy = _finite(result.loss), result.accuracy
    return {
        "epoch": epoch,
        "train_loss": _finite(stats.loss_sum[k].item() / stats.samples),
        "train_accuracy": stats.correct[k].item() / stats.samples,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "gradient_norm": _finite(stats.gradient_norm_sum[k].item() / stats.batches),
        "lr": config.lr,
        "wall_time": wall,
        "models_in_step": len(stats.correct),
    }


def _summary_line(run: _Run, epoch: int, settings: TrainSettings) -> str:
    h = run.history[-1]

    def fmt(value: float | None, spec: str) -> str:
        return "nan" if value is None else format(value, spec)

    return (
        f"{run.job.optimizer.name} seed {run.job.seed} epoch {epoch}/{settings.epochs}: "
        f"train loss {fmt(h['train_loss'], '.4f')} acc {h['train_accuracy']:.4f}, "
        f"test loss {fmt(h['test_loss'], '.4f')} acc {fmt(h['test_accuracy'], '.4f')}, {h['wall_time']:.1f} s"
    )


def _metrics(run: _Run, status: str, diverged_epoch: int | None, epochs_completed: int, final: dict | None) -> dict:
    return {
        "status": status,
        "diverged_epoch": diverged_epoch,
        "epochs_completed": epochs_completed,
        "history": run.history,
        "final": final,
    }


def _finish(run: _Run, model: torch.nn.Module, data: _Data, settings: TrainSettings, *, diverged_epoch: int | None) -> TrainOutcome:
    """Final evaluation on the full sets, then model.pt, then metrics.json, then drop the checkpoint."""
    params = {n: p[0] for n, p in run.params.items()}
    on_train = evaluate(model, params, data.train_x, data.train_y, settings.eval_chunk)
    on_test = evaluate(model, params, data.test_x, data.test_y, settings.eval_chunk)
    final = {
        "train_loss": _finite(on_train.loss),
        "train_accuracy": on_train.accuracy,
        "test_loss": _finite(on_test.loss),
        "test_accuracy": on_test.accuracy,
    }
    status = "ok" if diverged_epoch is None else "diverged"
    epochs_completed = run.epoch if diverged_epoch is None else diverged_epoch - 1
    run_dir = run.job.run_dir
    io.save_torch(run_dir / MODEL_PT, {n: p.detach().cpu().clone() for n, p in params.items()})
    io.write_json(run_dir / METRICS_JSON, _metrics(run, status, diverged_epoch, epochs_completed, final))
    (run_dir / CHECKPOINT_PT).unlink(missing_ok=True)
    return TrainOutcome(run_dir, status, diverged_epoch, epochs_completed, skipped=False, **final)


# ---- benchmark ---------------------------------------------------------------------------


def bench_training(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    *,
    device: str | torch.device,
    dtype: torch.dtype,
    n_models: int,
    n_batches: int,
    variant_name: str = "modern",
    batch_size: int = 128,
) -> list[dict[str, Any]]:
    """Seconds per model-epoch of SGD training, extrapolated from `n_batches` timed batches.

    Rows: a plain eager nn.Module + torch.optim loop on resident tensors (the reference), the
    same fed by a CPU DataLoader, our functional path with one model, and our stacked path
    with `n_models` seeds at once. `ratio` is the eager loop's time over the row's (> 1: faster).
    """
    device = torch.device(device)
    x, y = train_x.to(device=device, dtype=dtype), train_y.to(device=device, dtype=torch.long)
    epoch_batches = math.ceil(len(y) / batch_size)
    n_batches = max(1, min(n_batches, len(y) // batch_size - 2))  # timed batches stay inside one epoch
    work = f"SGD training, LeNet-5 {variant_name}, batch {batch_size}, {device.type} {str(dtype).replace('torch.', '')}"
    timings = [
        ("eager nn.Module + torch.optim, resident tensors", 1, _time_eager(x, y, device, dtype, variant_name, batch_size, n_batches, loader=False)),
        ("eager nn.Module + torch.optim, CPU DataLoader", 1, _time_eager(x, y, device, dtype, variant_name, batch_size, n_batches, loader=True)),
        ("minima functional step, 1 model", 1, _time_stacked(x, y, device, dtype, variant_name, batch_size, n_batches, 1)),
        (f"minima stacked vmap step, {n_models} models", n_models, _time_stacked(x, y, device, dtype, variant_name, batch_size, n_batches, n_models)),
    ]
    reference = timings[0][2] * epoch_batches / n_batches
    rows = []
    for implementation, models, seconds in timings:
        per_model_epoch = seconds / n_batches * epoch_batches / models
        rows.append(
            {
                "work": work,
                "implementation": implementation,
                "seconds_per_model_epoch": per_model_epoch,
                "ratio": reference / per_model_epoch,
            }
        )
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_eager(x, y, device, dtype, variant_name, batch_size, n_batches, *, loader: bool) -> float:
    model = build_model(variant_name, seed=0, dtype=dtype, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    if loader:
        dataset = torch.utils.data.TensorDataset(x.cpu(), y.cpu())
        batches = iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                                   generator=torch.Generator().manual_seed(0)))
        source = lambda i: tuple(t.to(device) for t in next(batches))  # noqa: E731
    else:
        source = lambda i: (x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size])  # noqa: E731

    def one(i: int) -> None:
        xb, yb = source(i)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(2):  # warm-up: allocator, kernels, lazy init
        one(i)
    _sync(device)
    started = time.perf_counter()
    for i in range(n_batches):
        one(i + 2)
    _sync(device)
    return time.perf_counter() - started


def _time_stacked(x, y, device, dtype, variant_name, batch_size, n_batches, n_models) -> float:
    config = OptimizerConfig("sgd", lr=0.01)
    settings = TrainSettings(epochs=1, batch_size=batch_size, shuffle=True)
    runs = [_fresh(TrainJob(Path("."), variant_name, config, seed), device, dtype) for seed in range(n_models)]
    model = frozen_copy(build_model(variant_name, seed=0, dtype=dtype, device=device))
    params = optimizers.concat([run.params for run in runs])
    state = optimizers.concat_states([run.state for run in runs])
    data = _Data(x, y, x[:1], y[:1])
    bar = tqdm(disable=True)
    _epoch(config, model, params, state, runs, data, settings, bar, limit=2)  # warm-up
    _sync(device)
    started = time.perf_counter()
    _epoch(config, model, params, state, runs, data, settings, bar, limit=n_batches)
    _sync(device)
    return time.perf_counter() - started
