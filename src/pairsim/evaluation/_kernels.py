"""Numba kernels of the tiled exact k-NN (:mod:`pairsim.evaluation.tiled`): fold one tile of scores
into per-query k-best heaps, in the tile's row direction or (symmetric leave-one-out) its column one.

A candidate is one ``uint64`` key: the score's order-preserving bits in the high half, ``2^32 - 1 -
index`` in the low half, so that a larger key is a better candidate (higher score, then lower index:
the ranking convention of :mod:`pairsim.evaluation.knn`). Each query keeps a 4-ary min-heap of
``k'`` keys (k and a small margin); its root is the k'-th best so far. A tile is scanned in chunks
of ``CHUNK`` columns: a vectorised compare against the query's *gate* gives a 64-bit mask, zero for
almost every chunk, and only the scores whose bit is set are looked at one by one. Sorting the
heaps and the exact re-ranking of near-ties are in :mod:`pairsim.evaluation._exact`.

Measured on 2 cores (AVX-512): ~0.05 ns per score for the masked scan, ~20 ns per heap insertion
(the 4-ary heap was ~1.6x faster than a binary one; passing arrays to a helper function instead of
repeating the few lines of an insertion doubled its cost, hence the repetition below).

The gate of query ``q`` is ``min(max(root score, floor[q]), lo[q])``:

- ``floor[q]``: a lower bound of the k-th best score, known before the scan (from the k-th best
  score of the query's relevant references); a score below it cannot make the top k, and is not
  kept even for the margin.
- ``lo[q] <= up[q]``: a window around the query's best relevant score, for its exact rank beyond the
  top k: scores above ``up[q]`` are only counted (``above[q]``), scores inside the window are
  stored (up to the capacity of ``window_scores``; ``window_counts[q]`` counts them all).

Without numba, the module still imports and the functions are plain (very slow) Python;
``AVAILABLE`` tells the callers, which then use the torch path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    numba = None  # type: ignore[assignment]
    AVAILABLE = False

#: Columns compared together, into one 64-bit mask, before any is looked at alone.
CHUNK = 64
#: Lowest set bit -> its position, by de Bruijn multiplication (``_DEBRUIJN * bit >> 58`` is unique).
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_POSITION = np.zeros(64, np.int64)
for _i in range(64):
    _BIT_POSITION[((1 << _i) * int(_DEBRUIJN) % 2**64) >> 58] = _i
#: Key of an empty heap slot: score -inf, index 2^32 - 1; any real candidate beats it.
EMPTY_KEY = np.uint64(0x007FFFFF) << np.uint64(32)
_SIGN = np.uint32(0x80000000)
_ALL = np.uint32(0xFFFFFFFF)


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    if numba is None:  # pragma: no cover - depends on the environment
        return lambda fn: fn
    return numba.njit(cache=True, **options)


@_jit(inline="always")
def score_key(bits: Any, index: Any) -> Any:
    """Heap key of a float32 score (given by its bits) at reference ``index``; -0.0 counts as +0.0."""
    b = np.uint32(bits)
    if b == _SIGN:
        b = np.uint32(0)
    order = b ^ _ALL if b >= _SIGN else b | _SIGN  # order-preserving: larger float, larger uint
    return (np.uint64(order) << np.uint64(32)) | (np.uint64(_ALL) - np.uint64(index))


@_jit(inline="always")
def key_score(key: Any, bits: Any, score: Any) -> Any:
    """The float32 score of a heap key, through ``bits``/``score``, two views of one 4-byte buffer."""
    order = np.uint32(key >> np.uint64(32))
    bits[0] = order ^ _SIGN if order >= _SIGN else order ^ _ALL
    return score[0]


@_jit(inline="always")
def _replace_root(heaps: Any, q: Any, key: Any) -> None:
    """Put ``key`` in place of the root (the worst key) of query ``q``'s 4-ary min-heap; sift it down.

    Four children per node: half the levels of a binary heap, and the four sit in one or two cache
    lines. Indexes ``heaps[q, i]`` throughout: a row view ``heaps[q]`` costs a reference count.
    """
    k = heaps.shape[1]
    p = 0
    while True:
        c = 4 * p + 1
        if c + 3 < k:
            a, va = c, heaps[q, c]
            if heaps[q, c + 1] < va:
                a, va = c + 1, heaps[q, c + 1]
            b, vb = c + 2, heaps[q, c + 2]
            if heaps[q, c + 3] < vb:
                b, vb = c + 3, heaps[q, c + 3]
            if vb < va:
                a, va = b, vb
        elif c < k:
            a, va = c, heaps[q, c]
            for i in range(c + 1, k):
                if heaps[q, i] < va:
                    a, va = i, heaps[q, i]
        else:
            break
        if key <= va:
            break
        heaps[q, p] = va
        p = a
    heaps[q, p] = key


@_jit(inline="always")
def _gate(heaps: Any, floor: Any, lo: Any, q: Any, bits: Any, score: Any) -> Any:
    return min(max(key_score(heaps[q, 0], bits, score), floor[q]), lo[q])


# The kernels below repeat the few lines that offer one candidate instead of calling a helper: a
# call with array arguments costs reference counting, which doubled the time per heap insertion.


@_jit(nogil=True)
def scan_rows(
    tile: Any,
    tile_bits: Any,
    row0: int,
    col0: int,
    skip_self: bool,
    heaps: Any,
    floor: Any,
    lo: Any,
    up: Any,
    above: Any,
    window_scores: Any,
    window_indices: Any,
    window_counts: Any,
) -> None:
    """Offer query ``row0 + r`` the candidates ``col0 + c`` of tile row ``r`` (itself skipped when ``skip_self``).

    Args:
        tile: ``(B, W)`` float32 scores, C-contiguous; ``tile_bits`` the same memory as uint32.
        heaps: ``(Q, k)`` uint64 heaps, ``floor``/``lo``/``up`` ``(Q,)`` float32, ``above`` and
            ``window_counts`` ``(Q,)`` int64, ``window_scores``/``window_indices`` ``(Q, C)``.
    """
    rows, width = tile.shape
    full = width - width % CHUNK
    capacity = window_scores.shape[1]
    buf = np.empty(1, np.uint32)
    buf_score = buf.view(np.float32)
    for r in range(rows):
        q = row0 + r
        gate = _gate(heaps, floor, lo, q, buf, buf_score)
        row = tile[r]
        for c0 in range(0, width, CHUNK):
            bits: Any = np.uint64(0)  # bit c: score c0 + c is at or above the gate
            if c0 < full:
                seg = row[c0 : c0 + CHUNK]
                for c in range(CHUNK):
                    bits |= np.uint64(seg[c] >= gate) << np.uint64(c)
            else:
                for c in range(width - c0):
                    bits |= np.uint64(row[c0 + c] >= gate) << np.uint64(c)
            while bits:
                low = bits & (~bits + np.uint64(1))
                bits ^= low
                c = c0 + _BIT_POSITION[(low * _DEBRUIJN) >> np.uint64(58)]
                value = row[c]
                if value < gate or (skip_self and col0 + c == q):
                    continue
                if value > up[q]:
                    above[q] += 1
                elif value >= lo[q]:
                    m = window_counts[q]
                    if m < capacity:
                        window_scores[q, m] = value
                        window_indices[q, m] = col0 + c
                    window_counts[q] = m + 1
                if value >= floor[q]:
                    key = score_key(tile_bits[r, c], col0 + c)
                    if key > heaps[q, 0]:
                        _replace_root(heaps, q, key)
                        gate = _gate(heaps, floor, lo, q, buf, buf_score)


@_jit(nogil=True)
def scan_columns(
    tile: Any,
    tile_bits: Any,
    row0: int,
    col0: int,
    heaps: Any,
    floor: Any,
    lo: Any,
    up: Any,
    above: Any,
    window_scores: Any,
    window_indices: Any,
    window_counts: Any,
) -> None:
    """Offer query ``col0 + c`` the candidates ``row0 + r`` of tile column ``c``: the transposed tile of
    a symmetric score matrix, read row by row against a vector of gates. Arguments as :func:`scan_rows`.
    """
    rows, width = tile.shape
    full = width - width % CHUNK
    capacity = window_scores.shape[1]
    buf = np.empty(1, np.uint32)
    buf_score = buf.view(np.float32)
    gates = np.empty(width, tile.dtype)
    for c in range(width):
        gates[c] = _gate(heaps, floor, lo, col0 + c, buf, buf_score)
    for r in range(rows):
        row = tile[r]
        for c0 in range(0, width, CHUNK):
            bits: Any = np.uint64(0)  # bit c: score c0 + c is at or above the gate of column c0 + c
            if c0 < full:
                seg = row[c0 : c0 + CHUNK]
                seg_gates = gates[c0 : c0 + CHUNK]
                for c in range(CHUNK):
                    bits |= np.uint64(seg[c] >= seg_gates[c]) << np.uint64(c)
            else:
                for c in range(width - c0):
                    bits |= np.uint64(row[c0 + c] >= gates[c0 + c]) << np.uint64(c)
            while bits:
                low = bits & (~bits + np.uint64(1))
                bits ^= low
                c = c0 + _BIT_POSITION[(low * _DEBRUIJN) >> np.uint64(58)]
                value = row[c]
                if value < gates[c]:
                    continue
                q = col0 + c
                if value > up[q]:
                    above[q] += 1
                elif value >= lo[q]:
                    m = window_counts[q]
                    if m < capacity:
                        window_scores[q, m] = value
                        window_indices[q, m] = row0 + r
                    window_counts[q] = m + 1
                if value >= floor[q]:
                    key = score_key(tile_bits[r, c], row0 + r)
                    if key > heaps[q, 0]:
                        _replace_root(heaps, q, key)
                        gates[c] = _gate(heaps, floor, lo, q, buf, buf_score)


@_jit(nogil=True)
def fill_rows(heaps: Any, start: int, stop: int) -> None:
    """Set the heaps of queries ``start:stop`` empty (in parallel across workers: first touch of fresh pages)."""
    for q in range(start, stop):
        for i in range(heaps.shape[1]):
            heaps[q, i] = EMPTY_KEY
