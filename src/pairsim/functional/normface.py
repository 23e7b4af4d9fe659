"""NormFace (Wang et al., ACM MM 2017): softmax on scaled cosine similarities."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.softmax import softmax_loss


def normface_loss(sim: Tensor, pos: Tensor, neg: Tensor, gamma: float = 64.0) -> Tensor:
    """Per-anchor NormFace loss: Eq. 2 of Sun et al. with ``m = 0``.

    ``L = -log(exp(gamma s_p) / (exp(gamma s_p) + sum_j exp(gamma s_n^j)))``, generalised to
    many positives as Eq. 1 with ``m = 0``.

    Args:
        sim: ``(B, M)`` cosine similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        gamma: scale factor (the inverse softmax temperature).

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> sim = torch.tensor([[0.8, 0.1, -0.3]])
        >>> pos, neg = torch.tensor([[True, False, False]]), torch.tensor([[False, True, True]])
        >>> round(normface_loss(sim, pos, neg, gamma=4.0).item(), 4)
        0.0705
    """
    return softmax_loss(gamma * sim, pos, neg)
