"""Backbones and embedding heads, built by name from a registry."""

from pairsim.models import efficientnet, small_cnn  # noqa: F401  (registers the built-in models)
from pairsim.models.embedding import EmbeddingHead, EmbeddingModel, Preprocessing
from pairsim.models.registry import create_model, list_models, register_model

__all__ = ["EmbeddingHead", "EmbeddingModel", "Preprocessing", "create_model", "list_models", "register_model"]
