"""load_dataset with a toy builder: caching, atomic writes, subsets, dense labels, errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from pairsim.data import ImageSet, list_datasets, load_dataset, registry
from pairsim.data.base import Built
from pairsim.data.registry import BuildContext


class Toy:
    """Class ``k`` has 3 images filled with ``k``; records the keys of every build."""

    version = "1"
    default_image_size = 8
    uses_source = False
    subset_builds = True
    builds: ClassVar[list[tuple[str, ...]]] = []

    def class_keys(self, ctx: BuildContext) -> list[str]:
        return [f"k{i:02d}" for i in range(20)]

    def fingerprint(self, ctx: BuildContext) -> str:
        return "toy"

    def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
        Toy.builds.append(tuple(keys))
        labels = np.repeat(np.arange(len(keys)), 3)
        values = np.array([int(keys[c][1:]) for c in labels.tolist()], np.uint8)
        images = np.broadcast_to(values[:, None, None, None], (len(labels), 1, ctx.image_size, ctx.image_size))
        holdout = np.tile([False, False, True], len(keys))
        return Built(images.copy(), labels, tuple(keys), tuple(f"src{i % 3}" for i in range(len(labels))), holdout)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> type[Toy]:
    registry._load_builtin_datasets()
    monkeypatch.setitem(registry._DATASETS._entries, "toy", Toy)
    Toy.builds = []
    return Toy


def check_consistent(s: ImageSet) -> None:
    assert s.images.dtype == np.uint8 and s.labels.dtype == np.int64
    assert sorted(set(s.labels.tolist())) == list(range(s.num_classes))
    for image, label in zip(s.images, s.labels, strict=True):
        assert (image == int(s.class_keys[int(label)][1:])).all()  # the label names the image's own class


def test_builtin_datasets_are_registered() -> None:
    assert list_datasets() == ["emoji", "fashion-mnist", "folder", "hangul-fonts"]


def test_splits_are_class_disjoint_and_labels_dense(toy: type[Toy], tmp_path: Path) -> None:
    train = load_dataset("toy", "train", tmp_path, progress=False)
    test = load_dataset("toy", "test", tmp_path, progress=False)
    assert set(train.class_keys).isdisjoint(test.class_keys)
    assert train.num_classes == test.num_classes == 10 and len(train) == 30
    assert train.image_shape == (1, 8, 8) and train.split == "train" and train.name == "toy"
    check_consistent(train)
    check_consistent(test)
    # A per-class builder builds only the classes each split needs, once; then the cache answers.
    assert toy.builds == [train.class_keys, test.class_keys]
    load_dataset("toy", "train", tmp_path, progress=False)
    assert len(toy.builds) == 2


def test_cache_is_reused_and_written_atomically(toy: type[Toy], tmp_path: Path) -> None:
    first = load_dataset("toy", "all", tmp_path, progress=False)
    again = load_dataset("toy", "all", tmp_path, progress=False)
    assert len(toy.builds) == 1
    assert np.array_equal(first.images, again.images) and first.sources == again.sources
    entries = sorted(p.name for p in (tmp_path / "toy").iterdir())
    assert len(entries) == 1 and entries[0].startswith("build-8px-") and not entries[0].startswith(".")
    assert again.images.flags.writeable  # the trainer wraps it with torch.from_numpy


def test_image_size_and_seed_change_the_result(toy: type[Toy], tmp_path: Path) -> None:
    assert load_dataset("toy", "train", tmp_path, image_size=16, progress=False).image_shape == (1, 16, 16)
    a = load_dataset("toy", "train", tmp_path, seed=0, progress=False).class_keys
    b = load_dataset("toy", "train", tmp_path, seed=1, progress=False).class_keys
    assert a != b


def test_max_classes_builds_only_the_subset(toy: type[Toy], tmp_path: Path) -> None:
    small = load_dataset("toy", "test", tmp_path, max_classes=3, progress=False)
    assert small.num_classes == 3 and toy.builds == [small.class_keys]
    assert set(small.class_keys) <= set(load_dataset("toy", "test", tmp_path, progress=False).class_keys)
    check_consistent(small)
    # Once the complete build is cached, splits and subsets are cut from it instead of built again.
    everything = load_dataset("toy", "all", tmp_path, progress=False)
    assert everything.num_classes == 20 and len(toy.builds) == 3
    assert load_dataset("toy", "test", tmp_path, max_classes=3, progress=False).class_keys == small.class_keys
    assert load_dataset("toy", "train", tmp_path, progress=False).num_classes == 10
    assert len(toy.builds) == 3


def test_builders_without_subset_builds_build_everything_once(toy: type[Toy], tmp_path: Path) -> None:
    toy.subset_builds = False
    try:
        load_dataset("toy", "train", tmp_path, max_classes=2, progress=False)
        load_dataset("toy", "test", tmp_path, progress=False)
    finally:
        toy.subset_builds = True
    assert [len(keys) for keys in toy.builds] == [20]


def test_provider_splits(toy: type[Toy], tmp_path: Path) -> None:
    train_all = load_dataset("toy", "train-all", tmp_path, progress=False)
    test_all = load_dataset("toy", "test-all", tmp_path, progress=False)
    assert train_all.num_classes == test_all.num_classes == 20
    assert (len(train_all), len(test_all)) == (40, 20)
    check_consistent(test_all)


@pytest.mark.parametrize(
    ("name", "split", "message"),
    [
        ("nope", "train", "unknown data set 'nope'"),
        ("toy", "validation", "unknown split 'validation'"),
        ("toy", "val", r"val split needs validation folds: set data\.folds >= 2"),
        ("folder", "train", "needs root="),
    ],
)
def test_bad_arguments_raise_value_error(toy: type[Toy], tmp_path: Path, name: str, split: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_dataset(name, split, None if name == "folder" else tmp_path, progress=False)


def test_provider_split_of_a_set_without_one(toy: type[Toy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoHoldout(Toy):
        def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
            b = super().build(ctx, keys)
            return Built(b.images, b.labels, b.keys, b.sources)

    monkeypatch.setitem(registry._DATASETS._entries, "toy2", NoHoldout)
    with pytest.raises(ValueError, match="no split of its own"):
        load_dataset("toy2", "train-all", tmp_path, progress=False)


def test_a_failed_write_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pairsim.data import cache

    built = Toy().build(BuildContext(tmp_path, None, 8, False), ["k01", "k02"])
    calls: list[str] = []

    def save_then_fail(path: Path, array: np.ndarray) -> None:
        calls.append(str(path))
        if len(calls) == 2:
            raise OSError("disk full")
        np.save(path, array)

    monkeypatch.setattr(cache.np, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        cache.write_built(built, tmp_path / "toy" / "build-x")
    assert list((tmp_path / "toy").iterdir()) == []  # neither the build nor its temporary directory
    monkeypatch.undo()
    cache.write_built(built, tmp_path / "toy" / "build-x")
    again = cache.read_built(tmp_path / "toy" / "build-x")
    assert again is not None and np.array_equal(again.images, built.images) and again.keys == ("k01", "k02")
