"""Multi-Similarity loss module, both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.multi_similarity import multi_similarity_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss
from pairsim.losses.search_space import FloatParam, SearchSpace, loss_search_space


@register_loss("multi_similarity")
class MultiSimilarityLoss(PairLoss):
    """Multi-Similarity loss (Wang et al., CVPR 2019, Eq. 7) on cosine similarities.

    ``L_i = 1/alpha log[1 + sum_p exp(-alpha (s_p - base))] + 1/beta log[1 + sum_n exp(beta (s_n - base))]``,
    averaged over anchors with at least one positive and one negative (the paper's
    ``1/m sum_i``). Pair mining is not part of the loss (PML: ``MultiSimilarityMiner``).
    PML's ``MultiSimilarityLoss`` (``MeanReducer``) averages over all ``B`` anchors, those
    without positives or negatives included; the two agree when every anchor has both.

    Args:
        alpha: positive scale, positive; the paper uses 2.
        beta: negative scale, positive; the paper uses 50.
        base: the margin ``lambda``, in ``[-1, 1]``; the paper uses 0.5.
        num_classes: ``None`` for pair-wise labels; ``C`` for class proxies.
        embedding_dim: ``D``, required with ``num_classes``.

    Example:
        >>> loss = MultiSimilarityLoss()
        >>> x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> round(loss(x, torch.tensor([0, 0, 1])).item(), 4)
        0.4491
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.base = check_margin("base", base, -1.0, 1.0)

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """``alpha`` log-uniform in ``[0.5, 10]``, ``beta`` log-uniform in ``[10, 100]``, ``base`` in ``[0.2, 0.8]``.

        Source: around the paper's ``alpha = 2, beta = 50, base = 0.5``.
        """
        return loss_search_space(
            cls,
            class_level,
            FloatParam("loss.params.alpha", 0.5, 10.0, log=True),
            FloatParam("loss.params.beta", 10.0, 100.0, log=True),
            FloatParam("loss.params.base", 0.2, 0.8),
        )

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return multi_similarity_loss(pairs.sim, pairs.pos, pairs.neg, self.alpha, self.beta, self.base)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, {super().extra_repr()}"
