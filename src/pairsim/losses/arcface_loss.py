"""ArcFace module (class-level only)."""

from __future__ import annotations

import math

from torch import Tensor

from pairsim.functional.arcface import arcface_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import check_margin, check_positive
from pairsim.losses.margin_softmax import MarginSoftmaxLoss
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("arcface")
class ArcFaceLoss(MarginSoftmaxLoss):
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
        fast_path: see :class:`MarginSoftmaxLoss` (default: the streamed path).
        block_size: classes per block of the fast path.

    Example:
        >>> loss = ArcFaceLoss(m=0.5, gamma=64.0, num_classes=5, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    margin_kind = "arcface"

    def __init__(
        self,
        m: float = 0.5,
        gamma: float = 64.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        fast_path: bool | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim, fast_path, block_size)
        self.m = check_margin("m", m, 0.0, math.pi / 2)
        self.gamma = check_positive("gamma", gamma)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``m`` uniform in ``[0, 0.8]`` rad, ``gamma`` log-uniform in ``[16, 128]``, and the proxies' learning rate.

        Source: Circle loss paper, Section 4.5, which sets ArcFace's ``gamma`` to 32, 64 and 128 only, "as
        it becomes unstable with larger gamma"; the ArcFace setting ``m = 0.5, gamma = 64`` lies inside.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.m", 0.0, 0.8),
            FloatParam("loss.params.gamma", 16.0, 128.0, log=True),
        )

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return arcface_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, {super().extra_repr()}"
