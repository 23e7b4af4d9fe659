"""The P-K sampler: batch composition, determinism, epochs, resuming and disjoint ranks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pairsim.data.sampler import PKSampler


def make_labels(num_classes: int = 12, per_class: int = 5, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)  # members scattered over the index range


def test_batch_has_p_classes_of_k_distinct_samples() -> None:
    labels = make_labels()
    sampler = PKSampler(labels, classes_per_batch=3, samples_per_class=4, seed=1)
    for step in range(10):
        batch = sampler.batch(step)
        assert batch.shape == (12,) and batch.dtype == np.int64
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 3 and (counts == 4).all()
        assert len(set(batch.tolist())) == 12  # without replacement when classes are large enough


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    labels = make_labels()
    a = [PKSampler(labels, 3, 2, seed=7).batch(s) for s in range(6)]
    b = [PKSampler(labels, 3, 2, seed=7).batch(s) for s in range(6)]
    c = [PKSampler(labels, 3, 2, seed=8).batch(s) for s in range(6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_an_epoch_visits_every_class_once_and_epochs_differ() -> None:
    labels = make_labels(num_classes=12)
    sampler = PKSampler(labels, classes_per_batch=4, samples_per_class=2)
    assert len(sampler) == 3
    epochs = []
    for epoch in range(2):
        seen = [labels[sampler.batch(epoch * 3 + i)][::2] for i in range(3)]
        order = np.concatenate(seen)
        assert sorted(order.tolist()) == list(range(12))
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])


def test_resuming_from_a_step_continues_the_same_sequence() -> None:
    sampler = PKSampler(make_labels(), 3, 2, seed=3)
    uninterrupted = list(itertools.islice(iter(sampler), 9))
    resumed = list(itertools.islice(PKSampler(make_labels(), 3, 2, seed=3).iter_from(5), 4))
    assert all(np.array_equal(x, y) for x, y in zip(uninterrupted[5:], resumed, strict=True))


def test_ranks_get_disjoint_batches_that_cover_the_epoch() -> None:
    labels = make_labels(num_classes=12)
    ranks = [PKSampler(labels, 3, 2, seed=5, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    seen: list[int] = []
    for step in range(2):
        per_rank = [set(labels[s.batch(step)].tolist()) for s in ranks]
        assert not per_rank[0] & per_rank[1]
        seen += [c for classes in per_rank for c in classes]
    assert sorted(seen) == list(range(12))
    # The union over ranks is the single-rank epoch: the split does not change what is trained on.
    single = PKSampler(labels, 3, 2, seed=5)
    assert np.array_equal(single.batch(1), ranks[1].batch(0))


def test_small_classes_are_drawn_with_replacement_and_singletons_skipped() -> None:
    labels = np.array([0, 0, 1, 1, 2, 3, 3])  # class 2 has a single sample
    sampler = PKSampler(labels, classes_per_batch=3, samples_per_class=3)
    batch = sampler.batch(0)
    assert set(labels[batch].tolist()) == {0, 1, 3}
    assert 2 not in labels[sampler.batch(1)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes_per_batch": 0, "samples_per_class": 2}, "positive"),
        ({"classes_per_batch": 2, "samples_per_class": 2, "rank": 2, "world_size": 2}, "rank"),
        ({"classes_per_batch": 13, "samples_per_class": 2}, "cannot fill"),
        ({"classes_per_batch": 7, "samples_per_class": 2, "world_size": 2}, "cannot fill"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PKSampler(make_labels(), **kwargs)


def test_negative_step_is_rejected() -> None:
    with pytest.raises(ValueError, match="step"):
        PKSampler(make_labels(), 2, 2).batch(-1)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_together_draw_the_one_process_batch_of_p_times_world_size_classes(world_size: int) -> None:
    labels = make_labels(num_classes=25, per_class=6)
    ranks = [PKSampler(labels, 2, 3, seed=7, rank=r, world_size=world_size) for r in range(world_size)]
    single = PKSampler(labels, 2 * world_size, 3, seed=7)
    assert len(single) == len(ranks[0])
    for step in range(3 * len(single)):  # three epochs
        together = np.concatenate([s.batch(step) for s in ranks])
        assert np.array_equal(together, single.batch(step))
