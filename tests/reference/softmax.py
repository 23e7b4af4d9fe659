"""Loop reference for Softmax loss (Section 2 of Sun et al.), and the margin-softmax form it shares
with NormFace, CosFace and ArcFace."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tests.reference.similarity_lists import AnchorSims, mean_of_valid
from torch import Tensor


def margin_softmax(anchors: list[AnchorSims], target: Callable[[Tensor], Tensor], gamma: float) -> Tensor:
    """``mean_i -log(exp(gamma t(s_p)) / (exp(gamma t(s_p)) + sum_j exp(gamma s_n^j)))``, one s_p per anchor."""
    losses = []
    for sims in anchors:
        if not sims.valid:
            losses.append(torch.tensor(0.0, dtype=torch.float64))
            continue
        assert len(sims.pos) == 1, "class-level: exactly one positive proxy"
        numerator = torch.exp(gamma * target(sims.pos[0]))
        denominator = numerator
        for s_n in sims.neg:
            denominator = denominator + torch.exp(gamma * s_n)
        losses.append(-torch.log(numerator / denominator))
    return mean_of_valid(anchors, losses)


def softmax_reference(anchors: list[AnchorSims]) -> Tensor:
    """Softmax loss: ``gamma = 1``, ``m = 0``, on inner products (``proxy_sims(..., use_inner=True)``)."""
    return margin_softmax(anchors, lambda s: s, 1.0)
