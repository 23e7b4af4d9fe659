"""Class-disjoint splits: a partition, half and half, fixed by the seed, not by key order."""

from __future__ import annotations

import pytest

from pairsim.data.splits import pick_classes, split_classes


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
