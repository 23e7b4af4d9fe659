"""Clustering quality of an embedding: k-means (faiss), then NMI and AMI (scikit-learn) against the labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pairsim._optional import require
from pairsim.evaluation._inputs import as_embeddings, as_labels


@dataclass(frozen=True)
class ClusteringScores:
    """NMI and AMI (arithmetic-mean normalisation, as scikit-learn's default) and the cluster count."""

    nmi: float
    ami: float
    num_clusters: int


def clustering_scores(
    embeddings: Any,
    labels: Any,
    num_clusters: int | None = None,
    *,
    niter: int = 20,
    seed: int = 1234,
    normalize: bool = True,
) -> ClusteringScores:
    """k-means the embeddings (faiss) and score the clusters against the labels.

    Args:
        embeddings: ``(N, D)`` tensor or array.
        labels: ``(N,)`` integer labels.
        num_clusters: k of k-means; the number of distinct labels by default (as PML does).
        niter: k-means iterations.
        seed: k-means seed (results are deterministic for a given seed and thread count).
        normalize: L2-normalise the embeddings first.

    Returns:
        :class:`ClusteringScores`.

    Raises:
        ValueError: bad input, or more clusters than embeddings.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> round(clustering_scores(x, torch.tensor([0, 0, 1, 1])).nmi, 6)
        1.0
    """
    x = as_embeddings("embeddings", embeddings, normalize=normalize)
    y = as_labels("labels", labels, len(x)).cpu().numpy()
    k = len(np.unique(y)) if num_clusters is None else num_clusters
    if k < 1 or k > len(x):
        raise ValueError(f"num_clusters must lie in [1, {len(x)}], got {k}")
    faiss = require("faiss", "k-means clustering")
    data = np.ascontiguousarray(x.float().cpu().numpy())
    # min_points_per_centroid=1: small class-disjoint test sets are legitimate, not a reason to warn.
    kmeans = faiss.Kmeans(data.shape[1], k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    kmeans.train(data)
    _, assign = kmeans.index.search(data, 1)  # (N, 1)
    nmi, ami = mutual_information_scores(y, assign[:, 0])
    return ClusteringScores(nmi=nmi, ami=ami, num_clusters=k)


def mutual_information_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float]:
    """NMI and AMI of two labelings, both normalised by the arithmetic mean of the entropies.

    NMI and the mutual information come from scikit-learn. ``AMI = (MI - E[MI]) / (mean(H_true, H_pred) -
    E[MI])`` (Vinh et al., JMLR 2010) takes ``E[MI]`` from :func:`expected_mutual_information`, written here
    because scikit-learn's sums over every pair of clusters: 16.7 s against 0.04 s for 60,000 items in
    5,000 classes (measured on the 2-core machine), and retrieval test sets have 10^4-10^5 classes. Values
    agree with ``sklearn.metrics.adjusted_mutual_info_score`` (tests). Two labelings with one cluster each
    score 1, as in scikit-learn.

    Example:
        >>> [round(v, 4) for v in mutual_information_scores(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))]
        [1.0, 1.0]
    """
    metrics = require("sklearn.metrics", "clustering scores (NMI, AMI)")
    _, t = np.unique(labels_true, return_inverse=True)
    _, p = np.unique(labels_pred, return_inverse=True)
    n = len(t)
    if t.max() == 0 and p.max() == 0:
        return 1.0, 1.0
    nmi = float(metrics.normalized_mutual_info_score(t, p, average_method="arithmetic"))
    mi = float(metrics.mutual_info_score(t, p))
    a = np.bincount(t).astype(np.float64)  # (R,) true cluster sizes
    b = np.bincount(p).astype(np.float64)  # (C,) predicted cluster sizes
    mean_h = (_entropy(a, n) + _entropy(b, n)) / 2
    emi = expected_mutual_information(a, b, n)
    denominator = mean_h - emi
    # As scikit-learn: keep the sign of a tiny denominator so that AMI stays finite.
    denominator = min(denominator, -np.finfo(np.float64).eps) if denominator < 0 else max(denominator, 1e-300)
    return nmi, float((mi - emi) / denominator)


def expected_mutual_information(a: np.ndarray, b: np.ndarray, n: int) -> float:
    """``E[MI]`` of two random labelings with cluster sizes ``a`` and ``b`` (hypergeometric model).

    The sum over cluster pairs depends only on the pair of sizes, so it runs over distinct sizes
    weighted by their multiplicities: a few hundred pairs even for 10^4 clusters of each side.
    """
    sa, ca = np.unique(a, return_counts=True)
    sb, cb = np.unique(b, return_counts=True)
    grid_a, grid_b = np.meshgrid(sa, sb, indexing="ij")  # (Ua, Ub)
    A, B = grid_a.ravel(), grid_b.ravel()  # (P,) one entry per pair of distinct sizes
    weight = np.outer(ca, cb).astype(np.float64).ravel()
    lo = np.maximum(1.0, A + B - n)
    hi = np.minimum(A, B)
    total = 0.0
    width = int((hi - lo).max()) + 1 if len(hi) else 0
    for chunk in np.array_split(np.arange(len(A)), max(1, len(A) * width // 2_000_000 + 1)):
        a_, b_, lo_, hi_, w_ = A[chunk, None], B[chunk, None], lo[chunk, None], hi[chunk, None], weight[chunk, None]
        nij = lo_ + np.arange(width)[None, :]  # (P, width)
        ok = nij <= hi_
        nij = np.where(ok, nij, 1.0)
        log_p = (
            gammaln(a_ + 1)
            + gammaln(b_ + 1)
            + gammaln(n - a_ + 1)
            + gammaln(n - b_ + 1)
            - gammaln(n + 1)
            - gammaln(nij + 1)
            - gammaln(a_ - nij + 1)
            - gammaln(b_ - nij + 1)
            - gammaln(np.maximum(n - a_ - b_ + nij, 0) + 1)
        )
        term = nij / n * (np.log(n * nij) - np.log(a_) - np.log(b_)) * np.exp(log_p)
        total += float(np.sum(np.where(ok, term, 0.0) * w_))
    return total


def gammaln(x: np.ndarray | float) -> np.ndarray:
    """``log Gamma(x)`` in float64 (torch's, so that the core install needs no scipy)."""
    return torch.lgamma(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def _entropy(sizes: np.ndarray, n: int) -> float:
    p = sizes[sizes > 0] / n
    return float(-np.sum(p * np.log(p)))
