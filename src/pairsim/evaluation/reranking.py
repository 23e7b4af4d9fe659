"""Query expansion and database-side augmentation: re-ranking by replacing vectors with weighted sums.

alpha-QE replaces each query by the normalised sum of itself and its ``k`` nearest gallery items,
each weighted by its cosine similarity to the power ``alpha`` (Radenovic, Tolias and Chum,
"Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018, section 5, alpha = 3).
Database-side augmentation (DBA; Arandjelovic and Zisserman, "Three things everyone should know to
improve object retrieval", CVPR 2012, with the alpha weights of alpha-QE) does the same for every
gallery item against the gallery, offline. Both are followed by an ordinary search with the new
vectors. Neighbours come from :func:`pairsim.evaluation.knn.knn` (blocked: no ``(N, N)`` matrix) and
follow its ranking convention. For k-reciprocal re-ranking see :mod:`pairsim.evaluation.k_reciprocal`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pairsim.evaluation._inputs import ArrayLike, as_embeddings, check_same_space
from pairsim.evaluation.knn import DEFAULT_BLOCK_BYTES, knn


def alpha_query_expansion(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    alpha: float = 3.0,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Tensor:
    """alpha-weighted query expansion (alpha-QE) of each query with its ``k`` nearest gallery items.

    With L2-normalised ``Q`` and ``G``, ``S = Q G^T`` and ``N(q)`` the top-``k`` gallery items of ``q``::

        q' = normalise(q + sum_{j in N(q)} max(S_qj, 0)^alpha * G_j)

    (Radenovic et al., TPAMI 2018, eq. for alpha-QE; ``alpha = 3``, ``k`` of about 1-10 for landmark
    retrieval). ``alpha = 0`` is average query expansion (``0^0 = 1``: every neighbour weighs 1).

    Args:
        queries: ``(n_q, D)`` floating point; L2-normalised first.
        gallery: ``(n_g, D)``, same dimension, dtype and device; L2-normalised first.
        k: neighbours added to each query, ``0 <= k <= n_g``; ``k = 0`` returns the normalised queries.
        alpha: exponent of the similarity weights, ``>= 0``.
        block_bytes: memory for one block of similarities in the k-NN search (gathered neighbours: 1/16 of it).

    Returns:
        ``(n_q, D)`` expanded, L2-normalised queries, dtype and device of the inputs.

    Raises:
        ValueError: bad shapes, mismatched dimensions, non-finite values, ``k`` out of range or
            ``alpha`` negative.

    Example:
        >>> g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> alpha_query_expansion(torch.tensor([[0.6, 0.8]]), g, k=1, alpha=1.0)  # (0.6, 0.8) + 0.8 (0, 1)
        tensor([[0.3511, 0.9363]])
    """
    q = as_embeddings("queries", queries)
    g = as_embeddings("gallery", gallery)
    check_same_space(q, g)
    _check_k_alpha(k, alpha, len(g), "the gallery")
    if k == 0:
        return q
    found = knn(q, g, k, block_bytes=block_bytes)
    return F.normalize(q + _weighted_sum(g, found.indices, found.scores, alpha, block_bytes), dim=1)


def database_augmentation(
    gallery: ArrayLike,
    k: int,
    alpha: float = 3.0,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Tensor:
    """Database-side augmentation (DBA): each gallery item becomes the weighted sum of its neighbourhood.

    With L2-normalised ``G``, ``S = G G^T`` and ``N(g)`` the top ``k + 1`` items of ``g`` including
    ``g`` itself (``g`` and its ``k`` nearest other items)::

        g' = normalise(sum_{j in N(g)} max(S_gj, 0)^alpha * G_j)

    (Arandjelovic and Zisserman, CVPR 2012, section 4, with alpha-QE's weights). Row blocks of the
    gallery are searched against it (:func:`pairsim.evaluation.knn.knn`), so memory stays at about
    ``2 n_g D + block_bytes`` plus ``(n_g, k)`` neighbour lists, whatever ``n_g``.

    Args:
        gallery: ``(n_g, D)`` floating point; L2-normalised first.
        k: neighbours added to each item, ``0 <= k <= n_g - 1``; ``k = 0`` returns the normalised gallery.
        alpha: exponent of the similarity weights, ``>= 0``.
        block_bytes: memory for one block of similarities in the k-NN search (gathered neighbours: 1/16 of it).

    Returns:
        ``(n_g, D)`` augmented, L2-normalised gallery, dtype and device of the input.

    Raises:
        ValueError: bad shape, non-finite values, ``k`` out of range or ``alpha`` negative.

    Example:
        >>> g = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> database_augmentation(g, k=1, alpha=1.0)  # first row: (1, 0) + 0.6 (0.6, 0.8), normalised
        tensor([[0.9430, 0.3328],
                [0.3511, 0.9363],
                [0.2809, 0.9597]])
    """
    g = as_embeddings("gallery", gallery)
    _check_k_alpha(k, alpha, len(g) - 1, "the gallery less the item itself")
    if k == 0:
        return g
    found = knn(g, g, k, exclude_self=True, block_bytes=block_bytes)
    self_weight = (g * g).sum(dim=1, keepdim=True).clamp(min=0) ** alpha  # (n_g, 1), 1 up to rounding
    return F.normalize(self_weight * g + _weighted_sum(g, found.indices, found.scores, alpha, block_bytes), dim=1)


def _weighted_sum(vectors: Tensor, indices: Tensor, scores: Tensor, alpha: float, block_bytes: int) -> Tensor:
    """``out_i = sum_t max(scores_it, 0)^alpha * vectors[indices_it]``, ``(R, D)``, in row blocks."""
    weights = scores.clamp(min=0) ** alpha  # (R, k); torch: 0 ** 0 == 1
    out = torch.empty(len(indices), vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    rows = max(1, block_bytes // (16 * indices.shape[1] * vectors.shape[1] * vectors.element_size()))  # 1/16: small
    for start in range(0, len(indices), rows):
        stop = min(start + rows, len(indices))
        neighbours = vectors[indices[start:stop]]  # (B, k, D)
        out[start:stop] = torch.bmm(weights[start:stop, None, :], neighbours)[:, 0]  # (B, D)
    return out


def _check_k_alpha(k: int, alpha: float, available: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if k > available:
        raise ValueError(f"k={k} is larger than {what} ({available} candidates per item)")
    if not (isinstance(alpha, int | float) and not isinstance(alpha, bool)) or not 0 <= alpha < float("inf"):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
