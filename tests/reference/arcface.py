"""Loop reference for ArcFace (Deng et al., CVPR 2019): target logit cos(theta + m)."""

from __future__ import annotations

import math

import torch
from tests.reference.similarity_lists import AnchorSims
from tests.reference.softmax import margin_softmax
from torch import Tensor


def arcface_reference(anchors: list[AnchorSims], m: float, gamma: float) -> Tensor:
    def target(s: Tensor) -> Tensor:
        theta = torch.acos(s)
        if theta.item() + m <= math.pi:
            return torch.cos(theta + m)
        return torch.cos(theta) - m * math.sin(m)  # past pi: the InsightFace linear continuation

    return margin_softmax(anchors, target, gamma)
