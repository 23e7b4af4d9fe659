"""Softmax cross-entropy as a pair loss (Section 2 of Sun et al., CVPR 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.functional.reductions import masked_logsumexp


def softmax_loss(logits: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Per-anchor softmax cross-entropy on given logits: Eq. 1 with ``gamma = 1, m = 0``.

    ``L = log[1 + sum_j exp(l_n^j) sum_i exp(-l_p^i)]``; with a single positive (class
    proxies) this is ``-log(exp(l_p) / (exp(l_p) + sum_j exp(l_n^j)))``, the usual
    cross-entropy. NormFace, CosFace and ArcFace are this function on rescaled logits.
    Anchors without positives or negatives, and pairs in neither mask, are ignored.

    Args:
        logits: ``(B, M)`` scores; Section 2 uses inner products ``w_j^T x`` for Softmax loss.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> logits = torch.tensor([[2.0, 0.5, -1.0]])
        >>> pos, neg = torch.tensor([[True, False, False]]), torch.tensor([[False, True, True]])
        >>> round(softmax_loss(logits, pos, neg).item(), 4)
        0.2413
    """
    targets = _single_targets(pos, neg)
    if targets is not None:
        # Class proxies: one positive per row, every other entry negative. The fused
        # log-softmax gives the same value with a few passes over (B, C) instead of about
        # fifteen, which is what matters with a million classes. The check costs two passes
        # over the bool masks and, on a GPU, one host sync.
        return F.cross_entropy(logits, targets, reduction="none")
    return F.softplus(masked_logsumexp(logits, neg) + masked_logsumexp(-logits, pos))


def _single_targets(pos: Tensor, neg: Tensor) -> Tensor | None:
    """The column of each row's only positive, if every other entry is a negative; else ``None``."""
    if pos.shape[1] < 2 or not bool((pos.sum(dim=1) == 1).all()) or not bool((pos | neg).all()):
        return None
    return pos.nonzero()[:, 1]  # row-major order: one index per row, rows in order


def inner_product_proxy_pairs(embeddings: Tensor, labels: Tensor, proxies: Tensor) -> Pairs:
    """Class-level pairs scored by the inner product ``w_j^T x`` (no normalisation).

    Args:
        embeddings: ``(B, D)`` anchors.
        labels: ``(B,)`` class ids in ``[0, C)``.
        proxies: ``(C, D)`` class weight vectors.

    Returns:
        ``Pairs`` with ``sim (B, C)`` inner products; ``pos`` is one-hot at ``labels``.

    Example:
        >>> p = inner_product_proxy_pairs(torch.tensor([[2.0, 0.0]]), torch.tensor([1]), torch.eye(2))
        >>> p.sim.tolist(), p.pos.tolist()
        ([[2.0, 0.0]], [[False, True]])
    """
    sim = embeddings @ proxies.T  # (B, C)
    pos = torch.zeros_like(sim, dtype=torch.bool)
    pos[torch.arange(len(labels), device=labels.device), labels] = True
    return Pairs(sim, pos, ~pos)
