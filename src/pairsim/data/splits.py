"""Class-disjoint splits by a seeded hash of the class key.

Hashing the key (not sorting code points) matters: code point order groups similar classes
(all syllables with the same initial consonant, all skin tones of one emoji), so a range split
would put whole families on one side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CLASS_SPLITS = ("train", "test", "all")
PROVIDER_SPLITS = ("train-all", "test-all")


def key_rank(key: str, seed: int) -> bytes:
    """The sort key that places ``key`` in the seeded class order."""
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def split_classes(keys: Sequence[str], split: str, seed: int = 0) -> list[int]:
    """Indices of the classes of ``split``: the first half of the seeded hash order is "train".

    Args:
        keys: all class keys of the data set.
        split: ``"train"``, ``"test"`` or ``"all"``; with an odd count "test" gets the extra class.
        seed: changes the partition.

    Returns:
        Sorted indices into ``keys``.

    Raises:
        ValueError: for another split name.

    Example:
        >>> keys = [str(i) for i in range(10)]
        >>> train, test = split_classes(keys, "train"), split_classes(keys, "test")
        >>> len(train), len(test), sorted(train + test) == list(range(10))
        (5, 5, True)
    """
    if split not in CLASS_SPLITS:
        raise ValueError(f"unknown class split {split!r}; expected one of {CLASS_SPLITS}")
    if split == "all":
        return list(range(len(keys)))
    order = sorted(range(len(keys)), key=lambda i: key_rank(keys[i], seed))
    half = len(keys) // 2
    return sorted(order[:half] if split == "train" else order[half:])


def pick_classes(indices: Sequence[int], keys: Sequence[str], max_classes: int | None, seed: int = 0) -> list[int]:
    """A deterministic subset of at most ``max_classes`` of ``indices`` (seeded hash order), sorted.

    Example:
        >>> pick_classes([0, 1, 2, 3], ["a", "b", "c", "d"], 2) == pick_classes([0, 1, 2, 3], ["a", "b", "c", "d"], 2)
        True
    """
    if max_classes is None or max_classes >= len(indices):
        return sorted(indices)
    if max_classes < 1:
        raise ValueError(f"max_classes must be >= 1, got {max_classes}")
    # A different salt from split_classes, so the subset is not the head of the split's own order.
    ranked = sorted(indices, key=lambda i: key_rank("pick\x00" + keys[i], seed))
    return sorted(ranked[:max_classes])
