"""Triplet loss module, both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.functional.reductions import mean_over_valid
from pairsim.functional.triplet import TripletMining, triplet_loss
from pairsim.losses.base import PairLoss, check_margin
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space

_MINING = ("batch_hard", "all")


@register_loss("triplet")
class TripletLoss(PairLoss):
    """Triplet loss ``[s_n - s_p + margin]_+`` on cosine similarities (Eq. 3 of Sun et al.).

    Reductions:

    - ``mining="batch_hard"`` (Hermans et al., 2017): one triplet per anchor (hardest
      positive, hardest negative); the mean over anchors with a positive and a negative.
    - ``mining="all"``: the mean over all valid ``(anchor, positive, negative)`` triplets,
      inactive (zero-loss) triplets included.

    PML's ``TripletMarginLoss`` defaults to ``AvgNonZeroReducer``, which averages only the
    triplets with a positive loss (Hermans et al.'s "batch all != 0"); its value then jumps as
    triplets become inactive. Use ``reducer=MeanReducer()`` there to get this loss. With
    ``num_classes``, the references are the class proxies (one positive per anchor).

    Args:
        margin: margin on cosine similarity, in ``[0, 2]``; default 0.1, FaceNet's 0.2 on
            the squared Euclidean distance of unit vectors.
        mining: ``"batch_hard"`` or ``"all"``.
        num_classes: ``None`` for pair-wise labels; ``C`` for class proxies.
        embedding_dim: ``D``, required with ``num_classes``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> loss = TripletLoss(margin=0.1, mining="all")
        >>> x, y = torch.randn(8, 16, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> value = loss(x, y)
        >>> value.backward()
        >>> value.item() > 0, x.grad.shape
        (True, torch.Size([8, 16]))
    """

    def __init__(
        self,
        margin: float = 0.1,
        mining: TripletMining = "batch_hard",
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.margin = check_margin("margin", margin, 0.0, 2.0)
        if mining not in _MINING:
            raise ValueError(f"mining must be one of {_MINING}, got {mining!r}")
        self.mining: TripletMining = mining

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``margin`` uniform in ``[0, 0.5]`` on cosine similarity (``mining`` stays as configured).

        Source: FaceNet's 0.2 on the squared distance of unit vectors is 0.1 on cosine similarity (the
        default); the range runs to five times that.
        """
        return loss_search_space(cls, class_level, FloatParam("loss.params.margin", 0.0, 0.5))

    def decision_margin(self, s_n: Tensor, s_p: Tensor) -> Tensor:
        """The hinge's boundary ``s_n - s_p + margin``: negative where the triplet is satisfied."""
        return s_n - s_p + self.margin

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return triplet_loss(pairs.sim, pairs.pos, pairs.neg, self.margin, self.mining)

    def reduce(self, pairs: Pairs) -> Tensor:
        """Mean over anchors (batch hard) or over triplets (all); exactly 0 when there are none."""
        per_anchor = self.per_anchor(pairs)
        if self.mining == "batch_hard":
            return mean_over_valid(per_anchor, pairs.valid)
        # per_anchor holds each anchor's mean over its K x L triplets: weight it back by K x L.
        triplets = (pairs.pos.sum(dim=1) * pairs.neg.sum(dim=1)).to(per_anchor.dtype)  # (B,)
        return (per_anchor * triplets).sum() / triplets.sum().clamp_min(1)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, {super().extra_repr()}"
