"""``hangul-fonts``: the 11,172 Hangul syllables drawn by every face of five Debian font packages.

Class = syllable, instance = font face. Glyphs are drawn white on black (0 = background, the
convention of MNIST-style data and what zero padding in a CNN assumes), cropped to their ink,
scaled to fit the square with a small margin and centred; one channel.

What is dropped, in this order (counts in the build's ``report.json``):

1. ``missing``: the face's cmap has no glyph for the syllable (checked with fontTools, so a
   fallback box is never mistaken for a glyph);
2. ``placeholder_glyph``: the cmap maps >= 8 syllables to one glyph (a reused placeholder);
3. ``blank``: the render has no ink;
4. ``placeholder_bitmap``: a bitmap one face produces for >= 8 of the built syllables;
5. ``near_duplicate``: within a class, a render whose 32x32 binarised bitmap is within Hamming
   distance 20 (of 1,024 bits) of one already kept (faces in sorted order), e.g. the bold and
   regular cuts of a face that differ by a pixel of stroke.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from pairsim.data.base import Built
from pairsim.data.registry import BuildContext, register_dataset
from pairsim.data.render import fit_square, ink_box

FONT_PACKAGES = ("fonts-nanum", "fonts-unfonts-core", "fonts-baekmuk", "fonts-alee", "fonts-wqy-zenhei")
FIRST_SYLLABLE, NUM_SYLLABLES = 0xAC00, 11172
PLACEHOLDER_MIN_USES = 8
NEAR_DUPLICATE_BITS = 20
_CHUNK = 48  # syllables per worker task: large enough to amortise pickling, small for a smooth bar


@dataclass(frozen=True)
class Face:
    """One font face: a file and, for a .ttc collection, the face index in it."""

    path: str
    index: int

    @property
    def name(self) -> str:
        return Path(self.path).name + (f"#{self.index}" if self.path.lower().endswith(".ttc") else "")


def syllables() -> list[str]:
    """The 11,172 precomposed syllables U+AC00..U+D7A3, in code point order.

    Example:
        >>> s = syllables(); len(s), s[0], s[-1]
        (11172, '가', '힣')
    """
    return [chr(FIRST_SYLLABLE + i) for i in range(NUM_SYLLABLES)]


def font_faces(packages: Sequence[str] = FONT_PACKAGES) -> list[Face]:
    """Every face of the font files that ``dpkg -L`` lists for ``packages``, sorted by path and index.

    Raises:
        ValueError: a package is not installed (with the command that installs it).
    """
    paths: list[str] = []
    for package in packages:
        result = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ValueError(
                f"hangul-fonts needs the Debian package {package}; install the fonts with `make install` "
                f"or `sudo apt-get install {' '.join(packages)}`"
            )
        paths += [p for p in result.stdout.splitlines() if p.lower().endswith((".ttf", ".ttc", ".otf"))]
    faces = []
    for path in sorted(set(paths)):
        count = _ttc_face_count(path) if path.lower().endswith(".ttc") else 1
        faces += [Face(path, i) for i in range(count)]
    return faces


def _ttc_face_count(path: str) -> int:
    # TTC header: tag 'ttcf', version (4 bytes), then the number of fonts as a big-endian uint32.
    with open(path, "rb") as f:
        header = f.read(12)
    return int.from_bytes(header[8:12], "big") if header[:4] == b"ttcf" else 1


def covered(face: Face, keys: Sequence[str]) -> tuple[list[bool], list[bool]]:
    """For each syllable: does the face's cmap map it, and is that glyph a reused placeholder?"""
    from fontTools.ttLib import TTFont

    with TTFont(face.path, fontNumber=face.index, lazy=True) as font:
        cmap = font.getBestCmap() or {}
    # Counted over all 11,172 syllables so the verdict does not depend on which classes are built.
    uses = Counter(cmap[cp] for cp in range(FIRST_SYLLABLE, FIRST_SYLLABLE + NUM_SYLLABLES) if cp in cmap)
    present = [ord(k) in cmap for k in keys]
    reused = [p and uses[cmap[ord(k)]] >= PLACEHOLDER_MIN_USES for p, k in zip(present, keys, strict=True)]
    return present, reused


def render_glyph(font: ImageFont.FreeTypeFont, char: str, size: int) -> np.ndarray | None:
    """``(size, size)`` uint8 white-on-black render of ``char`` fitted to the square, ``None`` if blank."""
    left, top, right, bottom = (int(v) for v in font.getbbox(char))
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(canvas).text((-left, -top), char, fill=255, font=font)
    box = ink_box(np.asarray(canvas), threshold=32)
    if box is None:
        return None
    return np.asarray(fit_square(canvas.crop(box), size, 0, margin=max(1, size // 16)))


def binary_signature(image: np.ndarray) -> np.ndarray:
    """``(128,)`` uint8: the render at 32x32, binarised at 128, as packed bits."""
    small = np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BILINEAR))
    return np.packbits(small >= 128)


_fonts: list[ImageFont.FreeTypeFont] = []


def _init_worker(faces: list[Face], size: int) -> None:
    # Each worker opens the fonts once; FreeType objects cannot be pickled.
    _fonts[:] = [ImageFont.truetype(f.path, size=size, index=f.index) for f in faces]


def _render_chunk(task: tuple[list[tuple[int, str]], list[list[int]], int]) -> tuple[np.ndarray, ...]:
    """Renders the (class, face) pairs of one chunk; returns rows, digests and signatures."""
    items, faces_per_item, size = task
    images, classes, faces, digests, signatures, blanks = [], [], [], [], [], []
    for (cls, char), face_ids in zip(items, faces_per_item, strict=True):
        for face in face_ids:
            image = render_glyph(_fonts[face], char, size)
            if image is None:
                blanks.append(face)
                continue
            images.append(image)
            classes.append(cls)
            faces.append(face)
            digests.append(hashlib.blake2b(image.tobytes(), digest_size=8).digest())
            signatures.append(binary_signature(image))
    return (
        np.array(images, np.uint8).reshape(-1, size, size),
        np.array(classes, np.int64),
        np.array(faces, np.int64),
        np.array(digests, dtype="S8"),
        np.array(signatures, np.uint8).reshape(-1, 128),
        np.array(blanks, np.int64),
    )


def keep_distinct(signatures: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """Greedy in row order: keep a row unless within ``max_bits`` Hamming distance of a kept one.

    Args:
        signatures: ``(n, B)`` packed bits of one class's renders.

    Returns:
        ``(n,)`` bool mask of the rows kept.

    Example:
        >>> a = np.zeros((3, 128), np.uint8); a[1, :3] = 255; a[2, :2] = 1
        >>> keep_distinct(a).tolist()
        [True, True, False]
    """
    bits = np.unpackbits(signatures, axis=1).astype(np.float32)  # (n, 1024)
    ones = bits.sum(axis=1)
    distance = ones[:, None] + ones[None, :] - 2 * bits @ bits.T  # (n, n) Hamming distances
    keep = np.zeros(len(signatures), dtype=bool)
    for i in range(len(signatures)):
        keep[i] = not (distance[i, keep] <= max_bits).any()
    return keep


def _compact(buffer: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Move the kept rows of ``buffer`` to its front, in place, block by block; returns that front.

    In place because the renders are the build's largest array: copying them would double the
    peak memory. Row ``keep[i]``'s source index is never below its destination, so a block never
    overwrites rows a later block still has to read.

    Example:
        >>> _compact(np.arange(6), np.array([0, 1, 1, 0, 0, 1], bool)).tolist()
        [1, 2, 5]
    """
    rows = np.flatnonzero(keep)
    for start in range(0, len(rows), 4096):
        block = rows[start : start + 4096]
        buffer[start : start + len(block)] = buffer[block]
    return buffer[: len(rows)]


def _chunks(n: int) -> Iterator[range]:
    for start in range(0, n, _CHUNK):
        yield range(start, min(n, start + _CHUNK))


@register_dataset("hangul-fonts")
class HangulFonts:
    """Builder of ``hangul-fonts`` (see the module docstring)."""

    version = "1"
    default_image_size = 64
    uses_source = False
    subset_builds = True

    def class_keys(self, ctx: BuildContext) -> list[str]:
        return syllables()

    def fingerprint(self, ctx: BuildContext) -> str:
        return "\n".join(f"{f.name}:{os.path.getsize(f.path)}" for f in font_faces())

    def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
        faces = font_faces()
        coverage = [covered(face, keys) for face in faces]
        report: Counter[str] = Counter(faces=len(faces), classes=len(keys))
        # Faces to render for each syllable: in the cmap and not a reused placeholder glyph.
        todo: list[list[int]] = [[] for _ in keys]
        for face_id, (present, reused) in enumerate(coverage):
            for cls in range(len(keys)):
                report["missing"] += not present[cls]
                report["placeholder_glyph"] += reused[cls]
                if present[cls] and not reused[cls]:
                    todo[cls].append(face_id)
        tasks = [
            ([(c, keys[c]) for c in chunk], [todo[c] for c in chunk], ctx.image_size) for chunk in _chunks(len(keys))
        ]
        renders, parts = self._render_all(faces, tasks, ctx, sum(len(t) for t in todo))
        classes, face_ids, digests, signatures = (np.concatenate([p[i] for p in parts]) for i in range(1, 5))
        report["blank"] = int(sum(len(p[5]) for p in parts))
        # A bitmap a face draws for many syllables is a placeholder, whatever glyph id it has.
        pairs = list(zip(face_ids.tolist(), digests.tolist(), strict=True))
        per_face = Counter(pairs)
        ok = np.array([per_face[pair] < PLACEHOLDER_MIN_USES for pair in pairs], dtype=bool)
        report["placeholder_bitmap"] = int((~ok).sum())
        ok_rows = np.flatnonzero(ok)
        bounds = np.searchsorted(classes[ok_rows], np.arange(len(keys) + 1))  # rows are in class order
        keep = np.zeros(len(classes), dtype=bool)
        for cls in range(len(keys)):
            rows = ok_rows[bounds[cls] : bounds[cls + 1]]
            keep[rows] = keep_distinct(signatures[rows])
        report["near_duplicate"] = int(ok.sum() - keep.sum())
        report["images"] = int(keep.sum())
        report["classes_nonempty"] = len(np.unique(classes[keep]))
        return Built(
            images=_compact(renders, keep)[:, None],  # (N, 1, S, S)
            labels=classes[keep],
            keys=tuple(keys),
            sources=tuple(faces[f].name for f in face_ids[keep]),
            report=dict(report),
        )

    def _render_all(
        self, faces: list[Face], tasks: list, ctx: BuildContext, most: int
    ) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
        """``(renders (n, S, S), per-task results without their images)``; ``most`` bounds ``n``."""
        # Preallocated (pages are committed only when written); each task's images are copied in and
        # dropped at once, so the renders are held once rather than once per task plus a concatenation.
        renders = np.empty((most, ctx.image_size, ctx.image_size), np.uint8)
        filled = 0
        bar = tqdm(total=sum(len(t[0]) for t in tasks), desc="hangul-fonts", unit="class", disable=not ctx.progress)
        workers = min(2, os.cpu_count() or 1, len(tasks))
        parts = []
        if workers <= 1:
            _init_worker(faces, ctx.image_size)
            results: Iterator = map(_render_chunk, tasks)
            pool = None
        else:
            # fork: the workers only need PIL and the font list; nothing of torch runs in them.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(workers, _init_worker, (faces, ctx.image_size))
            results = pool.imap(_render_chunk, tasks)  # ordered: the build is deterministic
        try:
            for task, part in zip(tasks, results, strict=True):
                renders[filled : filled + len(part[0])] = part[0]
                filled += len(part[0])
                parts.append((np.empty(0), *part[1:]))
                bar.update(len(task[0]))
        finally:
            bar.close()
            if pool is not None:
                pool.close()
                pool.join()
        return renders[:filled], parts
