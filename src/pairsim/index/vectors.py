"""The faiss side of an index: exact inner product by default, IVF or HNSW for large collections.

Every kind is wrapped in ``IndexIDMap2`` so faiss returns the SQLite item ids directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from pairsim._optional import require

KINDS = ("auto", "flat", "ivf", "hnsw")
#: ``auto`` switches from the exact index to HNSW at this many items (see benchmarks/README.md).
AUTO_APPROXIMATE_AT = 200_000
#: HNSW graph degree and search breadth; chosen by benchmarks/bench_index.py for recall@10 >= 0.98.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
#: IVF cells probed per query.
IVF_NPROBE = 32


def resolve_kind(kind: str, count: int) -> str:
    """The concrete kind for ``kind`` at ``count`` items.

    Example:
        >>> resolve_kind("auto", 1000), resolve_kind("auto", 10**6), resolve_kind("ivf", 5)
        ('flat', 'hnsw', 'ivf')
    """
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")
    if kind == "auto":
        return "hnsw" if count >= AUTO_APPROXIMATE_AT else "flat"
    return kind


def build_faiss(kind: str, dim: int, vectors: np.ndarray, ids: np.ndarray) -> Any:
    """A new faiss index of concrete ``kind`` over ``vectors`` ``(N, D)`` float32 with int64 ``ids`` ``(N,)``.

    IVF uses :func:`ivf_cells` cells, trained on the vectors themselves (on one zero vector when empty).
    """
    faiss = require("faiss", "the retrieval index")
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        nlist = ivf_cells(len(vectors))
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.train(vectors if len(vectors) else np.zeros((1, dim), np.float32))
        inner.nprobe = min(IVF_NPROBE, nlist)
    else:
        raise ValueError(f"unknown concrete index kind {kind!r}")
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
    return index


def ivf_cells(count: int) -> int:
    """IVF cells for ``count`` vectors: ``4 sqrt(N)``, at most one per 39 (faiss's minimum training
    sample per centroid), at least 1.

    Example:
        >>> ivf_cells(0), ivf_cells(1000), ivf_cells(100_000)
        (1, 25, 1264)
    """
    return max(1, min(count // 39, int(4 * math.sqrt(count))))


def outgrown(index: Any, count: int) -> bool:
    """Whether an IVF index trained on far fewer vectors than ``count`` should be retrained (its cells
    number less than half of :func:`ivf_cells`); rebuilding at each doubling keeps adds amortised."""
    inner = require("faiss", "the retrieval index").downcast_index(index.index)
    return kind_of(index) == "ivf" and 2 * int(inner.nlist) < ivf_cells(count)


def tune(index: Any) -> Any:
    """Set the search-time parameters (not all are kept in faiss files) on a loaded index; returns it."""
    faiss = require("faiss", "the retrieval index")
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif isinstance(inner, faiss.IndexIVF):
        inner.nprobe = min(IVF_NPROBE, inner.nlist)
    return index


def kind_of(index: Any) -> str:
    """The concrete kind of an ``IndexIDMap2`` made by :func:`build_faiss`."""
    faiss = require("faiss", "the retrieval index")
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    return "flat"


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)``, each ``(Q, k')`` with ``k' = min(k, N)``, best first; ids are item ids."""
    k = min(k, int(index.ntotal))
    if k == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    scores, ids = index.search(np.ascontiguousarray(queries, np.float32), k)
    return scores, ids


#: How far from 1 the norm of a stored float32 unit vector may be.
UNIT_NORM_TOLERANCE = 1e-3


def faulty_rows(vectors: np.ndarray) -> np.ndarray:
    """Row numbers of ``vectors`` ``(N, D)`` that are not finite unit vectors (damaged, or never normalised).

    Example:
        >>> faulty_rows(np.array([[0.6, 0.8], [np.nan, 0.0], [1.0, 1.0]], np.float32)).tolist()
        [1, 2]
    """
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)  # (N,); NaN or inf where damaged
        good = np.isfinite(vectors).all(axis=1) & (np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE)
    return np.flatnonzero(~good)


def stored_vectors(index: Any, chunk: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The ``(ids (n,), vectors (n, D))`` an ``IndexIDMap2`` of :func:`build_faiss` holds, ``chunk`` at a time.

    The vectors are read back from the index itself (flat, HNSW and IVF-flat keep them exactly), so
    damage in a faiss file shows here even when the file parsed.
    """
    faiss = require("faiss", "the retrieval index")
    inner = faiss.downcast_index(index.index)
    ids = faiss.vector_to_array(index.id_map)  # (N,) item id of each internal position
    for start in range(0, int(index.ntotal), chunk):
        n = min(chunk, int(index.ntotal) - start)
        # np.asarray: once faiss.contrib.torch_utils is imported (pytorch-metric-learning does), faiss
        # returns torch tensors here.
        yield ids[start : start + n], np.asarray(inner.reconstruct_n(start, n), dtype=np.float32)
