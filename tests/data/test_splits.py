"""Class-disjoint splits and validation folds: partitions fixed by the seed, not by key order."""

from __future__ import annotations

import dataclasses

import pytest

from pairsim.data.splits import CLASS_SPLITS, SplitSpec, class_folds, pick_classes, split_classes


@pytest.mark.parametrize("n", [1, 2, 10, 11, 1000])
def test_train_and_test_partition_the_classes(n: int) -> None:
    keys = [f"class-{i}" for i in range(n)]
    train, test = split_classes(keys, "train", seed=3), split_classes(keys, "test", seed=3)
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == list(range(n))
    assert len(train) == n // 2 and len(test) == n - n // 2
    assert split_classes(keys, "all") == list(range(n))


def test_split_depends_on_the_seed_and_the_key_not_on_the_order() -> None:
    keys = [chr(0xAC00 + i) for i in range(400)]
    train = {keys[i] for i in split_classes(keys, "train", seed=0)}
    assert train == {keys[i] for i in split_classes(keys, "train", seed=0)}
    assert train != {keys[i] for i in split_classes(keys, "train", seed=1)}
    shuffled = keys[::-1]
    assert train == {shuffled[i] for i in split_classes(shuffled, "train", seed=0)}
    # Not a code point range: both halves reach across the whole range.
    first = {keys[i] for i in range(200)}
    assert 60 < len(train & first) < 140


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown class split"):
        split_classes(["a", "b"], "validation")


def test_pick_classes_is_a_deterministic_subset() -> None:
    keys = [str(i) for i in range(100)]
    indices = list(range(0, 100, 2))
    picked = pick_classes(indices, keys, 10, seed=0)
    assert len(picked) == 10 and set(picked) <= set(indices) and picked == sorted(picked)
    assert picked == pick_classes(indices, keys, 10, seed=0)
    assert picked != pick_classes(indices, keys, 10, seed=5)
    assert picked != indices[:10]
    assert pick_classes(indices, keys, None) == indices
    assert pick_classes(indices, keys, 500) == indices
    with pytest.raises(ValueError, match="max_classes"):
        pick_classes(indices, keys, 0)


@pytest.mark.parametrize(("n", "test_ratio", "folds"), [(10, 0.5, 4), (101, 0.3, 5), (1000, 0.0, 4), (7, 0.5, 3)])
def test_folds_are_class_disjoint_deterministic_and_cover_the_training_classes(
    n: int, test_ratio: float, folds: int
) -> None:
    keys = [f"k{i}" for i in range(n)]
    spec = SplitSpec(seed=2, test_ratio=test_ratio, folds=folds)
    test = split_classes(keys, "test", spec=spec)
    trainval = split_classes(keys, "trainval", spec=spec)
    assert len(test) == n - int(n * (1 - test_ratio) + 1e-9) and sorted(test + trainval) == list(range(n))
    fold_keys = class_folds(keys, spec)
    assert sorted(k for f in fold_keys for k in f) == sorted(keys[i] for i in trainval)  # a partition of them
    assert max(map(len, fold_keys)) - min(map(len, fold_keys)) <= 1  # balanced
    assert class_folds(keys, spec) == fold_keys  # deterministic
    assert class_folds(keys[::-1], spec) == fold_keys  # by key, not by order
    for fold in range(folds):
        at = dataclasses.replace(spec, fold=fold)
        val, train = split_classes(keys, "val", spec=at), split_classes(keys, "train", spec=at)
        assert {keys[i] for i in val} == set(fold_keys[fold])
        assert set(val).isdisjoint(train) and set(train).isdisjoint(test) and sorted(val + train) == trainval
    assert class_folds(keys, dataclasses.replace(spec, seed=3)) != fold_keys or n < 10


def test_a_ratio_of_one_half_keeps_the_previous_split() -> None:
    keys = [chr(0xAC00 + i) for i in range(300)]
    spec = SplitSpec(folds=4)  # folds divide the training half; they do not move classes across test/train
    assert split_classes(keys, "test", spec=spec) == split_classes(keys, "test", seed=0)
    assert split_classes(keys, "trainval", spec=spec) == split_classes(keys, "train", seed=0)


def test_val_needs_folds_and_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"val split needs validation folds: set data\.folds >= 2"):
        split_classes(["a", "b", "c"], "val", spec=SplitSpec(folds=1))
    for bad, message in [
        ({"test_ratio": 1.0}, "test_ratio"),
        ({"folds": 0}, "folds"),
        ({"folds": 2, "fold": 2}, "fold"),
    ]:
        with pytest.raises(ValueError, match=message):
            SplitSpec(**bad)  # type: ignore[arg-type]


def test_the_data_may_name_the_split_of_each_class() -> None:
    keys = ["a", "b", "c", "d", "e"]
    named = {"a": "train", "b": "val", "c": "test", "d": "train", "e": "test"}
    spec = SplitSpec(folds=4, fold=1)
    pick = {s: [keys[i] for i in split_classes(keys, s, spec=spec, explicit=named)] for s in CLASS_SPLITS}
    assert pick["test"] == ["c", "e"] and pick["val"] == ["b"] and pick["train"] == ["a", "d"]
    assert pick["trainval"] == ["a", "b", "d"] and pick["all"] == keys
    only_test = {k: ("test" if v == "test" else "train") for k, v in named.items()}  # folds come from the hash
    folds = class_folds(keys, SplitSpec(folds=3), explicit=only_test)
    assert sorted(k for f in folds for k in f) == ["a", "b", "d"]
    with pytest.raises(ValueError, match=r"no split for \['e'\]"):
        split_classes(keys, "train", spec=spec, explicit={k: v for k, v in named.items() if k != "e"})
