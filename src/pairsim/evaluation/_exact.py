"""Exact ranking on top of float32 GEMM scores, for the tiled k-NN (:mod:`pairsim.evaluation.tiled`).

A float32 inner product of ``D`` terms is within ``gamma_D |q| |r|`` of the exact one, ``gamma_D =
D u / (1 - D u)``, ``u = 2^-24``, in whatever order a GEMM sums (:func:`float32_error_bound`). Two
candidates whose float32 scores differ by more than twice that are in the right order; runs of
closer ones are re-ranked by :func:`exact_score` (float64 products of float32 values are exact),
ties by index. Numba kernels (plain Python without numba, see :mod:`pairsim.evaluation._kernels`)
and their torch-facing wrappers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pairsim.evaluation._kernels import _ALL, _jit, key_score


@_jit(inline="always")
def exact_score(queries: Any, q: Any, reference: Any, j: Any) -> Any:
    """Inner product of ``queries[q]`` and ``reference[j]`` in float64, summed in order: the products of
    float32 values are exact, so this is the exact score up to ``D * 2^-53`` relative."""
    total = 0.0
    for d in range(queries.shape[1]):
        total += np.float64(queries[q, d]) * np.float64(reference[j, d])
    return total


@_jit(nogil=True)
def finish_rows(
    heaps: Any,
    start: int,
    stop: int,
    queries: Any,
    reference: Any,
    tolerance: Any,
    complete: bool,
    indices: Any,
    scores: Any,
    exact: Any,
) -> None:
    """Decode the sorted heaps of queries ``start:stop``, re-rank near-ties exactly, keep the best ``k``.

    GEMM scores may be off by up to ``tolerance[q] / 2`` (float32 rounding), so two candidates whose
    scores differ by more than ``tolerance[q]`` are in the right order; runs of candidates closer
    than that are re-ranked by :func:`exact_score`, ties by index. The heap holds a few more than
    ``k`` candidates: a run that reaches its end may continue with candidates never kept, and the
    query is marked in ``exact`` (all False) for the caller to redo (unless ``complete``: the heap
    holds every candidate). Candidates below the search's floor were never kept, and need not be:
    they are below k others by more than the error bound.

    Args:
        heaps: ``(Q, k')`` uint64 keys, each row sorted ascending (worst first); ``queries`` ``(Q, D)``,
            ``reference`` ``(N, D)`` float32.
        tolerance: ``(Q,)`` float64. indices: ``(Q, k)`` int64 output, ``k <= k'``; scores:
            ``(Q, k)`` float32 output (float32 of the exact score where re-ranked); exact: ``(Q,)`` bool.
    """
    wide = heaps.shape[1]
    k = indices.shape[1]
    buf = np.empty(1, np.uint32)
    buf_score = buf.view(np.float32)
    cols = np.empty(wide, np.int64)
    vals = np.empty(wide, np.float32)
    precise = np.empty(wide, np.float64)
    for q in range(start, stop):
        for i in range(wide):
            key = heaps[q, wide - 1 - i]
            cols[i] = np.int64(np.uint64(_ALL) - (key & np.uint64(_ALL)))
            vals[i] = key_score(key, buf, buf_score)
        exact[q] = True
        i0 = 0
        while i0 < k:
            i1 = i0 + 1  # the run of near-ties is i0:i1
            while i1 < wide and np.float64(vals[i1 - 1]) - np.float64(vals[i1]) <= tolerance[q]:
                i1 += 1
            if i1 == wide and not complete:
                exact[q] = False  # the run may go on past the kept candidates
            if i1 - i0 > 1:
                for i in range(i0, i1):
                    precise[i] = exact_score(queries, q, reference, cols[i])
                for i in range(i0 + 1, i1):  # insertion sort: higher exact score, then lower index
                    c, v, p = cols[i], vals[i], precise[i]
                    m = i
                    while m > i0 and (precise[m - 1] < p or (precise[m - 1] == p and cols[m - 1] > c)):
                        cols[m], vals[m], precise[m] = cols[m - 1], vals[m - 1], precise[m - 1]
                        m -= 1
                    cols[m], vals[m], precise[m] = c, v, p
                for i in range(i0, i1):
                    vals[i] = np.float32(precise[i])
            i0 = i1
        for i in range(k):
            indices[q, i] = cols[i]
            scores[q, i] = vals[i]


@_jit(nogil=True)
def _exact_pairs(queries: Any, reference: Any, rows: Any, cols: Any, counts: Any, out: Any) -> None:
    """``out[m, c] = exact_score(rows[m], cols[m, c])`` for ``c < counts[m]``, ``-inf`` beyond.

    Args:
        rows: ``(M,)`` query positions; cols: ``(M, C)`` reference positions; counts: ``(M,)``;
            out: ``(M, C)`` float64.
    """
    for m in range(rows.shape[0]):
        for c in range(cols.shape[1]):
            out[m, c] = exact_score(queries, rows[m], reference, cols[m, c]) if c < counts[m] else -np.inf


def score_rows(
    queries: Tensor, reference: Tensor, rows: Tensor, exclude_self: bool, block_bytes: int = 64 * 2**20
) -> Iterator[tuple[int, Tensor]]:
    """Full float32 score rows of the queries ``rows``, one by one: ``(query, (N,) scores)``.

    For the rare queries the tiles cannot rank exactly (long runs of near-ties); computed a few rows
    at a time. Self-pairs are ``-inf`` with ``exclude_self``.
    """
    per_step = max(1, block_bytes // (4 * len(reference)))
    for start in range(0, len(rows), per_step):
        part = rows[start : start + per_step]
        block = queries[part] @ reference.T  # (B, N)
        if exclude_self:
            block[torch.arange(len(part)), part] = float("-inf")
        yield from zip(part.tolist(), block, strict=True)


def exact_pairs(queries: Tensor, reference: Tensor, rows: Tensor, cols: Tensor, counts: Tensor, out: Tensor) -> None:
    """Exact (float64) scores of ``queries[rows[m]]`` with ``reference[cols[m, c]]`` for ``c < counts[m]``
    into ``(M, C)`` float64 ``out`` (``-inf`` beyond the count); float32 CPU tensors."""
    q, r = queries.contiguous().numpy(), reference.contiguous().numpy()
    _exact_pairs(q, r, rows.numpy(), cols.contiguous().numpy(), counts.numpy(), out.numpy())


def exact_scores(queries: Tensor, reference: Tensor, q: int, cols: Tensor) -> Tensor:
    """``(C,)`` float64 exact scores of query ``q`` with the references ``cols`` (float32 CPU tensors)."""
    out = torch.empty(1, len(cols), dtype=torch.float64)
    exact_pairs(queries, reference, torch.tensor([q]), cols[None, :], torch.tensor([len(cols)]), out)
    return out[0]


def float32_error_bound(queries: Tensor, reference: Tensor) -> Tensor:
    """``(Q,)`` bound on ``|float32 score - exact score|`` of each query with any reference, any summation order.

    ``gamma_D |q| max|r|`` with ``gamma_D = D u / (1 - D u)``, ``u = 2^-24``; plus the float64
    error of :func:`exact_score` and float32 underflow. The norms are
    computed in float32 and enlarged past their own rounding error.
    """
    dim = queries.shape[1]
    if dim * 2.0**-24 >= 0.5:
        return torch.full((len(queries),), float("inf"), dtype=torch.float64)
    gamma32 = dim * 2.0**-24 / (1 - dim * 2.0**-24)
    gamma = gamma32 + dim * 2.0**-53 / (1 - dim * 2.0**-53)
    widen = 1 + 2 * gamma32 + 2.0**-22  # a float32 norm is within gamma_D + u of the exact one
    q_norm = queries.norm(dim=1).double() * widen
    r_norm = float(reference.norm(dim=1).max()) * widen
    return gamma * q_norm * r_norm + dim * 2.0**-149
