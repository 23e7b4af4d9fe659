"""Shared image helpers: fit a drawing into a square, load any image file as RGB on a background."""

from __future__ import annotations

import numpy as np
from PIL import Image


def fit_square(image: Image.Image, size: int, background: int | tuple[int, ...], margin: int) -> Image.Image:
    """Scale ``image`` (already cropped to its content) to fit ``size - 2 * margin``, centred.

    The aspect ratio is kept; the larger side touches the margin, so every class is seen at the
    same scale whatever the face's em-box or the vendor's padding.

    Example:
        >>> fit_square(Image.new("L", (10, 20), 255), 32, 0, 2).size
        (32, 32)
    """
    inner = size - 2 * margin
    scale = inner / max(image.size)
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    out = Image.new(image.mode, (size, size), background)
    out.paste(image.resize(new, Image.Resampling.BILINEAR), ((size - new[0]) // 2, (size - new[1]) // 2))
    return out


def ink_box(gray: np.ndarray, threshold: int) -> tuple[int, int, int, int] | None:
    """``(left, top, right, bottom)`` of the pixels ``>= threshold`` in ``(H, W)`` ``gray``, or ``None``.

    Example:
        >>> a = np.zeros((8, 8), np.uint8); a[2:4, 3:6] = 255
        >>> ink_box(a, 128)
        (3, 2, 6, 4)
    """
    rows = np.flatnonzero((gray >= threshold).any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero((gray >= threshold).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def on_background(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``image`` as RGB composited over an opaque ``background`` (transparent areas take its colour)."""
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")
