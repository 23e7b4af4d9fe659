"""One rank of a distributed test run: ``python worker.py SCENARIO RANK WORLD RENDEZVOUS_FILE OUT_DIR``.

The test (tests/distributed/test_*.py) starts WORLD of these on gloo, then compares what each rank
saves to ``OUT_DIR/rank{RANK}.pt`` with a single-process run on the concatenated batch. The inputs are
built by :func:`make_case`, which the test calls too, so both sides see the same data.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from pairsim.distributed import GlobalPairLoss, ShardedProxyLoss, shard_ranges
from pairsim.losses import create_loss

IN_DIM, DIM, LR = 6, 5, 0.1

# name, constructor arguments, per-rank batch sizes (uneven on purpose)
PAIR_CASES: list[tuple[str, dict[str, Any], list[int]]] = [
    ("circle", {"m": 0.4, "gamma": 80.0, "fast_path": False}, [6, 4]),
    ("triplet", {"margin": 0.2, "mining": "batch_hard"}, [5, 5]),
    ("triplet", {"margin": 0.2, "mining": "all"}, [4, 6]),
    ("contrastive", {}, [5, 5]),
]
NUM_CLASSES = 11
# name, constructor arguments, shard sizes for 3 ranks (uneven, one rank with a single class), sample ratio
SHARDED_CASES: list[tuple[str, dict[str, Any], list[int], float]] = [
    ("circle", {"m": 0.25, "gamma": 32.0}, [6, 1, 4], 1.0),
    ("cosface", {"m": 0.35, "gamma": 16.0}, [3, 5, 3], 1.0),
    ("arcface", {"m": 0.5, "gamma": 16.0}, [2, 2, 7], 1.0),
    ("softmax", {}, [5, 0, 6], 1.0),
    ("circle", {"m": 0.25, "gamma": 32.0}, [6, 1, 4], 0.5),
]
SHARDED_BATCH = [4, 3, 2]


def make_case(index: int, sizes: list[int], num_classes: int) -> tuple[nn.Module, Tensor, Tensor]:
    """The backbone (float64 linear layer), global inputs and labels of test case ``index``."""
    gen = torch.Generator().manual_seed(1234 + index)
    model = nn.Linear(IN_DIM, DIM).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    inputs = torch.randn(sum(sizes), IN_DIM, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (sum(sizes),), generator=gen)
    return model, inputs, labels


def full_proxies(index: int, num_classes: int) -> Tensor:
    """``(C, DIM)`` float64 proxies of sharded case ``index``."""
    return torch.randn(num_classes, DIM, generator=torch.Generator().manual_seed(99 + index), dtype=torch.float64)


def sharded_labels(index: int) -> Tensor:
    """Labels of sharded case ``index``: a few classes only, so some shards hold no class of the batch."""
    gen = torch.Generator().manual_seed(7 + index)
    pool = torch.tensor([0, 2, 5, 6, 9, 10])  # classes 1, 3, 4, 7, 8 never appear
    return pool[torch.randint(0, len(pool), (sum(SHARDED_BATCH),), generator=gen)]


def _local(x: Tensor, sizes: list[int], rank: int) -> Tensor:
    return torch.split(x, sizes)[rank]


def _step(model: nn.Module, extra: list[nn.Parameter]) -> None:
    with torch.no_grad():
        for p in [*model.parameters(), *extra]:
            if p.grad is not None:
                p.sub_(LR * p.grad)


def run_pair(rank: int) -> list[dict[str, Any]]:
    results = []
    for index, (name, kwargs, sizes) in enumerate(PAIR_CASES):
        model, inputs, labels = make_case(index, sizes, num_classes=4)
        ddp = DistributedDataParallel(model)
        loss = GlobalPairLoss(create_loss(name, **kwargs))
        value = loss(ddp(_local(inputs, sizes, rank)), _local(labels, sizes, rank))
        value.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        _step(model, [])
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        results.append({"loss": value.detach(), "grads": grads, "params": params})
    return results


def run_sharded(rank: int, world: int) -> list[dict[str, Any]]:
    results = []
    for index, (name, kwargs, shard_sizes, ratio) in enumerate(SHARDED_CASES):
        model, inputs, _ = make_case(100 + index, SHARDED_BATCH, NUM_CLASSES)
        labels = sharded_labels(index)
        unsharded = create_loss(name, num_classes=NUM_CLASSES, embedding_dim=DIM, **kwargs).double()
        assert unsharded.proxies is not None
        with torch.no_grad():
            unsharded.proxies.copy_(full_proxies(index, NUM_CLASSES))
        shard = shard_ranges(NUM_CLASSES, world, shard_sizes)[rank]
        loss = ShardedProxyLoss.from_loss(unsharded, shard, sample_ratio=ratio, block_size=2, seed=index)
        sampler_state = loss.sampler.get_state()
        ddp = DistributedDataParallel(model)
        value = loss(ddp(_local(inputs, SHARDED_BATCH, rank)), _local(labels, SHARDED_BATCH, rank))
        value.backward()
        # Replay the class sampling from the generator's state, for the test's reference.
        loss.sampler.set_state(sampler_state)
        keep, _ = loss.scored_classes(labels)
        kept_ids = torch.arange(*shard) if keep is None else keep + shard[0]
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        proxy_grad = loss.proxies.grad.clone() if loss.proxies.grad is not None else torch.zeros_like(loss.proxies)
        _step(model, [loss.proxies])
        results.append(
            {
                "loss": value.detach(),
                "grads": grads,
                "proxy_grad": proxy_grad,
                "state": loss.state_dict(),
                "kept": kept_ids,
            }
        )
    return results


def main() -> None:
    scenario, rank, world, rendezvous, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        results = run_pair(rank) if scenario == "pair" else run_sharded(rank, world)
        torch.save(results, f"{out}/rank{rank}.pt")
        # No rank tears gloo down while another still talks to it.
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # The results are saved; gloo's threads have been seen to abort the interpreter's own teardown
    # ("terminate called without an active exception"), so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
