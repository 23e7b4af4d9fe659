"""Contrastive loss module, both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.contrastive import contrastive_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss, check_margin
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("contrastive")
class ContrastiveLoss(PairLoss):
    """Contrastive loss (Hadsell et al., CVPR 2006) on cosine similarities.

    Per anchor ``mean_i [pos_margin - s_p^i]_+ + mean_j [s_n^j - neg_margin]_+``; the loss is
    the mean over anchors with at least one positive and one negative (so a one-class batch
    gives 0). PML's ``ContrastiveLoss(distance=CosineSimilarity())`` has the same per-pair
    hinges but reduces over pairs: by default (``AvgNonZeroReducer``) the mean of the nonzero
    positive-pair losses plus the mean of the nonzero negative-pair losses; with
    ``MeanReducer`` the mean over all positive pairs plus the mean over all negative pairs,
    which is this loss whenever every anchor has as many positives and negatives as the
    others (P x K batches).

    Args:
        pos_margin: in ``[-1, 1]``; positive pairs are penalised while ``s_p < pos_margin``.
            Default 1.0 (pull positives together fully, as Hadsell et al.'s ``d^2`` term).
        neg_margin: in ``[-1, 1]``; negative pairs are penalised while ``s_n > neg_margin``.
            Default 0.0 (the ``s_n -> 0`` target of Sun et al., Section 2).
        num_classes: ``None`` for pair-wise labels; ``C`` for class proxies.
        embedding_dim: ``D``, required with ``num_classes``.

    Example:
        >>> loss = ContrastiveLoss(pos_margin=1.0, neg_margin=0.0)
        >>> x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> round(loss(x, torch.tensor([0, 0, 1])).item(), 4)
        0.8
    """

    def __init__(
        self,
        pos_margin: float = 1.0,
        neg_margin: float = 0.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.pos_margin = check_margin("pos_margin", pos_margin, -1.0, 1.0)
        self.neg_margin = check_margin("neg_margin", neg_margin, -1.0, 1.0)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``pos_margin`` uniform in ``[0.5, 1]``, ``neg_margin`` uniform in ``[0, 0.5]``.

        Source: the defaults 1.0 (Hadsell et al.'s full pull) and 0.0 (Sun et al.'s ``s_n -> 0`` target)
        are the ends; the ranges never cross, so positives are always held above negatives.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.pos_margin", 0.5, 1.0),
            FloatParam("loss.params.neg_margin", 0.0, 0.5),
        )

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return contrastive_loss(pairs.sim, pairs.pos, pairs.neg, self.pos_margin, self.neg_margin)

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}, {super().extra_repr()}"
