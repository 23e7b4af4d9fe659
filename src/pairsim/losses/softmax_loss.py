"""Softmax cross-entropy module (class-level only)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.functional.softmax import inner_product_proxy_pairs, softmax_loss
from pairsim.losses.base import PairLoss
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import SearchSpace, loss_search_space


@register_loss("softmax")
class SoftmaxLoss(PairLoss):
    """Softmax cross-entropy over learnable class weights, as Section 2 of Sun et al. reads it.

    Eq. 2 "by replacing the cosine similarity with the inner product and setting gamma = 1":
    ``L = -log(exp(w_y^T x) / sum_j exp(w_j^T x))``. Unlike every other loss here, neither
    embeddings nor proxies are normalised, and there is no bias term. Loss: the mean over
    the batch (anchors without a negative class, i.e. ``num_classes == 1``, count as 0 and
    are left out), as ``torch.nn.CrossEntropyLoss`` does.

    Args:
        num_classes: ``C``, required: this loss exists only against class weights.
        embedding_dim: ``D``, required.

    Example:
        >>> loss = SoftmaxLoss(num_classes=5, embedding_dim=4)
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    supports_pair_wise: ClassVar[bool] = False

    def __init__(self, num_classes: int | None = None, embedding_dim: int | None = None) -> None:
        super().__init__(num_classes, embedding_dim)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """Only the class weights' learning rate: the loss itself has no hyper-parameter (``gamma = 1``)."""
        return loss_search_space(cls, class_level)

    def make_pairs(
        self, embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None, ref_labels: Tensor | None
    ) -> Pairs:
        assert self.proxies is not None  # guaranteed by supports_pair_wise = False
        return inner_product_proxy_pairs(embeddings, labels, self.proxies.to(embeddings.dtype))

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return softmax_loss(pairs.sim, pairs.pos, pairs.neg)
