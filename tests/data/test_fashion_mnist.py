"""fashion-mnist from the Debian IDX files: parsing, 5/5 class split, the provider's 60k/10k split."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pairsim.data import ImageSet, load_dataset
from pairsim.data.fashion_mnist import CLASS_NAMES, DEFAULT_DIR, read_idx

pytestmark = pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="dataset-fashion-mnist not installed (make install)")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fashion")


def load(root: Path, split: str) -> ImageSet:
    return load_dataset("fashion-mnist", split, root, progress=False)


def test_read_idx_round_trip_and_errors(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in data.shape)
    (tmp_path / "ok.gz").write_bytes(gzip.compress(header + data.tobytes()))
    assert np.array_equal(read_idx(tmp_path / "ok.gz"), data)
    (tmp_path / "short").write_bytes(header + data.tobytes()[:-1])
    with pytest.raises(ValueError, match="expected 24 values"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x03" + header[4:])
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


def test_class_disjoint_split_is_five_and_five(root: Path) -> None:
    train, test = load(root, "train"), load(root, "test")
    assert train.num_classes == test.num_classes == 5
    assert set(train.class_keys) | set(test.class_keys) == set(CLASS_NAMES)
    assert len(train) == len(test) == 35_000  # 7,000 images per class
    assert train.image_shape == (1, 28, 28) and train.images.dtype == np.uint8


def test_provider_split_has_all_ten_classes(root: Path) -> None:
    train_all, test_all = load(root, "train-all"), load(root, "test-all")
    assert (len(train_all), len(test_all)) == (60_000, 10_000)
    assert train_all.class_keys == test_all.class_keys == CLASS_NAMES
    assert np.bincount(test_all.labels).tolist() == [1000] * 10
    # Same pixels and labels as the raw files, in file order.
    raw = read_idx(DEFAULT_DIR / "t10k-images-idx3-ubyte.gz")
    raw_labels = read_idx(DEFAULT_DIR / "t10k-labels-idx1-ubyte.gz")
    assert np.array_equal(test_all.images[:, 0], raw) and np.array_equal(test_all.labels, raw_labels)
    assert test_all.sources[:2] == ("t10k/0", "t10k/1")


def test_labels_follow_the_class_names_in_a_class_split(root: Path) -> None:
    test, everything = load(root, "test"), load(root, "all")
    name_of = dict(enumerate(everything.class_keys))
    full_label = {
        source: name_of[int(label)] for source, label in zip(everything.sources, everything.labels, strict=True)
    }
    for i in range(0, len(test), 997):
        assert test.class_keys[test.labels[i]] == full_label[test.sources[i]]


def test_resized_copy(tmp_path: Path) -> None:
    s = load_dataset("fashion-mnist", "test-all", tmp_path, image_size=32, max_classes=2, progress=False)
    assert s.image_shape == (1, 32, 32) and s.num_classes == 2 and len(s) == 2000
