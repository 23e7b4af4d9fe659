"""``folder``: the user's own images, one sub-folder per class or a CSV of ``path,label`` rows.

``load_dataset("folder", split, root=PATH)``: ``PATH`` is a directory whose sub-folders are the
classes (files directly in it are ignored), or a ``.csv`` file whose rows are ``path,label``
(an optional ``path,label`` header; relative paths are relative to the CSV). The data may name the
split of each class, which then replaces the seeded hash split (``test_ratio``; see
:mod:`pairsim.data.splits`): a directory holding only ``train/``, ``val/`` and ``test/`` folders, each
of class sub-folders, or a third CSV column ``split`` (header ``path,label,split``). Images become RGB
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
from pairsim.data.splits import EXPLICIT_ROLES

HEADERS = (["path", "label"], ["path", "label", "split"])
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")


def list_images(source: Path) -> list[tuple[Path, str]]:
    """``(file, class key)`` for every image of a class-folder tree or a ``path,label`` CSV, sorted.

    Raises:
        ValueError: ``source`` does not exist, or a CSV row does not have two or three fields.
    """
    return [(path, label) for path, label, _ in list_labelled_images(source)]


def list_labelled_images(source: Path) -> list[tuple[Path, str, str | None]]:
    """``(file, class key, split or None)`` for every image, sorted; see the module docstring for layouts.

    Raises:
        ValueError: ``source`` does not exist, or a CSV row does not have two or three fields.
    """
    if source.is_dir():
        folders = [f for f in source.iterdir() if f.is_dir() and not f.name.startswith(".")]
        if folders and {f.name for f in folders} <= set(EXPLICIT_ROLES):  # train/ val/ test/ of class folders
            return sorted(item for f in folders for item in _class_folders(f, f.name))
        return sorted(_class_folders(source, None))
    if source.is_file() and source.suffix.lower() == ".csv":
        return sorted(_csv_rows(source))
    raise ValueError(f"folder data set: {source} is neither a directory of class folders nor a .csv file")


def _class_folders(root: Path, split: str | None) -> list[tuple[Path, str, str | None]]:
    return [
        (path, folder.name, split)
        for folder in root.iterdir()
        if folder.is_dir() and not folder.name.startswith(".")
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith(".")
    ]


def _csv_rows(source: Path) -> list[tuple[Path, str, str | None]]:
    rows: list[tuple[Path, str, str | None]] = []
    with source.open(newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not row or (
                line_no == 1 and [c.lower() for c in cells] in (["path", "label"], ["path", "label", "split"])
            ):
                continue
            if len(cells) not in (2, 3):
                raise ValueError(f"{source}:{line_no}: expected `path,label` or `path,label,split`, got {row!r}")
            split = cells[2] if len(cells) == 3 else None
            if split is not None and split not in EXPLICIT_ROLES:
                raise ValueError(f"{source}:{line_no}: split {split!r} is not one of {', '.join(EXPLICIT_ROLES)}")
            rows.append((source.parent / cells[0], cells[1], split))
    return rows


def explicit_splits(items: Sequence[tuple[Path, str, str | None]]) -> dict[str, str] | None:
    """Class key -> split from the data's own layout, or ``None`` when the data name no split.

    Raises:
        ValueError: some images name a split and others do not, or one class is in two splits.

    Example:
        >>> explicit_splits([(Path("a.png"), "cat", "train"), (Path("b.png"), "dog", "test")])
        {'cat': 'train', 'dog': 'test'}
    """
    named = {split is not None for _, _, split in items}
    if named == {True, False}:
        raise ValueError("folder data set: some images name their split (train/val/test) and others do not")
    if named != {True}:
        return None
    splits: dict[str, str] = {}
    for path, label, split in items:
        assert split is not None
        if splits.setdefault(label, split) != split:
            raise ValueError(f"folder data set: class {label!r} is in two splits ({splits[label]}, {split}: {path})")
    return splits


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

    def class_splits(self, ctx: BuildContext) -> dict[str, str] | None:
        return explicit_splits(list_labelled_images(self._source(ctx)))

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
