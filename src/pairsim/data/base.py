"""The in-memory image set every data set loads into, and what a builder hands back.

INTERFACE (agreed between the data-set builders and the trainer; keep these names):

    load_dataset(name: str, split: str = "train", root: str | Path | None = None, *,
                 image_size: int | None = None, max_classes: int | None = None,
                 seed: int = 0, progress: bool = True) -> ImageSet
    list_datasets() -> list[str]

both exported from ``pairsim.data``. Data sets: "hangul-fonts" (default), "emoji", "fashion-mnist",
"folder" (for "folder", ``root`` is the user's folder or CSV). Splits are class-disjoint, 50/50 by a
seeded hash of the class key; ``max_classes`` keeps a deterministic subset of a split's classes (e.g.
the 1,000 held-out classes of the demo). ``root=None`` means the cache directory ``data/`` under the
current directory (override with the environment variable ``PAIRSIM_DATA``). Builds are deterministic
and cached (atomic write); a second call loads from the cache in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A labelled set of equally sized images held in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8, ``C`` = 1 (grayscale) or 3 (RGB).
        labels: ``(N,)`` int64, dense ids ``0..num_classes-1`` within this split.
        class_keys: the class key of each label id (the syllable, the emoji code points, ...).
        sources: ``(N,)`` where each image comes from (font face, vendor, file path).
        name: data set name, e.g. ``"hangul-fonts"``.
        split: ``"train"``, ``"test"``, ``"all"``, or ``"train-all"`` / ``"test-all"`` (the
            provider's own image split over all classes, where the data set has one).
        skipped: files that could not be read while building (never fatal; also logged).

    Example:
        >>> s = ImageSet(np.zeros((2, 1, 8, 8), np.uint8), np.array([0, 1]), ("a", "b"), ("x", "y"), "toy", "all")
        >>> s.num_classes, len(s), s.image_shape
        (2, 2, (1, 8, 8))
    """

    images: np.ndarray
    labels: np.ndarray
    class_keys: tuple[str, ...]
    sources: tuple[str, ...]
    name: str
    split: str
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != (len(self.images),) or len(self.sources) != len(self.images):
            raise ValueError("images, labels and sources must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Number of distinct classes (length of ``class_keys``)."""
        return len(self.class_keys)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)


@dataclass(frozen=True, eq=False)
class Built:
    """What a builder produces for a list of class keys; cached as is, split afterwards.

    Attributes:
        images: ``(N, C, H, W)`` uint8.
        labels: ``(N,)`` int64 index into ``keys``.
        keys: class keys, in the order the builder was given them.
        sources: ``(N,)`` origin of each image.
        holdout: ``(N,)`` bool, ``True`` for the provider's test images; ``None`` when the data set
            has no split of its own.
        skipped: unreadable files.
        report: counts of what was built and dropped, by rule (written to ``report.json``).
    """

    images: np.ndarray
    labels: np.ndarray
    keys: tuple[str, ...]
    sources: tuple[str, ...]
    holdout: np.ndarray | None = None
    skipped: tuple[str, ...] = ()
    report: Mapping[str, float] = field(default_factory=dict)
