"""Class-level losses with the proxy matrix sharded across ranks (model parallel).

Each rank holds the proxies of its class range ``[start, stop)``. A step:

1. all-gather the embeddings and labels: every rank scores the global batch ``(N, D)``;
2. on each rank, the logsumexp of the negative exponents over the local classes, streamed over
   blocks of classes (recomputed in backward), and the positive term for the anchors whose class
   is local (each anchor's positive lives on exactly one rank);
3. all-reduce: the logsumexps are combined (max, then sum of rescaled exponentials), the positive
   terms summed; every rank then holds the same ``(N,)`` losses (:mod:`pairsim.distributed.heads`);
4. backward: each rank's proxies get their exact gradient locally; the gradient w.r.t. the gathered
   embeddings is summed over ranks and scattered back to their owners.

Memory per rank: ``(C / W) x D`` proxies (and their gradient and optimiser state) and a few
``(N, block)`` matrices; communication per step: ``O(N D)``, independent of ``C``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pairsim.distributed.comm import (
    Group,
    all_gather_rows,
    all_reduce_logsumexp,
    all_reduce_sum,
    gather_with_grad,
    world,
)
from pairsim.distributed.heads import ProxyHead, head_for
from pairsim.distributed.logsumexp import local_negative_logsumexp
from pairsim.distributed.shards import ProxyShard, shard_ranges
from pairsim.functional.reductions import mean_over_valid
from pairsim.losses.base import PairLoss
from pairsim.losses.registry import create_loss


def sample_classes(positives: Tensor, shard_size: int, num_keep: int, generator: torch.Generator) -> Tensor:
    """Sorted local class ids to score this step: all ``positives``, the rest drawn uniformly.

    Partial FC (An et al., 2021): the softmax denominator over a random subset of negative classes.

    Args:
        positives: local ids of the classes present in the global batch.
        shard_size: classes in the shard.
        num_keep: how many to keep (raised to ``len(positives)`` when smaller).
        generator: the random source (on the proxies' device).

    Returns:
        ``(k,)`` int64, sorted, ``k = min(shard_size, max(num_keep, len(positives)))``.

    Example:
        >>> sample_classes(torch.tensor([7]), 10, 3, torch.Generator().manual_seed(0)).tolist().count(7)
        1
    """
    priority = torch.rand(shard_size, generator=generator, device=generator.device)  # (c,) in [0, 1)
    priority[positives] = 2.0  # always kept
    keep = min(shard_size, max(num_keep, len(positives)))
    return priority.topk(keep).indices.sort().values


class ShardedProxyLoss(nn.Module):
    """A class-level loss whose ``(C, D)`` proxies are split across ranks; exact by default.

    Equal, loss and gradients, to the unsharded loss (e.g. ``CircleLoss(num_classes=C)``) on the
    global batch: the mean of the per-anchor losses over all ``N`` anchors of all ranks.

    Conventions:

    - value: the global loss, the same on every rank;
    - gradients: each rank's ``proxies`` get their exact gradient (they are not replicated: keep this
      module out of DDP, give its parameters to the optimiser). The embeddings get ``W`` times their
      exact gradient, so that DDP's average over the ``W`` ranks gives the backbone its exact gradient;
      ``ddp_average=False`` gives the exact gradient instead.

    Args:
        head: the loss (:mod:`pairsim.distributed.heads`); :meth:`from_loss` builds it from a loss.
        num_classes: ``C``.
        embedding_dim: ``D``.
        shard: this rank's ``[start, stop)``; ``None``: :func:`shard_ranges` split evenly.
        sample_ratio: fraction of each shard's classes scored per step (Partial FC); classes present in
            the batch are always scored. 1.0 (default) is the exact loss.
        block_size: classes per block (see :func:`local_negative_logsumexp`).
        group: process group; ``None`` for the default one.
        ddp_average: see Conventions.
        seed: seeds the proxies' initialisation (per shard) and the class sampling (per rank).

    Example:
        >>> from pairsim.losses import CircleLoss
        >>> loss = ShardedProxyLoss.from_loss(CircleLoss(num_classes=5, embedding_dim=4))
        >>> loss(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])).dim()
        0
    """

    def __init__(
        self,
        head: ProxyHead,
        num_classes: int,
        embedding_dim: int,
        shard: tuple[int, int] | None = None,
        *,
        sample_ratio: float = 1.0,
        block_size: int | None = None,
        group: Group = None,
        ddp_average: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        rank, size = world(group)
        start, stop = shard if shard is not None else shard_ranges(num_classes, size)[rank]
        if not 0 <= start <= stop <= num_classes or embedding_dim < 1:
            raise ValueError(f"bad shard [{start}, {stop}) of {num_classes} classes or embedding_dim {embedding_dim}")
        if not 0.0 < sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must lie in (0, 1], got {sample_ratio!r}")
        self.head, self.num_classes, self.start, self.stop = head, num_classes, start, stop
        self.sample_ratio, self.block_size, self.group, self.ddp_average = sample_ratio, block_size, group, ddp_average
        init = torch.Generator().manual_seed(seed * 1_000_003 + start)  # PairLoss's init, drawn per shard
        self.proxies = nn.Parameter(torch.randn(stop - start, embedding_dim, generator=init) / math.sqrt(embedding_dim))
        self.sampler = torch.Generator().manual_seed(seed * 1_000_003 + rank)

    @classmethod
    def from_loss(
        cls,
        loss: PairLoss,
        shard: tuple[int, int] | None = None,
        *,
        sample_ratio: float = 1.0,
        block_size: int | None = None,
        group: Group = None,
        ddp_average: bool = True,
        seed: int = 0,
    ) -> ShardedProxyLoss:
        """The sharded form of a class-level loss, its proxies' rows ``[start, stop)`` copied in (same dtype).

        The other arguments are the constructor's. Every rank holds the full proxies until this returns:
        for a million classes, :func:`create_sharded_loss` never allocates them.
        """
        if loss.proxies is None or loss.num_classes is None:
            raise ValueError(f"{type(loss).__name__} is pair-wise: use GlobalPairLoss")
        num_classes, dim = loss.proxies.shape
        sharded = cls(
            head_for(loss),
            num_classes,
            dim,
            shard,
            sample_ratio=sample_ratio,
            block_size=block_size,
            group=group,
            ddp_average=ddp_average,
            seed=seed,
        )
        # A fresh parameter keeps the loss's dtype and device (and drops the random init).
        sharded.proxies = nn.Parameter(loss.proxies.detach()[sharded.start : sharded.stop].clone())
        return sharded

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The global loss of this rank's ``(B_r, D)`` embeddings and ``(B_r,)`` class ids, with the others'."""
        dim = self.proxies.shape[1]
        if embeddings.dim() != 2 or embeddings.shape[1] != dim or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"expected ({len(labels)}, {self.proxies.shape[1]}) embeddings, got {embeddings.shape}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"class ids must lie in [0, {self.num_classes})")
        size = world(self.group)[1]
        scale = float(size) if self.ddp_average else 1.0
        gathered, sizes = gather_with_grad(embeddings, self.group, grad_scale=scale)  # (N, D)
        all_labels = all_gather_rows(labels, sizes, self.group)  # (N,)
        x = gathered.float() if gathered.dtype in (torch.float16, torch.bfloat16) else gathered
        x = F.normalize(x, dim=1, eps=1e-12) if self.head.cosine else x
        keep, local_labels = self.scored_classes(all_labels)
        proxies = (self.proxies if keep is None else self.proxies[keep]).to(x.dtype)  # (c, D)
        rows = (local_labels >= 0).nonzero()[:, 0]  # anchors whose class is on this rank
        positive = torch.zeros(len(x), dtype=x.dtype, device=x.device).index_put(
            (rows,), self.head.positive(self.head.score_rows(x[rows], proxies[local_labels[rows]]))
        )  # (N,)
        negative = local_negative_logsumexp(self.head, x, proxies, local_labels, self.block_size)  # (N,)
        negative = all_reduce_logsumexp(negative, self.group)
        positive = all_reduce_sum(positive, self.group)
        # softplus as logaddexp(0, .): exact, where F.softplus switches to the identity above 20 (error e^-20).
        losses = torch.logaddexp(torch.zeros_like(negative), negative + positive)  # (N,)
        return mean_over_valid(losses, torch.isfinite(negative))

    def scored_classes(self, labels: Tensor) -> tuple[Tensor | None, Tensor]:
        """The local classes scored this step and each anchor's class as an index into them.

        Args:
            labels: ``(N,)`` the global batch's class ids.

        Returns:
            ``(keep, local_labels)``: ``keep`` the sorted local class ids drawn by :func:`sample_classes`
            (``None`` in the exact mode: all of them); ``local_labels`` ``(N,)``, ``-1`` where the
            anchor's class is on another rank.
        """
        local = torch.where((labels >= self.start) & (labels < self.stop), labels - self.start, -1)  # (N,)
        if self.sample_ratio >= 1.0:
            return None, local
        if self.sampler.device != self.proxies.device:
            self.sampler = torch.Generator(device=self.proxies.device).manual_seed(self.sampler.initial_seed())
        size = len(self.proxies)
        keep = sample_classes(local[local >= 0].unique(), size, math.ceil(self.sample_ratio * size), self.sampler)
        return keep, torch.where(local >= 0, torch.searchsorted(keep, local.clamp_min(0)), -1)

    def shard(self) -> ProxyShard:
        """This rank's shard (a detached view of the proxies)."""
        return ProxyShard(self.start, self.stop, self.num_classes, self.proxies.detach())

    def get_extra_state(self) -> dict[str, Any]:
        # The sampler's state too: a resumed run then draws the same negative classes as an uninterrupted one.
        return {
            "start": self.start,
            "stop": self.stop,
            "num_classes": self.num_classes,
            "sampler": self.sampler.get_state(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # Resuming needs the same sharding (same world size and sizes): the rows would mean other classes.
        keys = ("start", "stop", "num_classes")
        mine, theirs = {k: getattr(self, k) for k in keys}, {k: int(state[k]) for k in keys}
        if theirs != mine:
            raise ValueError(f"checkpoint shard {theirs} does not match this rank's shard {mine}")
        if "sampler" in state:
            if self.sampler.device != self.proxies.device:
                self.sampler = torch.Generator(device=self.proxies.device)
            self.sampler.set_state(state["sampler"].cpu())

    def extra_repr(self) -> str:
        return (
            f"{self.head}, classes [{self.start}, {self.stop}) of {self.num_classes}, sample_ratio={self.sample_ratio}"
        )


def create_sharded_loss(
    name: str,
    num_classes: int,
    embedding_dim: int,
    loss_args: Mapping[str, Any] | None = None,
    *,
    shard: tuple[int, int] | None = None,
    sample_ratio: float = 1.0,
    block_size: int | None = None,
    group: Group = None,
    ddp_average: bool = True,
    seed: int = 0,
) -> ShardedProxyLoss:
    """A registered class-level loss, sharded, without ever allocating the full ``(C, D)`` proxies.

    ``loss_args`` (e.g. ``{"m": 0.25, "gamma": 256.0}``) are checked by the loss's own constructor,
    called with one class; the other arguments are :class:`ShardedProxyLoss`'s.

    Example:
        >>> create_sharded_loss("cosface", 1_000_000, 4, {"m": 0.35}, shard=(0, 3)).proxies.shape
        torch.Size([3, 4])
    """
    head = head_for(create_loss(name, num_classes=1, embedding_dim=embedding_dim, **dict(loss_args or {})))
    return ShardedProxyLoss(
        head,
        num_classes,
        embedding_dim,
        shard,
        sample_ratio=sample_ratio,
        block_size=block_size,
        group=group,
        ddp_average=ddp_average,
        seed=seed,
    )
