"""The unified loss of Eq. 1 (Sun et al., CVPR 2020)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.reductions import masked_logsumexp


def unified_loss(sim: Tensor, pos: Tensor, neg: Tensor, m: float = 0.35, gamma: float = 64.0) -> Tensor:
    """Per-anchor unified loss, Eq. 1.

    ``L = log[1 + sum_j exp(gamma (s_n^j + m)) sum_i exp(-gamma s_p^i)]``. Against class
    proxies it is CosFace / AM-Softmax (Eq. 2); ``L / gamma`` tends to the hard-mining triplet
    loss (Eq. 3) as ``gamma`` grows.

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        m: margin.
        gamma: scale factor.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> sim = torch.tensor([[0.9, 0.1]])
        >>> round(unified_loss(sim, sim > 0.5, sim < 0.5, m=0.0, gamma=1.0).item(), 4)
        0.3711
    """
    return F.softplus(masked_logsumexp(gamma * (sim + m), neg) + masked_logsumexp(-gamma * sim, pos))
