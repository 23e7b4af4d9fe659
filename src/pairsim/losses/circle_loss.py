"""Circle loss module, both paradigms."""

from __future__ import annotations

from torch import Tensor

from pairsim.functional.circle import circle_loss
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss, check_margin, check_positive
from pairsim.losses.registry import register_loss


@register_loss("circle")
class CircleLoss(PairLoss):
    """Circle loss (Sun et al., CVPR 2020, Eq. 6) with the paper's reduced hyper-parameters.

    ``O_p = 1 + m, O_n = -m, Delta_p = 1 - m, Delta_n = m`` (decision boundary Eq. 8: the
    circle ``s_n^2 + (s_p - 1)^2 = 2 m^2``) and self-paced weights detached (Eq. 9-10).
    The paper uses ``m = 0.25, gamma = 256`` for face recognition (class-level) and
    ``m = 0.4, gamma = 80`` for fine-grained retrieval (pair-wise).

    Args:
        m: relaxation margin, in ``[0, 1]``.
        gamma: scale factor, positive.
        num_classes: ``None`` for pair-wise labels; ``C`` for class-level labels with
            learnable proxies ``(C, embedding_dim)``.
        embedding_dim: ``D``, required with ``num_classes``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> loss = CircleLoss(m=0.4, gamma=80.0)
        >>> x, y = torch.randn(8, 16, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> value = loss(x, y)
        >>> value.backward()
        >>> value.item() > 0, x.grad.shape
        (True, torch.Size([8, 16]))
    """

    def __init__(
        self,
        m: float = 0.25,
        gamma: float = 256.0,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.m = check_margin("m", m)
        self.gamma = check_positive("gamma", gamma)

    def per_anchor(self, pairs: Pairs) -> Tensor:
        return circle_loss(pairs.sim, pairs.pos, pairs.neg, self.m, self.gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}, {super().extra_repr()}"
