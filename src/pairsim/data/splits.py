"""Class-disjoint splits: test classes, and K validation folds of the training classes.

One mechanism for every data set. The classes are ordered by a seeded hash of their key; the last
``test_ratio`` of that order are the test classes, the rest the training classes, which a second
seeded hash deals into ``folds`` folds. A run trains on the folds but one (split ``"train"``) and
validates on that one (``"val"``, fold number ``fold``); ``"trainval"`` is every training class (a
final model), ``"test"`` the test classes (read once, by an explicit final evaluation), ``"all"``
every class. A data set whose files name the split of each class (a CSV ``split`` column,
``train/ val/ test/`` folders) gives them in ``explicit``; they replace the hash.

Hashing the key (not sorting code points) matters: code point order groups similar classes
(all syllables with the same initial consonant, all skin tones of one emoji), so a range split
would put whole families on one side.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CLASS_SPLITS = ("train", "val", "trainval", "test", "all")
PROVIDER_SPLITS = ("train-all", "test-all")
#: What a data set's own files may call the split of a class.
EXPLICIT_ROLES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSpec:
    """How the classes of a data set are split.

    Attributes:
        seed: seeds both hash orders (the test share and the folds).
        test_ratio: the share of classes held out for the final test, in ``[0, 1)``; 0 trains on every
            class (as a production index wants).
        folds: validation folds of the training classes (``K``); 1: no validation split.
        fold: which fold validates, in ``[0, folds)``.

    Raises:
        ValueError: a value out of range.
    """

    seed: int = 0
    test_ratio: float = 0.5
    folds: int = 1
    fold: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.test_ratio) and 0.0 <= self.test_ratio < 1.0):
            raise ValueError(f"test_ratio must lie in [0, 1), got {self.test_ratio!r}")
        if self.folds < 1:
            raise ValueError(f"folds must be >= 1, got {self.folds}")
        if not 0 <= self.fold < self.folds:
            raise ValueError(f"fold must lie in [0, folds) = [0, {self.folds}), got {self.fold}")


def key_rank(key: str, seed: int) -> bytes:
    """The sort key that places ``key`` in the seeded class order."""
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def class_roles(
    keys: Sequence[str], spec: SplitSpec = SplitSpec(), explicit: Mapping[str, str] | None = None
) -> list[str]:
    """The role of every class: ``"test"``, or ``"fold-i"`` for the training classes of fold ``i``.

    Args:
        keys: all class keys of the data set.
        spec: the split settings.
        explicit: class key -> ``"train"``, ``"val"`` or ``"test"``, when the data name them. The test
            classes are then the ones named so (``test_ratio`` is not used). Where some classes are named
            ``"val"`` they are the validating fold ``spec.fold`` and the ``"train"`` ones the others (one
            validation split, whatever ``spec.folds``); else the training classes are dealt into folds.

    Raises:
        ValueError: ``explicit`` misses a class or names an unknown split.

    Example:
        >>> roles = class_roles([str(i) for i in range(8)], SplitSpec(folds=2))
        >>> sorted(roles.count(r) for r in ("test", "fold-0", "fold-1"))
        [2, 2, 4]
    """
    if explicit is None:
        order = sorted(range(len(keys)), key=lambda i: key_rank(keys[i], spec.seed))
        n_train = math.floor(len(keys) * (1.0 - spec.test_ratio) + 1e-9)  # 0.5: the first half; test gets an odd one
        named = {i: "train" for i in order[:n_train]}
    else:
        missing = [k for k in keys if k not in explicit]
        unknown = sorted({r for r in explicit.values() if r not in EXPLICIT_ROLES})
        if missing or unknown:
            raise ValueError(f"the data's own class splits: no split for {missing[:5]}, unknown splits {unknown}")
        named = {i: explicit[k] for i, k in enumerate(keys) if explicit[k] != "test"}
    roles = ["test"] * len(keys)
    if "val" in named.values():
        other = f"fold-{(spec.fold + 1) % max(spec.folds, 2)}"
        for i, role in named.items():
            roles[i] = f"fold-{spec.fold}" if role == "val" else other
        return roles
    # A second, salted order deals the training classes into folds: balanced sizes, and the folds do not
    # follow the first order (whose head would otherwise always be fold 0).
    training = sorted(named, key=lambda i: key_rank("fold\x00" + keys[i], spec.seed))
    for position, i in enumerate(training):
        roles[i] = f"fold-{position % spec.folds}"
    return roles


def split_classes(
    keys: Sequence[str],
    split: str,
    seed: int = 0,
    *,
    spec: SplitSpec | None = None,
    explicit: Mapping[str, str] | None = None,
) -> list[int]:
    """Indices of the classes of ``split`` (see the module docstring).

    Args:
        keys: all class keys of the data set.
        split: one of :data:`CLASS_SPLITS`.
        seed: the seed, when ``spec`` is not given (a 50/50 split without folds).
        spec: the split settings (its ``seed`` is used instead of ``seed``).
        explicit: the data's own split of each class (see :func:`class_roles`).

    Returns:
        Sorted indices into ``keys``.

    Raises:
        ValueError: another split name, or ``"val"`` without validation folds.

    Example:
        >>> keys = [str(i) for i in range(10)]
        >>> train, test = split_classes(keys, "train"), split_classes(keys, "test")
        >>> len(train), len(test), sorted(train + test) == list(range(10))
        (5, 5, True)
        >>> spec = SplitSpec(folds=5, fold=2)
        >>> val, fit = split_classes(keys, "val", spec=spec), split_classes(keys, "train", spec=spec)
        >>> len(val), len(fit), sorted(val + fit) == split_classes(keys, "trainval", spec=spec) == train
        (1, 4, True)
    """
    if split not in CLASS_SPLITS:
        raise ValueError(f"unknown class split {split!r}; expected one of {CLASS_SPLITS}")
    spec = SplitSpec(seed=seed) if spec is None else spec
    if split == "all":
        return list(range(len(keys)))
    roles = class_roles(keys, spec, explicit)
    validating = f"fold-{spec.fold}"
    named_val = explicit is not None and any(explicit[k] == "val" for k in keys)
    has_val = (spec.folds > 1 or named_val) and validating in roles
    if split == "val" and not has_val:
        raise ValueError("the val split needs validation folds: set data.folds >= 2 (or name val classes in the data)")
    wanted = {
        "test": lambda r: r == "test",
        "trainval": lambda r: r != "test",
        "val": lambda r: r == validating,
        "train": lambda r: r != "test" and not (has_val and r == validating),
    }[split]
    return [i for i, role in enumerate(roles) if wanted(role)]


def class_folds(keys: Sequence[str], spec: SplitSpec, explicit: Mapping[str, str] | None = None) -> list[list[str]]:
    """The class keys of each of the ``spec.folds`` folds of the training classes (fold ``i`` at index ``i``).

    Example:
        >>> folds = class_folds([str(i) for i in range(9)], SplitSpec(test_ratio=1 / 3, folds=3))
        >>> [len(f) for f in folds], len(set().union(*folds))
        ([2, 2, 2], 6)
    """
    roles = class_roles(keys, spec, explicit)
    return [sorted(k for k, r in zip(keys, roles, strict=True) if r == f"fold-{i}") for i in range(spec.folds)]


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
