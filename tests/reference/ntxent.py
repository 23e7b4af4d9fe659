"""Loop reference for supervised NT-Xent: each positive against the anchor's negatives."""

from __future__ import annotations

import torch
from tests.reference.similarity_lists import AnchorSims, mean_of_valid
from torch import Tensor


def ntxent_reference(anchors: list[AnchorSims], temperature: float) -> Tensor:
    """Mean over valid anchors of the mean over positives of ``-log softmax`` against the negatives."""
    losses = []
    for sims in anchors:
        per_positive = []
        for s_p in sims.pos:
            numerator = torch.exp(s_p / temperature)
            denominator = numerator
            for s_n in sims.neg:
                denominator = denominator + torch.exp(s_n / temperature)
            per_positive.append(-torch.log(numerator / denominator))
        losses.append(sum(per_positive) / max(len(per_positive), 1))
    return mean_of_valid(anchors, losses)  # type: ignore[arg-type]
