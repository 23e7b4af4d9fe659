"""Unified loss module (Eq. 1), both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.functional.unified import unified_loss
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


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

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``m`` uniform in ``[0, 0.5]``, ``gamma`` log-uniform in ``[16, 1024]``, as for Circle loss.

        Source: Circle loss paper, Section 4.5, which varies ``gamma`` of AM-Softmax (this loss against
        proxies) from 32 to 1024; the AM-Softmax setting ``m = 0.35, gamma = 64`` lies inside.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.m", 0.0, 0.5),
            FloatParam("loss.params.gamma", 16.0, 1024.0, log=True),
        )

    def decision_margin(self, s_n: Tensor, s_p: Tensor) -> Tensor:
        """Eq. 1's boundary ``s_n - s_p + m``: negative on the side the loss drives pairs to."""
        return s_n - s_p + self.m

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return unified_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, {super().extra_repr()}"
