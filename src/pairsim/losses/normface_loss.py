"""NormFace module (class-level only)."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.normface import normface_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import check_positive
from pairsim.losses.margin_softmax import MarginSoftmaxLoss
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("normface")
class NormFaceLoss(MarginSoftmaxLoss):
    """NormFace (Wang et al., ACM MM 2017): softmax on ``gamma`` times cosine similarities.

    Eq. 2 of Sun et al. with ``m = 0``. Loss: the mean over the batch. The default
    ``gamma = 64`` matches CosFace/ArcFace, so that ``CosFaceLoss(m=0)`` is this loss; PML's
    ``NormalizedSoftmaxLoss`` defaults to ``temperature = 0.05``, i.e. ``gamma = 20``.

    Args:
        gamma: scale factor (inverse temperature), positive.
        num_classes: ``C``, required.
        embedding_dim: ``D``, required.
        fast_path: see :class:`MarginSoftmaxLoss` (default: the streamed path).
        block_size: classes per block of the fast path.

    Example:
        >>> loss = NormFaceLoss(gamma=32.0, num_classes=5, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    m = 0.0  # the streamed path's CosFace margin

    def __init__(
        self,
        gamma: float = 64.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        fast_path: bool | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim, fast_path, block_size)
        self.gamma = check_positive("gamma", gamma)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``gamma`` log-uniform in ``[8, 128]``, and the proxies' learning rate.

        Source: the defaults it spans, PML's ``NormalizedSoftmaxLoss`` (``temperature = 0.05``: ``gamma = 20``)
        and the CosFace / ArcFace ``gamma = 64``.
        """
        return loss_search_space(cls, class_level, FloatParam("loss.params.gamma", 8.0, 128.0, log=True))

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return normface_loss(pairs.sim, pairs.pos, pairs.neg, self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"
