"""Model files: an embedding model saved with what rebuilds it, loaded by anything that embeds.

A model file is a ``torch.save`` dict with at least ``"model_spec"`` (registry name, embedding size,
preprocessing) and ``"model"`` (the state dict). Trainer checkpoints (``last.pt``, ``best.pt``, a
torchrun summary) are model files with more keys; an index keeps its own ``model.pt``. They are
loaded here, so the index and the service embed without the trainer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pairsim._io import atomic_write
from pairsim.models.embedding import EmbeddingModel, Preprocessing
from pairsim.models.registry import create_model

#: What every model file holds.
MODEL_KEYS = ("model_spec", "model")


@dataclass(frozen=True)
class LoadedModel:
    """An embedding model (in eval mode) with what identifies it.

    Attributes:
        model: the model.
        preprocessing: its input convention.
        fingerprint: :func:`model_fingerprint` of its spec and weights.
        spec: :func:`model_spec` as saved.
    """

    model: EmbeddingModel
    preprocessing: Preprocessing
    fingerprint: str
    spec: dict[str, Any]


def model_spec(model_name: str, model: EmbeddingModel) -> dict[str, Any]:
    """What :func:`load_model` needs to rebuild ``model``: its registry name, size and preprocessing.

    Example:
        >>> from pairsim.models import create_model
        >>> model_spec("small-cnn", create_model("small-cnn", 8, 1))["embedding_dim"]
        8
    """
    return {
        "name": model_name,
        "embedding_dim": model.embedding_dim,
        "preprocessing": dataclasses.asdict(model.preprocessing),
    }


def model_fingerprint(spec: dict[str, Any], state_dict: dict[str, Any]) -> str:
    """SHA-256 over a model's spec (name, dim, preprocessing) and every weight (name, dtype, shape, bytes).

    Two checkpoints of the same weights (``best.pt`` and ``last.pt`` after the last improvement) share it;
    any change of a weight or of the preprocessing changes it.
    """
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (see :func:`pairsim._io.atomic_write`)."""
    with atomic_write(path) as f:
        torch.save(state, f)


def read_state(path: str | Path) -> dict[str, Any]:
    """The dict saved by :func:`save_state` (tensors on the CPU).

    Checkpoints hold RNG states and plain config data besides tensors, so they are read with
    ``weights_only=False``: load only checkpoints you trust, as with any pickle.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a ``torch.save`` dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, AttributeError, ImportError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (torch.load: {reason})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (it holds a {type(state).__name__})")
    return state


def save_model_file(state: dict[str, Any], path: str | Path) -> None:
    """Write the model part (``model_spec`` and ``model``) of a checkpoint ``state`` as a model file."""
    save_state({key: state[key] for key in MODEL_KEYS}, path)


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild the embedding model of a model file or trainer checkpoint, in eval mode, with its fingerprint.

    Args:
        path: a ``last.pt`` / ``best.pt`` written by the trainer, or an index's ``model.pt``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a model file (no ``model_spec`` / ``model``), or weights that do not fit the spec.
    """
    state = read_state(path)
    missing = [key for key in MODEL_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (no {' / '.join(missing)})")
    spec, weights = state["model_spec"], state["model"]
    prep = Preprocessing(**spec["preprocessing"])
    # pretrained=False: the file has every weight, so the ImageNet file is not read again.
    model = create_model(spec["name"], spec["embedding_dim"], prep.in_channels, pretrained=False)
    model.preprocessing = prep
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: the weights do not fit model {spec['name']!r} ({str(error).splitlines()[0]})"
        ) from None
    return LoadedModel(model.eval(), prep, model_fingerprint(spec, weights), spec)


def load_embedding_model(path: str | Path) -> tuple[EmbeddingModel, Preprocessing]:
    """``(model, preprocessing)`` of a model file or trainer checkpoint (see :func:`load_model`).

    The model maps ``(N, in_channels, H, W)`` float images in ``[0, 1]`` (``H = W =
    preprocessing.image_size``) to ``(N, D)`` unit embeddings.
    """
    loaded = load_model(path)
    return loaded.model, loaded.preprocessing
