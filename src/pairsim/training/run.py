"""Train from a configuration alone: load its data sets, build the trainer, run."""

from __future__ import annotations

from pairsim.data import load_dataset
from pairsim.data.base import ImageSet
from pairsim.training.config import DataConfig, TrainConfig
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
    data = config.data
    train = load_split(data, "train", data.max_classes, progress)
    if config.eval_every == 0:
        return train, None
    return train, load_split(data, data.eval_split, data.eval_max_classes, progress)


def load_split(data: DataConfig, split: str, max_classes: int | None, progress: bool = True) -> ImageSet:
    """One split of ``data``'s data set, with its class split settings (``split_seed``, ``test_ratio``, folds).

    The one place the training engine and the jobs load images: the classes of ``"test"`` are read only
    where a caller asks for that split by name.
    """
    spec = data.split()
    return load_dataset(
        data.name,
        split,
        data.root,
        image_size=data.image_size,
        max_classes=max_classes,
        seed=spec.seed,
        test_ratio=spec.test_ratio,
        folds=spec.folds,
        fold=spec.fold,
        progress=progress,
    )


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Load the data sets of ``config`` and train (continuing from ``last.pt`` when ``resume``).

    Under torchrun the process joins the run's process group first (gloo on CPU, NCCL on GPUs) and
    leaves it at the end; see :mod:`pairsim.training.parallel`.
    """
    with process_group(parallel_from_env()) as parallel:
        train_set, eval_set = load_run_data(config, progress, parallel)
        return Trainer(config, train_set, eval_set, progress=progress, parallel=parallel).run(resume=resume)
