"""Evaluation: retrieval, re-identification, verification and clustering metrics, and exact k-NN.

Every function takes torch tensors or numpy arrays and ranks by the inner product of
L2-normalised embeddings (cosine similarity); see :mod:`pairsim.evaluation.retrieval` for the
conventions (ties, lone labels, leave-one-out).
"""

from pairsim.evaluation.clustering import ClusteringScores, clustering_scores
from pairsim.evaluation.knn import Neighbours, knn
from pairsim.evaluation.landmark import map_at_100
from pairsim.evaluation.reid import ReidScores, reid_metrics
from pairsim.evaluation.retrieval import retrieval_metrics
from pairsim.evaluation.verification import (
    FAR_TARGETS,
    RocCurve,
    VerificationScores,
    all_pair_similarities,
    pair_similarities,
    roc_curve,
    verification_scores,
)

__all__ = [
    "FAR_TARGETS",
    "ClusteringScores",
    "Neighbours",
    "ReidScores",
    "RocCurve",
    "VerificationScores",
    "all_pair_similarities",
    "clustering_scores",
    "knn",
    "map_at_100",
    "pair_similarities",
    "reid_metrics",
    "retrieval_metrics",
    "roc_curve",
    "verification_scores",
]
