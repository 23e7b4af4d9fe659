"""Input checks shared by every loss: bad input fails loudly, naming the problem."""

from __future__ import annotations

import torch
from torch import Tensor


def check_loss_inputs(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    num_classes: int | None = None,
) -> None:
    """Validate the arguments of a loss's ``forward``.

    Args:
        embeddings: expected ``(B, D)`` floating point, finite.
        labels: expected ``(B,)`` integer.
        ref_embeddings: expected ``(M, D)`` with the dtype of ``embeddings``, finite.
        ref_labels: expected ``(M,)`` integer; required with ``ref_embeddings``.
        num_classes: with class proxies, every label must lie in ``[0, num_classes)``.

    Raises:
        ValueError: naming the first problem found.
    """
    _check_matrix("embeddings", embeddings)
    _check_labels("labels", labels, len(embeddings))
    if ref_embeddings is None:
        if ref_labels is not None:
            raise ValueError("ref_labels was given without ref_embeddings")
    else:
        if num_classes is not None:
            raise ValueError("ref_embeddings are for the pair-wise paradigm; this loss scores against class proxies")
        _check_matrix("ref_embeddings", ref_embeddings)
        if ref_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"ref_embeddings has dimension {ref_embeddings.shape[1]}, embeddings has {embeddings.shape[1]}"
            )
        if ref_embeddings.dtype != embeddings.dtype:
            raise ValueError(f"ref_embeddings has dtype {ref_embeddings.dtype}, embeddings has {embeddings.dtype}")
        if ref_labels is None:
            raise ValueError("ref_labels is required when ref_embeddings is given")
        _check_labels("ref_labels", ref_labels, len(ref_embeddings))
    if num_classes is not None and labels.numel() > 0:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"labels must lie in [0, {num_classes}); found class id {bad}")


def _check_matrix(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.numel() > 0 and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name} contains NaN or infinite values (first in row {bad})")


def _check_labels(name: str, labels: Tensor, expected_len: int) -> None:
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if len(labels) != expected_len:
        raise ValueError(f"{name} has length {len(labels)} but there are {expected_len} embeddings")
