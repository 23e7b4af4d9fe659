"""Class-level losses as "softplus of a logsumexp plus a positive term", the form sharding needs.

Against class proxies every loss of Section 2 of the Circle Loss paper with one positive per anchor is

    ``L_i = softplus(logsumexp_{j != y_i} z_n(s_ij) + z_p(s_iy))``

- Circle (Eq. 6): ``z_n = gamma a_n (s - Delta_n)``, ``z_p = -gamma a_p (s - Delta_p)``, alphas detached;
- CosFace (Eq. 2): ``z_n = gamma s``, ``z_p = -gamma (s - m)``;
- ArcFace: ``z_n = gamma s``, ``z_p = -gamma cos(theta + m)`` (:func:`arcface_margin`);
- softmax (Eq. 2 with inner products, ``gamma = 1``): ``z_n = s``, ``z_p = -s``,

since ``-log(e^a / (e^a + sum_j e^{b_j})) = softplus(logsumexp_j b_j - a)``. Only the logsumexp runs
over all ``C`` classes, so only it has to be combined across the ranks that hold the proxy shards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pairsim.functional.arcface import arcface_margin
from pairsim.losses.arcface_loss import ArcFaceLoss
from pairsim.losses.base import PairLoss
from pairsim.losses.circle_loss import CircleLoss
from pairsim.losses.cosface_loss import CosFaceLoss
from pairsim.losses.softmax_loss import SoftmaxLoss


@dataclass(frozen=True)
class ProxyHead:
    """How one class-level loss scores and turns similarities into the two exponents.

    Attributes:
        cosine: similarities are cosines (embeddings and proxies normalised); else inner products.
    """

    cosine: bool = True

    def score(self, x: Tensor, proxies: Tensor, eps: float = 1e-12) -> Tensor:
        """``(N, c)`` similarities of (already normalised, if ``cosine``) ``x`` to ``proxies``."""
        return x @ (F.normalize(proxies, dim=1, eps=eps) if self.cosine else proxies).T  # (N, c)

    def score_rows(self, x: Tensor, proxies: Tensor, eps: float = 1e-12) -> Tensor:
        """``(n,)`` similarity of each row of ``x`` to the same row of ``proxies`` (the positives)."""
        return (x * (F.normalize(proxies, dim=1, eps=eps) if self.cosine else proxies)).sum(dim=1)

    def negative_(self, sim: Tensor) -> Tensor:
        """``z_n``, the exponent of a between-class similarity, written over ``sim`` (values only).

        In place because it runs over ``(N, block)`` matrices, where each pass over memory counts;
        the gradient comes from :meth:`negative_slope`.
        """
        raise NotImplementedError

    def negative_slope(self, sim: Tensor, out: Tensor) -> Tensor | float:
        """``dz_n/ds``, for the closed-form backward of the streamed logsumexp; ``out`` may receive it."""
        raise NotImplementedError

    def positive(self, sim: Tensor) -> Tensor:
        """``z_p``: the term of the within-class similarity added to the logsumexp."""
        raise NotImplementedError


@dataclass(frozen=True)
class CircleHead(ProxyHead):
    """Circle loss, Eq. 6 with one positive; the paper's face setting is ``m = 0.25, gamma = 256``."""

    m: float = 0.25
    gamma: float = 256.0

    def negative_(self, sim: Tensor) -> Tensor:
        # gamma [s + m]_+ (s - m) = gamma (u^2 - m^2) with u = max(s, -m): three passes instead of five.
        return sim.clamp_min_(-self.m).square_().sub_(self.m * self.m).mul_(self.gamma)

    def negative_slope(self, sim: Tensor, out: Tensor) -> Tensor:
        # gamma a_n with a_n = [s + m]_+ a constant of the gradient (Eq. 10).
        return torch.add(sim, self.m, out=out).clamp_min_(0.0).mul_(self.gamma)

    def positive(self, sim: Tensor) -> Tensor:
        return -self.gamma * (1.0 + self.m - sim).clamp_min(0.0).detach() * (sim - (1.0 - self.m))


@dataclass(frozen=True)
class CosFaceHead(ProxyHead):
    """CosFace / AM-Softmax, Eq. 2 of Sun et al.; recommended ``m = 0.35, gamma = 64``."""

    m: float = 0.35
    gamma: float = 64.0

    def negative_(self, sim: Tensor) -> Tensor:
        return sim.mul_(self.gamma)

    def negative_slope(self, sim: Tensor, out: Tensor) -> float:
        return self.gamma

    def positive(self, sim: Tensor) -> Tensor:
        return -self.gamma * (sim - self.m)


@dataclass(frozen=True)
class ArcFaceHead(CosFaceHead):
    """ArcFace, additive angular margin; recommended ``m = 0.5, gamma = 64``. Its negatives are CosFace's."""

    m: float = 0.5

    def positive(self, sim: Tensor) -> Tensor:
        return -self.gamma * arcface_margin(sim, self.m)


@dataclass(frozen=True)
class SoftmaxHead(ProxyHead):
    """Softmax cross-entropy on inner products ``w_j^T x`` (no normalisation, no bias)."""

    cosine: bool = False

    def negative_(self, sim: Tensor) -> Tensor:
        return sim

    def negative_slope(self, sim: Tensor, out: Tensor) -> float:
        return 1.0

    def positive(self, sim: Tensor) -> Tensor:
        return -sim


def _circle(loss: PairLoss) -> ProxyHead:
    assert isinstance(loss, CircleLoss)
    return CircleHead(m=loss.m, gamma=loss.gamma)


def _cosface(loss: PairLoss) -> ProxyHead:
    assert isinstance(loss, CosFaceLoss)
    return CosFaceHead(m=loss.m, gamma=loss.gamma)


def _arcface(loss: PairLoss) -> ProxyHead:
    assert isinstance(loss, ArcFaceLoss)
    return ArcFaceHead(m=loss.m, gamma=loss.gamma)


_HEADS: dict[type[PairLoss], Callable[[PairLoss], ProxyHead]] = {
    CircleLoss: _circle,
    CosFaceLoss: _cosface,
    ArcFaceLoss: _arcface,
    SoftmaxLoss: lambda loss: SoftmaxHead(),
}


def head_for(loss: PairLoss) -> ProxyHead:
    """The head computing ``loss`` (its exact class, so a subclass that changes the math is refused).

    Raises:
        ValueError: if the loss has no sharded form.

    Example:
        >>> head_for(CosFaceLoss(m=0.35, gamma=64.0, num_classes=3, embedding_dim=2))
        CosFaceHead(cosine=True, m=0.35, gamma=64.0)
    """
    try:
        return _HEADS[type(loss)](loss)
    except KeyError:
        known = ", ".join(sorted(cls.__name__ for cls in _HEADS))
        raise ValueError(f"{type(loss).__name__} has no sharded form; known: {known}") from None
