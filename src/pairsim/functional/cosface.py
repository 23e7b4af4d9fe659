"""CosFace / AM-Softmax (Wang et al., CVPR 2018; Wang et al., SPL 2018): an additive cosine margin."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.softmax import softmax_loss


def cosface_loss(sim: Tensor, pos: Tensor, neg: Tensor, m: float = 0.35, gamma: float = 64.0) -> Tensor:
    """Per-anchor CosFace (AM-Softmax) loss, Eq. 2 of Sun et al.

    ``L = -log(exp(gamma (s_p - m)) / (exp(gamma (s_p - m)) + sum_j exp(gamma s_n^j)))``, which
    Eq. 2 shows equals the unified loss of Eq. 1 against class proxies. Recommended:
    ``m = 0.35, gamma = 64``.

    Args:
        sim: ``(B, M)`` cosine similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        m: additive cosine margin subtracted from every within-class similarity.
        gamma: scale factor.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> sim = torch.tensor([[0.8, 0.1, -0.3]])
        >>> pos, neg = torch.tensor([[True, False, False]]), torch.tensor([[False, True, True]])
        >>> round(cosface_loss(sim, pos, neg, m=0.35, gamma=4.0).item(), 4)
        0.2596
    """
    logits = gamma * (sim - m * pos.to(sim.dtype))  # (B, M), margin on positives only
    return softmax_loss(logits, pos, neg)
