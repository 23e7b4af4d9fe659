"""k-reciprocal re-ranking (Zhong, Zheng, Cao and Li, "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), blocked: no dense ``(N, N)`` matrix over the joint query + gallery set.

The algorithm, on the joint set of ``N = n_q + n_g`` L2-normalised items with the original distance
``d(p, g) = 2 - 2 cos(p, g)`` (the squared Euclidean distance) and ``N(p, k)`` the ``k + 1`` nearest
items of ``p`` (``p`` itself included, ranking of :mod:`pairsim.evaluation.knn`):

1. ``R(p, k1) = {g in N(p, k1) : p in N(g, k1)}`` (eq. 4), expanded (eq. 6) by ``R(c, round(k1 / 2))`` for
   each ``c in R(p, k1)`` whose half-size set has more than 2/3 of its items in ``R(p, k1)``: ``R*(p)``.
2. ``V_p`` (eq. 7): ``exp(-d(p, g))`` on ``R*(p)``, zero elsewhere, normalised to sum 1.
3. Local query expansion (eq. 11): ``V_p <- mean of V_g over the k2 nearest g of p`` (kept as is for ``k2 = 1``).
4. Jaccard distance (eq. 10): ``d_J(p, g) = 1 - sum_l min(V_pl, V_gl) / sum_l max(V_pl, V_gl)``; as rows sum
   to 1, ``sum max = 2 - sum min``.
5. ``d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g)`` (eq. 12), for queries ``p`` and gallery items ``g``.

This follows the authors' released implementation (strict ``> 2/3``, numpy's half-to-even rounding of
``k1 / 2``), except that its per-column normalisation of the joint distance matrix (each row of the
symmetric matrix divided by its maximum) is the option ``normalize_original`` and off by default, so
``lambda_ = 1`` returns ``2 - 2 cos`` itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from pairsim._optional import require
from pairsim.evaluation._inputs import ArrayLike, as_embeddings, check_same_space
from pairsim.evaluation.knn import DEFAULT_BLOCK_BYTES, knn


def k_reciprocal_rerank(
    queries: ArrayLike,
    gallery: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
    *,
    normalize_original: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Tensor:
    """Re-ranked query-gallery distances ``(1 - lambda) d_J + lambda d`` (Zhong et al., CVPR 2017, eq. 12).

    See the module docstring for the steps. Memory, for ``N = n_q + n_g`` items of dimension ``D``:
    the embeddings (``N x D``), the ``(N, max(k1 + 1, k2))`` int64 neighbour lists, sparse sets and
    weight vectors of about ``N x e`` entries at 12 bytes each (``e`` = nonzeros per row: ``|R*(p)|``,
    ~20 for random data at ``k1 = 20``, ~100 after the local expansion at ``k2 = 6``; the rows are held
    up to three times: all, the queries', the gallery's by column), the ``(n_q, n_g)`` float32 result,
    and about ``1.5 x block_bytes`` of temporaries (a block of query rows against the gallery at a
    time). Measured on 2 cores (``benchmarks/bench_reranking.py``): 20k x 20k at D = 128 in ~16 s
    with ~0.55 GB above the 1.5 GB result. The released implementation holds at least four dense
    ``(N, N)`` float32 / int32 matrices (6.4 GB each at ``N = 40,000``) and argsort's int64 copy.

    Args:
        queries: ``(n_q, D)`` floating point; L2-normalised first.
        gallery: ``(n_g, D)``, same dimension, dtype and device; L2-normalised first.
        k1: size of the k-reciprocal neighbourhoods, ``k1 + 1 <= N`` (paper: 20).
        k2: neighbours of the local query expansion, ``1 <= k2 <= N`` (paper: 6).
        lambda_: weight of the original distance, in ``[0, 1]`` (paper: 0.3); ``1`` keeps the original ranking.
        normalize_original: divide each item's original distances by their maximum over the joint set,
            as the released code does (in the weights and in the final sum).
        block_bytes: memory for one block of temporaries (k-NN scores, Jaccard rows, candidate pairs).

    Returns:
        ``(n_q, n_g)`` float32 distances (smaller is closer) on the queries' device.

    Raises:
        ValueError: bad shapes, mismatched dimensions, non-finite values, ``k1 + 1`` or ``k2`` larger
            than the joint set, ``lambda_`` outside ``[0, 1]``.
        MissingExtraError: scipy is not installed.

    Example:
        >>> q = torch.tensor([[1.0, 0.1]])
        >>> g = torch.tensor([[1.0, 0.0], [0.9, 0.5], [0.0, 1.0], [-0.1, 1.0]])
        >>> k_reciprocal_rerank(q, g, k1=2, k2=1, lambda_=0.5).argsort(dim=1).tolist()
        [[0, 1, 2, 3]]
        >>> k_reciprocal_rerank(q, g, k1=2, k2=1, lambda_=1.0).round(decimals=3)  # 2 - 2 cos
        tensor([[0.0100, 0.1640, 1.8010, 2.0000]])
    """
    q = as_embeddings("queries", queries)
    g = as_embeddings("gallery", gallery)
    check_same_space(q, g)
    n = len(q) + len(g)
    _check_params(k1, k2, lambda_, n, block_bytes)
    sparse = require("scipy.sparse", "k-reciprocal re-ranking")
    x = torch.cat([q, g]).cpu()  # (N, D), the joint set
    neighbours = knn(x, x, max(k1 + 1, k2), block_bytes=block_bytes).indices.numpy()  # (N, K), self first
    scale = _distance_scale(x, normalize_original, block_bytes)  # (N,)
    v = encode(x, neighbours[:, : k1 + 1], k1, scale, block_bytes, sparse)  # (N, N) sparse, rows sum to 1
    if k2 > 1:
        v = local_query_expansion(v, neighbours[:, :k2], sparse)
    out = final_distances(x, v, np.arange(len(q)), np.arange(len(q), n), lambda_, scale, block_bytes)
    return torch.from_numpy(out).to(queries.device if isinstance(queries, Tensor) else "cpu")


def reciprocal_sets(top: np.ndarray, sparse: Any) -> Any:
    """``R[p, g] = 1`` where ``g`` is in ``top[p]`` and ``p`` in ``top[g]``: ``(N, N)`` sparse CSR (eq. 4)."""
    n, width = top.shape
    indptr = np.arange(0, n * width + 1, width)
    a = sparse.csr_array((np.ones(n * width), top.ravel(), indptr), shape=(n, n))  # (N, N) forward lists
    r = sparse.csr_array(a.multiply(a.T))
    r.sort_indices()
    return r


def encode(x: Tensor, top: np.ndarray, k1: int, scale: np.ndarray, block_bytes: int, sparse: Any) -> Any:
    """The weight vectors ``V`` (eq. 7) over the expanded sets ``R*(p)`` (eq. 6): ``(N, N)`` sparse CSR.

    Args:
        x: ``(N, D)`` normalised joint set.
        top: ``(N, k1 + 1)`` nearest items of each item, best first.
        k1: neighbourhood size.
        scale: ``(N,)`` factor of each row's original distances.
        block_bytes: memory for the rows in flight.
        sparse: the ``scipy.sparse`` module.
    """
    half = round(k1 / 2)  # half to even, as numpy.around in the released code
    r = reciprocal_sets(top, sparse)
    r_half = reciprocal_sets(top[:, : half + 1], sparse)
    half_size = np.diff(r_half.indptr)  # (N,) |R(c, k1 / 2)|
    r_half_t = sparse.csr_array(r_half.T)
    rows_per_block = max(1, block_bytes // (64 * (k1 + 1) * (half + 1)))  # candidate overlaps per row
    blocks = []
    for start in range(0, len(top), rows_per_block):
        rb = r[start : start + rows_per_block]  # (B, N)
        overlap = sparse.csr_array((rb @ r_half_t).multiply(rb))  # (B, N): |R(c, k1/2) & R(p, k1)|, c in R(p)
        keep = overlap.data > 2.0 / 3.0 * half_size[overlap.indices]
        chosen = sparse.csr_array((keep.astype(np.float64), overlap.indices, overlap.indptr), shape=overlap.shape)
        expanded = sparse.csr_array(rb + chosen @ r_half)  # (B, N), nonzero on R*(p)
        expanded.sort_indices()
        rows = np.repeat(np.arange(start, start + rb.shape[0]), np.diff(expanded.indptr))
        dist = (2.0 - 2.0 * _pair_cosines(x, rows, expanded.indices, block_bytes)) * scale[rows]
        weight = np.exp(-dist)
        total = np.bincount(rows - start, weights=weight, minlength=rb.shape[0])
        blocks.append(sparse.csr_array((weight / total[rows - start], expanded.indices, expanded.indptr), rb.shape))
    return sparse.csr_array(sparse.vstack(blocks, format="csr"))


def local_query_expansion(v: Any, top: np.ndarray, sparse: Any) -> Any:
    """``V_p <- mean of V_g over g in top[p]`` (eq. 11): ``(N, N)`` sparse CSR."""
    n, width = top.shape
    mean = sparse.csr_array((np.full(n * width, 1.0 / width), top.ravel(), np.arange(0, n * width + 1, width)), (n, n))
    out = sparse.csr_array(mean @ v)
    out.sort_indices()
    return out


def final_distances(
    x: Tensor,
    v: Any,
    rows: np.ndarray,
    cols: np.ndarray,
    lambda_: float,
    scale: np.ndarray,
    block_bytes: int,
) -> np.ndarray:
    """``(1 - lambda) d_J + lambda d`` between items ``rows`` and ``cols`` of the joint set, ``(R, C)`` float32.

    ``sum_l min(V_pl, V_gl)`` is gathered through the columns of ``V[cols]`` (an inverted index: for
    each nonzero ``V_pl`` the items ``g`` with ``V_gl != 0``), a block of rows at a time.
    """
    vr = v[rows]  # (R, N) CSR
    vc = v[cols].tocsc()  # (C, N) by column: inverted index
    width = len(cols)
    block = max(1, block_bytes // (24 * width))  # three float64 (B, C): the sums, a bincount, 2 - sums
    budget = max(1, block_bytes // 128)  # candidate pairs at a time (~64 bytes each)
    xr = x[torch.from_numpy(rows)].float().numpy()  # (R, D)
    xc = x[torch.from_numpy(cols)].float().numpy()  # (C, D)
    out = np.empty((len(rows), width), dtype=np.float32)
    for start in range(0, len(rows), block):
        stop = min(start + block, len(rows))
        mins = _min_sums(vr[start:stop], vc, width, budget)  # (B, C) sum_l min(V_pl, V_gl)
        np.divide(mins, 2.0 - mins, out=mins)  # sum min / sum max
        jaccard = np.subtract(1.0, mins, out=mins)
        original = out[start:stop]  # written in place: 2 - 2 cos, scaled
        np.matmul(xr[start:stop], xc.T, out=original)
        original *= -2.0
        original += 2.0
        original *= scale[rows[start:stop], None].astype(np.float32)
        original *= lambda_
        jaccard *= 1.0 - lambda_
        original += jaccard
    return out


def _min_sums(sub: Any, vc: Any, width: int, budget: int) -> np.ndarray:
    """``out[i, j] = sum_l min(sub[i, l], vc[j, l])`` through ``vc``'s columns, ``budget`` pairs at a time."""
    owner_row = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))  # (nnz,)
    first = vc.indptr[sub.indices]  # (nnz,) where column l of vc starts
    count = vc.indptr[sub.indices + 1] - first
    ends = np.cumsum(count)
    acc = np.zeros(sub.shape[0] * width)
    a = 0
    while a < len(count):
        b = max(a + 1, int(np.searchsorted(ends, (ends[a - 1] if a else 0) + budget, side="right")))
        c = count[a:b]
        which = np.repeat(np.arange(a, b), c)  # (pairs,) the nonzero of sub each pair comes from
        offset = np.arange(len(which)) - np.repeat(np.cumsum(c) - c, c)
        pos = first[which] + offset
        values = np.minimum(sub.data[which], vc.data[pos])
        acc += np.bincount(owner_row[which] * width + vc.indices[pos], weights=values, minlength=len(acc))
        a = b
    return acc.reshape(sub.shape[0], width)


def _pair_cosines(x: Tensor, rows: np.ndarray, cols: np.ndarray, block_bytes: int) -> np.ndarray:
    """``x[rows[t]] . x[cols[t]]`` in float64, ``(P,)``, a chunk of pairs at a time."""
    out = np.empty(len(rows))
    chunk = max(1, block_bytes // (40 * x.shape[1]))  # two gathered rows, in float32 and float64, a product
    for start in range(0, len(rows), chunk):
        r = torch.from_numpy(rows[start : start + chunk])
        c = torch.from_numpy(cols[start : start + chunk].astype(np.int64))
        out[start : start + chunk] = (x[r].double() * x[c].double()).sum(dim=1).numpy()
    return out


def _distance_scale(x: Tensor, normalize_original: bool, block_bytes: int) -> np.ndarray:
    """``1 / max_g d(p, g)`` over the joint set with ``normalize_original``, else ones; ``(N,)``."""
    if not normalize_original:
        return np.ones(len(x))
    farthest = knn(x, -x, 1, block_bytes=block_bytes).scores[:, 0].double().numpy()  # -min_g cos(p, g)
    largest = 2.0 + 2.0 * farthest
    return np.where(largest > 0, 1.0 / np.where(largest > 0, largest, 1.0), 1.0)


def _check_params(k1: int, k2: int, lambda_: float, n: int, block_bytes: int) -> None:
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if k1 + 1 > n:
        raise ValueError(f"k1={k1} is larger than the joint query + gallery set allows (k1 + 1 <= {n} items)")
    if k2 > n:
        raise ValueError(f"k2={k2} is larger than the joint query + gallery set ({n} items)")
    if isinstance(lambda_, bool) or not isinstance(lambda_, int | float) or not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be a number in [0, 1], got {lambda_!r}")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
