"""NT-Xent (supervised InfoNCE) module, both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.ntxent import ntxent_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss, check_positive
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("ntxent")
class NTXentLoss(PairLoss):
    """Supervised NT-Xent / InfoNCE (Chen et al., 2020; Khosla et al., 2020) on cosine similarities.

    For each positive pair, ``-log(exp(s_p / t) / (exp(s_p / t) + sum_n exp(s_n / t)))`` over
    the anchor's negatives; averaged over the anchor's positives, then over anchors with at
    least one positive and one negative (SupCon's ``1/|P(i)|`` then mean over anchors).
    PML's ``NTXentLoss`` (``MeanReducer``) averages over all positive pairs instead, so that
    anchors with more positives weigh more, and keeps pairs of anchors without negatives
    (loss 0) in the count; the two agree on P x K batches. Memory is ``O(B x M)`` (PML's is
    ``O(pos pairs x neg pairs)``).

    Args:
        temperature: ``t``, positive; 0.07 as in SupCon and PML.
        num_classes: ``None`` for pair-wise labels; ``C`` for class proxies.
        embedding_dim: ``D``, required with ``num_classes``.

    Example:
        >>> loss = NTXentLoss(temperature=0.5)
        >>> x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> round(loss(x, torch.tensor([0, 0, 1])).item(), 4)
        0.5881
    """

    def __init__(
        self, temperature: float = 0.07, num_classes: int | None = None, embedding_dim: int | None = None
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.temperature = check_positive("temperature", temperature)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``temperature`` log-uniform in ``[0.01, 1]``.

        Source: SupCon's and PML's 0.07 and SimCLR's ablated 0.05 to 1.0 lie inside.
        """
        return loss_search_space(cls, class_level, FloatParam("loss.params.temperature", 0.01, 1.0, log=True))

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return ntxent_loss(pairs.sim, pairs.pos, pairs.neg, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, {super().extra_repr()}"
