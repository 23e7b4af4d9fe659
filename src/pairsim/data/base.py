"""The in-memory image set every data set loads into.

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

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """A labelled set of equally sized images held in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8, ``C`` = 1 (grayscale) or 3 (RGB).
        labels: ``(N,)`` int64, dense ids ``0..num_classes-1`` within this split.
        class_keys: the class key of each label id (the syllable, the emoji code points, ...).
        sources: ``(N,)`` where each image comes from (font face, vendor, file path).
        name: data set name, e.g. ``"hangul-fonts"``.
        split: ``"train"``, ``"test"`` or ``"all"``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_keys: tuple[str, ...]
    sources: tuple[str, ...]
    name: str
    split: str

    @property
    def num_classes(self) -> int:
        """Number of distinct classes (length of ``class_keys``)."""
        return len(self.class_keys)
