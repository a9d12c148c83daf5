"""The stages of a study, each one CLI call that skips work whose outputs are current.

data -> plan -> (per run) train -> curvature -> sharpness -> landscape -> (per study) dinh,
interpolation -> summarize. Every result records the `inputs` it was computed from (its
settings and the SHA-256 of every model.pt it read); it is current when those equal what the
profile and the run directories give now (`is_current`, the one check the runs, the study
parts and `make report`'s list of what is missing all use). Anything else recomputes it.

Work on one run holds that run's lock, so two `make all` in one directory train each run once:
the second waits, then finds the run current. A corrupt artifact is moved aside
(`<name>.corrupt`) with one line saying so, and recomputed; `summarize` (`make report`) changes
nothing and lists it with what is missing (Context.repair).
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from minima import curvature as curvature_engine
from minima import data as data_stage
from minima import paths
from minima.checkpoints import TrainJob
from minima.config import Profile, RunConfig, load_profile
from minima.io import CorruptFile, MinimaError, finite_or_none, locked, move_aside, read_json_or_none, write_json
from minima.landscape import measure_interpolation, measure_landscape
from minima.models import LeNet5, build_model
from minima.objective import evaluate, flatten, params_of
from minima.reparam import balancing_scales, dinh_rows, rescaling_factors
from minima.runtime import DTYPES, configure_device, default_profile, select_device
from minima.settings import to_table
from minima.sharpness import measure_all as measure_sharpness
from minima.tensors import load_torch, save_torch
from minima.train import train

ANALYSES = ("curvature", "sharpness", "landscape")


@dataclass(frozen=True)
class Context:
    profile: Profile
    layout: paths.Layout
    device: torch.device
    dtype: torch.dtype
    data_dir: Path | None = None
    progress: bool = False
    repair: bool = True  # move corrupt results aside to recompute them; False: change nothing, note them
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def run_dir(self, run: RunConfig) -> Path:
        return self.layout.run_dir(run.run_hash)

    @property
    def corrupt(self) -> dict[Path, str]:
        """Corrupt results found and left in place (repair=False): path -> what is wrong."""
        return self._cache.setdefault("corrupt", {})

    @property
    def dataset(self) -> data_stage.Dataset:
        """The whole data set, loaded (and verified) once per process."""
        if "dataset" not in self._cache:
            study = self.profile.study
            self._cache["dataset"] = data_stage.load_dataset(study.dataset, study.model, self.layout.data,
                                                             dtype=self.dtype, device=self.device)
        return self._cache["dataset"]

    def training_set(self, run: RunConfig) -> data_stage.Subset:
        """The run's training images: the profile's stratified subset, labels flipped per label_noise."""
        key = ("train", run.n_train, run.data_seed, run.train.label_noise)
        if key not in self._cache:
            self._cache[key] = data_stage.select(self.dataset.train, run.n_train, run.data_seed, run.train.label_noise)
        return self._cache[key]

    def validation_set(self, run: RunConfig) -> data_stage.Subset:
        """The run's validation images: stratified, disjoint from its training subset, clean labels."""
        key = ("validation", run.n_train, run.data_seed, run.n_val)
        if key not in self._cache:
            training = self.training_set(run)
            self._cache[key] = data_stage.select_validation(self.dataset.train, training, run.n_val, run.data_seed)
        return self._cache[key]

    def test_set(self) -> data_stage.Subset:
        study = self.profile.study
        if "test" not in self._cache:
            self._cache["test"] = data_stage.select(self.dataset.test, study.n_test, study.data_seed)
        return self._cache["test"]

    def analysis_data(self, run: RunConfig, n_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The images an analysis uses: the run's training set, or a stratified subset of it
        (n_samples below its size), chosen once here and recorded by the caller."""
        training = self.training_set(run)
        chosen = data_stage.select(training.split, n_samples, seed)
        within = chosen.indices
        if within is None:
            return training.split.x, training.split.y, training.record()
        full = within if training.indices is None else training.indices[within]
        record = {"n": len(within), "indices": full.tolist(), "indices_sha256": data_stage.indices_sha256(full), "flipped": []}
        return chosen.split.x, chosen.split.y, record


def open_context(profile_ref: str, *, root: str | None = None, data_dir: Path | None = None, progress: bool = False,
                 warn: bool = False, repair: bool = True) -> Context:
    ref = default_profile() if profile_ref == "auto" else profile_ref
    _plain_text("profile", ref)
    layout = paths.layout(root)
    _plain_text("root", str(layout.root))
    profile = load_profile(ref, warn=warn)
    device = select_device(profile.study.device)
    configure_device(device)
    return Context(profile, layout, device, DTYPES[profile.study.dtype], data_dir, progress, repair)


CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}


def _plain_text(what: str, text: str) -> None:
    """Spaces, quotes, `$` and any Unicode letter are fine in a path (they reach make recipes
    quoted); a control character is not: a newline would end a recipe line of plan.mk."""
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        name = CONTROL_NAMES.get(bad, "a control character")
        raise MinimaError(f"the {what} path {text!r} contains {name} (U+{ord(bad):04X}), which make cannot pass on; "
                          "rename it")


def stage_data(ctx: Context) -> dict:
    return data_stage.provision(ctx.profile.study.dataset, ctx.layout.data, ctx.data_dir or data_stage.default_data_dir())


def data_line(manifest: dict) -> str:
    """What `data` and `plan` print of a provisioned data set: one line."""
    return (f"{manifest['dataset']}: {manifest['n_train']} train + {manifest['n_test']} test images from "
            f"{manifest['source']}, checksums verified")


def write_run_configs(ctx: Context, runs: list[RunConfig] | None = None) -> None:
    """Each run's config.json (all of the profile's runs by default), rewritten only when it changed."""
    for run in ctx.profile.runs if runs is None else runs:
        path = ctx.run_dir(run) / paths.CONFIG_JSON
        record = {"run": run.run_hash, "profile": ctx.profile.name, "configuration": run.configuration,
                  "hyperparameters": ctx.profile.hyperparameters(run), "levels": dict(run.levels), **run.to_json()}
        if read_json_or_none(path) != record:
            write_json(path, record)


def advice(ctx: Context) -> str:
    """The command that builds what is missing, as the user would type it in the checkout: the
    profile as given, and ROOT= when the results live elsewhere (a bare `make all` would build
    in the checkout instead)."""
    words = ["make", "all", f"PROFILE={ctx.profile.ref}"]
    if ctx.layout.root != paths.REPO_DIR:
        words.append(f"ROOT={ctx.layout.root}")
    return shlex.join(words)


# ---- currency ------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_current(ctx: Context, path: Path, inputs: dict[str, Any]) -> bool:
    """The one currency check: the result exists, is readable and was computed from `inputs`.
    A corrupt result is moved aside (and so recomputed)."""
    if not path.exists():
        return False
    record = read_json_or_none(path, require=("inputs",))
    if record is None:
        _corrupt(ctx, path, "unreadable or incomplete result")
        return False
    return record["inputs"] == inputs


def _corrupt(ctx: Context, path: Path, why: str) -> None:
    """A corrupt result: moved aside (so its stage recomputes it), or, where nothing may change
    (`summarize`, which `make report` runs), only noted for the list of what is missing."""
    if not ctx.repair:
        ctx.corrupt.setdefault(path, why)
        return
    moved = move_aside(path)
    print(f"minima: {path} is corrupt ({why}); moved to {moved.name}, recomputing", file=sys.stderr)


def metrics(ctx: Context, run: RunConfig) -> dict | None:
    path = ctx.run_dir(run) / paths.METRICS_JSON
    if not path.exists():
        return None
    record = read_json_or_none(path, require=("status", "converged", "epochs_completed", "history", "final"))
    if record is None or not isinstance(record["final"] if record["status"] != "running" else {}, dict):
        _corrupt(ctx, path, "not a metrics record")
        return None
    return record


def is_trained(ctx: Context, run: RunConfig) -> bool:
    """metrics.json says finished and model.pt loads as this run's LeNet-5 (else both are redone)."""
    record = metrics(ctx, run)
    model_path = ctx.run_dir(run) / paths.MODEL_PT
    if record is None or record["status"] not in ("ok", "diverged") or not model_path.exists():
        return False
    try:
        load_trained(ctx, run)
    except CorruptFile as exc:
        _corrupt(ctx, exc.path, exc.reason)
        if ctx.repair:
            _corrupt(ctx, ctx.run_dir(run) / paths.METRICS_JSON, "its model.pt was corrupt")
        return False
    return True


def analyses_of(ctx: Context, run: RunConfig) -> tuple[str, ...]:
    """What a trained run needs: every analysis if it did not diverge; landscapes for first seeds."""
    record = metrics(ctx, run) or {}
    if record.get("status") != "ok":
        return ()
    return tuple(kind for kind in ANALYSES if kind != "landscape" or ctx.profile.is_first_seed(run))


def analysis_inputs(ctx: Context, run: RunConfig, kind: str) -> dict[str, Any]:
    inputs = {"settings": to_table(getattr(ctx.profile, kind)), "model_sha256": file_sha256(ctx.run_dir(run) / paths.MODEL_PT)}
    if kind == "curvature":
        inputs["density"] = ctx.profile.curvature.density_runs == "all" or ctx.profile.is_first_seed(run)
    if kind == "landscape":  # slices follow the top eigenvectors: new curvature settings, new landscape
        inputs["curvature"] = to_table(ctx.profile.curvature)
    return inputs


def analysis_path(ctx: Context, run: RunConfig, kind: str) -> Path:
    return ctx.run_dir(run) / {"curvature": paths.CURVATURE_JSON, "sharpness": paths.SHARPNESS_JSON,
                               "landscape": paths.LANDSCAPE_JSON}[kind]


def analysis_is_current(ctx: Context, run: RunConfig, kind: str, inputs: dict | None = None) -> bool:
    """`inputs`: analysis_inputs(ctx, run, kind) where the caller has them already."""
    inputs = analysis_inputs(ctx, run, kind) if inputs is None else inputs
    current = is_current(ctx, analysis_path(ctx, run, kind), inputs)
    if kind == "curvature" and current:  # the landscape reads the eigenvectors saved beside curvature.json
        current = _readable(ctx, ctx.run_dir(run) / paths.EIGENVECTORS_PT)
    return current


def _readable(ctx: Context, path: Path) -> bool:
    """A tensor file that loads; a corrupt one is moved aside (so its producer runs again)."""
    if not path.exists():
        return False
    try:
        load_torch(path)
    except CorruptFile as exc:
        _corrupt(ctx, exc.path, exc.reason)
        return False
    return True


def run_is_current(ctx: Context, run: RunConfig) -> bool:
    return is_trained(ctx, run) and all(analysis_is_current(ctx, run, kind) for kind in analyses_of(ctx, run))


def study_kinds(ctx: Context) -> tuple[str, ...]:
    return ("dinh",) + (("interpolation",) if ctx.profile.study.interpolate else ())


def study_runs(ctx: Context, kind: str) -> tuple[RunConfig, ...]:
    """The runs a study part's result depends on, in profile order.

    The interpolation reads the first run of each of its two optimizers. Dinh's rescaling is
    applied to the first *converged* run of `dinh_optimizer` (a capped run is no minimum, and
    claims use converged runs only), which is known only after training: the part depends on
    that optimizer's runs up to the first one trained and converged, all of them while none is.
    """
    if kind != "dinh":
        return tuple(ctx.profile.first_run(name) for name in ctx.profile.study.interpolate)
    reads = []
    for run in ctx.profile.runs:
        if run.optimizer.name == ctx.profile.study.dinh_optimizer:
            reads.append(run)
            if _converged(ctx, run):
                break
    return tuple(reads)


def _converged(ctx: Context, run: RunConfig) -> bool:
    record = metrics(ctx, run) if is_trained(ctx, run) else None
    return record is not None and record["status"] == "ok" and bool(record["converged"])


def dinh_run(ctx: Context) -> RunConfig | None:
    """The run Dinh's rescaling is applied to: the first converged run of `dinh_optimizer`;
    None while none is (study_inputs tells whether that is final: every run trained)."""
    last = study_runs(ctx, "dinh")[-1]
    return last if _converged(ctx, last) else None


def study_path(ctx: Context, kind: str) -> Path:
    return ctx.layout.study / f"{ctx.profile.name}-{kind}.json"


def study_inputs(ctx: Context, kind: str) -> dict[str, Any] | None:
    """Settings and the digests of the models the part reads; None while one is not trained."""
    runs = study_runs(ctx, kind)
    if not all(is_trained(ctx, run) for run in runs):
        return None
    models = {run.run_hash: file_sha256(ctx.run_dir(run) / paths.MODEL_PT) for run in runs}
    if kind == "dinh":
        settings = {"dinh": to_table(ctx.profile.dinh), "curvature": to_table(ctx.profile.curvature),
                    "sharpness": to_table(ctx.profile.sharpness)}
    else:
        settings = {"landscape": to_table(ctx.profile.landscape)}
    return {"settings": settings, "models": models}


def study_is_current(ctx: Context, kind: str) -> bool:
    inputs = study_inputs(ctx, kind)
    return inputs is not None and is_current(ctx, study_path(ctx, kind), inputs)


def missing_results(ctx: Context) -> list[str]:
    """What `summarize` needs and does not find current, one line per run or study part."""
    missing = []
    for run in ctx.profile.runs:
        if not is_trained(ctx, run):
            missing.append(f"{run.run_hash} ({run.label}): not trained")
            continue
        stale = [kind for kind in analyses_of(ctx, run) if not analysis_is_current(ctx, run, kind)]
        if stale:
            missing.append(f"{run.run_hash} ({run.label}): {', '.join(stale)}")
    missing += [f"study: {kind}" for kind in study_kinds(ctx) if not study_is_current(ctx, kind)]
    corrupt = [f"{_shown(ctx, path)} is corrupt ({why})" for path, why in ctx.corrupt.items()]
    return corrupt + missing


def _shown(ctx: Context, path: Path) -> str:
    """A path under the root as runs/<hash>/<file>: the root is in the advice beside it."""
    return str(path.relative_to(ctx.layout.root)) if path.is_relative_to(ctx.layout.root) else str(path)


# ---- per-run stages ------------------------------------------------------------------------


def load_trained(ctx: Context, run: RunConfig) -> LeNet5:
    model = build_model(run.model, seed=run.seed, dtype=ctx.dtype, device=ctx.device)
    path = ctx.run_dir(run) / paths.MODEL_PT
    state = load_torch(path)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise CorruptFile(path, f"not a LeNet-5 {run.model} state_dict") from exc
    return model.to(device=ctx.device, dtype=ctx.dtype)


def stage_train(ctx: Context, runs: list[RunConfig]) -> None:
    """Train every run not trained yet (each under its lock); runs of a configuration stack when asked."""
    todo = [run for run in runs if not is_trained(ctx, run)]
    if not todo:
        return
    write_run_configs(ctx, todo)
    test = ctx.test_set().split
    groups: dict[tuple, list[RunConfig]] = {}
    for run in todo:
        key = run.configuration if ctx.profile.train.stack_seeds else run.run_hash
        groups.setdefault(key, []).append(run)
    for group in groups.values():
        training = ctx.training_set(group[0])
        with _locks(ctx, group):
            group = [run for run in group if not is_trained(ctx, run)]  # another process may have finished it
            if not group:
                continue
            jobs = [TrainJob(run_dir=ctx.run_dir(r), variant=r.model, optimizer=r.optimizer, seed=r.seed) for r in group]
            validation = ctx.validation_set(group[0])
            record = {"training_set": training.record(), "test_set": {"n": len(test.y)},
                      "validation_set": {"n": len(validation.split.y), "indices_sha256": validation.indices_sha256}}
            train(jobs, group[0].train, training.split.x, training.split.y, test.x, test.y,
                  device=ctx.device, dtype=ctx.dtype, progress=ctx.progress, record=record,
                  val_x=validation.split.x, val_y=validation.split.y)


@contextlib.contextmanager
def _locks(ctx: Context, runs: list[RunConfig]) -> Iterator[None]:
    """Hold the locks of several runs, always in hash order (no deadlock between processes)."""
    with contextlib.ExitStack() as stack:
        for path in sorted({ctx.run_dir(r) / paths.LOCK for r in runs}):
            stack.enter_context(locked(path))
        yield


def stage_analyses(ctx: Context, run: RunConfig, kinds: tuple[str, ...] | None = None) -> None:
    """The run's analyses that are not current, in order. The landscape reads the eigenvectors
    saved with curvature, so asking for the landscape brings curvature up to date first."""
    if kinds and "landscape" in kinds:
        kinds = (*kinds, "curvature")
    with locked(ctx.run_dir(run) / paths.LOCK):
        wanted = analyses_of(ctx, run)
        for kind in ANALYSES:
            if kind not in wanted or (kinds and kind not in kinds):
                continue
            inputs = analysis_inputs(ctx, run, kind)
            if analysis_is_current(ctx, run, kind, inputs):
                continue
            started, cpu = time.perf_counter(), time.process_time()
            values = ANALYSIS_FUNCTIONS[kind](ctx, run)
            # CPU seconds beside the wall clock: on a shared machine only they count core-seconds
            record = {**values, "inputs": inputs, "stage_seconds": time.perf_counter() - started,
                      "cpu_seconds": time.process_time() - cpu}
            write_json(analysis_path(ctx, run, kind), finite_or_none(record))
            print(f"minima: {kind} of {run.label} ({run.run_hash}) in {record['stage_seconds']:.1f} s", file=sys.stderr)


def _curvature(ctx: Context, run: RunConfig) -> dict:
    settings = ctx.profile.curvature
    x, y, data = ctx.analysis_data(run, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    with_density = settings.density_runs == "all" or ctx.profile.is_first_seed(run)
    # lambda_max after the function-preserving rescaling that equalizes the layers' weight norms
    # (tanh is not positively homogeneous: no such rescaling exists for the seed variant)
    params = params_of(model)
    scales = balancing_scales(params) if run.model == "modern" else None
    factors = flatten(rescaling_factors(params, scales)) if scales else None
    result = curvature_engine.measure(model, x, y, settings, device=ctx.device, dtype=ctx.dtype,
                                      progress=ctx.progress, with_density=with_density, rescaling=factors)
    save_torch(ctx.run_dir(run) / paths.EIGENVECTORS_PT, result.vectors.detach().cpu())
    record = result.to_json()
    balanced = record.pop("rescaled")
    return {**record, "balanced": balanced and {**balanced, "scales": scales}, "data": data}


def _sharpness(ctx: Context, run: RunConfig) -> dict:
    settings = ctx.profile.sharpness
    x, y, data = ctx.analysis_data(run, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    result = measure_sharpness(model, params_of(model), x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {**result.to_json(), "data": data}


def _landscape(ctx: Context, run: RunConfig) -> dict:
    settings = ctx.profile.landscape
    x, y, data = ctx.analysis_data(run, settings.n_samples, settings.seed)
    model = load_trained(ctx, run)
    # current and loadable: stage_analyses has just checked (or recomputed) curvature under this lock
    vectors = load_torch(ctx.run_dir(run) / paths.EIGENVECTORS_PT).to(device=ctx.device, dtype=ctx.dtype)
    result = measure_landscape(model, params_of(model), vectors, x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {**result.to_json(), "data": data}


ANALYSIS_FUNCTIONS: dict[str, Callable[[Context, RunConfig], dict]] = {
    "curvature": _curvature, "sharpness": _sharpness, "landscape": _landscape,
}


def stage_run(ctx: Context, runs: list[RunConfig]) -> None:
    stage_train(ctx, runs)
    for run in runs:
        stage_analyses(ctx, run)


# ---- study-level stages --------------------------------------------------------------------


def stage_study(ctx: Context, kinds: list[str] | None = None) -> None:
    """The profile-level analyses (all the profile asks for, or the given kinds), each skipped when current."""
    available = study_kinds(ctx)
    for kind in kinds or available:
        if kind not in available:
            raise MinimaError(f"study: profile {ctx.profile.ref} has no {kind} part (interpolate is empty)")
        for run in study_runs(ctx, kind):
            if not is_trained(ctx, run):
                raise MinimaError(f"run {run.run_hash} ({run.label}) is not trained yet: run `{advice(ctx)}`")
        with locked(study_path(ctx, kind).with_suffix(".lock")):
            inputs = study_inputs(ctx, kind)
            if is_current(ctx, study_path(ctx, kind), inputs):
                continue
            started, cpu = time.perf_counter(), time.process_time()
            values = _dinh(ctx) if kind == "dinh" else _interpolation(ctx)
            record = {**values, "inputs": inputs, "stage_seconds": time.perf_counter() - started,
                      "cpu_seconds": time.process_time() - cpu}
            write_json(study_path(ctx, kind), finite_or_none(record))
            print(f"minima: study {kind} in {record['stage_seconds']:.1f} s", file=sys.stderr)


def _dinh(ctx: Context) -> dict:
    profile = ctx.profile
    if profile.study.model != "modern":
        return {"applicable": False, "rows": [], "note": f"Dinh's rescaling needs positively homogeneous activations (ReLU); the {profile.study.model} variant uses tanh"}
    run = dinh_run(ctx)
    if run is None:
        name, n = profile.study.dinh_optimizer, len(study_runs(ctx, "dinh"))
        return {"applicable": False, "rows": [], "note": (
            f"none of the {n} {name} runs converged (full training loss ≤ {profile.train.stop_loss:g} within "
            f"max_epochs = {profile.train.max_epochs}, not diverged): a capped run is no minimum")}
    model = load_trained(ctx, run)
    cx, cy, _ = ctx.analysis_data(run, profile.curvature.n_samples, profile.curvature.seed)
    sx, sy, _ = ctx.analysis_data(run, profile.sharpness.n_samples, profile.sharpness.seed)
    test = ctx.test_set().split
    reference = evaluate(model, params_of(model), test.x, test.y)
    probe = test.x[:256]
    with torch.no_grad():
        logits = model(probe)

    def measure(params: dict) -> dict:
        scaled = build_model(run.model, seed=run.seed, dtype=ctx.dtype, device=ctx.device)
        scaled.load_state_dict(params)
        curvature = curvature_engine.measure_top_and_trace(scaled, cx, cy, profile.curvature, device=ctx.device, dtype=ctx.dtype)
        sharp = measure_sharpness(scaled, params, sx, sy, profile.sharpness, device=ctx.device, dtype=ctx.dtype).values()
        evaluation = evaluate(scaled, params, test.x, test.y)
        with torch.no_grad():
            change = float((scaled(probe) - logits).abs().max() / logits.abs().max())
        return {"top_eigenvalue": curvature.top.values[0], "trace": curvature.trace.mean,
                "test_accuracy": evaluation.accuracy, "test_loss": evaluation.loss, "max_logit_change": change, **sharp}

    rows = dinh_rows(params_of(model), profile.dinh, variant=run.model, measure=measure)
    return {"applicable": True, "run": run.run_hash, "optimizer": run.optimizer.name, "seed": run.seed,
            "layers": list(profile.dinh.layers), "reference_test_accuracy": reference.accuracy, "rows": rows, "note": ""}


def _interpolation(ctx: Context) -> dict:
    a, b = study_runs(ctx, "interpolation")
    settings = ctx.profile.landscape
    x, y, data = ctx.analysis_data(a, settings.n_samples, settings.seed)
    model_a, model_b = load_trained(ctx, a), load_trained(ctx, b)
    result = measure_interpolation(model_a, params_of(model_a), params_of(model_b), x, y, settings, device=ctx.device, dtype=ctx.dtype)
    return {"a": a.optimizer.name, "b": b.optimizer.name, "run_a": a.run_hash, "run_b": b.run_hash, "data": data, **result.to_json()}
