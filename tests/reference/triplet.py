"""Loop references for the triplet loss (Eq. 3 of Sun et al.): batch hard and all triplets."""

from __future__ import annotations

import torch
from tests.reference.similarity_lists import AnchorSims, hinge, mean_of_valid
from torch import Tensor


def triplet_batch_hard_reference(anchors: list[AnchorSims], margin: float) -> Tensor:
    """Mean over valid anchors of ``[max_j s_n^j - min_i s_p^i + margin]_+``."""
    losses = []
    for sims in anchors:
        if not sims.valid:
            losses.append(torch.tensor(0.0, dtype=torch.float64))
            continue
        hardest_pos = sims.pos[0]
        for s in sims.pos[1:]:
            hardest_pos = s if s.item() < hardest_pos.item() else hardest_pos
        hardest_neg = sims.neg[0]
        for s in sims.neg[1:]:
            hardest_neg = s if s.item() > hardest_neg.item() else hardest_neg
        losses.append(hinge(hardest_neg - hardest_pos + margin))
    return mean_of_valid(anchors, losses)


def triplet_all_reference(anchors: list[AnchorSims], margin: float) -> Tensor:
    """Mean over every (anchor, positive, negative) triplet of ``[s_n - s_p + margin]_+``."""
    total = torch.tensor(0.0, dtype=torch.float64)
    count = 0
    for sims in anchors:
        for s_p in sims.pos:
            for s_n in sims.neg:
                total = total + hinge(s_n - s_p + margin)
                count += 1
    return total / max(count, 1)
