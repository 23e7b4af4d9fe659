"""Tiled exact k-NN on CPU: score tiles from one GEMM each, folded into per-query heaps by numba kernels.

The fast path of the ``"exact"`` k-NN for float32 tensors on CPU when numba is installed (the
``fast`` extra); :func:`available` says whether it applies, and the torch path of
:mod:`pairsim.evaluation.knn` is used otherwise. References are ranked by decreasing *exact* inner
product of the float32 embeddings, equal ones by increasing index, also at the k-th place.

- Tiles of ``tile x tile`` scores, never a full row: memory is the embeddings, the ``(Q, k + 4)``
  heaps and one tile per worker.
- Leave-one-out (``exclude_self``) computes only the tiles on and above the diagonal: the score
  matrix is symmetric, so a tile serves the queries of its rows and, transposed, those of its
  columns. Half the GEMM.
- ``torch.get_num_threads()`` worker threads each compute a tile (single-threaded GEMM) and fold
  it (numba, without the GIL); a lock per block of queries keeps two workers off the same heaps.
  No two thread pools take turns, so none spins while the other works. While the search runs,
  torch's intra-op thread count is 1 in the workers (the global value is restored after).
- The GEMM is oneDNN's float32 matmul where torch has it (measured ~2x OpenBLAS on AVX-512), else
  ``torch.mm``. A float32 score is within a known bound of the exact one, whatever
  the GEMM's summation order; candidates closer than twice that are re-ranked by their float64
  score (:mod:`pairsim.evaluation._exact`), so the ranking does not depend on the
  GEMM. A few candidates past the k-th are kept for that; queries whose near-ties run past them
  (many duplicates) are ranked again from their full rows of scores.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pairsim.evaluation import _exact, _kernels
from pairsim.evaluation._inputs import check_k

#: Side of a square tile of scores (4 MiB of float32 at 1024).
DEFAULT_TILE = 1024
#: Candidates kept beyond the k best, so that near-ties at the k-th place can be re-ranked exactly.
MARGIN = 4
#: Scores stored per query inside its rank window (see :class:`RankWindow`).
WINDOW_CAPACITY = 16


@dataclass(frozen=True)
class RankWindow:
    """A score window per query, ``lo <= up`` (``(Q,)`` float32; ``+inf`` for none).

    The search counts the candidates scoring above ``up`` and keeps those inside the window, so the
    exact rank of any candidate whose score falls in the window can be worked out afterwards.
    """

    lo: np.ndarray
    up: np.ndarray


@dataclass(frozen=True)
class TiledSearch:
    """Result of :func:`tiled_knn`.

    Attributes:
        indices: ``(Q, k)`` int64 references, best first; ``scores`` their ``(Q, k)`` float32 scores.
        above: ``(Q,)`` int64, candidates scoring above the window (0 without a window).
        window_scores: ``(Q, C)`` float32 and ``window_indices`` ``(Q, C)`` int64: the first ``C``
            candidates inside the window (in no particular order); ``window_counts`` ``(Q,)`` int64
            how many there were (more than ``C``: some are missing).
    """

    indices: Tensor
    scores: Tensor
    above: Tensor
    window_scores: Tensor
    window_indices: Tensor
    window_counts: Tensor


def available(queries: Tensor, reference: Tensor) -> bool:
    """Whether :func:`tiled_knn` applies: numba installed, float32 CPU tensors, fewer than 2^32 - 1 references."""
    return (
        _kernels.AVAILABLE
        and queries.device.type == "cpu"
        and reference.device.type == "cpu"
        and queries.dtype == torch.float32
        and reference.dtype == torch.float32
        and len(reference) < 2**32 - 1
    )


def tile_side(block_bytes: int) -> int:
    """Tile side for a memory budget of ``block_bytes`` per tile of float32, at most :data:`DEFAULT_TILE`."""
    return max(1, min(DEFAULT_TILE, math.isqrt(block_bytes // 4)))


def tiled_knn(
    queries: Tensor,
    reference: Tensor,
    k: int,
    *,
    exclude_self: bool = False,
    tile: int = DEFAULT_TILE,
    floor: np.ndarray | None = None,
    window: RankWindow | None = None,
) -> TiledSearch:
    """The ``k`` best references of each query, with optional rank bookkeeping (see module doc).

    Args:
        queries: ``(Q, D)`` float32 CPU tensor; with ``exclude_self`` it must be ``reference``.
        reference: ``(N, D)`` float32 CPU tensor, ``k <= N`` (``N - 1`` with ``exclude_self``).
        k: neighbours per query.
        exclude_self: leave-one-out; query ``i`` never retrieves reference ``i``. Passing the same
            tensor as ``queries`` and ``reference`` computes only half the tiles.
        tile: tile side, in rows and columns.
        floor: ``(Q,)`` float32 lower bounds of each query's k-th best score (``-inf``: none); a
            wrong bound gives wrong neighbours.
        window: per-query score windows to count and keep candidates in (see :class:`RankWindow`).

    Returns:
        :class:`TiledSearch`.

    Raises:
        ValueError: ``k`` out of range, or ``exclude_self`` with ``Q != N``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> tiled_knn(x, x, 1, exclude_self=True).indices.flatten().tolist()
        [1, 0, 1]
    """
    # Symmetric tiles need the very same set; other queries of the same length only skip the diagonal.
    symmetric = exclude_self and queries is reference
    q_np = queries.detach().contiguous().numpy()
    r_np = q_np if symmetric else reference.detach().contiguous().numpy()
    n_q, available = len(q_np), len(r_np) - int(exclude_self)
    if exclude_self and n_q != len(r_np):
        raise ValueError(f"exclude_self needs queries to be the reference set; got {n_q} and {len(r_np)}")
    check_k(k, available)
    wide = min(k + MARGIN, available)  # kept per query: k and a margin for the exact re-ranking
    floor = np.full(n_q, -np.inf, np.float32) if floor is None else np.ascontiguousarray(floor, np.float32)
    if window is None:
        window = RankWindow(np.full(n_q, np.inf, np.float32), np.full(n_q, np.inf, np.float32))
    lo = np.ascontiguousarray(window.lo, np.float32)
    up = np.ascontiguousarray(window.up, np.float32)
    heaps = np.empty((n_q, wide), np.uint64)
    above = np.zeros(n_q, np.int64)
    w_scores = np.zeros((n_q, WINDOW_CAPACITY), np.float32)
    w_indices = np.zeros((n_q, WINDOW_CAPACITY), np.int64)
    w_counts = np.zeros(n_q, np.int64)
    state = (heaps, floor, lo, up, above, w_scores, w_indices, w_counts)
    q_starts = list(range(0, n_q, tile))
    spans = [(start, min(start + tile, n_q)) for start in q_starts]
    _run_in_workers(spans, lambda start, stop: _kernels.fill_rows(heaps, start, stop))

    locks = [threading.Lock() for _ in q_starts]
    gemm = _gemm()
    q_t, r_t = torch.from_numpy(q_np), torch.from_numpy(r_np)

    def fold(a: int, b: int) -> None:
        a0, b0 = q_starts[a], b * tile
        scores = gemm(q_t[a0 : a0 + tile], r_t[b0 : b0 + tile])  # (<= tile, <= tile)
        bits = scores.view(np.uint32)
        with locks[a]:
            _kernels.scan_rows(scores, bits, a0, b0, exclude_self and a == b, *state)
        if symmetric and b != a:
            with locks[b]:
                _kernels.scan_columns(scores, bits, a0, b0, *state)

    n_ref_blocks = math.ceil(len(r_np) / tile)
    _run_in_workers(_tile_order(len(q_starts), n_ref_blocks, symmetric, torch.get_num_threads()), fold)

    indices = np.empty((n_q, k), np.int64)
    scores = np.empty((n_q, k), np.float32)
    exact = np.empty(n_q, np.bool_)
    tolerance = 2 * _exact.float32_error_bound(queries, reference).numpy()  # (Q,) float64
    complete = wide == available

    def finish(start: int, stop: int) -> None:
        heaps[start:stop].sort(axis=1)  # numpy releases the GIL while sorting
        _exact.finish_rows(heaps, start, stop, q_np, r_np, tolerance, complete, indices, scores, exact)

    _run_in_workers(spans, finish)
    out_i, out_s = torch.from_numpy(indices), torch.from_numpy(scores)
    redo = torch.from_numpy(~exact).nonzero().flatten()
    for q, row in _exact.score_rows(queries, reference, redo, exclude_self):
        # Every candidate within `tolerance` of the k-th float32 score, ranked by its exact score.
        cols = (row >= row.topk(k).values[-1] - tolerance[q]).nonzero().flatten()
        precise = _exact.exact_scores(queries, reference, q, cols)
        order = torch.from_numpy(np.lexsort((cols.numpy(), -precise.numpy()))[:k])
        out_i[q], out_s[q] = cols[order], precise[order].float()
    return TiledSearch(
        out_i,
        out_s,
        torch.from_numpy(above),
        torch.from_numpy(w_scores),
        torch.from_numpy(w_indices),
        torch.from_numpy(w_counts),
    )


def _tile_order(n_blocks: int, n_ref_blocks: int, symmetric: bool, workers: int) -> list[tuple[int, int]]:
    """Tiles ``(query block, reference block)`` in the order they are handed to the workers.

    Symmetric: the upper block-triangle, row block by row block from the last, so that a query sees
    most of its candidates in its row scans first (the cheaper direction: its heap stays in cache)
    and its column scans come later, when few candidates still enter the heap. ``workers`` row
    blocks at a time are interleaved, so that tiles running together lock different blocks.
    Otherwise reference block by reference block, neighbouring tiles holding different queries.
    """
    if not symmetric:
        return [(a, b) for b in range(n_ref_blocks) for a in range(n_blocks)]
    order = []
    firsts = list(range(n_blocks - 1, -1, -1))
    for g in range(0, n_blocks, max(1, workers)):
        rows = [[(a, b) for b in range(a, n_blocks)] for a in firsts[g : g + workers]]
        for i in range(max(len(r) for r in rows)):
            order += [r[i] for r in rows if i < len(r)]
    return order


def _run_in_workers(tiles: Iterable[tuple[int, int]], fold: Callable[[int, int], None]) -> None:
    """Run ``fold`` on every pair in ``torch.get_num_threads()`` threads, each with single-threaded torch."""
    todo = iter(tiles)
    todo_lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        torch.set_num_threads(1)  # this thread's GEMMs; the global value is restored below
        try:
            while not errors:
                with todo_lock:
                    item = next(todo, None)
                if item is None:
                    return
                fold(*item)
        except BaseException as err:  # re-raised in the calling thread
            errors.append(err)

    saved = torch.get_num_threads()
    try:
        workers = [threading.Thread(target=work, daemon=True) for _ in range(saved)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        torch.set_num_threads(saved)
    if errors:
        raise errors[0]


Gemm = Callable[[Tensor, Tensor], np.ndarray]


def _gemm() -> Gemm:
    """``(a, b) -> a @ b.T`` as a C-contiguous float32 array: oneDNN where it is exact float32, else torch.mm."""
    if torch.get_float32_matmul_precision() == "highest" and _onednn_is_float32():
        return _onednn_scores
    return _torch_scores


def gemm_name() -> str:
    """The GEMM the tiles use now: ``"oneDNN"`` or ``"torch.mm"``."""
    return "oneDNN" if _gemm() is _onednn_scores else "torch.mm"


def _torch_scores(a: Tensor, b: Tensor) -> np.ndarray:
    return torch.mm(a, b.T).numpy()


def _onednn_scores(a: Tensor, b: Tensor) -> np.ndarray:
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "").numpy()  # (A, B), a @ b.T


@functools.cache
def _onednn_is_float32() -> bool:
    """oneDNN's linear is there, and its products stay within float32 rounding of exact (no bf16)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 256, generator=g), torch.randn(24, 256, generator=g)
    try:
        got = _onednn_scores(a, b)
    except (RuntimeError, TypeError):  # pragma: no cover - depends on the torch build
        return False
    exact = (a.double() @ b.double().T).numpy()
    bound = 256 * 2.0**-24 / (1 - 256 * 2.0**-24) * (a.abs().double() @ b.abs().double().T).numpy()
    return got.shape == exact.shape and bool((np.abs(got - exact) <= bound).all())
