"""The P-K batch sampler: P classes times K samples per batch, a pure function of the step.

Metric-learning losses need positives in every batch; drawing P classes and K samples of each
guarantees ``K - 1`` positives per anchor (FaceNet, "In defense of the triplet loss").
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np


class PKSampler:
    """Deterministic P-K batches, resumable from any step and splittable across ranks.

    An epoch visits every class with at least ``min_per_class`` samples once, in an order shuffled by
    ``(seed, epoch)``; consecutive groups of ``P`` classes make the global batches of the epoch, and
    global batch ``g`` goes to rank ``g % world_size``. Within a class, ``K`` samples are drawn without
    replacement (with replacement when the class has fewer than ``K``), seeded by the class's position
    in the epoch: at every step, the ranks' batches together are exactly the batch of one process
    with ``P * world_size`` classes. Batch ``step`` of a rank is
    therefore a pure function of ``(seed, step, rank, world_size)``: resuming is restarting at a step,
    and the ranks' batches are disjoint.

    Args:
        labels: ``(N,)`` integer class labels.
        classes_per_batch: ``P``.
        samples_per_class: ``K``.
        seed: seeds the shuffles.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of ranks sharing the epoch.
        min_per_class: classes with fewer samples are never drawn (2 keeps one positive per anchor).

    Raises:
        ValueError: on bad arguments or when fewer than ``P * world_size`` classes are usable.

    Example:
        >>> sampler = PKSampler(np.repeat(np.arange(6), 3), classes_per_batch=2, samples_per_class=2)
        >>> batch = sampler.batch(0)
        >>> batch.shape, len(set((batch // 3).tolist()))
        ((4,), 2)
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes_per_batch: int,
        samples_per_class: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        min_per_class: int = 2,
    ) -> None:
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError(f"P and K must be positive, got P={classes_per_batch}, K={samples_per_class}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        keep = counts >= min_per_class
        self.classes = classes[keep]
        self.members = [order[s : s + c] for s, c in zip(starts[keep], counts[keep], strict=True)]
        self.P, self.K = classes_per_batch, samples_per_class
        self.seed, self.rank, self.world_size = seed, rank, world_size
        global_batches = len(self.classes) // self.P
        self.batches_per_epoch = global_batches // world_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{len(self.classes)} classes with >= {min_per_class} samples cannot fill one batch of "
                f"P={self.P} classes on each of {world_size} ranks: set sampler.classes_per_batch to at most "
                f"{max(1, len(self.classes) // world_size)}, or train on more classes"
            )

    @property
    def batch_size(self) -> int:
        """``P * K``."""
        return self.P * self.K

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self.batches_per_epoch

    def batch(self, step: int) -> np.ndarray:
        """``(P * K,)`` int64 sample indices of this rank's batch number ``step`` (0-based, across epochs)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, within = divmod(step, self.batches_per_epoch)
        g = within * self.world_size + self.rank  # global batch number within the epoch
        first = g * self.P  # position of the batch's first class in the epoch's order
        picks = []
        for position, slot in enumerate(self._class_order(epoch)[first : first + self.P], start=first):
            # Seeded by the class's position in the epoch, not by the batch: the union of the ranks'
            # batches at a step is then the 1-process batch of P * world_size classes, sample for sample.
            rng = np.random.default_rng([self.seed, epoch, position, 1])
            members = self.members[slot]
            picks.append(rng.choice(members, size=self.K, replace=len(members) < self.K))
        return np.concatenate(picks).astype(np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Endless batches from step 0 (use :meth:`iter_from` to resume)."""
        return self.iter_from(0)

    def iter_from(self, step: int) -> Iterator[np.ndarray]:
        """Endless batches starting at ``step``."""
        while True:
            yield self.batch(step)
            step += 1

    def _class_order(self, epoch: int) -> np.ndarray:
        return _permutation(len(self.classes), self.seed, epoch)


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    # Cached because every batch of an epoch needs the same shuffle; keyed only by value.
    return np.random.default_rng([seed, epoch, 0]).permutation(n)
