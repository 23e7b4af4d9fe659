"""CosFace / AM-Softmax module (class-level only)."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.cosface import cosface_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import check_margin, check_positive
from pairsim.losses.margin_softmax import MarginSoftmaxLoss
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("cosface")
class CosFaceLoss(MarginSoftmaxLoss):
    """CosFace / AM-Softmax (Wang et al., CVPR 2018), Eq. 2 of Sun et al.

    ``L = -log(exp(gamma (s_p - m)) / (exp(gamma (s_p - m)) + sum_j exp(gamma s_n^j)))`` with
    cosine similarities to learnable class proxies. Loss: the mean over the batch, as PML's
    ``CosFaceLoss`` (whose ``W`` is the transpose of our ``proxies``, ``(D, C)``).

    Args:
        m: additive cosine margin, in ``[0, 1]``; the paper uses 0.35.
        gamma: scale factor, positive; the paper uses 64.
        num_classes: ``C``, required.
        embedding_dim: ``D``, required.
        fast_path: see :class:`MarginSoftmaxLoss` (default: the streamed path).
        block_size: classes per block of the fast path.

    Example:
        >>> loss = CosFaceLoss(m=0.35, gamma=64.0, num_classes=5, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    def __init__(
        self,
        m: float = 0.35,
        gamma: float = 64.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        fast_path: bool | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim, fast_path, block_size)
        self.m = check_margin("m", m)
        self.gamma = check_positive("gamma", gamma)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``m`` uniform in ``[0, 0.5]``, ``gamma`` log-uniform in ``[16, 1024]``, and the proxies' learning rate.

        Source: Circle loss paper, Section 4.5, which varies AM-Softmax's ``gamma`` from 32 to 1024; the
        CosFace setting ``m = 0.35, gamma = 64`` lies inside.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.m", 0.0, 0.5),
            FloatParam("loss.params.gamma", 16.0, 1024.0, log=True),
        )

    def decision_margin(self, s_n: Tensor, s_p: Tensor) -> Tensor:
        """The additive cosine margin's boundary ``s_n - s_p + m`` (Eq. 1 against proxies)."""
        return s_n - s_p + self.m

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return cosface_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, {super().extra_repr()}"
