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

# What users call. Building blocks of the losses (the heads, the sharded logsumexp, the collectives'
# log, anchor weights) stay in their modules: pairsim.distributed.heads, .logsumexp, .comm, .pair_wise.
from pairsim.distributed.comm import all_gather_rows, all_reduce_sum, gather_with_grad, world
from pairsim.distributed.pair_wise import GlobalPairLoss, global_pair_loss, register_anchor_weights
from pairsim.distributed.sharded import ShardedProxyLoss, create_sharded_loss
from pairsim.distributed.shards import ProxyShard, consolidate_shards, shard_ranges, split_proxies

__all__ = [
    "GlobalPairLoss",
    "ProxyShard",
    "ShardedProxyLoss",
    "all_gather_rows",
    "all_reduce_sum",
    "consolidate_shards",
    "create_sharded_loss",
    "gather_with_grad",
    "global_pair_loss",
    "register_anchor_weights",
    "shard_ranges",
    "split_proxies",
    "world",
]
