"""Proxy-Anchor loss (Kim et al., CVPR 2020): the proxies are the anchors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.reductions import masked_logsumexp, mean_over_valid


def proxy_anchor_terms(
    sim: Tensor, pos: Tensor, neg: Tensor, alpha: float = 32.0, delta: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Per-proxy positive and negative terms of Eq. 4 of Kim et al.

    ``pos_p = log[1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta))]`` and
    ``neg_p = log[1 + sum_{x in X_p-} exp(alpha (s(x, p) + delta))]``.

    Args:
        sim: ``(C, B)`` similarities seen from the proxies (``Pairs.transpose()``).
        pos: ``(C, B)`` bool, the batch samples of each proxy's class.
        neg: ``(C, B)`` bool, the other samples.
        alpha: scale factor.
        delta: margin.

    Returns:
        ``(pos_term, neg_term)``, both ``(C,)``; 0 where a proxy has no such samples.
    """
    pos_term = F.softplus(masked_logsumexp(-alpha * (sim - delta), pos))  # (C,)
    neg_term = F.softplus(masked_logsumexp(alpha * (sim + delta), neg))  # (C,)
    return pos_term, neg_term


def proxy_anchor_loss(sim: Tensor, pos: Tensor, neg: Tensor, alpha: float = 32.0, delta: float = 0.1) -> Tensor:
    """Proxy-Anchor loss of a batch, Eq. 4 of Kim et al., reduced as in the paper.

    ``L = 1/|P+| sum_{p in P+} pos_p + 1/|P| sum_{p in P} neg_p``, with ``P`` all ``C``
    proxies and ``P+`` those with at least one sample of their class in the batch.
    Recommended: ``alpha = 32, delta = 0.1``.

    Args:
        sim: ``(C, B)`` similarities seen from the proxies.
        pos: ``(C, B)`` bool within-class mask.
        neg: ``(C, B)`` bool between-class mask.
        alpha: scale factor.
        delta: margin.

    Returns:
        A scalar; 0 for an empty batch.

    Example:
        >>> sim = torch.tensor([[0.8, -0.2], [0.1, 0.7], [0.0, 0.3]])  # 3 proxies x 2 samples
        >>> pos = torch.tensor([[True, False], [False, True], [False, False]])
        >>> round(proxy_anchor_loss(sim, pos, ~pos).item(), 4)
        6.4139
    """
    pos_term, neg_term = proxy_anchor_terms(sim, pos, neg, alpha, delta)
    with_positives = pos.any(dim=1)  # (C,)
    return mean_over_valid(pos_term, with_positives) + neg_term.sum() / max(len(neg_term), 1)
