"""Unified loss module (Eq. 1), both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.functional.unified import unified_loss
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss


@register_loss("unified")
class UnifiedLoss(PairLoss):
    """The unified loss of Eq. 1 (Sun et al., CVPR 2020).

    Against class proxies it equals CosFace / AM-Softmax (Eq. 2); on the batch, ``L / gamma``
    tends to the hard-mining triplet loss (Eq. 3) as ``gamma`` grows.

    Args:
        m: margin, in ``[0, 1]``.
        gamma: scale factor, positive.
        num_classes: ``None`` for pair-wise labels; ``C`` for class proxies.
        embedding_dim: ``D``, required with ``num_classes``.

    Example:
        >>> loss = UnifiedLoss(m=0.35, gamma=64.0, num_classes=10, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 9])).dim()
        0
    """

    def __init__(
        self,
        m: float = 0.35,
        gamma: float = 64.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.m = check_margin("m", m)
        self.gamma = check_positive("gamma", gamma)

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return unified_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, {super().extra_repr()}"
