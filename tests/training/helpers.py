"""Small synthetic image sets for the training tests: fast, and learnable by a tiny CNN."""

from __future__ import annotations

import numpy as np

from pairsim.data.base import ImageSet


def synthetic_images(num_classes: int, per_class: int, side: int = 16, seed: int = 0, split: str = "train") -> ImageSet:
    """``(N, 1, side, side)`` uint8: a coarse random 4x4 pattern per class, seen shifted, dimmed and noisy.

    The nuisances (shift up to a quarter of the side, contrast, noise) are the same for every class, so
    what a model learns about them on the training classes carries over to held-out classes.
    """
    rng = np.random.default_rng(seed)
    cell = side // 4
    patterns = rng.integers(0, 2, (num_classes, 4, 4)).repeat(cell, 1).repeat(cell, 2)  # (C, side, side)
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int64)
    shifts = rng.integers(-cell, cell + 1, (len(labels), 2))
    contrast = rng.uniform(0.3, 1.0, len(labels))[:, None, None]
    images = np.stack([np.roll(patterns[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts, strict=True)])
    images = 255.0 * contrast * images + rng.normal(0.0, 30.0, images.shape)
    return ImageSet(
        images=np.clip(images, 0, 255).astype(np.uint8)[:, None],
        labels=labels,
        class_keys=tuple(f"c{i}" for i in range(num_classes)),
        sources=tuple(f"s{i % per_class}" for i in range(len(labels))),
        name="synthetic",
        split=split,
    )
