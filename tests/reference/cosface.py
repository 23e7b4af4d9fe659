"""Loop reference for CosFace / AM-Softmax, Eq. 2 of Sun et al."""

from __future__ import annotations

from tests.reference.similarity_lists import AnchorSims
from tests.reference.softmax import margin_softmax
from torch import Tensor


def cosface_reference(anchors: list[AnchorSims], m: float, gamma: float) -> Tensor:
    return margin_softmax(anchors, lambda s: s - m, gamma)
