"""ArcFace module (class-level only)."""

from __future__ import annotations

import math
from typing import ClassVar

from torch import Tensor

from pairsim.functional.arcface import arcface_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss


@register_loss("arcface")
class ArcFaceLoss(PairLoss):
    """ArcFace (Deng et al., CVPR 2019): additive angular margin ``cos(theta_p + m)``.

    Where ``theta_p + m > pi`` the target logit is ``cos(theta_p) - m sin(m)`` instead, the
    InsightFace rule that keeps it decreasing in ``theta_p`` (see
    :func:`pairsim.functional.arcface.arcface_margin`). Loss: the mean over the batch, as
    PML's ``ArcFaceLoss``, whose ``margin`` is in degrees (28.6 = 0.5 rad) and whose ``W`` is
    the transpose of our ``proxies``.

    Args:
        m: angular margin in radians, in ``[0, pi / 2]``; the paper uses 0.5.
        gamma: scale factor, positive; the paper uses 64.
        num_classes: ``C``, required.
        embedding_dim: ``D``, required.

    Example:
        >>> loss = ArcFaceLoss(m=0.5, gamma=64.0, num_classes=5, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    supports_pair_wise: ClassVar[bool] = False

    def __init__(
        self,
        m: float = 0.5,
        gamma: float = 64.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.m = check_margin("m", m, 0.0, math.pi / 2)
        self.gamma = check_positive("gamma", gamma)

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return arcface_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, {super().extra_repr()}"
