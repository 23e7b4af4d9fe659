"""Revisited Oxford and Paris: mAP and mP@k for the Easy, Medium and Hard protocols, junk ignored.

Radenović, Iscen, Tolias, Avrithis and Chum, "Revisiting Oxford and Paris: Large-Scale Image Retrieval
Benchmarking", CVPR 2018. Every query has ``easy``, ``hard`` and ``junk`` gallery items (all others are
negatives); each protocol takes some as positives and removes others from the ranking (junk):

=========  ==============  =====================
protocol   positives       removed (junk)
=========  ==============  =====================
easy       easy            junk + hard
medium     easy + hard     junk
hard       hard            junk + easy
=========  ==============  =====================

Once the junk is out, a query's ``n`` positives sit at 0-based ranks ``r_0 < ... < r_{n-1}``, and, as in
the official ``compute_ap`` (trapezoids under the precision-recall curve),
``AP = (1/n) sum_i (P0_i + P1_i) / 2`` with ``P0_i = i / r_i`` (1 when ``r_i = 0``) and
``P1_i = (i + 1) / (r_i + 1)``. The official precision at ``k`` stops at the last positive when all
positives come earlier: ``P@k = #{i: r_i < k'} / k'`` with ``k' = min(k, r_{n-1} + 1)``. Queries
without a positive in a protocol are left out of its means (the Hard protocol of a query with no hard
item). The ground truth is a file the user gives: see :mod:`pairsim.evaluation.revisited_ground_truth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pairsim.evaluation._inputs import as_embeddings, check_same_space
from pairsim.evaluation.revisited_ground_truth import RevisitedGroundTruth

PROTOCOLS = ("easy", "medium", "hard")
DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True, eq=False)
class ProtocolScores:
    """One protocol's scores.

    Attributes:
        map: mean AP over the queries with at least one positive (NaN when none has one).
        mp_at_k: the mean precision at each ``k`` over the same queries, keyed by ``k``.
        num_queries: queries with at least one positive.
        ap: ``(Q,)`` each query's AP, NaN where it has no positive.
        precision_at_k: ``(Q, len(ks))`` each query's precision at each ``k``, NaN where no positive.
    """

    map: float
    mp_at_k: dict[int, float]
    num_queries: int
    ap: np.ndarray
    precision_at_k: np.ndarray


@dataclass(frozen=True, eq=False)
class RevisitedScores:
    """The Easy, Medium and Hard scores of one ranking."""

    easy: ProtocolScores
    medium: ProtocolScores
    hard: ProtocolScores
    ks: tuple[int, ...]

    def as_dict(self) -> dict[str, float]:
        """Flat ``{protocol}_map``, ``{protocol}_mp_at_{k}`` and ``{protocol}_num_queries`` values."""
        out: dict[str, float] = {}
        for name in PROTOCOLS:
            scores: ProtocolScores = getattr(self, name)
            out[f"{name}_map"] = scores.map
            out.update({f"{name}_mp_at_{k}": v for k, v in scores.mp_at_k.items()})
            out[f"{name}_num_queries"] = float(scores.num_queries)
        return out


def revisited_map(ranking: Any, ground_truth: RevisitedGroundTruth, ks: Sequence[int] = DEFAULT_KS) -> RevisitedScores:
    """mAP and mP@k of the Revisited Oxford / Paris Easy, Medium and Hard protocols.

    Args:
        ranking: ``(Q, N)``, one row per query of the ground truth, one column per gallery item:
            similarities when floating point (higher first; equal ones by increasing gallery index), or a
            ranking when integer (row ``q`` lists every gallery index once, best first; the transpose of the
            official code's ``ranks``).
        ground_truth: the per-query easy / hard / junk gallery indices,
            :func:`pairsim.evaluation.load_revisited_ground_truth`.
        ks: the depths of mP@k, 1, 5 and 10 in the paper.

    Returns:
        A :class:`RevisitedScores` with one :class:`ProtocolScores` per protocol.

    Raises:
        ValueError: a ranking of the wrong shape, dtype, with NaN or not a permutation; a gallery index of the
            ground truth beyond ``N``; a bad ``k``.

    Example:
        Item 1 is junk and item 2 hard: in the Easy protocol 2 is junk too, and the easy item 0 comes second
        once they are removed: AP = (0/1 + 1/2) / 2 = 0.25 (the trapezoid, see the module docstring).

        >>> gt = RevisitedGroundTruth(easy=[[0]], hard=[[2]], junk=[[1]])
        >>> scores = revisited_map(np.array([[1, 2, 3, 0]]), gt, ks=(1, 5))
        >>> scores.easy.map, scores.easy.mp_at_k, scores.medium.map, scores.hard.map
        (0.25, {1: 0.0, 5: 0.5}, 0.7916666666666666, 1.0)
    """
    positions = _positions(ranking, ground_truth)  # (Q, N): rank of each gallery item for each query
    ks = _check_ks(ks)
    scores = {name: _protocol_scores(positions, ground_truth, name, ks) for name in PROTOCOLS}
    return RevisitedScores(easy=scores["easy"], medium=scores["medium"], hard=scores["hard"], ks=ks)


def revisited_map_from_embeddings(
    query_embeddings: Any,
    gallery_embeddings: Any,
    ground_truth: RevisitedGroundTruth,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    normalize: bool = True,
) -> RevisitedScores:
    """:func:`revisited_map` of the cosine similarities (inner products unless ``normalize``).

    Args:
        query_embeddings: ``(Q, D)``, in the ground truth's query order.
        gallery_embeddings: ``(N, D)``, in its gallery order.
        ground_truth: see :func:`revisited_map`.
        ks: the depths of mP@k.
        normalize: L2-normalise the embeddings first.

    Returns:
        See :func:`revisited_map`.

    Raises:
        ValueError: bad embeddings (shape, NaN, mismatched dimensions) or see :func:`revisited_map`.

    Example:
        >>> gt = RevisitedGroundTruth(easy=[[0]], hard=[[]], junk=[[1]])
        >>> q, g = np.array([[1.0, 0.0]]), np.array([[0.8, 0.6], [1.0, 0.0], [0.0, 1.0]])
        >>> revisited_map_from_embeddings(q, g, gt).medium.map
        1.0
    """
    gallery = as_embeddings("gallery_embeddings", gallery_embeddings, normalize=normalize)
    queries = as_embeddings("query_embeddings", query_embeddings, normalize=normalize)
    check_same_space(queries, gallery)
    similarities = queries @ gallery.T  # (Q, N)
    return revisited_map(similarities, ground_truth, ks)


def _positions(ranking: Any, ground_truth: RevisitedGroundTruth) -> np.ndarray:
    """``(Q, N)`` int64: ``positions[q, j]`` is the 0-based rank of gallery item ``j`` for query ``q``."""
    if isinstance(ranking, torch.Tensor):
        half = ranking.dtype in (torch.float16, torch.bfloat16)  # numpy has no bfloat16
        ranking = (ranking.float() if half else ranking).detach().cpu().numpy()
    if isinstance(ranking, list | tuple):
        ranking = np.asarray(ranking)
    if not isinstance(ranking, np.ndarray):
        raise ValueError(f"ranking must be a torch.Tensor, numpy.ndarray or list, got {type(ranking).__name__}")
    if ranking.ndim != 2 or ranking.shape[1] == 0:
        raise ValueError(f"ranking must have shape (num_queries, num_gallery), got shape {ranking.shape}")
    n_q, n_g = ranking.shape
    if n_q != ground_truth.num_queries:
        raise ValueError(f"ranking has {n_q} rows but the ground truth has {ground_truth.num_queries} queries")
    ground_truth.check_gallery_size(n_g)
    if np.issubdtype(ranking.dtype, np.floating):
        if not np.isfinite(ranking).all():
            raise ValueError("ranking (similarities) contains NaN or infinite values")
        order = np.argsort(-ranking, axis=1, kind="stable")  # (Q, N) best first, ties by index
    elif np.issubdtype(ranking.dtype, np.integer) and ranking.dtype != np.bool_:
        order = ranking.astype(np.int64, copy=False)
        bad = ~(np.sort(order, axis=1) == np.arange(n_g)).all(axis=1)
        if bad.any():
            raise ValueError(
                f"ranking row {int(np.argmax(bad))} is not a permutation of the {n_g} gallery indices "
                "(give every gallery index once per row, or similarities as floats)"
            )
    else:
        raise ValueError(f"ranking must hold similarities (floats) or gallery indices (integers), got {ranking.dtype}")
    positions = np.empty((n_q, n_g), dtype=np.int64)
    np.put_along_axis(positions, order, np.broadcast_to(np.arange(n_g), (n_q, n_g)), axis=1)
    return positions


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def _protocol_scores(
    positions: np.ndarray, ground_truth: RevisitedGroundTruth, protocol: str, ks: tuple[int, ...]
) -> ProtocolScores:
    n_q = positions.shape[0]
    ap = np.full(n_q, np.nan)
    precision = np.full((n_q, len(ks)), np.nan)
    for q in range(n_q):
        positives, junk = ground_truth.protocol(q, protocol)
        if len(positives) == 0:
            continue
        ranks = np.sort(positions[q, positives])
        ranks -= np.searchsorted(np.sort(positions[q, junk]), ranks)  # junk ranked before: removed
        ap[q], precision[q] = _average_precision(ranks), _precision_at(ranks, ks)
    valid = ~np.isnan(ap)
    count = int(valid.sum())
    mean_ap = float(ap[valid].mean()) if count else float("nan")
    mp = precision[valid].mean(axis=0) if count else np.full(len(ks), np.nan)
    return ProtocolScores(mean_ap, {k: float(v) for k, v in zip(ks, mp, strict=True)}, count, ap, precision)


def _average_precision(ranks: np.ndarray) -> float:
    """Trapezoid AP of positives at sorted 0-based ``ranks`` (junk already removed)."""
    i = np.arange(len(ranks), dtype=np.float64)
    before = np.where(ranks == 0, 1.0, i / np.maximum(ranks, 1))  # precision just before each positive
    after = (i + 1) / (ranks + 1)  # precision at each positive
    return float(((before + after) / 2).sum() / len(ranks))


def _precision_at(ranks: np.ndarray, ks: tuple[int, ...]) -> np.ndarray:
    """Official P@k: the depth stops at the last positive when every positive comes before ``k``."""
    depth = np.minimum(np.asarray(ks), int(ranks[-1]) + 1)  # (K,)
    return (ranks[None, :] < depth[:, None]).sum(axis=1) / depth
