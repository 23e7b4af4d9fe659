"""Loop reference for the contrastive loss (Hadsell et al.) on similarities."""

from __future__ import annotations

from tests.reference.similarity_lists import AnchorSims, hinge, mean_of_valid
from torch import Tensor


def contrastive_reference(anchors: list[AnchorSims], pos_margin: float, neg_margin: float) -> Tensor:
    """Mean over valid anchors of ``mean_i [pos_margin - s_p^i]_+ + mean_j [s_n^j - neg_margin]_+``."""
    losses = []
    for sims in anchors:
        pos_part = sum(hinge(pos_margin - s) for s in sims.pos) / max(len(sims.pos), 1)
        neg_part = sum(hinge(s - neg_margin) for s in sims.neg) / max(len(sims.neg), 1)
        losses.append(pos_part + neg_part)
    return mean_of_valid(anchors, losses)  # type: ignore[arg-type]
