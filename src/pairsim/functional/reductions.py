"""Numerically safe building blocks shared by the pair losses."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_logsumexp(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """``log(sum(exp(logits)))`` over the entries where ``mask`` is ``True``.

    Unlike ``torch.logsumexp`` on ``-inf``-filled logits, an empty row gives ``-inf`` with
    a zero (not NaN) gradient, so anchors without positives or negatives drop out cleanly.

    Args:
        logits: ``(..., M)`` float.
        mask: bool, same shape as ``logits``.
        dim: the dimension to reduce.

    Returns:
        ``logits`` reduced over ``dim``; ``-inf`` where the mask is empty.

    Example:
        >>> x = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
        >>> m = torch.tensor([[True, True, False], [False, False, False]])
        >>> masked_logsumexp(x, m).tolist()[1], round(masked_logsumexp(x, m).tolist()[0], 4)
        (-inf, 0.6931)
    """
    if logits.shape[dim] == 0:
        # amax has no identity on an empty dimension; an empty sum of exponentials is log(0) = -inf.
        return logits.sum(dim=dim) + float("-inf")
    neg_inf = torch.finfo(logits.dtype).min
    shifted = logits.masked_fill(~mask, neg_inf)
    peak = shifted.amax(dim=dim, keepdim=True).detach()  # (..., 1)
    peak = torch.where(mask.any(dim=dim, keepdim=True), peak, torch.zeros_like(peak))
    total = torch.exp((logits - peak).masked_fill(~mask, float("-inf"))).sum(dim=dim)
    # clamp keeps the gradient of log finite (and zero) for empty rows.
    out = torch.log(total.clamp_min(torch.finfo(total.dtype).tiny)) + peak.squeeze(dim)
    return torch.where(total > 0, out, torch.full_like(out, float("-inf")))


def mean_over_valid(per_anchor: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``per_anchor`` over ``valid`` anchors; exactly 0 (with zero gradient) if none.

    Args:
        per_anchor: ``(B,)`` losses.
        valid: ``(B,)`` bool.

    Returns:
        A scalar tensor that stays attached to the graph.

    Example:
        >>> mean_over_valid(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([True, True, False]))
        tensor(2.)
    """
    kept = torch.where(valid, per_anchor, torch.zeros_like(per_anchor))
    return kept.sum() / valid.sum().clamp_min(1).to(per_anchor.dtype)
