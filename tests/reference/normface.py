"""Loop reference for NormFace: Eq. 2 of Sun et al. with m = 0."""

from __future__ import annotations

from tests.reference.similarity_lists import AnchorSims
from tests.reference.softmax import margin_softmax
from torch import Tensor


def normface_reference(anchors: list[AnchorSims], gamma: float) -> Tensor:
    return margin_softmax(anchors, lambda s: s, gamma)
