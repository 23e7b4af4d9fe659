"""Embedding a whole image set and its held-out retrieval metrics."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pairsim.data.base import ImageSet
from pairsim.data.transforms import to_float
from pairsim.models import EmbeddingModel

RETRIEVAL_KEYS = ("precision_at_1", "r_precision", "map_at_r")


@torch.no_grad()
def embed_images(model: EmbeddingModel, images: np.ndarray, batch_size: int = 256, features: bool = False) -> Tensor:
    """Embed ``(N, C, H, W)`` uint8 images in eval mode, batch by batch (the model's mode is restored).

    Args:
        model: the embedding model.
        images: ``(N, C, H, W)`` uint8.
        batch_size: images per forward pass.
        features: return the ``(N, F)`` L2-normalised backbone features (the frozen-features
            baseline) instead of the ``(N, D)`` embeddings.

    Returns:
        ``(N, D)`` (or ``(N, F)``) float32 unit vectors, on the CPU wherever the model is.

    Example:
        >>> from pairsim.models import create_model
        >>> model = create_model("small-cnn", embedding_dim=8, in_channels=1)
        >>> embed_images(model, np.zeros((5, 1, 16, 16), np.uint8), batch_size=2).shape
        torch.Size([5, 8])
    """
    was_training = model.training
    model.eval()
    forward: Callable[[Tensor], Tensor] = model.features if features else model
    device = next(model.parameters()).device  # batches go where the model is; embeddings come back to the CPU
    try:
        chunks = []
        for start in range(0, len(images), batch_size):
            x = to_float(torch.from_numpy(images[start : start + batch_size]).to(device))
            chunks.append(torch.nn.functional.normalize(forward(x).float(), dim=1).cpu())
        dim = model.num_features if features else model.embedding_dim
        return torch.cat(chunks) if chunks else torch.empty(0, dim)
    finally:
        model.train(was_training)


def retrieval_scores(embeddings: Tensor, labels: np.ndarray) -> dict[str, float]:
    """Leave-one-out precision@1, R-precision and MAP@R of a labelled embedding set.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> retrieval_scores(z, np.array([0, 0, 1, 1]))["precision_at_1"]
        1.0
    """
    from pairsim.evaluation import retrieval_metrics

    metrics = retrieval_metrics(embeddings, torch.from_numpy(np.asarray(labels)), ks=(1,))
    return {key: float(metrics[key]) for key in RETRIEVAL_KEYS}


def evaluate_model(
    model: EmbeddingModel, image_set: ImageSet, batch_size: int = 256, features: bool = False
) -> dict[str, float]:
    """Held-out retrieval metrics of ``model`` on ``image_set`` (every image queries all the others)."""
    return retrieval_scores(embed_images(model, image_set.images, batch_size, features), image_set.labels)
