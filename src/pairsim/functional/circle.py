"""Circle loss (Sun et al., CVPR 2020), the plain (materialised) form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.reductions import masked_logsumexp


def circle_logits(sim: Tensor, m: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Per-pair exponents of Eq. 6, read as positive and as negative pairs.

    With ``O_p = 1 + m``, ``O_n = -m``, ``Delta_p = 1 - m``, ``Delta_n = m`` (Section 3.2) and
    the self-paced weights of Eq. 5 detached, as the gradients of Eq. 9-10 assume.

    Args:
        sim: ``(B, M)`` similarities.
        m: relaxation margin.
        gamma: scale factor.

    Returns:
        ``(logit_p, logit_n)``, both ``(B, M)``: ``-gamma * alpha_p * (s - Delta_p)`` and
        ``gamma * alpha_n * (s - Delta_n)``.
    """
    alpha_p = (1.0 + m - sim).clamp_min(0.0).detach()  # Eq. 5, [O_p - s_p]_+
    alpha_n = (sim + m).clamp_min(0.0).detach()  # Eq. 5, [s_n - O_n]_+
    logit_p = -gamma * alpha_p * (sim - (1.0 - m))
    logit_n = gamma * alpha_n * (sim - m)
    return logit_p, logit_n


def circle_loss(sim: Tensor, pos: Tensor, neg: Tensor, m: float = 0.25, gamma: float = 256.0) -> Tensor:
    """Per-anchor Circle loss, Eq. 6.

    ``L = log[1 + sum_j exp(gamma a_n^j (s_n^j - m)) sum_i exp(-gamma a_p^i (s_p^i - 1 + m))]``,
    computed as ``softplus(lse_n + lse_p)`` so that it stays finite for any ``gamma``.
    Recommended: ``m = 0.25, gamma = 256`` (class-level), ``m = 0.4, gamma = 80`` (pair-wise).

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        m: relaxation margin (Eq. 8: the decision boundary is a circle of radius ``sqrt(2) m``).
        gamma: scale factor.

    Returns:
        ``(B,)`` losses; 0 for an anchor without positives or without negatives.

    Example:
        >>> sim = torch.tensor([[0.9, 0.1, -0.2]])
        >>> pos, neg = torch.tensor([[True, False, False]]), torch.tensor([[False, True, True]])
        >>> round(circle_loss(sim, pos, neg, m=0.25, gamma=32.0).item(), 4)
        0.1182
    """
    logit_p, logit_n = circle_logits(sim, m, gamma)
    return F.softplus(masked_logsumexp(logit_n, neg) + masked_logsumexp(logit_p, pos))


def circle_similarity_grad(sim: Tensor, pos: Tensor, neg: Tensor, m: float = 0.25, gamma: float = 256.0) -> Tensor:
    """Closed-form ``dL/ds`` of Eq. 6, Eq. 9-10 generalised to many positives.

    ``dL/ds_n^j = Z softmax_j(logit_n) gamma alpha_n^j`` and
    ``dL/ds_p^i = -Z softmax_i(logit_p) gamma alpha_p^i`` with ``Z = 1 - exp(-L)``.

    Args:
        sim: ``(B, M)`` similarities.
        pos: ``(B, M)`` bool within-class mask.
        neg: ``(B, M)`` bool between-class mask.
        m: relaxation margin.
        gamma: scale factor.

    Returns:
        ``(B, M)`` gradient of the per-anchor loss with respect to each similarity.
    """
    logit_p, logit_n = circle_logits(sim, m, gamma)
    lse_p = masked_logsumexp(logit_p, pos)  # (B,)
    lse_n = masked_logsumexp(logit_n, neg)  # (B,)
    z = torch.sigmoid(lse_n + lse_p)[:, None]  # (B, 1), Z = 1 - exp(-L)
    w_p = torch.exp(logit_p - lse_p[:, None]).masked_fill(~pos, 0.0)
    w_n = torch.exp(logit_n - lse_n[:, None]).masked_fill(~neg, 0.0)
    alpha_p = (1.0 + m - sim).clamp_min(0.0)
    alpha_n = (sim + m).clamp_min(0.0)
    return z * gamma * (w_n * alpha_n - w_p * alpha_p)


def circle_decision_margin(s_n: Tensor, s_p: Tensor, m: float) -> Tensor:
    """Signed distance test of a ``(s_n, s_p)`` pair against the decision circle of Eq. 8.

    Returns ``s_n^2 + (s_p - 1)^2 - 2 m^2``: negative inside the circle (the pair meets
    Circle loss's target ``s_p -> 1, s_n -> 0``), positive outside.

    Example:
        >>> circle_decision_margin(torch.tensor([0.0, 0.5]), torch.tensor([1.0, 0.5]), m=0.25).tolist()
        [-0.125, 0.375]
    """
    return s_n.square() + (s_p - 1.0).square() - 2.0 * m * m
