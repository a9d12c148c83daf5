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

This module decides what is current and imports no torch: a tensor file is checked against the
SHA-256 recorded when it was written (by loading it only for records older than those digests),
and the device is chosen only when a stage computes. The stages that compute are in
`minima.stages`, so `plan`, `execute` and `summarize` cost no torch import.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from minima import data as data_stage
from minima import paths
from minima.config import Profile, RunConfig, load_profile
from minima.io import CorruptFile, MinimaError, file_sha256, move_aside, read_json_or_none, write_json
from minima.runtime import configure_device, default_profile, device_kind, select_device, torch_dtype
from minima.settings import to_table

if TYPE_CHECKING:
    import torch

ANALYSES = ("curvature", "sharpness", "landscape")


@dataclass(frozen=True)
class Context:
    profile: Profile
    layout: paths.Layout
    data_dir: Path | None = None
    progress: bool = False
    repair: bool = True  # move corrupt results aside to recompute them; False: change nothing, note them
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def device(self) -> torch.device:
        """The profile's device (auto: CUDA where available), set up when a stage first computes:
        the stages that only plan, dispatch or summarize never ask, and never import torch."""
        device = select_device(self.profile.study.device)
        configure_device(device)
        return device

    @cached_property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.profile.study.dtype)

    @property
    def device_kind(self) -> str:
        """"cuda" or "cpu", as `device.type` says, without importing torch where no GPU driver is."""
        return device_kind(self.profile.study.device)

    def run_dir(self, run: RunConfig) -> Path:
        return self.layout.run_dir(run.run_hash)

    @property
    def corrupt(self) -> dict[Path, str]:
        """Corrupt results found and left in place (repair=False): path -> what is wrong."""
        return self._cache.setdefault("corrupt", {})

    @cached_property
    def _arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The data set's arrays and manifest, loaded (and verified) once per process."""
        return data_stage.load_arrays(self.profile.study.dataset, self.layout.data)

    @cached_property
    def dataset(self) -> data_stage.Dataset:
        """The whole data set as the model's inputs (images converted as subsets take them)."""
        arrays, manifest = self._arrays
        study = self.profile.study
        return data_stage.dataset_from_arrays(study.dataset, study.model, arrays, manifest, dtype=self.dtype, device=self.device)

    def drawn(self, run: RunConfig) -> dict[str, np.ndarray | None]:
        """The indices of the run's training, validation and test images (None: a whole split), as
        the sets below draw them: from the labels alone, so a report of them loads no image.
        Drawn once per subset, like the sets: the runs of a study share them."""
        key = ("drawn", run.n_train, run.data_seed, run.n_val)
        if key not in self._cache:
            arrays, study = self._arrays[0], self.profile.study
            train = data_stage.subset_indices(arrays["train_labels"], run.n_train, run.data_seed)
            self._cache[key] = {
                "train": train,
                "validation": data_stage.validation_indices(arrays["train_labels"], train, run.n_val, run.data_seed),
                "test": data_stage.subset_indices(arrays["test_labels"], study.n_test, study.data_seed)}
        return self._cache[key]

    def split_size(self, split: str) -> int:
        return len(self._arrays[0][f"{split}_labels"])

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
    return Context(profile, layout, data_dir, progress, repair)


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


def is_current(ctx: Context, path: Path, inputs: dict[str, Any]) -> bool:
    """The one currency check: the result exists, is readable and was computed from `inputs`.
    A corrupt result is moved aside (and so recomputed)."""
    return current_record(ctx, path, inputs) is not None


def current_record(ctx: Context, path: Path, inputs: dict[str, Any]) -> dict | None:
    """The result at `path` where it is current (is_current), else None."""
    if not path.exists():
        return None
    record = read_json_or_none(path, require=("inputs",))
    if record is None:
        _corrupt(ctx, path, "unreadable or incomplete result")
        return None
    return record if record["inputs"] == inputs else None


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
    """metrics.json says finished and model.pt is the one it was written with (else both are redone)."""
    record = metrics(ctx, run)
    model_path = ctx.run_dir(run) / paths.MODEL_PT
    if record is None or record["status"] not in ("ok", "diverged") or not model_path.exists():
        return False
    if not _intact(ctx, model_path, record.get("model_sha256"), lambda: _load_trained(ctx, run)):
        if ctx.repair:
            _corrupt(ctx, ctx.run_dir(run) / paths.METRICS_JSON, "its model.pt was corrupt")
        return False
    return True


def _intact(ctx: Context, path: Path, digest: str | None, load: Callable[[], Any]) -> bool:
    """A tensor file is what its record says it wrote: the SHA-256 recorded beside it matches
    (no torch needed: `plan` and `summarize` check every run this way), or, for a record from
    before digests were kept, the file loads (`load`). A corrupt file is moved aside."""
    try:
        if digest is None:
            load()
        elif file_sha256(path) != digest:
            raise CorruptFile(path, "its SHA-256 differs from the one recorded when it was written")
    except CorruptFile as exc:
        _corrupt(ctx, exc.path, exc.reason)
        return False
    return True


# torch is imported only where a record without a digest leaves a file to be loaded
def _load_trained(ctx: Context, run: RunConfig) -> None:
    from minima.stages import load_trained

    load_trained(ctx, run)


def _load_tensors(path: Path) -> None:
    from minima.tensors import load_torch

    load_torch(path)


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
    record = current_record(ctx, analysis_path(ctx, run, kind), inputs)
    if record is None or kind != "curvature":
        return record is not None
    # the landscape reads the eigenvectors saved beside curvature.json
    vectors = ctx.run_dir(run) / paths.EIGENVECTORS_PT
    return vectors.exists() and _intact(ctx, vectors, record.get("eigenvectors_sha256"), lambda: _load_tensors(vectors))


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
