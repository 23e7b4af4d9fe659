"""Contrastive loss (Hadsell et al., CVPR 2006) on similarities."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def contrastive_loss(sim: Tensor, pos: Tensor, neg: Tensor, pos_margin: float = 1.0, neg_margin: float = 0.0) -> Tensor:
    """Per-anchor contrastive loss: ``mean_i [pos_margin - s_p^i]_+ + mean_j [s_n^j - neg_margin]_+``.

    The hinge form of Hadsell et al. written on similarities (as PML's ``ContrastiveLoss``
    with ``CosineSimilarity``); with the defaults, positives are pulled to ``s_p = 1`` and
    negatives pushed to ``s_n <= 0``, the targets of Section 2 of Sun et al. Averaging each
    side within the anchor keeps the many negatives from drowning the few positives.

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        pos_margin: positive pairs are penalised while ``s_p < pos_margin``.
        neg_margin: negative pairs are penalised while ``s_n > neg_margin``.

    Returns:
        ``(B,)`` losses; an empty side contributes 0.

    Example:
        >>> sim = torch.tensor([[0.9, 0.5, 0.6, -0.1]])
        >>> pos, neg = torch.tensor([[True, True, False, False]]), torch.tensor([[False, False, True, True]])
        >>> round(contrastive_loss(sim, pos, neg, pos_margin=1.0, neg_margin=0.0).item(), 4)
        0.6
    """
    pos_hinge = F.relu(pos_margin - sim).masked_fill(~pos, 0.0)  # (B, M)
    neg_hinge = F.relu(sim - neg_margin).masked_fill(~neg, 0.0)  # (B, M)
    return _row_mean(pos_hinge, pos) + _row_mean(neg_hinge, neg)


def _row_mean(values: Tensor, mask: Tensor) -> Tensor:
    return values.sum(dim=1) / mask.sum(dim=1).clamp_min(1).to(values.dtype)
