"""Retrieval metrics: precision@1, R-precision, MAP@R (Musgrave et al., "A Metric Learning Reality
Check", ECCV 2020), MAP, MRR and recall@k (Circle Loss paper, Table 5), and the Google Landmark
Retrieval mAP@100 (in :mod:`pairsim.evaluation.landmark`).

Conventions, shared by every function here:

- Similarity is the inner product of L2-normalised embeddings (cosine); pass
  ``normalize=False`` for embeddings that are already normalised or for a raw inner product.
- References are ranked by decreasing similarity; exactly equal similarities by increasing
  reference index (see :mod:`pairsim.evaluation.knn`; on float32 CPU input with numba installed,
  near-ties are ranked by their exact similarity).
- Without query arguments the evaluation is leave-one-out: each item queries all others.
- ``R`` of a query is the number of references sharing its label (itself excluded). Queries with
  ``R = 0`` ("lone" labels) are left out of every average and counted in ``num_lone_queries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pairsim.evaluation import _exact, tiled
from pairsim.evaluation._inputs import as_embeddings, as_labels, check_k, check_same_space
from pairsim.evaluation._relevant import LabelIndex, first_relevant_rank, relevant_scores, round_down, round_up
from pairsim.evaluation.knn import DEFAULT_BLOCK_BYTES, KnnMethod, knn


def relevant_counts(query_labels: Tensor, reference_labels: Tensor, leave_one_out: bool) -> Tensor:
    """``R`` per query: references with the query's label, minus the query itself when leave-one-out.

    Example:
        >>> relevant_counts(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1, 3]), False).tolist()
        [2, 1, 0]
    """
    uniq, counts = torch.unique(reference_labels, return_counts=True)
    pos = torch.searchsorted(uniq, query_labels).clamp(max=len(uniq) - 1)
    found = uniq[pos] == query_labels
    return torch.where(found, counts[pos], 0) - int(leave_one_out)


def ranked_list_metrics(
    relevance: Tensor, num_relevant: Tensor, ks: Sequence[int], map_depth: int | None = None
) -> dict[str, Tensor]:
    """Per-query metrics from the relevance of the top of each ranking.

    Args:
        relevance: ``(Q, K)`` bool, whether the i-th retrieved reference is relevant; ``K`` must
            be at least every ``num_relevant`` and every ``k`` in ``ks``.
        num_relevant: ``(Q,)`` ``R`` of each query, ``>= 1``.
        ks: the ``k`` of recall@k.
        map_depth: places counted by ``map``; all ``K`` when ``None``.

    Returns:
        ``(Q,)`` float64 tensors: ``precision_at_1``, ``r_precision``, ``map_at_r``, ``map``
        (average precision over the top ``map_depth`` places, relevant items below count as missed),
        ``recall_at_{k}``; and ``first_hit``, the 1-based rank of the first relevant item (0 if
        none in the ``K`` places).

    Example:
        >>> m = ranked_list_metrics(torch.tensor([[True, False, True]]), torch.tensor([2]), ks=(1,))
        >>> [round(float(m[key][0]), 4) for key in ("precision_at_1", "r_precision", "map_at_r", "map")]
        [1.0, 0.5, 0.5, 0.8333]
    """
    rel = relevance.to(torch.float64)  # (Q, K)
    ranks = torch.arange(1, rel.shape[1] + 1, device=rel.device, dtype=torch.float64)  # (K,)
    r = num_relevant.to(torch.float64)
    within_r = ranks[None, :] <= r[:, None]  # (Q, K)
    precision = rel.cumsum(dim=1) / ranks  # (Q, K) precision at each place
    hit_precision = precision * rel
    has_hit = relevance.any(dim=1)
    out = {
        "precision_at_1": rel[:, 0],
        "r_precision": (rel * within_r).sum(dim=1) / r,
        "map_at_r": (hit_precision * within_r).sum(dim=1) / r,
        "map": hit_precision[:, :map_depth].sum(dim=1) / r,
        "first_hit": torch.where(has_hit, relevance.to(torch.int8).argmax(dim=1) + 1, 0).to(torch.float64),
    }
    for k in ks:
        out[f"recall_at_{k}"] = rel[:, :k].amax(dim=1)
    return out


def retrieval_metrics(
    embeddings: Any,
    labels: Any,
    query_embeddings: Any = None,
    query_labels: Any = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    map_depth: int | None = None,
    normalize: bool = True,
    method: KnnMethod = "exact",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, float]:
    """Retrieval metrics of a labelled embedding set, leave-one-out or queries against a gallery.

    Definitions (averages over the non-lone queries; ``rel_i`` is 1 when the i-th retrieved
    reference shares the query's label):

    - ``precision_at_1``: ``rel_1``.
    - ``r_precision``: ``(1/R) sum_{i<=R} rel_i`` (Musgrave et al., Sec. 3.2).
    - ``map_at_r``: ``(1/R) sum_{i<=R} rel_i * P(i)``, ``P(i)`` the precision of the top ``i``.
    - ``map``: ``(1/R) sum_{i<=K} rel_i * P(i)`` with ``K = map_depth``, by default the largest
      ``R`` of any query (what PML's ``mean_average_precision`` computes with
      ``k="max_bin_count"``); ``map_depth=len(embeddings)`` gives the full-ranking AP, at the
      cost of a top-k that deep.
    - ``mrr``: mean of ``1 / rank`` of the first relevant reference, exact over the whole ranking
      with ``method="exact"``; the faiss methods count only the top ``K`` (0 when none is relevant).
    - ``recall_at_{k}``: 1 when any of the top ``k`` is relevant (the R@K of the Circle Loss paper).
    - ``num_queries``: queries averaged over; ``num_lone_queries``: queries left out (``R = 0``).

    Args:
        embeddings: ``(N, D)`` reference embeddings (tensor or numpy array).
        labels: ``(N,)`` integer labels.
        query_embeddings: ``(Q, D)`` queries; ``None`` for leave-one-out on ``embeddings``.
        query_labels: ``(Q,)``, given exactly when ``query_embeddings`` is.
        ks: the ``k`` of ``recall_at_{k}``; each at most the number of candidates per query.
        map_depth: ranking depth of ``map`` (see above).
        normalize: L2-normalise the embeddings first (cosine similarity).
        method: k-NN method, see :func:`pairsim.evaluation.knn.knn`; ``"exact"`` by default.
        block_bytes: memory for one block of similarities.

    Returns:
        Metric name -> value, the keys listed above.

    Raises:
        ValueError: mismatched lengths or dimensions, NaN embeddings, empty sets, a ``k`` larger
            than the gallery, or no query with a relevant reference.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
        >>> m = retrieval_metrics(x, torch.tensor([0, 0, 1, 1, 2]), ks=(1,))
        >>> m["precision_at_1"], m["map_at_r"], m["num_lone_queries"]
        (1.0, 1.0, 1.0)
    """
    reference = as_embeddings("embeddings", embeddings, normalize=normalize)
    ref_labels = as_labels("labels", labels, len(reference), reference.device)
    leave_one_out = query_embeddings is None
    if leave_one_out:
        if query_labels is not None:
            raise ValueError("query_labels was given without query_embeddings")
        queries, q_labels = reference, ref_labels
    else:
        if query_labels is None:
            raise ValueError("query_labels is required with query_embeddings")
        queries = as_embeddings("query_embeddings", query_embeddings, normalize=normalize)
        check_same_space(queries, reference)
        q_labels = as_labels("query_labels", query_labels, len(queries), reference.device)
    available = len(reference) - int(leave_one_out)
    if available < 1:
        raise ValueError("leave-one-out needs at least 2 embeddings")
    ks = tuple(ks)
    for k in ks:
        check_k(k, available)
    if map_depth is not None:
        check_k(map_depth, available, "the gallery (map_depth)")

    r_all = relevant_counts(q_labels, ref_labels, leave_one_out)  # (Q,)
    valid = r_all > 0
    if not bool(valid.any()):
        raise ValueError("no query has a relevant reference (every query label is lone)")
    depth = max([int(r_all.max()), *ks, map_depth or 0])
    if method == "exact" and tiled.available(queries, reference):
        top, full_rank = _tiled_search(
            queries, q_labels, reference, ref_labels, leave_one_out, depth, valid, block_bytes
        )
    else:
        top, full_rank = _blocked_search(
            queries, q_labels, reference, ref_labels, leave_one_out, depth, valid, method, block_bytes
        )
    relevance = ref_labels[top[valid]] == q_labels[valid, None]  # (Qv, depth)
    per_query = ranked_list_metrics(relevance, r_all[valid], ks, map_depth or int(r_all.max()))
    first_hit = per_query.pop("first_hit")
    # "exact" ranked the queries with no hit in the top `depth`; with faiss they stay 0 (reciprocal rank 0).
    first_hit = torch.where(first_hit > 0, first_hit, full_rank[valid])
    per_query["mrr"] = torch.where(first_hit > 0, 1.0 / first_hit.clamp(min=1), 0.0)
    out = {name: float(values.mean()) for name, values in per_query.items()}
    out["num_queries"] = float(valid.sum())
    out["num_lone_queries"] = float((~valid).sum())
    return out


def _tiled_search(
    queries: Tensor,
    q_labels: Tensor,
    reference: Tensor,
    ref_labels: Tensor,
    leave_one_out: bool,
    depth: int,
    valid: Tensor,
    block_bytes: int,
) -> tuple[Tensor, Tensor]:
    """Top ``depth`` by :func:`pairsim.evaluation.tiled.tiled_knn`, and the first relevant rank of misses.

    The relevant references' scores (class by class) give each query a floor for its k-th best score
    and a window around its best relevant score. The search counts the candidates above the window
    and keeps those inside, which are then scored exactly: that ranks the best relevant reference.
    Queries whose window overflowed are ranked the same way from their full rows of scores.
    """
    best, kth = relevant_scores(queries, q_labels, reference, ref_labels, leave_one_out, depth)  # (Q,)
    eps = 2 * _exact.float32_error_bound(queries, reference)  # (Q,) float32 tile scores and float32 `best`/`kth`
    inf = torch.full_like(best, float("inf"))
    window = tiled.RankWindow(
        round_down(torch.where(valid, best - eps, inf)), round_up(torch.where(valid, best + eps, inf))
    )
    tile = tiled.tile_side(block_bytes)
    found = tiled.tiled_knn(
        queries, reference, depth, exclude_self=leave_one_out, tile=tile, floor=round_down(kth - eps), window=window
    )
    full_rank = torch.zeros(len(queries), dtype=torch.float64)
    miss = (valid & ~(ref_labels[found.indices] == q_labels[:, None]).any(dim=1)).nonzero().flatten()
    if len(miss) == 0:
        return found.indices, full_rank
    counts, cols = found.window_counts[miss], found.window_indices[miss]  # (M,), (M, C)
    scores = torch.empty(cols.shape, dtype=torch.float64)
    _exact.exact_pairs(queries, reference, miss, cols, counts, scores)  # (M, C), -inf past the count
    relevant = (scores > float("-inf")) & (ref_labels[cols] == q_labels[miss, None])
    top = torch.where(relevant, scores, float("-inf")).amax(dim=1, keepdim=True)  # (M, 1) best relevant score
    first = torch.where(relevant & (scores == top), cols, len(reference)).amin(dim=1, keepdim=True)
    ahead = (scores > top) | ((scores == top) & (cols < first))
    full_rank[miss] = (found.above[miss] + ahead.sum(dim=1) + 1).double()
    redo = miss[(counts > cols.shape[1]) | ~relevant.any(dim=1)]  # the window overflowed
    for q, row in _exact.score_rows(queries, reference, redo, leave_one_out):
        # The same from the full row: count above the window, score the whole window exactly.
        inside = ((row >= float(window.lo[q])) & (row <= float(window.up[q]))).nonzero().flatten()
        precise = _exact.exact_scores(queries, reference, q, inside)
        is_relevant = ref_labels[inside] == q_labels[q]
        top_q = float(precise[is_relevant].max())
        first_q = int(inside[is_relevant & (precise == top_q)].min())
        ahead_q = int(((precise > top_q) | ((precise == top_q) & (inside < first_q))).sum())
        full_rank[q] = float(int((row > float(window.up[q])).sum()) + ahead_q + 1)
    return found.indices, full_rank


def _blocked_search(
    queries: Tensor,
    q_labels: Tensor,
    reference: Tensor,
    ref_labels: Tensor,
    leave_one_out: bool,
    depth: int,
    valid: Tensor,
    method: KnnMethod,
    block_bytes: int,
) -> tuple[Tensor, Tensor]:
    """Top ``depth`` by :func:`pairsim.evaluation.knn.knn`; with ``"exact"``, the first relevant rank of misses."""
    index = LabelIndex(ref_labels)
    full_rank = torch.zeros(len(queries), dtype=torch.float64, device=queries.device)

    def rank_misses(start: int, stop: int, scores: Tensor, top: Tensor) -> None:
        # Queries with no relevant item in the top `depth`: their first relevant rank, from the same scores.
        miss = valid[start:stop] & ~(ref_labels[top] == q_labels[start:stop, None]).any(dim=1)
        rows = miss.nonzero().flatten()
        if len(rows) == 0:
            return
        if 4 * len(rows) > len(miss):  # many misses: ranking every row is cheaper than copying some
            ranks = first_relevant_rank(scores, q_labels[start:stop], index)[rows]
        else:
            ranks = first_relevant_rank(scores.index_select(0, rows), q_labels[start:stop][rows], index)
        full_rank[start + rows] = ranks

    neighbours = knn(
        queries,
        reference,
        depth,
        exclude_self=leave_one_out,
        method=method,
        block_bytes=block_bytes,
        on_block=rank_misses,
    )
    return neighbours.indices, full_rank
