"""Pair sources: where the within-class (s_p) and between-class (s_n) similarities come from.

Section 2 of the Circle Loss paper: with pair-wise labels, an anchor's s_p and s_n are its
similarities to the other samples of the batch; with class-level labels, they are its
similarities to learnable class proxies, exactly one of which is positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pairsim.functional.similarity import cosine_similarity_matrix


@dataclass(frozen=True)
class Pairs:
    """The similarities an anchor sees, with which of them are positive and negative.

    Attributes:
        sim: ``(B, M)`` similarity of anchor ``i`` to reference ``j``.
        pos: ``(B, M)`` bool, ``True`` where ``j`` is a within-class reference of ``i``.
        neg: ``(B, M)`` bool, ``True`` where ``j`` is a between-class reference of ``i``.
            ``pos & neg`` is always empty; a pair in neither (a self-pair) is ignored.
    """

    sim: Tensor
    pos: Tensor
    neg: Tensor

    @property
    def valid(self) -> Tensor:
        """``(B,)`` bool: anchors with at least one positive and one negative."""
        return self.pos.any(dim=1) & self.neg.any(dim=1)

    def transpose(self) -> Pairs:
        """The same pairs seen from the references (used by proxy-anchored losses)."""
        return Pairs(self.sim.T, self.pos.T, self.neg.T)


def label_masks(labels: Tensor, ref_labels: Tensor, exclude_self: bool) -> tuple[Tensor, Tensor]:
    """Positive and negative masks from integer labels.

    Args:
        labels: ``(B,)`` anchor labels.
        ref_labels: ``(M,)`` reference labels.
        exclude_self: the references are the anchors themselves (``M == B``, same order), so
            the diagonal is neither positive nor negative.

    Returns:
        ``(pos, neg)``, both ``(B, M)`` bool.
    """
    same = labels[:, None] == ref_labels[None, :]  # (B, M)
    neg = ~same
    if exclude_self:
        same = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same, neg


def batch_pairs(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
) -> Pairs:
    """Pairs from pair-wise labels: anchors against the batch (or against given references).

    Args:
        embeddings: ``(B, D)`` anchors.
        labels: ``(B,)`` integer labels.
        ref_embeddings: ``(M, D)`` references; ``None`` uses the anchors themselves and
            excludes self-pairs.
        ref_labels: ``(M,)`` labels of the references; required with ``ref_embeddings``.

    Returns:
        ``Pairs`` with cosine similarities ``(B, M)``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
        >>> p = batch_pairs(x, torch.tensor([0, 0, 1]))
        >>> p.pos.int().tolist(), p.neg.int().tolist()
        ([[0, 1, 0], [1, 0, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, 1], [1, 1, 0]])
    """
    if ref_embeddings is None:
        ref_embeddings, ref_labels, exclude_self = embeddings, labels, True
    else:
        if ref_labels is None:
            raise ValueError("ref_labels is required when ref_embeddings is given")
        exclude_self = False
    sim = cosine_similarity_matrix(embeddings, ref_embeddings)  # (B, M)
    pos, neg = label_masks(labels, ref_labels, exclude_self)
    return Pairs(sim, pos, neg)


def proxy_pairs(embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Pairs:
    """Pairs from class-level labels: anchors against class proxies, one positive each.

    Args:
        embeddings: ``(B, D)`` anchors.
        labels: ``(B,)`` class ids in ``[0, C)``.
        proxies: ``(C, D)`` class weight vectors ``w_j`` (Section 2: ``s = w^T x / |w||x|``).

    Returns:
        ``Pairs`` with ``sim (B, C)``; ``pos`` is one-hot at ``labels``.

    Example:
        >>> p = proxy_pairs(torch.eye(2), torch.tensor([1, 0]), torch.eye(3, 2))
        >>> p.pos.int().tolist()
        [[0, 1, 0], [1, 0, 0]]
    """
    sim = cosine_similarity_matrix(embeddings, proxies)  # (B, C)
    pos = torch.zeros_like(sim, dtype=torch.bool)
    pos[torch.arange(len(labels), device=labels.device), labels] = True
    return Pairs(sim, pos, ~pos)
