"""Distributed training pieces on ``torch.distributed``: global negatives and sharded class proxies.

- :class:`GlobalPairLoss` / :func:`global_pair_loss`: a pair-wise loss whose anchors see the
  references of every rank (data parallel);
- :class:`ShardedProxyLoss`: a class-level loss (Circle, CosFace, ArcFace, softmax) whose ``(C, D)``
  proxies are split across ranks (model parallel), exact or with sampled negative classes;
- :func:`gather_with_grad` and the replicated all-reduces they are built from;
- :func:`shard_ranges`, :class:`ProxyShard`, :func:`consolidate_shards`, :func:`split_proxies` for
  checkpoints.

Convention shared by both losses: the returned value is the global loss, identical on every rank
(what one process computes on the concatenated batch), and the gradients are scaled so that DDP's
average over the ``W`` ranks yields the single-process gradient; rank-owned proxy shards get their
exact gradient. Everything also runs in a single process without a process group.
"""

from pairsim.distributed.comm import (
    COMM_LOG,
    CommLog,
    all_gather_rows,
    all_reduce_logsumexp,
    all_reduce_sum,
    gather_with_grad,
    world,
)
from pairsim.distributed.heads import ArcFaceHead, CircleHead, CosFaceHead, ProxyHead, SoftmaxHead, head_for
from pairsim.distributed.logsumexp import local_negative_logsumexp
from pairsim.distributed.pair_wise import (
    GlobalPairLoss,
    anchor_weights,
    exclude_self,
    global_pair_loss,
    register_anchor_weights,
)
from pairsim.distributed.sharded import ShardedProxyLoss, create_sharded_loss, sample_classes
from pairsim.distributed.shards import ProxyShard, consolidate_shards, shard_ranges, split_proxies

__all__ = [
    "COMM_LOG",
    "ArcFaceHead",
    "CircleHead",
    "CommLog",
    "CosFaceHead",
    "GlobalPairLoss",
    "ProxyHead",
    "ProxyShard",
    "ShardedProxyLoss",
    "SoftmaxHead",
    "all_gather_rows",
    "all_reduce_logsumexp",
    "all_reduce_sum",
    "anchor_weights",
    "consolidate_shards",
    "create_sharded_loss",
    "exclude_self",
    "gather_with_grad",
    "global_pair_loss",
    "head_for",
    "local_negative_logsumexp",
    "register_anchor_weights",
    "sample_classes",
    "shard_ranges",
    "split_proxies",
    "world",
]
