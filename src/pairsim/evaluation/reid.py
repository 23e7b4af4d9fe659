"""Person re-identification metrics: CMC, mAP and mINP under the Market-1501 protocol.

For each query, gallery items showing the same identity from the same camera are removed before
ranking (they are near-duplicates of the query, not a re-identification). Queries left with no
correct gallery item are skipped and counted. mINP is from Ye et al., "Deep Learning for Person
Re-identification: A Survey and Outlook" (TPAMI 2021): ``INP = |correct| / rank of the last
correct item``. Ranking follows :mod:`pairsim.evaluation.knn`: decreasing cosine similarity,
ties by increasing gallery index, over the whole gallery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from pairsim.evaluation._inputs import as_embeddings, as_labels, check_k, check_same_space
from pairsim.evaluation.knn import DEFAULT_BLOCK_BYTES


@dataclass(frozen=True)
class ReidScores:
    """Re-ID results; ``cmc[i]`` is the rank-(i+1) accuracy."""

    cmc: tuple[float, ...]
    map: float
    minp: float
    num_queries: int
    num_skipped_queries: int

    @property
    def rank_1(self) -> float:
        """Rank-1 accuracy, the "R-1" of the Circle Loss paper's Table 4."""
        return self.cmc[0]


def reid_metrics(
    query_embeddings: Any,
    query_ids: Any,
    query_camera_ids: Any,
    gallery_embeddings: Any,
    gallery_ids: Any,
    gallery_camera_ids: Any,
    max_rank: int = 50,
    *,
    normalize: bool = True,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> ReidScores:
    """CMC up to ``max_rank``, mAP and mINP of queries against a gallery (Market-1501 protocol).

    Args:
        query_embeddings: ``(Q, D)``.
        query_ids: ``(Q,)`` identity labels.
        query_camera_ids: ``(Q,)`` camera of each query.
        gallery_embeddings: ``(N, D)``.
        gallery_ids: ``(N,)``.
        gallery_camera_ids: ``(N,)``.
        max_rank: length of the CMC curve, at most ``N``.
        normalize: L2-normalise the embeddings first (cosine similarity).
        block_bytes: memory for one block of similarities (a block is fully sorted).

    Returns:
        :class:`ReidScores`, averaged over queries that have a correct gallery item.

    Raises:
        ValueError: bad input, ``max_rank`` larger than the gallery, or no query with a correct item.

    Example:
        >>> q, g = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.9, 0.3], [0.5, 0.5]])
        >>> ids, cams = torch.tensor([1, 2, 1]), torch.tensor([0, 1, 1])
        >>> s = reid_metrics(q, torch.tensor([1]), torch.tensor([0]), g, ids, cams, max_rank=2)
        >>> s.cmc, s.map, s.minp
        ((0.0, 1.0), 0.5, 0.5)
    """
    gallery = as_embeddings("gallery_embeddings", gallery_embeddings, normalize=normalize)
    g_ids = as_labels("gallery_ids", gallery_ids, len(gallery), gallery.device)
    g_cams = as_labels("gallery_camera_ids", gallery_camera_ids, len(gallery), gallery.device)
    queries = as_embeddings("query_embeddings", query_embeddings, normalize=normalize)
    check_same_space(queries, gallery)
    q_ids = as_labels("query_ids", query_ids, len(queries), gallery.device)
    q_cams = as_labels("query_camera_ids", query_camera_ids, len(queries), gallery.device)
    check_k(max_rank, len(gallery), "the gallery (max_rank)")

    cmc_sum = torch.zeros(max_rank, dtype=torch.float64, device=gallery.device)
    ap_sum = inp_sum = 0.0
    evaluated = 0
    rows = max(1, block_bytes // (len(gallery) * 16))  # scores + int64 order + masks per element
    positions = torch.arange(1, len(gallery) + 1, device=gallery.device, dtype=torch.float64)
    for start in range(0, len(queries), rows):
        stop = min(start + rows, len(queries))
        scores = queries[start:stop] @ gallery.T  # (B, N)
        order = scores.sort(dim=1, descending=True, stable=True).indices  # (B, N), ties by index
        same_id = g_ids[order] == q_ids[start:stop, None]  # (B, N) in ranked order
        junk = same_id & (g_cams[order] == q_cams[start:stop, None])
        keep = ~junk
        good = same_id & keep
        # Positions within the ranking once junk is removed (1-based); junk columns get a dummy value.
        pos = keep.to(torch.float64).cumsum(dim=1)  # (B, N)
        hits = good.to(torch.float64)
        num_good = hits.sum(dim=1)  # (B,)
        has = num_good > 0
        if not bool(has.any()):
            continue
        hits, pos, num_good, good = hits[has], pos[has], num_good[has], good[has]
        cum_hits = hits.cumsum(dim=1)
        ap = (cum_hits / pos.clamp(min=1) * hits).sum(dim=1) / num_good  # clamp: junk before the first kept item
        first = torch.where(good, pos, float("inf")).amin(dim=1)  # rank of the first correct item
        last = torch.where(good, pos, 0.0).amax(dim=1)  # rank of the hardest correct item
        cmc_sum += (first[:, None] <= positions[None, :max_rank]).sum(dim=0)
        ap_sum += float(ap.sum())
        inp_sum += float((num_good / last).sum())
        evaluated += int(has.sum())
    if evaluated == 0:
        raise ValueError("no query has a correct gallery item from another camera")
    return ReidScores(
        cmc=tuple((cmc_sum / evaluated).tolist()),
        map=ap_sum / evaluated,
        minp=inp_sum / evaluated,
        num_queries=evaluated,
        num_skipped_queries=len(queries) - evaluated,
    )
