"""Loop reference for the Multi-Similarity loss (Wang et al., CVPR 2019, Eq. 7)."""

from __future__ import annotations

import torch
from tests.reference.similarity_lists import AnchorSims, mean_of_valid
from torch import Tensor


def multi_similarity_reference(anchors: list[AnchorSims], alpha: float, beta: float, base: float) -> Tensor:
    """Eq. 7 of Wang et al.: mean over valid anchors of the two soft-weighted terms."""
    losses = []
    for sims in anchors:
        pos_sum = sum(torch.exp(-alpha * (s - base)) for s in sims.pos)
        neg_sum = sum(torch.exp(beta * (s - base)) for s in sims.neg)
        losses.append(torch.log(1 + torch.as_tensor(pos_sum)) / alpha + torch.log(1 + torch.as_tensor(neg_sum)) / beta)
    return mean_of_valid(anchors, losses)
