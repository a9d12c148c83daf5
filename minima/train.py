"""Training stage: LeNet-5 runs trained to a minimum, one directory each, resumable.

A run is (variant, optimizer config, seed) on the profile's training set. The seed decides the
initial weights (`build_model`), the batch order (a CPU generator seeded with `seed`) and
AdaHessian's probes (a generator on the training device seeded with `seed + 2**40`).

Stop rule (Jiang et al. 2020 train every model to the same cross-entropy before measuring it):
at each epoch end the mean cross-entropy over the whole training set is evaluated at the
current weights (model in eval mode). The first epoch where it is <= `stop_loss` is the run's
`epochs_to_fit` and the run is `converged`; with `stop_early` (the default) it stops there.
A run that reaches `max_epochs` without it is `converged = false`: it is reported, and the
analysis leaves it out of every correlation. (`stop_early = false` trains all `max_epochs`,
as the original study did, and still records when the threshold was first met.)

Seeds trained together (`stack_seeds`): the K runs of one optimizer config keep their
parameters stacked along a leading axis, the forward pass is `vmap(functional_call)` over it
(each model on its own minibatch), and the optimizer step is vectorized over it
(`minima.optimizers`). A model leaves the stack when it converges or diverges; the others go
on. Models never interact, so a stacked run equals K separate runs up to rounding.

Per run, written atomically: `checkpoint.pt` (see `minima.checkpoints`), `metrics.json` after
every epoch, and at the end `model.pt` (a plain LeNet-5 state_dict); then the checkpoint is
removed. metrics.json: {"status": "running" | "ok" | "diverged", "converged", "epochs_to_fit",
"stop_reason", "diverged_epoch", "epochs_completed", "history": per epoch {"epoch",
"train_loss"/"train_accuracy" (means over the epoch's minibatches), "full_train_loss"/
"full_train_accuracy" (whole training set at the epoch's end), "test_loss"/"test_accuracy"
(every `test_every` epochs, else null), "gradient_norm" (mean minibatch gradient norm), "lr",
"wall_time" (training only), "cpu_time" (its process CPU seconds), "models_in_step"}, "final": full training, test and validation
loss and accuracy (validation: None without a validation set), `weight_norm` ||w||_2, `distance_from_init` ||w - w0||_2 and per-layer weight norms
at the saved weights}. Non-finite numbers are written as null.

Divergence: after each epoch a model whose training loss or parameters are not finite is
marked diverged at that epoch and keeps the weights it had at the start of that epoch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.func import functional_call, vmap
from torch.nn import functional as F
from tqdm import tqdm

from minima import io, optimizers
from minima.checkpoints import RunState, TrainJob, TrainOutcome, finished_outcome, save_checkpoint, start
from minima.models import LAYERS, build_model, variant
from minima.objective import evaluate, frozen_copy
from minima.optimizers import OptimizerConfig, OptimizerState, Params
from minima.paths import CHECKPOINT_PT, METRICS_JSON, MODEL_PT
from minima.tensors import save_torch
from minima.specs import TrainSettings

__all__ = ["TrainJob", "TrainOutcome", "TrainSettings", "train", "finished_outcome", "batch_objective"]


@dataclass(frozen=True)
class TrainData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    val_x: torch.Tensor  # [0, ...] when the study has no validation set
    val_y: torch.Tensor


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
    progress: bool = False,
    log: bool = True,
    record: dict[str, Any] | None = None,
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
) -> list[TrainOutcome]:
    """Train (or resume, or skip) every job; outcomes in the order of `jobs`.

    With `settings.stack_seeds`, jobs sharing variant, optimizer config and resume epoch are
    trained as one stack; otherwise one after another. `progress`: a bar per epoch (terminals);
    `log`: one plain line per epoch on stderr. `record`: extra fields for every metrics.json
    (the pipeline records which images the run trained on). `val_x`, `val_y`: the validation
    set, evaluated once at the end like the test set (None: no validation set).
    """
    device = torch.device(device)
    if val_x is None or val_y is None:
        val_x, val_y = test_x[:0], test_y[:0]
    if len({job.run_dir for job in jobs}) != len(jobs):
        raise ValueError("jobs: a run_dir appears more than once")
    data = TrainData(
        train_x.to(device=device, dtype=dtype),
        train_y.to(device=device, dtype=torch.long),
        test_x.to(device=device, dtype=dtype),
        test_y.to(device=device, dtype=torch.long),
        val_x.to(device=device, dtype=dtype),
        val_y.to(device=device, dtype=torch.long),
    )
    outcomes: dict[Path, TrainOutcome] = {}
    pending: list[RunState] = []
    for job in jobs:
        _check_images(data, job.variant)
        finished = finished_outcome(job.run_dir)
        if finished is not None:
            (job.run_dir / CHECKPOINT_PT).unlink(missing_ok=True)
            outcomes[job.run_dir] = finished
        else:
            pending.append(start(job, settings.trajectory(), device, dtype))
    extra = dict(record or {})
    for group in _groups(pending, settings):
        for run, outcome in _train_group(group, settings, data, progress, log, extra):
            outcomes[run.job.run_dir] = outcome
    return [outcomes[job.run_dir] for job in jobs]


def _check_images(data: TrainData, variant_name: str) -> None:
    side = variant(variant_name).input_size
    for name in ("train_x", "test_x", "val_x"):
        x = getattr(data, name)
        if name == "val_x" and len(x) == 0:
            continue
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, side, side):
            raise ValueError(f"{name}: variant {variant_name!r} needs images [N, 1, {side}, {side}], got {list(x.shape)}")


def _groups(runs: list[RunState], settings: TrainSettings) -> list[list[RunState]]:
    if not settings.stack_seeds:
        return [[run] for run in runs]
    groups: dict[tuple, list[RunState]] = {}
    for run in runs:
        groups.setdefault((run.job.variant, run.job.optimizer, run.epoch), []).append(run)
    return list(groups.values())


# ---- one epoch -----------------------------------------------------------------------------


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
class EpochStats:
    loss_sum: torch.Tensor  # [K] sum over samples of the minibatch mean loss
    correct: torch.Tensor  # [K]
    gradient_norm_sum: torch.Tensor  # [K]
    samples: int
    batches: int


def run_epoch(
    config: OptimizerConfig,
    model: torch.nn.Module,
    params: Params,
    state: OptimizerState,
    runs: Sequence[RunState],
    data: TrainData,
    settings: TrainSettings,
    bar: tqdm,
    limit: int | None = None,
) -> tuple[Params, OptimizerState, EpochStats]:
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
    for begin in range(0, n, size):
        if limit is not None and batches >= limit:
            break
        if order is None:
            xb, yb = data.train_x[begin : begin + size], data.train_y[begin : begin + size]
        else:
            index = order[:, begin : begin + size]
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
    return params, state, EpochStats(loss_sum, correct, grad_norm, samples, batches)


# ---- the loop ------------------------------------------------------------------------------


def _all_finite(params: Params) -> torch.Tensor:
    flags = [torch.isfinite(p.reshape(p.shape[0], -1)).all(1) for p in params.values()]
    return torch.stack(flags).all(0)


def _slice(params: Params, k: int) -> Params:
    return {n: p[k : k + 1] for n, p in params.items()}


def _single(params: Params, k: int) -> Params:
    return {n: p[k] for n, p in params.items()}


def _train_group(
    runs: list[RunState], settings: TrainSettings, data: TrainData, progress: bool, log: bool, extra: dict[str, Any]
) -> list[tuple[RunState, TrainOutcome]]:
    first = runs[0].job
    config, dtype = first.optimizer, data.train_x.dtype
    model = frozen_copy(build_model(first.variant, seed=0, dtype=dtype, device=data.train_x.device))
    params = optimizers.concat([run.params for run in runs])
    state = optimizers.concat_states([run.state for run in runs])
    active, done = list(runs), []
    n_batches = math.ceil(len(data.train_y) / settings.batch_size)
    for epoch in range(runs[0].epoch + 1, settings.max_epochs + 1):
        label = first.label if len(active) == 1 else f"{config.name} x{len(active)}"
        with tqdm(total=n_batches, desc=f"{label} epoch {epoch}/{settings.max_epochs}", unit="batch",
                  file=sys.stderr, disable=not progress, leave=False, dynamic_ncols=True) as bar:
            started, started_cpu = time.perf_counter(), time.process_time()
            new_params, new_state, stats = run_epoch(config, model, params, state, active, data, settings, bar)
            ok = (torch.isfinite(stats.loss_sum) & _all_finite(new_params)).tolist()
            # the process's CPU time beside the wall clock: core-seconds, which a shared machine inflates less
            wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        finished: dict[int, int | None] = {}  # position in the stack -> diverged epoch (None: stopped)
        for k, run in enumerate(active):
            entry = _history_entry(epoch, k, stats, ok[k], model, new_params, data, settings, config, wall, cpu)
            run.history.append(entry)
            fitted = entry["full_train_loss"] is not None and entry["full_train_loss"] <= settings.stop_loss
            if fitted and run.epochs_to_fit is None:
                run.epochs_to_fit = epoch
            if log:
                print(_epoch_line(run, epoch, settings), file=sys.stderr, flush=True)
            if not ok[k]:
                finished[k] = epoch
            elif fitted and settings.stop_early:
                finished[k] = None
        for k, diverged_epoch in finished.items():
            run = active[k]
            if diverged_epoch is not None:  # keep the last finite weights: those before this epoch
                run.params, run.state = _slice(params, k), optimizers.select_state(state, [k])
            else:
                run.params, run.state, run.epoch = _slice(new_params, k), optimizers.select_state(new_state, [k]), epoch
            done.append((run, _finish(run, model, data, settings, extra, diverged_epoch=diverged_epoch)))
        keep = [k for k in range(len(active)) if k not in finished]
        params, state = new_params, new_state
        if finished:  # drop the finished models from the stack (a copy, so only when one finished)
            params, state = optimizers.select(params, keep), optimizers.select_state(state, keep)
        active = [active[k] for k in keep]
        for k, run in enumerate(active):
            run.params, run.state, run.epoch = _slice(params, k), optimizers.select_state(state, [k]), epoch
            if epoch % settings.checkpoint_every == 0:
                save_checkpoint(run, settings.trajectory(), dtype)
            io.write_json(run.job.run_dir / METRICS_JSON, io.finite_or_none({**_metrics(run, settings, "running", None, None), **extra}))
        if not active:
            break
    for run in active:
        done.append((run, _finish(run, model, data, settings, extra, diverged_epoch=None)))
    return done


def _history_entry(epoch, k, stats, ok, model, params, data, settings, config, wall, cpu) -> dict[str, Any]:
    full_loss = full_accuracy = test_loss = test_accuracy = None
    if ok:
        weights = _single(params, k)
        on_train = evaluate(model, weights, data.train_x, data.train_y, settings.eval_chunk)
        full_loss, full_accuracy = io.finite_or_none(on_train.loss), on_train.accuracy
        if settings.test_every and epoch % settings.test_every == 0:
            on_test = evaluate(model, weights, data.test_x, data.test_y, settings.eval_chunk)
            test_loss, test_accuracy = io.finite_or_none(on_test.loss), on_test.accuracy
    return {
        "epoch": epoch,
        "train_loss": io.finite_or_none(stats.loss_sum[k].item() / stats.samples),
        "train_accuracy": stats.correct[k].item() / stats.samples,
        "full_train_loss": full_loss,
        "full_train_accuracy": full_accuracy,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "gradient_norm": io.finite_or_none(stats.gradient_norm_sum[k].item() / stats.batches),
        "lr": config.lr,
        "wall_time": wall,
        "cpu_time": cpu,
        "models_in_step": len(stats.correct),
    }


def _epoch_line(run: RunState, epoch: int, settings: TrainSettings) -> str:
    h = run.history[-1]

    def fmt(value: float | None, spec: str) -> str:
        return "nan" if value is None else format(value, spec)

    test = f", test acc {fmt(h['test_accuracy'], '.4f')}" if h["test_accuracy"] is not None else ""
    return (
        f"{run.job.label} epoch {epoch}/{settings.max_epochs}: train loss {fmt(h['full_train_loss'], '.4f')} "
        f"(stop at {settings.stop_loss:g}) acc {fmt(h['full_train_accuracy'], '.4f')}{test}, {h['wall_time']:.1f} s"
    )


def _stop_reason(run: RunState, settings: TrainSettings, diverged_epoch: int | None) -> str:
    if diverged_epoch is not None:
        return f"diverged at epoch {diverged_epoch}"
    if run.epochs_to_fit is not None:
        return f"training loss <= {settings.stop_loss:g} at epoch {run.epochs_to_fit}"
    return f"max_epochs = {settings.max_epochs} reached before the training loss met {settings.stop_loss:g}"


def _metrics(run: RunState, settings: TrainSettings, status: str, diverged_epoch: int | None, final: dict | None) -> dict:
    converged = status == "ok" and run.epochs_to_fit is not None
    return {
        "status": status,
        "converged": converged,
        "epochs_to_fit": run.epochs_to_fit,
        "stop_reason": _stop_reason(run, settings, diverged_epoch) if status != "running" else None,
        "diverged_epoch": diverged_epoch,
        "epochs_completed": run.epoch if diverged_epoch is None else diverged_epoch - 1,
        "history": run.history,
        "final": final,
    }


def weight_norms(params: Params, initial: Params) -> dict[str, Any]:
    """||w||_2, ||w - w0||_2 and per-layer weight norms (the layer's weight matrix or kernel)."""
    flat = torch.cat([p.detach().double().reshape(-1) for p in params.values()])
    start_ = torch.cat([initial[n].detach().double().reshape(-1).to(flat.device) for n in params])
    layers = {layer: float(params[f"{layer}.weight"].double().norm()) for layer in LAYERS if f"{layer}.weight" in params}
    return {"weight_norm": float(flat.norm()), "distance_from_init": float((flat - start_).norm()), "layer_norms": layers}


def _finish(run: RunState, model: torch.nn.Module, data: TrainData, settings: TrainSettings, extra: dict[str, Any], *,
            diverged_epoch: int | None) -> TrainOutcome:
    """Final evaluation on the full sets, then model.pt, then metrics.json, then drop the checkpoint."""
    params = _single(run.params, 0)
    on_train = evaluate(model, params, data.train_x, data.train_y, settings.eval_chunk)
    on_test = evaluate(model, params, data.test_x, data.test_y, settings.eval_chunk)
    on_val = evaluate(model, params, data.val_x, data.val_y, settings.eval_chunk) if len(data.val_y) else None
    initial = dict(build_model(run.job.variant, seed=run.job.seed, dtype=torch.float64).named_parameters())
    final = {
        "train_loss": io.finite_or_none(on_train.loss),
        "train_accuracy": on_train.accuracy,
        "test_loss": io.finite_or_none(on_test.loss),
        "test_accuracy": on_test.accuracy,
        "val_loss": None if on_val is None else io.finite_or_none(on_val.loss),
        "val_accuracy": None if on_val is None else on_val.accuracy,
        **weight_norms(params, initial),
    }
    status = "ok" if diverged_epoch is None else "diverged"
    metrics = _metrics(run, settings, status, diverged_epoch, final)
    run_dir = run.job.run_dir
    model_path = save_torch(run_dir / MODEL_PT, {n: p.detach().cpu().clone() for n, p in params.items()})
    # the digest vouches for model.pt where plan and summarize check a run without torch
    io.write_json(run_dir / METRICS_JSON, io.finite_or_none({**metrics, **extra, "model_sha256": io.file_sha256(model_path)}))
    (run_dir / CHECKPOINT_PT).unlink(missing_ok=True)
    return TrainOutcome(run_dir, status, metrics["converged"], run.epochs_to_fit, diverged_epoch,
                        metrics["epochs_completed"], final["train_loss"], final["train_accuracy"],
                        final["test_loss"], final["test_accuracy"], skipped=False)
