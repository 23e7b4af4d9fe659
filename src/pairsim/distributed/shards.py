"""Proxy shards: which rank owns which classes, and moving shards in and out of checkpoints.

Rank ``r`` owns the contiguous class range ``[start, stop)`` of the ``(C, D)`` proxy matrix. A rank's
checkpoint is the ``state_dict()`` of its :class:`ShardedProxyLoss`: the ``proxies`` rows and, as extra
state, the range and ``C``; :func:`consolidate_shards` puts the ranks' shards back into one matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def shard_ranges(num_classes: int, world_size: int, sizes: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` class ranges of the ranks, in rank order.

    Args:
        num_classes: ``C``.
        world_size: number of ranks.
        sizes: classes per rank (they must sum to ``C``; 0 is allowed); ``None`` splits evenly, the
            first ``C % world_size`` ranks taking one class more.

    Returns:
        ``world_size`` ranges covering ``[0, C)``.

    Raises:
        ValueError: on sizes that do not fit.

    Example:
        >>> shard_ranges(7, 3)
        [(0, 3), (3, 5), (5, 7)]
    """
    if num_classes < 1 or world_size < 1:
        raise ValueError(f"need num_classes >= 1 and world_size >= 1, got {num_classes}, {world_size}")
    if sizes is None:
        base, extra = divmod(num_classes, world_size)
        sizes = [base + (r < extra) for r in range(world_size)]
    if len(sizes) != world_size or min(sizes) < 0 or sum(sizes) != num_classes:
        raise ValueError(f"shard sizes {list(sizes)} do not split {num_classes} classes over {world_size} ranks")
    bounds = [0, *torch.tensor(list(sizes)).cumsum(0).tolist()]
    return [(int(bounds[r]), int(bounds[r + 1])) for r in range(world_size)]


@dataclass(frozen=True)
class ProxyShard:
    """Rows ``[start, stop)`` of a ``(num_classes, D)`` proxy matrix.

    Attributes:
        start: first class of the shard.
        stop: one past the last class.
        num_classes: ``C`` of the whole matrix.
        proxies: ``(stop - start, D)``.
    """

    start: int
    stop: int
    num_classes: int
    proxies: Tensor

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop <= self.num_classes or len(self.proxies) != self.stop - self.start:
            raise ValueError(
                f"shard [{self.start}, {self.stop}) of {self.num_classes} classes holds {len(self.proxies)} rows"
            )

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], prefix: str = "") -> ProxyShard:
        """The shard in a :class:`ShardedProxyLoss` state dict (keys under ``prefix``)."""
        extra = state[prefix + "_extra_state"]
        return cls(int(extra["start"]), int(extra["stop"]), int(extra["num_classes"]), state[prefix + "proxies"])


def consolidate_shards(shards: Sequence[ProxyShard]) -> Tensor:
    """The ``(C, D)`` proxy matrix from all ranks' shards (in any order).

    Raises:
        ValueError: if the shards disagree on ``C`` or ``D``, overlap, or leave classes out.

    Example:
        >>> full = torch.arange(10.0).reshape(5, 2)
        >>> parts = split_proxies(full, shard_ranges(5, 2))
        >>> torch.equal(consolidate_shards(parts[::-1]), full)
        True
    """
    if not shards:
        raise ValueError("no shards to consolidate")
    ordered = sorted(shards, key=lambda s: (s.start, s.stop))
    num_classes, dim = ordered[0].num_classes, ordered[0].proxies.shape[1]
    position = 0
    for shard in ordered:
        if shard.num_classes != num_classes or shard.proxies.shape[1] != dim:
            raise ValueError("the shards come from different proxy matrices (C or D differ)")
        if shard.start != position:
            raise ValueError(f"shards leave a gap or overlap at class {position} (next starts at {shard.start})")
        position = shard.stop
    if position != num_classes:
        raise ValueError(f"the shards cover classes [0, {position}) of {num_classes}")
    return torch.cat([shard.proxies for shard in ordered])


def split_proxies(proxies: Tensor, ranges: Sequence[tuple[int, int]]) -> list[ProxyShard]:
    """Cut a ``(C, D)`` proxy matrix into the shards of ``ranges`` (e.g. to resume on another world size).

    Example:
        >>> [s.proxies.shape[0] for s in split_proxies(torch.zeros(5, 2), shard_ranges(5, 2))]
        [3, 2]
    """
    return [ProxyShard(start, stop, len(proxies), proxies[start:stop].clone()) for start, stop in ranges]
