"""Checkpoints: written atomically, read back for resuming or as an embedding model."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from pairsim.models import EmbeddingModel, Preprocessing, create_model


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename over ``path``.

    A reader (or a run killed mid-write) therefore sees either the old file or the new one, never half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved by :func:`save_atomic` (tensors on the CPU).

    Checkpoints hold RNG states and plain config data besides tensors, so they are read with
    ``weights_only=False``: load only checkpoints you trust, as with any pickle.
    """
    return dict(torch.load(path, map_location="cpu", weights_only=False))


def model_spec(model_name: str, model: EmbeddingModel) -> dict[str, Any]:
    """What :func:`load_embedding_model` needs to rebuild ``model`` without its training config."""
    return {
        "name": model_name,
        "embedding_dim": model.embedding_dim,
        "preprocessing": dataclasses.asdict(model.preprocessing),
    }


def load_embedding_model(path: str | Path) -> tuple[EmbeddingModel, Preprocessing]:
    """Rebuild a trained embedding model from a training checkpoint, in eval mode.

    Args:
        path: a ``last.pt`` or ``best.pt`` written by the trainer.

    Returns:
        ``(model, preprocessing)``: the model maps ``(N, in_channels, H, W)`` float images in ``[0, 1]``
        (``H = W = preprocessing.image_size``) to ``(N, D)`` unit embeddings.
    """
    state = load_checkpoint(path)
    spec = state["model_spec"]
    prep = Preprocessing(**spec["preprocessing"])
    # pretrained=False: the checkpoint has every weight, so the ImageNet file is not read again.
    model = create_model(spec["name"], spec["embedding_dim"], prep.in_channels, pretrained=False)
    model.preprocessing = prep
    model.load_state_dict(state["model"])
    return model.eval(), prep
