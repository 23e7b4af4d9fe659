"""Loop-based pair sources for the references: per anchor, the lists of s_p and s_n.

Written from Section 2 of the Circle Loss paper with one scalar at a time, so that the
references share no vectorised code (masks, matrix products) with the library.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AnchorSims:
    """One anchor's within-class (``pos``) and between-class (``neg``) similarities, 0-dim each."""

    pos: list[Tensor]
    neg: list[Tensor]

    @property
    def valid(self) -> bool:
        return len(self.pos) > 0 and len(self.neg) > 0


def cosine(u: Tensor, v: Tensor) -> Tensor:
    """``u^T v / (|u| |v|)`` for two vectors, summed element by element."""
    return inner(u, v) / (torch.sqrt(inner(u, u)) * torch.sqrt(inner(v, v)))


def inner(u: Tensor, v: Tensor) -> Tensor:
    """``u^T v`` for two vectors."""
    total = u[0] * v[0]
    for k in range(1, len(u)):
        total = total + u[k] * v[k]
    return total


def batch_sims(
    embeddings: Tensor, labels: Tensor, ref_embeddings: Tensor | None = None, ref_labels: Tensor | None = None
) -> list[AnchorSims]:
    """Pair-wise labels: each anchor against the other batch samples, or against given references."""
    self_pairs = ref_embeddings is None
    refs = embeddings if ref_embeddings is None else ref_embeddings
    ref_y = labels if ref_labels is None else ref_labels
    out = []
    for i in range(len(embeddings)):
        sims = AnchorSims([], [])
        for j in range(len(refs)):
            if self_pairs and i == j:
                continue
            s = cosine(embeddings[i], refs[j])
            if int(labels[i]) == int(ref_y[j]):
                sims.pos.append(s)
            else:
                sims.neg.append(s)
        out.append(sims)
    return out


def proxy_sims(embeddings: Tensor, labels: Tensor, proxies: Tensor, use_inner: bool = False) -> list[AnchorSims]:
    """Class-level labels: each anchor against every class proxy, the proxy of its class positive."""
    score = inner if use_inner else cosine
    out = []
    for i in range(len(embeddings)):
        sims = AnchorSims([], [])
        for c in range(len(proxies)):
            s = score(embeddings[i], proxies[c])
            if int(labels[i]) == c:
                sims.pos.append(s)
            else:
                sims.neg.append(s)
        out.append(sims)
    return out


def mean_of_valid(anchors: list[AnchorSims], per_anchor: list[Tensor]) -> Tensor:
    """Mean of the losses of anchors with a positive and a negative; 0 when there are none."""
    kept = [loss for sims, loss in zip(anchors, per_anchor, strict=True) if sims.valid]
    if not kept:
        return torch.tensor(0.0, dtype=torch.float64)
    return sum(kept) / len(kept)  # type: ignore[return-value]


def hinge(x: Tensor) -> Tensor:
    """``[x]_+`` of a scalar, with the gradient of ``relu`` (0 at 0)."""
    return x if x.item() > 0 else x * 0
