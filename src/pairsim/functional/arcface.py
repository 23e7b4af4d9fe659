"""ArcFace (Deng et al., CVPR 2019): an additive angular margin on the target similarity."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pairsim.functional.softmax import softmax_loss


def arcface_margin(cos_theta: Tensor, m: float) -> Tensor:
    """``cos(theta + m)`` for ``theta = arccos(cos_theta)``, kept monotone in ``theta``.

    ``cos(theta + m)`` turns back up once ``theta + m > pi``, which would reward pushing a
    sample further from its class. There, as in the reference InsightFace implementation
    (and PML's ``ArcFaceLoss``), the target logit becomes ``cos(theta) - m sin(m)``: the
    CosFace margin that ``cos(theta + m)`` takes near ``theta = pi - m``. The result keeps
    decreasing in ``theta`` (with a small downward step of ``1 - cos m - m sin m`` at the
    switch point).

    ``cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)`` avoids ``arccos``, whose
    derivative is infinite at ``+-1``.

    Args:
        cos_theta: cosine similarities, any shape.
        m: angular margin in radians, in ``[0, pi / 2]``.

    Returns:
        The margin-penalised similarities, same shape.

    Example:
        >>> [round(v, 4) for v in arcface_margin(torch.tensor([1.0, 0.0, -1.0]), m=0.5).tolist()]
        [0.8776, -0.4794, -1.2397]
    """
    # Rounding can push |cos| to or past 1; the floor eps^2 only catches that case, so the value
    # is exact to working precision and the gradient stays finite.
    eps = torch.finfo(cos_theta.dtype).eps
    sin_theta = torch.sqrt((1.0 - cos_theta.square()).clamp_min(eps * eps))
    shifted = cos_theta * math.cos(m) - sin_theta * math.sin(m)
    # theta <= pi - m  <=>  cos(theta) >= cos(pi - m) = -cos(m)
    return torch.where(cos_theta >= -math.cos(m), shifted, cos_theta - m * math.sin(m))


def arcface_loss(sim: Tensor, pos: Tensor, neg: Tensor, m: float = 0.5, gamma: float = 64.0) -> Tensor:
    """Per-anchor ArcFace loss.

    ``L = -log(exp(gamma cos(theta_p + m)) / (exp(gamma cos(theta_p + m)) + sum_j exp(gamma s_n^j)))``
    with ``theta_p = arccos(s_p)`` (Deng et al., Eq. 3; see :func:`arcface_margin` for
    ``theta_p + m > pi``). Recommended: ``m = 0.5, gamma = 64``.

    Args:
        sim: ``(B, M)`` cosine similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        m: additive angular margin in radians.
        gamma: scale factor.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> sim = torch.tensor([[0.8, 0.1, -0.3]])
        >>> pos, neg = torch.tensor([[True, False, False]]), torch.tensor([[False, True, True]])
        >>> round(arcface_loss(sim, pos, neg, m=0.5, gamma=4.0).item(), 4)
        0.294
    """
    # The margin only touches the (few) positive entries; computing it there keeps the
    # extra memory O(positives) instead of O(B x M) when M is a million classes.
    target = sim[pos]
    delta = torch.zeros_like(sim).masked_scatter(pos, arcface_margin(target, m) - target)  # (B, M)
    return softmax_loss(gamma * (sim + delta), pos, neg)
