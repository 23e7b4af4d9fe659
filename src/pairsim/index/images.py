"""Images in and out of an index: decoding uploads and files, the content-addressed image store, inputs.

The image store is ``DIR/images/``; an item's ``path`` is relative to it. Files are named by the
SHA-256 of their bytes (``ab/abcdef....png``), so writing one twice is harmless and a killed
``add`` leaves at most an unreferenced file, never a half-written referenced one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pairsim._io import fsync_directory, write_bytes_atomic
from pairsim._optional import require
from pairsim.data.base import ImageSet
from pairsim.index.errors import storage_errors
from pairsim.index.image_guard import DeclaredSizeError, check_declared_size
from pairsim.models import Preprocessing

require("PIL", "the retrieval index")
from PIL import Image, ImageOps  # noqa: E402  (after the check that names the extra)

log = logging.getLogger(__name__)

#: Images with more pixels than this are refused before decoding (decompression bombs): 5000x5000, room
#: for a 24-megapixel photo, while one decode (RGBA, the white backdrop, the composite) stays under ~400 MB.
MAX_IMAGE_PIXELS = 25_000_000


class ImageDecodeError(ValueError):
    """Bytes that are not a complete, decodable image of an acceptable size."""


class OutsideStoreError(ValueError):
    """A path that does not name a file inside the image store: it leaves the store, loops through
    symbolic links, or has a component longer than a file name can be."""


@dataclass(frozen=True)
class StoredImage:
    """One image to add: its pixels for the model and its bytes for the store.

    Attributes:
        pixels: ``(C, S, S)`` uint8, as the model takes it.
        data: the file's bytes (kept as given; PNG for images made in memory).
        suffix: file suffix for the store, e.g. ``".png"``.
        label: class label, when known.
        source: where it came from (a file path, ``"hangul-fonts:test:..."``, an upload's file name).
    """

    pixels: np.ndarray
    data: bytes
    suffix: str
    label: str | None
    source: str | None


def decode_image(data: bytes, prep: Preprocessing) -> np.ndarray:
    """``(C, S, S)`` uint8 for the model: RGB over white (grayscale when it takes 1 channel), shorter side
    resized to ``S = prep.image_size`` and centre-cropped, as ``pairsim.data`` prepares folder images.

    Raises:
        ImageDecodeError: not an image, truncated, or declaring more than :data:`MAX_IMAGE_PIXELS` pixels
            (checked on the header bytes before decoding; see :mod:`pairsim.index.image_guard`).

    Example:
        >>> png = encode_png(np.full((1, 4, 4), 200, np.uint8))
        >>> decode_image(png, Preprocessing(1, 3, image_size=4))[0, 0].tolist()
        [200, 200, 200, 200]
        >>> decode_image(b"hello", Preprocessing(1, 3, image_size=4))
        Traceback (most recent call last):
        ...
        pairsim.index.images.ImageDecodeError: not a decodable image (cannot identify image file)
    """
    size = prep.image_size
    if size is None:
        raise ValueError("the model's preprocessing has no image_size; it cannot embed image files")
    try:
        # From the header bytes first: a GIF's frames, or a size Pillow would allocate while opening.
        check_declared_size(data, MAX_IMAGE_PIXELS)
    except DeclaredSizeError as error:
        raise ImageDecodeError(f"not a decodable image ({error})") from None
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header, decodes nothing yet
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageDecodeError(f"image of {image.width}x{image.height} pixels is over {MAX_IMAGE_PIXELS:,}")
            image.load()  # raises on truncated data
            rgba = ImageOps.exif_transpose(image).convert("RGBA")
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = "cannot identify image file" if isinstance(error, Image.UnidentifiedImageError) else str(error)
        raise ImageDecodeError(f"not a decodable image ({reason})") from None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    fitted = ImageOps.fit(rgb.convert("L") if prep.in_channels == 1 else rgb, (size, size), Image.Resampling.BILINEAR)
    pixels = np.array(fitted)  # a writable copy (torch warns about read-only arrays)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, S, S)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a ``(C, H, W)`` uint8 image, C = 1 or 3 (lossless, so it decodes to the same pixels)."""
    array = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(out, format="PNG")
    return out.getvalue()


def checksum(data: bytes) -> str:
    """SHA-256 hex digest, the name of a file in the store."""
    return hashlib.sha256(data).hexdigest()


def image_name(data: bytes, suffix: str) -> tuple[str, str]:
    """``(path relative to the store, checksum)`` of ``data``: files are named by their SHA-256.

    Example:
        >>> image_name(b"abc", ".PNG")[0]
        'ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad.png'
    """
    digest = checksum(data)
    suffix = suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,15}", suffix):  # a file name's suffix, not a path or 255 bytes of one
        suffix = ".img"
    return f"{digest[:2]}/{digest}{suffix}", digest


def store_image(images_dir: Path, data: bytes, suffix: str, durable: bool = True) -> tuple[str, str]:
    """Write ``data`` into the store (atomically and durably, skipped when present).

    Call it on names pinned by ``IndexStore.staging()`` (see :mod:`pairsim.index.staging`): a file found
    present could otherwise be deleted by a concurrent remove before the row naming it is committed.

    ``durable=False`` skips the file's fsync: only for a store inside :func:`pairsim._io.atomic_directory`
    (a new index), which fsyncs every file before the index appears.

    Returns:
        ``(path relative to the store, checksum)``.

    Raises:
        StorageError: the disk refused the write (full, I/O error); no temporary file is left.
    """
    relative, digest = image_name(data, suffix)
    target = images_dir / relative
    if not target.exists():
        # The directory entry is made durable by the caller, once per directory (sync_store_directories).
        with storage_errors("the image store", target):
            write_bytes_atomic(target, data, sync_directory=False, sync_file=durable)
    return relative, digest


def sync_store_directories(images_dir: Path, relatives: list[str]) -> None:
    """fsync the store directories of the files ``relatives`` (after :func:`store_image`), each once."""
    with storage_errors("the image store", images_dir):
        for directory in sorted({(images_dir / relative).parent for relative in relatives}):
            fsync_directory(directory)
        fsync_directory(images_dir)


#: The names :func:`image_name` gives: two hex digits, the SHA-256, a short suffix.
STORE_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}\.[a-z0-9]{1,15}")


def resolve_in_store(images_dir: Path, relative: str) -> Path:
    """The file ``relative`` names inside the store.

    Raises:
        OutsideStoreError: absolute, resolving (``..``, symbolic links) outside ``images_dir``, a loop of
            symbolic links, or a component over 255 bytes.

    Example:
        >>> resolve_in_store(Path("/srv/idx/images"), "../manifest.json")
        Traceback (most recent call last):
        ...
        pairsim.index.images.OutsideStoreError: path '../manifest.json' leaves the image store
    """
    if STORE_NAME.fullmatch(relative):
        # A name the store makes (hex/hex.suffix) stays inside it unless a link is on the way, which the store
        # never creates: three lstat calls instead of resolving every component (11 s for 27k images).
        fast = images_dir.absolute() / relative
        if not any(p.is_symlink() for p in (images_dir, fast.parent, fast)):
            return fast
    root = images_dir.resolve()
    if not relative or "\0" in relative or Path(relative).is_absolute():
        raise OutsideStoreError(f"path {relative!r} leaves the image store")
    if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in Path(relative).parts):
        raise OutsideStoreError(f"path {relative[:80]!r}... has a component over 255 bytes")
    try:
        target = (root / relative).resolve()
    except RuntimeError:  # Python 3.11 raises it for a loop of symbolic links
        raise OutsideStoreError(f"path {relative!r} is a loop of symbolic links") from None
    if not target.is_relative_to(root) or target == root:
        raise OutsideStoreError(f"path {relative!r} leaves the image store")
    return target


def iter_images(source: str | ImageSet, prep: Preprocessing, chunk: int = 512) -> Iterator[list[StoredImage]]:
    """The images of ``source`` in chunks of at most ``chunk``.

    Args:
        source: a folder of class sub-folders, a ``path,label`` CSV (both read by ``pairsim.data.folder``
            rules), a built-in data set split ``NAME:SPLIT[:MAX_CLASSES]`` (e.g. ``hangul-fonts:test:100``),
            or an :class:`ImageSet` in memory.
        prep: the model's preprocessing (image size, channels).
        chunk: images per list yielded.

    Unreadable files are logged and skipped, as ``pairsim.data`` does.
    """
    if isinstance(source, ImageSet):
        yield from _iter_image_set(source, chunk)
        return
    path = Path(source)
    if path.exists():
        from pairsim.data.folder import list_images

        batch: list[StoredImage] = []
        for file, label in list_images(path):
            try:
                data = file.read_bytes()
                batch.append(StoredImage(decode_image(data, prep), data, file.suffix or ".img", label, str(file)))
            except (OSError, ImageDecodeError) as error:
                log.warning("skipped %s: %s", file, error)
                continue
            if len(batch) == chunk:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    yield from _iter_image_set(_load_split(source, prep), chunk)


def _load_split(spec: str, prep: Preprocessing) -> ImageSet:
    from pairsim.data import list_datasets, load_dataset

    name, _, rest = spec.partition(":")
    split, _, max_classes = rest.partition(":")
    if name not in list_datasets():
        raise ValueError(
            f"{spec!r} is neither an existing folder or CSV nor a data set split NAME:SPLIT[:MAX_CLASSES] "
            f"(data sets: {', '.join(list_datasets())})"
        )
    if max_classes and not max_classes.isdigit():
        raise ValueError(f"{spec!r}: MAX_CLASSES must be a positive integer")
    return load_dataset(
        name, split or "test", image_size=prep.image_size, max_classes=int(max_classes) if max_classes else None
    )


def _iter_image_set(image_set: ImageSet, chunk: int) -> Iterator[list[StoredImage]]:
    for start in range(0, len(image_set), chunk):
        batch = []
        for i in range(start, min(start + chunk, len(image_set))):
            pixels = image_set.images[i]
            label = image_set.class_keys[int(image_set.labels[i])]
            source = f"{image_set.name}:{image_set.split}:{image_set.sources[i]}"
            batch.append(StoredImage(pixels, encode_png(pixels), ".png", label, source))
        yield batch
