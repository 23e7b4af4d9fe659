"""The shared shape of every pair loss: a pair source, a per-anchor loss, a reduction."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from pairsim.functional.pairs import Pairs, batch_pairs, proxy_pairs
from pairsim.functional.reductions import mean_over_valid
from pairsim.losses.validation import check_loss_inputs

if TYPE_CHECKING:
    from pairsim.losses.search_space import SearchSpace


def compute_dtype(x: Tensor) -> Tensor:
    """Half-precision embeddings are scored in float32, as autocast does for losses: the
    exponents ``gamma * s`` reach the thousands and bf16 keeps only 8 bits of mantissa."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class PairLoss(nn.Module):
    """Base class of the pair-similarity losses (Section 2 of the Circle Loss paper).

    A subclass only says how one anchor's similarities become a loss (:meth:`per_anchor`);
    where they come from is chosen by ``num_classes``:

    - ``num_classes=None``: pair-wise labels, the anchors against the batch (self-pairs
      excluded) or against ``ref_embeddings`` (a memory, other ranks);
    - ``num_classes=C``: class-level labels, the anchors against ``C`` learnable proxies
      ``self.proxies`` of shape ``(C, embedding_dim)``.

    The loss is the mean of the per-anchor losses over anchors that have at least one
    positive and one negative, and exactly 0 (differentiable, zero gradient) when none has.
    """

    supports_pair_wise: ClassVar[bool] = True
    supports_class_level: ClassVar[bool] = True

    proxies: nn.Parameter | None

    def __init__(self, num_classes: int | None = None, embedding_dim: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.num_classes = num_classes
        if num_classes is None:
            if not self.supports_pair_wise:
                raise ValueError(f"{name} scores against class proxies: pass num_classes and embedding_dim")
            if embedding_dim is not None:
                raise ValueError(f"{name}: embedding_dim is only used with num_classes (class proxies)")
            self.register_parameter("proxies", None)
            return
        if not self.supports_class_level:
            raise ValueError(f"{name} is a pair-wise loss and takes no num_classes")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer with num_classes, got {embedding_dim!r}")
        self.proxies = nn.Parameter(torch.randn(num_classes, embedding_dim) / math.sqrt(embedding_dim))

    @classmethod
    def search_space(cls, class_level: bool) -> SearchSpace:
        """The hyper-parameters a study tunes for this loss, by dotted training-configuration key.

        Each registered loss overrides this next to its constructor, through
        :func:`~pairsim.losses.search_space.loss_search_space` (which adds the proxies' learning rate in the
        class-level paradigm and refuses a paradigm the loss does not support).

        Args:
            class_level: the space for training against class proxies (``True``) or pair-wise (``False``).

        Raises:
            NotImplementedError: here, for a loss that declares no space.
            ValueError: in the overrides, for a paradigm the loss does not support.
        """
        raise NotImplementedError(
            f"{cls.__name__} declares no hyper-parameter search space: override {cls.__name__}.search_space"
        )

    @property
    def class_level(self) -> bool:
        """Whether the loss scores anchors against class proxies."""
        return self.proxies is not None

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of a batch.

        Args:
            embeddings: ``(B, D)``; normalised inside.
            labels: ``(B,)`` integer class labels.
            ref_embeddings: ``(M, D)`` references for the pair-wise paradigm (no
                self-exclusion); ``None`` scores the batch against itself.
            ref_labels: ``(M,)`` labels of ``ref_embeddings``.

        Returns:
            A scalar tensor.

        Raises:
            ValueError: on a shape or dtype mismatch, labels of the wrong length, NaN
                embeddings, or a class id outside ``[0, num_classes)``.
        """
        self.check_inputs(embeddings, labels, ref_embeddings, ref_labels)
        refs = None if ref_embeddings is None else compute_dtype(ref_embeddings)
        pairs = self.make_pairs(compute_dtype(embeddings), labels, refs, ref_labels)
        return self.reduce(pairs)

    def check_inputs(
        self, embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None, ref_labels: Tensor | None
    ) -> None:
        """Raise ``ValueError`` on bad input (see :func:`check_loss_inputs`)."""
        check_loss_inputs(embeddings, labels, ref_embeddings, ref_labels, self.num_classes)
        if self.proxies is not None and embeddings.shape[1] != self.proxies.shape[1]:
            raise ValueError(
                f"embeddings have dimension {embeddings.shape[1]}, the class proxies {self.proxies.shape[1]}"
            )

    def make_pairs(
        self, embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None, ref_labels: Tensor | None
    ) -> Pairs:
        """The anchors' similarities with their positive and negative masks."""
        if self.proxies is not None:
            return proxy_pairs(embeddings, labels, self.proxies.to(embeddings.dtype))
        return batch_pairs(embeddings, labels, ref_embeddings, ref_labels)

    def reduce(self, pairs: Pairs) -> Tensor:
        """Mean of :meth:`per_anchor` over anchors with a positive and a negative."""
        return mean_over_valid(self.per_anchor(pairs), pairs.valid)

    def per_anchor(self, pairs: Pairs) -> Tensor:
        """``(B,)`` loss of each anchor from its ``(B, M)`` similarities and masks."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        source = f"num_classes={self.num_classes}" if self.class_level else "pair-wise"
        return source


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, or ``ValueError`` if it is not a finite positive number."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def check_margin(name: str, value: float, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float, or ``ValueError`` if it lies outside ``[low, high]``."""
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")
    return float(value)
