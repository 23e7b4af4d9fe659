"""Backbones and embedding heads built by name from a registry, model files, and batched inference."""

from pairsim.models import efficientnet, small_cnn  # noqa: F401  (registers the built-in models)
from pairsim.models.embedding import EmbeddingHead, EmbeddingModel, Preprocessing
from pairsim.models.execution import EXACT, CpuFeatures, Execution, probe_cpu, resolve_execution
from pairsim.models.files import (
    LoadedModel,
    load_embedding_model,
    load_model,
    model_fingerprint,
    model_spec,
    read_state,
    save_model_file,
    save_state,
)
from pairsim.models.inference import embed, inference_model, to_float
from pairsim.models.registry import create_model, list_models, register_model

__all__ = [
    "EXACT",
    "CpuFeatures",
    "EmbeddingHead",
    "EmbeddingModel",
    "Execution",
    "LoadedModel",
    "Preprocessing",
    "create_model",
    "embed",
    "inference_model",
    "list_models",
    "load_embedding_model",
    "load_model",
    "model_fingerprint",
    "model_spec",
    "probe_cpu",
    "read_state",
    "register_model",
    "resolve_execution",
    "save_model_file",
    "save_state",
    "to_float",
]
