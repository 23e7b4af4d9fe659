"""Cosine similarity between two sets of vectors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def cosine_similarity_matrix(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """All cosine similarities between the rows of ``x`` and the rows of ``y``.

    Args:
        x: ``(B, D)`` anchors.
        y: ``(M, D)`` references (samples or class proxies).
        eps: floor of the L2 norm, so that a zero vector gives similarity 0, not NaN.

    Returns:
        ``(B, M)`` similarities in ``[-1, 1]``.

    Example:
        >>> s = cosine_similarity_matrix(torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0], [-4.0, 3.0]]))
        >>> [round(v, 4) for v in s[0].tolist()]
        [1.0, 0.0]
    """
    if y is x:
        x_hat = F.normalize(x, dim=1, eps=eps)
        return x_hat @ x_hat.T  # (B, B)
    # Normalise the smaller side and scale the other's columns (rows) by its inverse norms: with a
    # million class proxies this avoids a normalised (M, D) copy and its backward, halving peak memory.
    if len(x) <= len(y):
        inv_norm = 1.0 / y.norm(dim=1).clamp_min(eps)  # (M,)
        return (F.normalize(x, dim=1, eps=eps) @ y.T) * inv_norm  # (B, M)
    inv_norm = 1.0 / x.norm(dim=1).clamp_min(eps)  # (B,)
    return (x @ F.normalize(y, dim=1, eps=eps).T) * inv_norm[:, None]  # (B, M)
