"""Train from a configuration alone: load its data sets, build the trainer, run."""

from __future__ import annotations

from pairsim.data.base import ImageSet
from pairsim.training.config import TrainConfig
from pairsim.training.parallel import Parallel, parallel_from_env, process_group
from pairsim.training.trainer import Trainer, TrainResult


def load_run_data(
    config: TrainConfig, progress: bool = True, parallel: Parallel | None = None
) -> tuple[ImageSet, ImageSet | None]:
    """The training split and the held-out evaluation set named by ``config.data``.

    The evaluation set is ``None`` when ``config.eval_every == 0`` (no evaluation). With several
    ranks, rank 0 builds (and caches) the data first; the others then read the cache.
    """
    parallel = Parallel() if parallel is None else parallel
    if not parallel.is_main:
        parallel.barrier()  # rank 0 is building the caches
    try:
        return _load_run_data(config, progress and parallel.is_main)
    finally:
        if parallel.is_main:
            parallel.barrier()


def _load_run_data(config: TrainConfig, progress: bool) -> tuple[ImageSet, ImageSet | None]:
    from pairsim.data import load_dataset

    data = config.data
    train = load_dataset(
        data.name, "train", data.root, image_size=data.image_size, max_classes=data.max_classes, progress=progress
    )
    if config.eval_every == 0:
        return train, None
    held_out = load_dataset(
        data.name,
        data.eval_split,
        data.root,
        image_size=data.image_size,
        max_classes=data.eval_max_classes,
        progress=progress,
    )
    return train, held_out


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Load the data sets of ``config`` and train (continuing from ``last.pt`` when ``resume``).

    Under torchrun the process joins the run's process group first (gloo on CPU, NCCL on GPUs) and
    leaves it at the end; see :mod:`pairsim.training.parallel`.
    """
    with process_group(parallel_from_env()) as parallel:
        train_set, eval_set = load_run_data(config, progress, parallel)
        return Trainer(config, train_set, eval_set, progress=progress, parallel=parallel).run(resume=resume)


def first_classes(image_set: ImageSet, num_classes: int | None) -> ImageSet:
    """The images of the classes with label ids below ``num_classes`` (all when ``None`` or larger).

    Example:
        >>> import numpy as np
        >>> images, labels = np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 2, 1])
        >>> s = ImageSet(images, labels, ("a", "b", "c"), ("x",) * 4, "toy", "test")
        >>> first_classes(s, 2).labels.tolist(), first_classes(s, 2).class_keys
        ([0, 1, 1], ('a', 'b'))
    """
    if num_classes is None or num_classes >= image_set.num_classes:
        return image_set
    keep = image_set.labels < num_classes
    return ImageSet(
        images=image_set.images[keep],
        labels=image_set.labels[keep],
        class_keys=image_set.class_keys[:num_classes],
        sources=tuple(s for s, k in zip(image_set.sources, keep, strict=True) if k),
        name=image_set.name,
        split=image_set.split,
    )
