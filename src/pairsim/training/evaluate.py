"""Held-out retrieval metrics of a model on an image set, as the trainer and the jobs report them."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pairsim.data.base import ImageSet
from pairsim.evaluation import retrieval_metrics
from pairsim.models import EXACT, EmbeddingModel, Execution, embed

RETRIEVAL_KEYS = ("precision_at_1", "r_precision", "map_at_r")


def retrieval_scores(embeddings: Tensor, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out precision@1, R-precision and MAP@R of a labelled embedding set.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> retrieval_scores(z, np.array([0, 0, 1, 1]))["precision_at_1"]
        1.0
    """
    metrics = retrieval_metrics(embeddings, torch.from_numpy(np.asarray(labels)), ks=(1,))
    return {key: float(metrics[key]) for key in RETRIEVAL_KEYS}


def evaluate_model(
    model: EmbeddingModel,
    image_set: ImageSet,
    batch_size: int = 256,
    features: bool = False,
    execution: Execution = EXACT,
) -> dict[str, float]:
    """Held-out retrieval metrics of ``model`` on ``image_set`` (every image queries all the others),
    embedded under ``execution`` (:func:`pairsim.models.embed`)."""
    embeddings = embed(model, image_set.images, batch_size, features, execution=execution)
    return retrieval_scores(embeddings, image_set.labels)
