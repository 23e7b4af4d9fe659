"""``folder``: the user's own images, one sub-folder per class or a CSV of ``path,label`` rows.

``load_dataset("folder", split, root=PATH)``: ``PATH`` is a directory whose sub-folders are the
classes (files directly in it are ignored), or a ``.csv`` file whose rows are ``path,label``
(an optional ``path,label`` header; relative paths are relative to the CSV). Images become RGB
(transparency over white), resized so the shorter side is ``image_size`` and centre-cropped, as
retrieval benchmarks do with photos. Files that cannot be decoded are skipped, logged, counted
in ``report.json`` and listed in ``ImageSet.skipped``; they never stop the build. The build is
cached under the default cache directory, keyed by the path and the files' sizes and times.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from pairsim.data.base import Built
from pairsim.data.registry import BuildContext, register_dataset
from pairsim.data.render import on_background

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


def list_images(source: Path) -> list[tuple[Path, str]]:
    """``(file, class key)`` for every image of a class-folder tree or a ``path,label`` CSV, sorted.

    Raises:
        ValueError: ``source`` does not exist, or a CSV row does not have two fields.
    """
    if source.is_dir():
        return sorted(
            (path, folder.name)
            for folder in source.iterdir()
            if folder.is_dir() and not folder.name.startswith(".")
            for path in folder.rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
        )
    if source.is_file() and source.suffix.lower() == ".csv":
        rows = []
        with source.open(newline="", encoding="utf-8") as f:
            for line_no, row in enumerate(csv.reader(f), start=1):
                if not row or (line_no == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
                    continue
                if len(row) != 2:
                    raise ValueError(f"{source}:{line_no}: expected `path,label`, got {row!r}")
                rows.append((source.parent / row[0].strip(), row[1].strip()))
        return sorted(rows)
    raise ValueError(f"folder data set: {source} is neither a directory of class folders nor a .csv file")


def load_image(path: Path, size: int) -> np.ndarray:
    """``(3, size, size)`` uint8: ``path`` as RGB on white, shorter side resized to ``size``, centre crop.

    Raises:
        OSError: the file is missing or not a decodable image (PIL's errors derive from it).
    """
    with Image.open(path) as image:
        image.load()
        rgb = on_background(ImageOps.exif_transpose(image), (255, 255, 255))
    fitted = ImageOps.fit(rgb, (size, size), Image.Resampling.BILINEAR)
    return np.asarray(fitted).transpose(2, 0, 1)  # (3, S, S)


@register_dataset("folder")
class Folder:
    """Builder of ``folder`` (see the module docstring)."""

    version = "1"
    default_image_size = 64
    uses_source = True
    subset_builds = False

    def class_keys(self, ctx: BuildContext) -> list[str]:
        return sorted({label for _, label in list_images(self._source(ctx))})

    def fingerprint(self, ctx: BuildContext) -> str:
        source = self._source(ctx).resolve()
        digest = hashlib.sha256(str(source).encode())
        if source.is_file():
            digest.update(source.read_bytes())
        for path, label in list_images(source):
            stat = path.stat() if path.exists() else None
            digest.update(f"{path}\0{label}\0{stat and stat.st_size}\0{stat and stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
        source = self._source(ctx)
        position = {key: i for i, key in enumerate(keys)}
        items = [(path, label) for path, label in list_images(source) if label in position]
        images, labels, sources, skipped = [], [], [], []
        for path, label in tqdm(items, desc="folder", unit="img", disable=not ctx.progress or len(items) < 1000):
            try:
                images.append(load_image(path, ctx.image_size))
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                skipped.append(f"{path}: {type(error).__name__}: {error}")
                continue
            labels.append(position[label])
            sources.append(str(path))
        return Built(
            images=np.array(images, np.uint8).reshape(-1, 3, ctx.image_size, ctx.image_size),
            labels=np.array(labels, np.int64),
            keys=tuple(keys),
            sources=tuple(sources),
            skipped=tuple(skipped),
            report={"images": len(images), "skipped": len(skipped), "classes": len(keys)},
        )

    @staticmethod
    def _source(ctx: BuildContext) -> Path:
        if ctx.source is None:
            raise ValueError("the folder data set needs root= a directory of class folders or a CSV")
        return ctx.source
