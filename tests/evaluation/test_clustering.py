"""NMI / AMI against scikit-learn, and the k-means clustering on separable data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from pairsim.evaluation import clustering_scores
from pairsim.evaluation.clustering import mutual_information_scores


@pytest.mark.parametrize(
    ("n", "true_k", "pred_k", "seed"),
    [(40, 3, 4, 0), (200, 20, 25, 1), (600, 150, 140, 2), (30, 1, 5, 3), (50, 50, 7, 4), (2000, 400, 380, 5)],
)
def test_nmi_ami_match_sklearn(n: int, true_k: int, pred_k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, true_k, n)
    p = rng.integers(0, pred_k, n)
    p[: n // 2] = t[: n // 2] % pred_k  # partly agreeing labelings
    nmi, ami = mutual_information_scores(t, p)
    assert nmi == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-9)
    assert ami == pytest.approx(adjusted_mutual_info_score(t, p), abs=1e-7)


def test_single_cluster_each_scores_one() -> None:
    assert mutual_information_scores(np.zeros(5, dtype=int), np.ones(5, dtype=int)) == (1.0, 1.0)


def test_separable_clusters_are_found() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(8) * 10
    y = torch.arange(8).repeat_interleave(20)
    x = centres[y] + 0.1 * torch.randn(len(y), 8, generator=g)
    scores = clustering_scores(x, y)
    assert scores.num_clusters == 8
    assert scores.nmi == pytest.approx(1.0, abs=1e-9)
    assert scores.ami == pytest.approx(1.0, abs=1e-9)


def test_random_embeddings_score_low_ami() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    assert abs(clustering_scores(x, y).ami) < 0.1


def test_too_many_clusters_raise() -> None:
    with pytest.raises(ValueError, match="num_clusters"):
        clustering_scores(torch.randn(4, 3), torch.arange(4), num_clusters=5)
