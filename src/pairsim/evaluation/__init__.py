"""Evaluation: retrieval, re-identification, verification and clustering metrics, and exact k-NN.

Every function takes torch tensors or numpy arrays and ranks by the inner product of
L2-normalised embeddings (cosine similarity); see :mod:`pairsim.evaluation.retrieval` for the
conventions (ties, lone labels, leave-one-out).
"""

from pairsim.evaluation.clustering import ClusteringScores, clustering_scores
from pairsim.evaluation.k_reciprocal import k_reciprocal_rerank
from pairsim.evaluation.knn import Neighbours, knn
from pairsim.evaluation.landmark import map_at_100
from pairsim.evaluation.reid import ReidScores, reid_metrics
from pairsim.evaluation.reranking import alpha_query_expansion, database_augmentation
from pairsim.evaluation.retrieval import retrieval_metrics
from pairsim.evaluation.revisited import ProtocolScores, RevisitedScores, revisited_map, revisited_map_from_embeddings
from pairsim.evaluation.revisited_ground_truth import RevisitedGroundTruth, load_revisited_ground_truth
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
    "ProtocolScores",
    "ReidScores",
    "RevisitedGroundTruth",
    "RevisitedScores",
    "RocCurve",
    "VerificationScores",
    "all_pair_similarities",
    "alpha_query_expansion",
    "clustering_scores",
    "database_augmentation",
    "k_reciprocal_rerank",
    "knn",
    "load_revisited_ground_truth",
    "map_at_100",
    "pair_similarities",
    "reid_metrics",
    "retrieval_metrics",
    "revisited_map",
    "revisited_map_from_embeddings",
    "roc_curve",
    "verification_scores",
]
