"""The class-level margin softmax family (NormFace, CosFace, ArcFace): shared streamed fast path."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from pairsim.functional.margin_softmax_streaming import margin_softmax_streaming
from pairsim.functional.reductions import mean_over_valid
from pairsim.losses.base import PairLoss


class MarginSoftmaxLoss(PairLoss):
    """Base of the softmax losses on ``gamma`` times cosine similarities to class proxies.

    Subclasses set :attr:`margin_kind` and the margin ``m`` (and keep their plain-path
    :meth:`per_anchor`). By default :meth:`forward` takes
    :func:`~pairsim.functional.margin_softmax_streaming.margin_softmax_streaming` (closed-form
    backward, proxies streamed in blocks: no ``(B, C)`` masks or logits held), which equals the plain
    path; ``fast_path=False`` forces the plain path.

    Args:
        num_classes: ``C``, required.
        embedding_dim: ``D``, required.
        fast_path: ``None`` or ``True``: the streamed path (with ``C >= 2``); ``False``: the plain path.
        block_size: classes per block of the fast path (``None``: sized to the batch).
    """

    supports_pair_wise: ClassVar[bool] = False
    margin_kind: ClassVar[str] = "cosface"
    m: float
    gamma: float

    def __init__(
        self,
        num_classes: int | None,
        embedding_dim: int | None,
        fast_path: bool | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
            raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
        self.fast_path, self.block_size = fast_path, block_size

    def uses_fast_path(self) -> bool:
        """Whether :meth:`forward` streams the proxies (a single class has no negatives: plain path)."""
        return self.fast_path is not False and self.num_classes is not None and self.num_classes >= 2

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of a batch; see :meth:`PairLoss.forward`."""
        if not self.uses_fast_path():
            return super().forward(embeddings, labels, ref_embeddings, ref_labels)
        self.check_inputs(embeddings, labels, ref_embeddings, ref_labels)
        assert self.proxies is not None
        losses = margin_softmax_streaming(
            embeddings,
            labels,
            self.proxies,
            kind=self.margin_kind,
            m=self.m,
            gamma=self.gamma,
            block_size=self.block_size,
        )
        # Every anchor has its class and C - 1 negatives; an empty batch gives exactly 0.
        return mean_over_valid(losses, torch.ones_like(losses, dtype=torch.bool))
