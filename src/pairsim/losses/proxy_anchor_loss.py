"""Proxy-Anchor module (class-level only)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.functional.proxy_anchor import proxy_anchor_loss
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("proxy_anchor")
class ProxyAnchorLoss(PairLoss):
    """Proxy-Anchor loss (Kim et al., CVPR 2020, Eq. 4): the proxies are the anchors.

    Each proxy pulls the batch samples of its class and pushes all others:
    ``L = 1/|P+| sum_{p in P+} log[1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta))]
    + 1/|P| sum_{p in P} log[1 + sum_{x in X_p-} exp(alpha (s(x, p) + delta))]``, where ``P``
    holds all proxies and ``P+`` those whose class appears in the batch. This is its own
    reduction (over proxies, not over anchors), the paper's and PML's (``DivisorReducer``).
    A one-class batch still has a loss here: its proxy pulls and the other proxies push.

    Args:
        alpha: scale factor, positive; the paper uses 32.
        delta: margin, in ``[0, 1]``; the paper uses 0.1.
        num_classes: ``C``, required.
        embedding_dim: ``D``, required.

    Example:
        >>> loss = ProxyAnchorLoss(num_classes=5, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    supports_pair_wise: ClassVar[bool] = False

    def __init__(
        self,
        alpha: float = 32.0,
        delta: float = 0.1,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.alpha = check_positive("alpha", alpha)
        self.delta = check_margin("delta", delta)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``alpha`` log-uniform in ``[4, 128]``, ``delta`` uniform in ``[0, 0.4]``, and the proxies' learning rate.

        Source: around the paper's ``alpha = 32, delta = 0.1``.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.alpha", 4.0, 128.0, log=True),
            FloatParam("loss.params.delta", 0.0, 0.4),
        )

    def reduce(self, pairs: Pairs) -> Tensor:
        """Eq. 4 on the pairs seen from the proxies, ``(C, B)``."""
        by_proxy = pairs.transpose()
        return proxy_anchor_loss(by_proxy.sim, by_proxy.pos, by_proxy.neg, self.alpha, self.delta)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, delta={self.delta}, {super().extra_repr()}"
