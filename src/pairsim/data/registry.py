"""The data-set registry and :func:`load_dataset`: build once, cache, then split by class.

A builder lists its class keys cheaply, then renders/reads the images of the keys it is asked
for. ``load_dataset`` picks the classes of the split, loads the cached build (or builds and
caches it), and keeps the rows of those classes with dense labels.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from pairsim._optional import require
from pairsim.data.base import Built, ImageSet
from pairsim.data.cache import default_root, read_built, write_built
from pairsim.data.splits import CLASS_SPLITS, PROVIDER_SPLITS, SplitSpec, class_folds, pick_classes, split_classes
from pairsim.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildContext:
    """Where and how a builder works.

    Attributes:
        data_dir: this data set's directory under the cache root (npm installs, builds).
        source: the user's folder or CSV (data set "folder"), else ``None``.
        image_size: side of the square images to produce.
        progress: show progress bars on long builds.
    """

    data_dir: Path
    source: Path | None
    image_size: int
    progress: bool


class DatasetBuilder(Protocol):
    """What ``@register_dataset`` expects of a builder class (instantiated without arguments).

    A builder may also define ``class_splits(ctx) -> dict[str, str] | None``: the data's own split of each
    class (key -> ``"train"``, ``"val"`` or ``"test"``), which then replaces the seeded hash split.
    """

    version: str  # bump when the output changes, so old caches are not reused
    default_image_size: int
    uses_source: bool  # ``root`` names the user's data, not the cache
    subset_builds: bool  # building a few classes is cheaper than building all (then cached apart)

    def class_keys(self, ctx: BuildContext) -> list[str]:
        """Every class key, in a fixed order."""
        ...

    def fingerprint(self, ctx: BuildContext) -> str:
        """Identifies the inputs (font files, package versions, folder listing) for the cache key."""
        ...

    def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
        """Images of the classes ``keys``."""
        ...


BuilderT = TypeVar("BuilderT", bound=type)


def register_dataset(name: str) -> Callable[[BuilderT], BuilderT]:
    """Class decorator that makes a builder available to :func:`load_dataset` under ``name``.

    Raises:
        ValueError: if ``name`` is already taken.
    """
    return _DATASETS.register(name)  # type: ignore[return-value]


def list_datasets() -> list[str]:
    """Names of all registered data sets, sorted.

    Example:
        >>> list_datasets()
        ['emoji', 'fashion-mnist', 'folder', 'hangul-fonts']
    """
    return _DATASETS.names()


def get_builder(name: str) -> DatasetBuilder:
    """A fresh builder for ``name``.

    Raises:
        ValueError: naming the unknown data set and the known ones.
    """
    return _DATASETS.get(name)()


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    *,
    image_size: int | None = None,
    max_classes: int | None = None,
    seed: int = 0,
    test_ratio: float = 0.5,
    folds: int = 1,
    fold: int = 0,
    progress: bool = True,
) -> ImageSet:
    """Load one split of a registered data set, building and caching it on first use.

    Args:
        name: a name from :func:`list_datasets`.
        split: class-disjoint by a seeded hash of the class key (:mod:`pairsim.data.splits`):
            ``"test"`` the test classes, ``"trainval"`` the others, which ``folds`` validation folds
            divide into ``"val"`` (fold ``fold``) and ``"train"`` (the rest; every training class when
            ``folds == 1``); ``"all"``: every class; ``"train-all"`` / ``"test-all"``: the provider's own
            image split over all classes (only ``fashion-mnist`` has one).
        root: the cache directory (default ``$PAIRSIM_DATA`` or ``data/``); for ``"folder"`` the
            user's folder or CSV, whose build is cached under the default cache directory.
        image_size: side of the square images; ``None`` uses the data set's own (64, fashion 28).
        max_classes: keep a deterministic subset of the split's classes.
        seed: the seed of the class split and of the subset.
        test_ratio: the share of classes that are test classes (0: none, train on all).
        folds: validation folds of the training classes.
        fold: the fold that ``"val"`` returns and ``"train"`` leaves out.
        progress: show progress bars on long builds.

    Builders that render class by class (hangul-fonts, emoji) build only the classes asked for
    and cache that build apart, unless the complete build (``split="all"``) is already cached:
    the demo's train split and 1,000 held-out classes cost less than all 11,172 syllables.

    Returns:
        An :class:`ImageSet` with labels ``0..num_classes-1`` in class-key order.

    Raises:
        ValueError: unknown data set or split, no ``root`` for "folder", no classes found, or a
            provider split asked of a data set without one.

    Example:
        >>> load_dataset("no-such-set")
        Traceback (most recent call last):
        ...
        ValueError: unknown data set 'no-such-set'; known data sets: emoji, fashion-mnist, folder, hangul-fonts
    """
    builder = get_builder(name)
    if split not in CLASS_SPLITS + PROVIDER_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {CLASS_SPLITS + PROVIDER_SPLITS}")
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    ctx = _context(builder, name, root, image_size or builder.default_image_size, progress)
    keys = builder.class_keys(ctx)
    if not keys:
        raise ValueError(f"data set {name!r} has no classes" + (f" in {ctx.source}" if ctx.source else ""))
    spec = SplitSpec(seed=seed, test_ratio=test_ratio, folds=folds, fold=fold)
    if split in PROVIDER_SPLITS:
        candidates = list(range(len(keys)))
    else:
        candidates = split_classes(keys, split, spec=spec, explicit=_own_splits(builder, ctx))
    if not candidates:
        raise ValueError(f"split {split!r} of data set {name!r} has no classes ({len(keys)} in all; {spec})")
    chosen = [keys[i] for i in pick_classes(candidates, keys, max_classes, seed)]
    built = _cached_build(builder, ctx, keys, chosen)
    return _select(built, chosen, name, split)


def describe_split(name: str, root: str | Path | None = None, *, spec: SplitSpec | None = None) -> dict[str, Any]:
    """Which classes are test classes and which fold each training class is in, without reading any image.

    Returns:
        ``{"train_classes": [key, ...], "test_classes": [key, ...], "folds": [[key, ...], ...]}`` (the
        training classes are every non-test class; ``folds`` has ``spec.folds`` lists).

    Raises:
        ValueError: unknown data set, or no ``root`` for "folder".
    """
    spec = SplitSpec() if spec is None else spec
    builder = get_builder(name)
    ctx = _context(builder, name, root, builder.default_image_size, False)
    keys = builder.class_keys(ctx)
    explicit = _own_splits(builder, ctx)
    pick = {s: [keys[i] for i in split_classes(keys, s, spec=spec, explicit=explicit)] for s in ("trainval", "test")}
    return {"train_classes": pick["trainval"], "test_classes": pick["test"], "folds": class_folds(keys, spec, explicit)}


def _context(
    builder: DatasetBuilder, name: str, root: str | Path | None, image_size: int, progress: bool
) -> BuildContext:
    # `root` is the user's data for a source-backed set (its build is cached in the default root), else the cache.
    if builder.uses_source:
        if root is None:
            raise ValueError(f"data set {name!r} needs root= the folder of class sub-folders or a CSV path,label")
        return BuildContext(default_root() / name, Path(root), image_size, progress)
    cache_root = Path(root) if root is not None else default_root()
    return BuildContext(cache_root / name, None, image_size, progress)


def _own_splits(builder: DatasetBuilder, ctx: BuildContext) -> dict[str, str] | None:
    own_splits = getattr(builder, "class_splits", None)  # optional: only data that name their splits need it
    return own_splits(ctx) if own_splits else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cached_build(builder: DatasetBuilder, ctx: BuildContext, keys: list[str], chosen: list[str]) -> Built:
    tag = f"{ctx.image_size}px-v{builder.version}-{_digest(builder.fingerprint(ctx) + chr(0).join(keys))}"
    full_dir = ctx.data_dir / f"build-{tag}-all"
    cached = read_built(full_dir)
    if cached is not None:
        return cached
    if builder.subset_builds and len(chosen) < len(keys):
        directory, wanted = ctx.data_dir / f"build-{tag}-{_digest(chr(0).join(chosen))}", chosen
        cached = read_built(directory)
        if cached is not None:
            return cached
    else:
        directory, wanted = full_dir, keys
    log.info("building %s (%d classes) into %s", ctx.data_dir.name, len(wanted), directory)
    built = builder.build(ctx, wanted)
    write_built(built, directory)
    for path in built.skipped:
        log.warning("skipped unreadable image %s", path)
    return built


def _select(built: Built, chosen: list[str], name: str, split: str) -> ImageSet:
    new_label = {key: i for i, key in enumerate(chosen)}
    mapping = np.array([new_label.get(key, -1) for key in built.keys], dtype=np.int64)
    labels = mapping[built.labels] if len(built.labels) else built.labels.astype(np.int64)
    keep = labels >= 0
    if split in PROVIDER_SPLITS:
        if built.holdout is None:
            raise ValueError(f"data set {name!r} has no split of its own; use one of {CLASS_SPLITS}")
        keep &= built.holdout if split == "test-all" else ~built.holdout
    rows = np.flatnonzero(keep)
    # A build just made (in memory, writable) and kept whole needs no second copy; a cached one is
    # memory-mapped read-only, so the rows kept are read into memory.
    whole = built.images.flags.writeable and len(rows) == len(built.images)
    images = built.images if whole else np.ascontiguousarray(built.images[rows])  # (n, C, H, W)
    return ImageSet(
        images=images,
        labels=labels[rows],
        class_keys=tuple(chosen),
        sources=tuple(built.sources[i] for i in rows),
        name=name,
        split=split,
        skipped=built.skipped,
    )


def _load_builtin_datasets() -> None:
    # Importing each module runs its @register_dataset.
    require("PIL", "pairsim's data sets")  # the rendered data sets read images and fonts
    require("fontTools", "pairsim's data sets")
    from pairsim.data import emoji, fashion_mnist, folder, hangul_fonts  # noqa: F401


_DATASETS: Registry[type[DatasetBuilder]] = Registry("data set", _load_builtin_datasets)
