"""A training run's working state: fresh start, epoch checkpoints, resume, and the finished outcome.

`checkpoint.pt` holds the parameters, optimizer state, both generator states, the epoch and the
history, written atomically after every `checkpoint_every` epochs, so a killed run resumes
where its checkpoint left it and ends with the same weights as an uninterrupted one. A
checkpoint written for other settings is refused with a one-line error; an unreadable one is
moved aside (`checkpoint.pt.corrupt`) and the run restarts from scratch.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from minima import io, optimizers
from minima.models import VARIANTS, build_model
from minima.objective import params_of
from minima.optimizers import OptimizerConfig, OptimizerState, Params
from minima.paths import CHECKPOINT_PT, METRICS_JSON, MODEL_PT
from minima.tensors import load_torch, save_torch

PROBE_STREAM = 2**40  # offset of the probe generator's seed from the batch-order generator's
_FORMAT = 2


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

    @property
    def label(self) -> str:
        return f"{self.optimizer.name} lr {self.optimizer.lr:g} seed {self.seed}"


@dataclass
class RunState:
    """Working state of one run while it trains (ours alone, never the caller's)."""

    job: TrainJob
    params: Params  # stacked with K = 1
    state: OptimizerState
    order: torch.Generator
    probes: torch.Generator
    history: list[dict]
    epoch: int
    epochs_to_fit: int | None = None  # first epoch whose full training loss met stop_loss


@dataclass(frozen=True)
class TrainOutcome:
    run_dir: Path
    status: str  # "ok" | "diverged"
    converged: bool  # the full training loss met stop_loss at some epoch end
    epochs_to_fit: int | None
    diverged_epoch: int | None
    epochs_completed: int  # epochs behind the saved weights
    train_loss: float | None  # full training set, final weights; None where not finite
    train_accuracy: float | None
    test_loss: float | None
    test_accuracy: float | None
    skipped: bool  # True when the run was already finished on disk


def finished_outcome(run_dir: Path) -> TrainOutcome | None:
    """The outcome of a run already finished on disk, or None (absent, unfinished or corrupt)."""
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_PT).exists():
        return None
    metrics = io.read_json_or_none(run_dir / METRICS_JSON, require=("status", "epochs_completed", "final"))
    if metrics is None or metrics["status"] not in ("ok", "diverged") or not isinstance(metrics["final"], dict):
        return None
    final = metrics["final"]
    return TrainOutcome(
        run_dir=run_dir,
        status=metrics["status"],
        converged=bool(metrics.get("converged")),
        epochs_to_fit=metrics.get("epochs_to_fit"),
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


def start(job: TrainJob, trajectory: dict[str, Any], device: torch.device, dtype: torch.dtype) -> RunState:
    """Resume from the run's checkpoint when there is a usable one, else start fresh."""
    path = job.run_dir / CHECKPOINT_PT
    if path.exists():
        try:
            return _resume(job, trajectory, device, dtype)
        except io.CorruptFile as exc:
            moved = io.move_aside(exc.path)
            print(f"minima: {exc}; moved to {moved.name}, training {job.label} from scratch", file=sys.stderr)
    return fresh(job, device, dtype)


def fresh(job: TrainJob, device: torch.device, dtype: torch.dtype) -> RunState:
    model = build_model(job.variant, seed=job.seed, dtype=dtype, device=device)
    params = {n: p.unsqueeze(0) for n, p in params_of(model).items()}
    return RunState(
        job=job,
        params=params,
        state=optimizers.init_state(job.optimizer, params),
        order=torch.Generator().manual_seed(job.seed),
        probes=torch.Generator(device=device).manual_seed(job.seed + PROBE_STREAM),
        history=[],
        epoch=0,
    )


def _identity(job: TrainJob, trajectory: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    return {"format": _FORMAT, "job": _job_record(job), "settings": trajectory, "dtype": str(dtype), "device_type": device.type}


def _resume(job: TrainJob, trajectory: dict[str, Any], device: torch.device, dtype: torch.dtype) -> RunState:
    path = job.run_dir / CHECKPOINT_PT
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or "epoch" not in ckpt:
        raise io.CorruptFile(path, "not a training checkpoint")
    for key, value in _identity(job, trajectory, device, dtype).items():
        if ckpt.get(key) != value:
            raise io.MinimaError(
                f"checkpoint {path} was written for {key}={ckpt.get(key)!r}, this run has {value!r}; delete it to retrain"
            )

    def stacked(tensors: dict[str, torch.Tensor]) -> Params:
        return {n: t.to(device=device, dtype=dtype).unsqueeze(0) for n, t in tensors.items()}

    try:
        order = torch.Generator()
        order.set_state(ckpt["order_generator"])
        probes = torch.Generator(device=device)
        probes.set_state(ckpt["probe_generator"])
        state = OptimizerState(ckpt["optimizer_step"], {b: stacked(v) for b, v in ckpt["optimizer_buffers"].items()})
        return RunState(job, stacked(ckpt["params"]), state, order, probes, list(ckpt["history"]), ckpt["epoch"],
                        ckpt.get("epochs_to_fit"))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise io.CorruptFile(path, f"incomplete checkpoint ({type(exc).__name__})") from exc


def save_checkpoint(run: RunState, trajectory: dict[str, Any], dtype: torch.dtype) -> None:
    def single(tensors: Params) -> dict[str, torch.Tensor]:
        return {n: t[0].detach().cpu().clone() for n, t in tensors.items()}

    record = _identity(run.job, trajectory, run.probes.device, dtype)
    record.update(
        epoch=run.epoch,
        epochs_to_fit=run.epochs_to_fit,
        params=single(run.params),
        optimizer_step=run.state.step,
        optimizer_buffers={b: single(v) for b, v in run.state.buffers.items()},
        order_generator=run.order.get_state(),
        probe_generator=run.probes.get_state(),
        history=run.history,
    )
    save_torch(run.job.run_dir / CHECKPOINT_PT, record)
