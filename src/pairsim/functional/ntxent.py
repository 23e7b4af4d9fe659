"""NT-Xent / supervised InfoNCE (Chen et al., ICML 2020; Khosla et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.reductions import masked_logsumexp


def ntxent_loss(sim: Tensor, pos: Tensor, neg: Tensor, temperature: float = 0.07) -> Tensor:
    """Per-anchor supervised NT-Xent: each positive against the anchor's negatives.

    ``L = mean_i -log(exp(s_p^i / t) / (exp(s_p^i / t) + sum_j exp(s_n^j / t)))``: a softmax
    per positive whose denominator holds that positive and all negatives (not the other
    positives, unlike SupCon's ``L_out``), averaged over the anchor's positives.

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        temperature: softmax temperature ``t``.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> sim = torch.tensor([[0.9, 0.5, 0.6, -0.1]])
        >>> pos, neg = torch.tensor([[True, True, False, False]]), torch.tensor([[False, False, True, True]])
        >>> round(ntxent_loss(sim, pos, neg, temperature=0.5).item(), 4)
        0.7233
    """
    logits = sim / temperature  # (B, M)
    lse_neg = masked_logsumexp(logits, neg)  # (B,)
    per_pair = F.softplus(lse_neg[:, None] - logits)  # (B, M), -log softmax of each positive
    per_pair = torch.where(pos, per_pair, torch.zeros_like(per_pair))
    return per_pair.sum(dim=1) / pos.sum(dim=1).clamp_min(1).to(sim.dtype)
