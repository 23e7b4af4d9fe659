"""Pair-wise losses with negatives from every rank: local anchors against the gathered batch.

Rank ``r`` scores its ``B_r`` anchors against the ``N = sum_s B_s`` embeddings of all ranks (Section 2
of the Circle Loss paper, pair-wise labels, over the global batch). The gradient reaching a gathered
reference is summed on the rank that owns it (:func:`gather_with_grad`), so nothing is computed twice
and no rank holds more than a ``(B_r, N)`` similarity matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from pairsim.distributed.comm import Group, all_gather_rows, all_reduce_detached, gather_with_grad, world
from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss, compute_dtype
from pairsim.losses.triplet_loss import TripletLoss

# How a loss's reduce() weighs its anchors: reduce(pairs) == sum(w * per_anchor) / sum(w).
AnchorWeights = Callable[[PairLoss, Pairs], Tensor]
_ANCHOR_WEIGHTS: dict[type[PairLoss], AnchorWeights] = {}


def register_anchor_weights(cls: type[PairLoss]) -> Callable[[AnchorWeights], AnchorWeights]:
    """Declare the anchor weights of a loss class that overrides :meth:`PairLoss.reduce`."""

    def add(fn: AnchorWeights) -> AnchorWeights:
        _ANCHOR_WEIGHTS[cls] = fn
        return fn

    return add


@register_anchor_weights(TripletLoss)
def _triplet_weights(loss: PairLoss, pairs: Pairs) -> Tensor:
    # TripletLoss.reduce: the mean over anchors (batch hard) or over K x L triplets per anchor (all).
    if getattr(loss, "mining", "batch_hard") == "batch_hard":
        return pairs.valid.to(pairs.sim.dtype)
    return (pairs.pos.sum(dim=1) * pairs.neg.sum(dim=1)).to(pairs.sim.dtype)


def anchor_weights(loss: PairLoss, pairs: Pairs) -> Tensor:
    """``(B,)`` weights ``w`` such that ``loss.reduce(pairs) == sum(w * loss.per_anchor(pairs)) / sum(w)``.

    Raises:
        TypeError: if the loss overrides ``reduce`` and has no registered weights: splitting its
            reduction across ranks would be a guess.
    """
    for cls in type(loss).__mro__:
        if cls in _ANCHOR_WEIGHTS:
            return _ANCHOR_WEIGHTS[cls](loss, pairs)
        if cls is PairLoss or "reduce" in vars(cls):
            break
    if type(loss).reduce is not PairLoss.reduce:
        raise TypeError(f"{type(loss).__name__} overrides reduce(); register its anchor weights first")
    return pairs.valid.to(pairs.sim.dtype)  # PairLoss.reduce: the mean over valid anchors


def exclude_self(pairs: Pairs, offset: int) -> Pairs:
    """Drop each anchor's own copy from the references: anchor ``i`` is reference ``offset + i``.

    The pair is then neither positive nor negative, as :func:`batch_pairs` does for the diagonal.
    """
    rows = torch.arange(pairs.sim.shape[0], device=pairs.sim.device)
    own = torch.zeros_like(pairs.pos)
    own[rows, rows + offset] = True
    return Pairs(pairs.sim, pairs.pos & ~own, pairs.neg & ~own)


def global_pair_loss(
    loss: PairLoss, embeddings: Tensor, labels: Tensor, group: Group = None, ddp_average: bool = True
) -> Tensor:
    """A pair-wise loss over the global batch, computed as the ranks' shares of it.

    With ranks holding batches ``X_0, ..., X_{W-1}``, the global loss is what ``loss(X, y)`` gives in
    one process on the concatenation ``X`` (rank order): ``sum_i w_i l_i / sum_i w_i`` over all ``N``
    anchors (``w_i``: :func:`anchor_weights`, 1 for valid anchors in most losses). Rank ``r`` computes
    ``l_i`` for its own anchors only, against all ``N`` references minus the anchor itself.

    Conventions:

    - value: the returned scalar equals the global loss, on every rank;
    - gradient: it is the rank's share ``W * sum_{i in r} w_i l_i / sum_i w_i``, so that with
      DDP (which averages gradients over the ``W`` ranks) every parameter gets exactly the
      single-process gradient of the global loss. ``ddp_average=False`` drops the factor ``W``:
      summing (not averaging) the ranks' gradients then gives the same.

    Args:
        loss: a pair-wise :class:`PairLoss` (``num_classes=None``).
        embeddings: ``(B_r, D)`` this rank's embeddings; ranks may hold different ``B_r``.
        labels: ``(B_r,)`` integer labels.
        group: process group; ``None`` for the default one.
        ddp_average: the caller averages gradients over ranks (DDP does).

    Returns:
        A scalar tensor; 0 (with zero gradient) when no anchor of any rank is valid.

    Raises:
        ValueError: for a class-level loss, or on bad input (see :meth:`PairLoss.check_inputs`).
        TypeError: for a loss whose reduction cannot be split (see :func:`anchor_weights`).

    Example:
        >>> from pairsim.losses import CircleLoss
        >>> x, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> loss = CircleLoss(m=0.4, gamma=80.0, fast_path=False)
        >>> torch.allclose(global_pair_loss(loss, x, y), loss(x, y))  # one process: the plain loss
        True
    """
    if loss.class_level:
        raise ValueError("global_pair_loss is for pair-wise losses; shard class proxies with ShardedProxyLoss")
    rank, size = world(group)
    refs, sizes = gather_with_grad(embeddings, group)  # (N, D)
    ref_labels = all_gather_rows(labels, sizes, group)  # (N,)
    loss.check_inputs(embeddings, labels, refs, ref_labels)
    pairs = loss.make_pairs(compute_dtype(embeddings), labels, compute_dtype(refs), ref_labels)  # (B_r, N)
    pairs = exclude_self(pairs, offset=sum(sizes[:rank]))
    weights = anchor_weights(loss, pairs)  # (B_r,)
    local = (loss.per_anchor(pairs) * weights).sum()
    totals = all_reduce_detached(torch.stack([local.detach(), weights.sum()]), group)  # (2,): sum of w l, sum of w
    denominator = totals[1].clamp_min(1)
    # Scaling the share scales both paths into the embeddings: as anchors and, via the gather, as references.
    share = local * (size if ddp_average else 1) / denominator
    return share + (totals[0] / denominator - share).detach()


class GlobalPairLoss(nn.Module):
    """Module form of :func:`global_pair_loss`: wraps a pair-wise loss for data-parallel training.

    Args:
        loss: the pair-wise loss to compute over the global batch.
        group: process group; ``None`` for the default one.
        ddp_average: see :func:`global_pair_loss`.

    Example:
        >>> from pairsim.losses import TripletLoss
        >>> wrapped = GlobalPairLoss(TripletLoss(margin=0.1))
        >>> wrapped(torch.randn(4, 8), torch.tensor([0, 0, 1, 1])).dim()
        0
    """

    def __init__(self, loss: PairLoss, group: Group = None, ddp_average: bool = True) -> None:
        super().__init__()
        if loss.class_level:
            raise ValueError("GlobalPairLoss is for pair-wise losses; shard class proxies with ShardedProxyLoss")
        self.loss, self.group, self.ddp_average = loss, group, ddp_average

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The global loss; see :func:`global_pair_loss` for the value and gradient conventions."""
        return global_pair_loss(self.loss, embeddings, labels, self.group, self.ddp_average)
