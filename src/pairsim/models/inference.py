"""Batched inference: uint8 images to unit embeddings with any :class:`EmbeddingModel`, in eval mode."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pairsim.models.batchnorm_folding import fold_batchnorm
from pairsim.models.embedding import EmbeddingModel
from pairsim.models.execution import EXACT, Execution


def to_float(images: Tensor) -> Tensor:
    """``(N, C, H, W)`` uint8 to float32 in ``[0, 1]``, what an :class:`EmbeddingModel` takes.

    Example:
        >>> to_float(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).tolist()
        [[[[0.0, 1.0]]]]
    """
    # Standard strides whatever the input's: numpy views of (N, 1, H, W) data can carry strides that torch reads
    # as channels-last, and the convolutions' results (last bits) depend on the layout they are given.
    return images.to(dtype=torch.float32, memory_format=torch.contiguous_format).div_(255.0)


#: The attribute that marks a copy made by :func:`inference_model` with the execution it was made for.
PREPARED_FOR = "_pairsim_prepared_for"


def inference_model(model: EmbeddingModel, execution: Execution, fold: bool = True) -> EmbeddingModel:
    """A copy of ``model`` prepared to embed under ``execution``: eval mode, BatchNorm folded (``fold``),
    weights in the execution's layout, compiled when it asks; ``model`` itself when ``execution`` is exact.

    Prepare once and pass the result to :func:`embed` with the same ``execution`` when embedding many
    times (a service): a compiled copy compiles again each time it is made.

    Example:
        >>> from pairsim.models import create_model
        >>> model = create_model("small-cnn", embedding_dim=8, in_channels=1)
        >>> fast = inference_model(model, Execution("bf16", channels_last=True))
        >>> fast is model, fast.training
        (False, False)
    """
    if execution.exact:
        return model
    side = model.preprocessing.image_size or 32
    device = next(model.parameters()).device
    example = torch.rand(2, model.preprocessing.in_channels, side, side, device=device)
    prepared = fold_batchnorm(model, example) if fold else copy.deepcopy(model).eval()
    assert isinstance(prepared, EmbeddingModel)
    execution.place(prepared)
    if execution.compile:
        prepared.compile()  # in place: the module keeps its type and attributes
    setattr(prepared, PREPARED_FOR, execution)
    return prepared


@torch.no_grad()
def embed(
    model: EmbeddingModel,
    images: np.ndarray,
    batch_size: int = 256,
    features: bool = False,
    execution: Execution = EXACT,
) -> Tensor:
    """Embed ``(N, C, H, W)`` uint8 images in eval mode, batch by batch (the model's mode is restored).

    Args:
        model: the embedding model.
        images: ``(N, C, H, W)`` uint8.
        batch_size: images per forward pass.
        features: return the ``(N, F)`` L2-normalised backbone features (the frozen-features
            baseline) instead of the ``(N, D)`` embeddings.
        execution: precision and layout (default: the exact fp32 path). Under bf16 the model runs in
            autocast and its output is normalised in float32; for a model not yet prepared
            (:func:`inference_model`), a prepared copy is made for this call.

    Returns:
        ``(N, D)`` (or ``(N, F)``) float32 unit vectors, on the CPU wherever the model is.

    Raises:
        ValueError: ``batch_size < 1``.

    Example:
        >>> from pairsim.models import create_model
        >>> model = create_model("small-cnn", embedding_dim=8, in_channels=1)
        >>> embed(model, np.zeros((5, 1, 16, 16), np.uint8), batch_size=2).shape
        torch.Size([5, 8])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    prepared = execution.exact or getattr(model, PREPARED_FOR, None) == execution
    runner = model if prepared else inference_model(model, execution)
    forward: Callable[[Tensor], Tensor] = runner.features if features else runner
    device = next(model.parameters()).device  # batches go where the model is; embeddings come back to the CPU
    try:
        chunks = []
        for start in range(0, len(images), batch_size):
            x = to_float(torch.from_numpy(images[start : start + batch_size]).to(device))  # (b, C, H, W)
            with execution.autocast(device):
                out = forward(execution.layout(x))
            chunks.append(torch.nn.functional.normalize(out.float(), dim=1).cpu())  # (b, D)
        dim = model.num_features if features else model.embedding_dim
        return torch.cat(chunks) if chunks else torch.empty(0, dim)
    finally:
        model.train(was_training)
