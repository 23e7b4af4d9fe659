"""Loop reference for Circle loss, written straight from Eq. 5-6 of the paper (float64).

Every anchor walks over its references one by one, sorting each cosine similarity into its
within-class list ``s_p`` or between-class list ``s_n``; the loss is then read off Eq. 6 with
``O_p = 1 + m, O_n = -m, Delta_p = 1 - m, Delta_n = m``. Alphas are constants (detached), as
Eq. 9-10 assume; ``alpha_at`` freezes them at other inputs, for finite-difference checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AnchorPairs:
    """One anchor's within-class and between-class similarities (0-dim tensors)."""

    s_p: list[Tensor]
    s_n: list[Tensor]

    @property
    def valid(self) -> bool:
        return bool(self.s_p) and bool(self.s_n)


def cos(u: Tensor, v: Tensor) -> Tensor:
    """Cosine similarity of two vectors, with the norm floor of ``F.normalize``."""
    nu = torch.sqrt((u * u).sum()).clamp_min(1e-12)
    nv = torch.sqrt((v * v).sum()).clamp_min(1e-12)
    return (u * v).sum() / (nu * nv)


def anchor_pairs(
    x: Tensor,
    labels: Tensor,
    refs: Tensor | None = None,
    ref_labels: Tensor | None = None,
    proxies: Tensor | None = None,
) -> list[AnchorPairs]:
    """Section 2: against the batch (self excluded), given references, or class proxies."""
    out = []
    for i in range(len(x)):
        s_p: list[Tensor] = []
        s_n: list[Tensor] = []
        if proxies is not None:
            for c in range(len(proxies)):
                (s_p if c == int(labels[i]) else s_n).append(cos(x[i], proxies[c]))
        else:
            others, other_labels = (x, labels) if refs is None else (refs, ref_labels)
            assert other_labels is not None
            for j in range(len(others)):
                if refs is None and j == i:
                    continue
                same = int(labels[i]) == int(other_labels[j])
                (s_p if same else s_n).append(cos(x[i], others[j]))
        out.append(AnchorPairs(s_p, s_n))
    return out


def circle_reference(
    anchors: list[AnchorPairs], m: float, gamma: float, alpha_at: list[AnchorPairs] | None = None
) -> tuple[Tensor, Tensor]:
    """Per-anchor Eq. 6 and the valid mask; 0 for anchors without positives or negatives.

    ``alpha_at``: the same pairs at other inputs, where the alphas of Eq. 5 are evaluated.
    """
    o_p, o_n, delta_p, delta_n = 1 + m, -m, 1 - m, m
    losses = []
    for k, a in enumerate(anchors):
        if not a.valid:
            losses.append(torch.zeros((), dtype=torch.float64))
            continue
        at = a if alpha_at is None else alpha_at[k]
        sum_n = sum(
            torch.exp(gamma * max(float(sa) - o_n, 0.0) * (s - delta_n)) for s, sa in zip(a.s_n, at.s_n, strict=True)
        )
        sum_p = sum(
            torch.exp(-gamma * max(o_p - float(sa), 0.0) * (s - delta_p)) for s, sa in zip(a.s_p, at.s_p, strict=True)
        )
        losses.append(torch.log(1 + torch.as_tensor(sum_n * sum_p)))
    valid = torch.tensor([a.valid for a in anchors], dtype=torch.bool)
    return torch.stack(losses) if losses else torch.zeros(0, dtype=torch.float64), valid


def mean_of_valid(losses: Tensor, valid: Tensor) -> Tensor:
    """The reduction of every pairsim loss, as a loop."""
    total, count = torch.zeros((), dtype=losses.dtype), 0
    for loss, ok in zip(losses, valid, strict=True):
        if ok:
            total, count = total + loss, count + 1
    return total / max(count, 1)


def paper_eq_9_10(s_p: list[float], s_n: list[float], m: float, gamma: float) -> tuple[list[float], list[float]]:
    """The paper's Eq. 9-10 as printed, generalised to several positives (for ``s_n > -m``)."""
    exps_n = [math.exp(gamma * (s * s - m * m)) for s in s_n]
    exps_p = [math.exp(gamma * ((s - 1) ** 2 - m * m)) for s in s_p]
    loss = math.log(1 + sum(exps_n) * sum(exps_p))
    z = 1 - math.exp(-loss)
    d_n = [z * e / sum(exps_n) * gamma * (s + m) for e, s in zip(exps_n, s_n, strict=True)]
    d_p = [z * e / sum(exps_p) * gamma * (s - 1 - m) for e, s in zip(exps_p, s_p, strict=True)]
    return d_p, d_n


def frozen_alpha_gradient(
    inputs: list[Tensor],
    labels: Tensor,
    ref_labels: Tensor | None,
    class_level: bool,
    weights: Tensor,
    m: float,
    gamma: float,
    h: float = 1e-6,
) -> list[Tensor]:
    """Central differences of ``sum(weights * Eq. 6)`` with the alphas frozen at ``inputs``.

    ``torch.autograd.gradcheck`` cannot check Circle loss as such: its alphas are detached, so its
    gradient is not the derivative of its value. This is the derivative it is meant to be.
    ``inputs``: ``[x]`` (batch against itself) or ``[x, refs_or_proxies]``, float64.
    """

    def pairs(args: list[Tensor]) -> list[AnchorPairs]:
        other = args[1] if len(args) > 1 else None
        if class_level:
            return anchor_pairs(args[0], labels, proxies=other)
        return anchor_pairs(args[0], labels, other, ref_labels)

    frozen = pairs(inputs)

    def value(args: list[Tensor]) -> Tensor:
        losses, _ = circle_reference(pairs(args), m, gamma, alpha_at=frozen)
        return (losses * weights).sum()

    grads = []
    for k, t in enumerate(inputs):
        numeric = torch.zeros_like(t)
        for idx in range(t.numel()):
            plus, minus = [u.clone() for u in inputs], [u.clone() for u in inputs]
            plus[k].view(-1)[idx] += h
            minus[k].view(-1)[idx] -= h
            numeric.view(-1)[idx] = (value(plus) - value(minus)) / (2 * h)
        grads.append(numeric)
    return grads
