"""``fashion-mnist``: Zalando's 70,000 28x28 grayscale article images, from the Debian package.

Read from the IDX files of ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``
(no download). Only 10 classes: the class-disjoint "train"/"test" splits are 5/5 classes by the
seeded hash (good for fast tests, weak as a benchmark); "train-all"/"test-all" are the
provider's 60,000/10,000 image split over all 10 classes, for class-level (proxy) training.
Images keep the native 28x28 unless ``image_size`` asks otherwise; light article on black.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pairsim.data.base import Built
from pairsim.data.registry import BuildContext, register_dataset

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_PARTS = ("train", "t10k")
_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as an array of its stored shape.

    Raises:
        ValueError: bad magic number, unsupported element type, or truncated data.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.idx"
        >>> _ = p.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
        >>> read_idx(p).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, found {data.size}")
    return data.reshape(shape)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` uint8 resized to ``(N, size, size)`` (bilinear, antialiased when shrinking).

    Example:
        >>> resize_batch(np.full((2, 28, 28), 7, np.uint8), 32).shape
        (2, 32, 32)
    """
    x = torch.from_numpy(np.array(images)).float()[:, None]  # (N, 1, H, W); a copy: frombuffer data is read-only
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def _data_dir() -> Path:
    return Path(os.environ.get("PAIRSIM_FASHION_MNIST", DEFAULT_DIR))


def _files(part: str) -> tuple[Path, Path]:
    directory = _data_dir()
    images, labels = directory / f"{part}-images-idx3-ubyte.gz", directory / f"{part}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise ValueError(
            f"fashion-mnist needs {images}; install the Debian package dataset-fashion-mnist "
            "(`make install` or `sudo apt-get install dataset-fashion-mnist`)"
        )
    return images, labels


@register_dataset("fashion-mnist")
class FashionMnist:
    """Builder of ``fashion-mnist`` (see the module docstring)."""

    version = "1"
    default_image_size = 28
    uses_source = False
    subset_builds = False

    def class_keys(self, ctx: BuildContext) -> list[str]:
        return list(CLASS_NAMES)

    def fingerprint(self, ctx: BuildContext) -> str:
        return "\n".join(f"{p}:{p.stat().st_size}" for part in _PARTS for p in _files(part))

    def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
        images, labels, holdout, sources = [], [], [], []
        for part in _PARTS:
            image_path, label_path = _files(part)
            x, y = read_idx(image_path), read_idx(label_path).astype(np.int64)  # (n, 28, 28), (n,)
            if len(x) != len(y) or x.ndim != 3:
                raise ValueError(f"{image_path}: {x.shape} images for {len(y)} labels")
            if x.shape[1:] != (ctx.image_size, ctx.image_size):
                x = resize_batch(x, ctx.image_size)
            images.append(x)
            labels.append(y)
            holdout.append(np.full(len(y), part == "t10k"))
            sources += [f"{part}/{i}" for i in range(len(y))]
        # keys may be a subset only if a caller asks; map the provider's ids onto their positions.
        position = np.array([keys.index(name) if name in keys else -1 for name in CLASS_NAMES])
        y_all = position[np.concatenate(labels)]
        keep = y_all >= 0
        return Built(
            images=np.concatenate(images)[keep][:, None],  # (N, 1, S, S)
            labels=y_all[keep],
            keys=tuple(keys),
            sources=tuple(s for s, k in zip(sources, keep, strict=True) if k),
            holdout=np.concatenate(holdout)[keep],
            report={"images": int(keep.sum()), "classes": len(keys)},
        )
