"""Triplet loss on cosine similarities: batch-hard (Hermans et al., 2017) and all triplets."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

TripletMining = Literal["batch_hard", "all"]


def triplet_loss(
    sim: Tensor, pos: Tensor, neg: Tensor, margin: float = 0.1, mining: TripletMining = "batch_hard"
) -> Tensor:
    """Per-anchor triplet loss ``[s_n - s_p + margin]_+`` (Eq. 3 of Sun et al.).

    - ``"batch_hard"``: one triplet per anchor, its least similar positive and most similar
      negative, ``[max_j s_n^j - min_i s_p^i + margin]_+`` (Eq. 3, Hermans et al.'s batch hard);
    - ``"all"``: the mean of ``[s_n^j - s_p^i + margin]_+`` over all ``K x L`` (positive,
      negative) pairs of the anchor.

    ``"all"`` never builds the ``(B, K, L)`` triplet tensor: with the positives sorted, the
    hinges of one negative sum to ``k (s_n + margin) - (sum of the k smallest s_p)`` where
    ``k`` counts the positives with ``s_p < s_n + margin``, so memory stays ``O(B x M)``.

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        margin: margin on similarities (0.1 on cosine similarity is FaceNet's 0.2 on the
            squared distance of unit vectors, ``|a - b|^2 = 2 - 2 s``).
        mining: ``"batch_hard"`` or ``"all"``.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Raises:
        ValueError: for an unknown ``mining``.

    Example:
        >>> sim = torch.tensor([[0.9, 0.5, 0.6, 0.1]])
        >>> pos, neg = torch.tensor([[True, True, False, False]]), torch.tensor([[False, False, True, True]])
        >>> [round(triplet_loss(sim, pos, neg, 0.2, mining).item(), 4) for mining in ("batch_hard", "all")]
        [0.3, 0.075]
    """
    if sim.shape[1] == 0:
        return sim.sum(dim=1)  # no references: zero losses that stay attached to the graph
    if mining == "batch_hard":
        hardest_pos = sim.masked_fill(~pos, float("inf")).amin(dim=1)  # (B,)
        hardest_neg = sim.masked_fill(~neg, float("-inf")).amax(dim=1)  # (B,)
        # An empty side gives -inf here, which the hinge turns into a zero loss and gradient.
        return F.relu(hardest_neg - hardest_pos + margin)
    if mining == "all":
        return _all_triplets_mean(sim, pos, neg, margin)
    raise ValueError(f"mining must be 'batch_hard' or 'all', got {mining!r}")


def _all_triplets_mean(sim: Tensor, pos: Tensor, neg: Tensor, margin: float) -> Tensor:
    sorted_pos, _ = sim.masked_fill(~pos, float("inf")).sort(dim=1)  # (B, M), positives first
    finite = torch.where(torch.isfinite(sorted_pos), sorted_pos, torch.zeros_like(sorted_pos))
    prefix = F.pad(finite.cumsum(dim=1), (1, 0))  # (B, M + 1), prefix[:, k] = sum of the k smallest s_p
    threshold = sim + margin  # (B, M), read at the negatives
    # searchsorted's default (left) side counts s_p < s_n + margin strictly, as relu'(0) = 0 does.
    active = torch.searchsorted(sorted_pos.detach(), threshold.detach().contiguous())  # (B, M)
    hinge_sums = active.to(sim.dtype) * threshold - prefix.gather(1, active)  # (B, M)
    total = torch.where(neg, hinge_sums, torch.zeros_like(hinge_sums)).sum(dim=1)  # (B,)
    count = pos.sum(dim=1) * neg.sum(dim=1)
    return total / count.clamp_min(1).to(sim.dtype)
