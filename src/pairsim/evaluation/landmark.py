"""Google Landmark Retrieval mAP@100: several relevant items per query, unlabelled distractors."""

from __future__ import annotations

from typing import Any

import torch

from pairsim.evaluation._inputs import as_embeddings, as_labels, check_k, check_same_space
from pairsim.evaluation.knn import DEFAULT_BLOCK_BYTES, KnnMethod, knn
from pairsim.evaluation.retrieval import relevant_counts


def map_at_100(
    query_embeddings: Any,
    query_labels: Any,
    gallery_embeddings: Any,
    gallery_labels: Any,
    k: int = 100,
    *,
    normalize: bool = True,
    method: KnnMethod = "exact",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> float:
    """mAP@100 of the Google Landmark Retrieval challenge.

    ``AP@k(q) = (1 / min(m_q, k)) sum_{i<=k} P(i) rel_i``, ``m_q`` the number of gallery items
    relevant to ``q`` (sharing its label). Gallery items with a negative label are distractors,
    relevant to no query. Queries with ``m_q = 0`` are left out of the mean, as in the challenge.

    Args:
        query_embeddings: ``(Q, D)``.
        query_labels: ``(Q,)`` integers.
        gallery_embeddings: ``(N, D)``.
        gallery_labels: ``(N,)`` integers, negative for distractors.
        k: ranking depth, 100 in the challenge; at most ``N``.
        normalize: L2-normalise the embeddings first (cosine similarity).
        method: k-NN method, see :func:`pairsim.evaluation.knn.knn`.
        block_bytes: memory for one block of similarities.

    Returns:
        The mean AP@k over queries with at least one relevant gallery item.

    Raises:
        ValueError: bad input, ``k`` larger than the gallery, or no query with a relevant item.

    Example:
        >>> g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
        >>> map_at_100(torch.tensor([[1.0, 0.05]]), torch.tensor([7]), g, torch.tensor([-1, 7, 7]), k=3)
        0.5833333333333333
    """
    gallery = as_embeddings("gallery_embeddings", gallery_embeddings, normalize=normalize)
    g_labels = as_labels("gallery_labels", gallery_labels, len(gallery), gallery.device)
    queries = as_embeddings("query_embeddings", query_embeddings, normalize=normalize)
    check_same_space(queries, gallery)
    q_labels = as_labels("query_labels", query_labels, len(queries), gallery.device)
    check_k(k, len(gallery))
    labelled = g_labels >= 0
    m = relevant_counts(q_labels, g_labels[labelled], False) if bool(labelled.any()) else torch.zeros_like(q_labels)
    m = torch.where(q_labels >= 0, m, 0)
    valid = m > 0
    if not bool(valid.any()):
        raise ValueError("no query has a relevant gallery item")
    neighbours = knn(queries[valid], gallery, k, method=method, block_bytes=block_bytes)
    retrieved = g_labels[neighbours.indices]  # (Qv, k)
    rel = (retrieved == q_labels[valid, None]).to(torch.float64)
    ranks = torch.arange(1, k + 1, device=rel.device, dtype=torch.float64)
    ap = (rel.cumsum(dim=1) / ranks * rel).sum(dim=1) / m[valid].clamp(max=k).to(torch.float64)
    return float(ap.mean())
