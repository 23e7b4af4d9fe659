"""Multi-Similarity loss (Wang et al., CVPR 2019), the pair-weighting part."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.reductions import masked_logsumexp


def multi_similarity_loss(
    sim: Tensor, pos: Tensor, neg: Tensor, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5
) -> Tensor:
    """Per-anchor Multi-Similarity loss, Eq. 7 of Wang et al.

    ``L = 1/alpha log[1 + sum_i exp(-alpha (s_p^i - base))] + 1/beta log[1 + sum_j exp(beta (s_n^j - base))]``.
    Recommended: ``alpha = 2, beta = 50, base (lambda) = 0.5``. The paper's pair mining step
    (keep ``s_n > min s_p - eps`` and ``s_p < max s_n + eps``) is a separate miner, as in PML.

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        alpha: scale of the positive term.
        beta: scale of the negative term.
        base: the similarity margin ``lambda``.

    Returns:
        ``(B,)`` losses; an empty side contributes 0.

    Example:
        >>> sim = torch.tensor([[0.9, 0.5, 0.6, -0.1]])
        >>> pos, neg = torch.tensor([[True, True, False, False]]), torch.tensor([[False, False, True, True]])
        >>> round(multi_similarity_loss(sim, pos, neg).item(), 4)
        0.548
    """
    pos_term = F.softplus(masked_logsumexp(-alpha * (sim - base), pos)) / alpha  # (B,)
    neg_term = F.softplus(masked_logsumexp(beta * (sim - base), neg)) / beta  # (B,)
    return pos_term + neg_term
