"""Loop references for the unified loss (Eq. 1), AM-Softmax / CosFace (Eq. 2), NormFace and the
hard-mining triplet loss (Eq. 3), each written from its own formula in the paper (float64)."""

from __future__ import annotations

import torch
from tests.reference.circle import AnchorPairs
from torch import Tensor


def unified_reference(anchors: list[AnchorPairs], m: float, gamma: float) -> Tensor:
    """Eq. 1, first line: ``log[1 + sum_i sum_j exp(gamma (s_n^j - s_p^i + m))]`` per anchor."""
    losses = []
    for a in anchors:
        if not a.valid:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        total = sum(torch.exp(gamma * (sn - sp + m)) for sp in a.s_p for sn in a.s_n)
        losses.append(torch.log(1 + torch.as_tensor(total)))
    return torch.stack(losses)


def cosface_reference(anchors: list[AnchorPairs], m: float, gamma: float) -> Tensor:
    """Eq. 2, second line: ``-log(e^{gamma (s_p - m)} / (e^{gamma (s_p - m)} + sum_j e^{gamma s_n^j}))``."""
    losses = []
    for a in anchors:
        (s_p,) = a.s_p
        target = torch.exp(gamma * (s_p - m))
        losses.append(-torch.log(target / (target + sum(torch.exp(gamma * sn) for sn in a.s_n))))
    return torch.stack(losses)


def normface_reference(anchors: list[AnchorPairs], gamma: float) -> Tensor:
    """NormFace: softmax cross-entropy on ``gamma`` times the cosine similarities."""
    losses = []
    for a in anchors:
        (s_p,) = a.s_p
        denominator = torch.exp(gamma * s_p) + sum(torch.exp(gamma * sn) for sn in a.s_n)
        losses.append(-(gamma * s_p - torch.log(denominator)))
    return torch.stack(losses)


def hard_triplet_reference(anchors: list[AnchorPairs], m: float) -> Tensor:
    """Eq. 3: ``max[s_n^j - s_p^i + m]_+`` over every (positive, negative) pair of an anchor."""
    losses = []
    for a in anchors:
        worst = max((float(sn - sp) + m for sp in a.s_p for sn in a.s_n), default=0.0)
        losses.append(torch.tensor(max(worst, 0.0), dtype=torch.float64))
    return torch.stack(losses)
