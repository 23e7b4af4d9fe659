"""2 and 3 gloo ranks against one process on the concatenated batch: loss, gradients, one SGD step.

Everything is float64, so the tolerance (rtol 1e-7, atol 1e-9; the issue asks for 1e-5) only
absorbs summation order.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch.testing import assert_close

from pairsim.distributed import ProxyShard, consolidate_shards
from pairsim.functional.pairs import Pairs
from pairsim.functional.reductions import mean_over_valid
from pairsim.losses import create_loss

TOL: dict[str, Any] = {"rtol": 1e-7, "atol": 1e-9}


def test_pair_wise_two_ranks_equal_one_process(run_ranks: Callable[[str, int], list[Any]], worker: ModuleType) -> None:
    ranks = run_ranks("pair", 2)
    for index, (name, kwargs, sizes) in enumerate(worker.PAIR_CASES):
        model, inputs, labels = worker.make_case(index, sizes, num_classes=4)
        loss = create_loss(name, **kwargs)
        embeddings = model(inputs)
        value = loss(embeddings, labels)
        value.backward()
        assert value.item() > 0
        # Global negatives matter: rank 0's batch alone gives another loss.
        assert abs(loss(embeddings[: sizes[0]], labels[: sizes[0]]).item() - value.item()) > 1e-6
        for rank, results in enumerate(ranks):
            got = results[index]
            context = f"{name} {kwargs} rank {rank}"
            assert_close(got["loss"], value.detach(), **TOL, msg=context)
            for param_name, param in model.named_parameters():
                assert param.grad is not None
                assert_close(got["grads"][param_name], param.grad, **TOL, msg=f"{context} grad {param_name}")
                stepped = param.detach() - worker.LR * param.grad
                assert_close(got["params"][param_name], stepped, **TOL, msg=f"{context} step {param_name}")


def _reference(worker: ModuleType, index: int, kept: torch.Tensor) -> tuple[torch.nn.Module, Any, torch.Tensor]:
    name, kwargs, _, ratio = worker.SHARDED_CASES[index]
    model, inputs, _ = worker.make_case(100 + index, worker.SHARDED_BATCH, worker.NUM_CLASSES)
    labels = worker.sharded_labels(index)
    loss = create_loss(name, num_classes=worker.NUM_CLASSES, embedding_dim=worker.DIM, **kwargs).double()
    assert loss.proxies is not None
    with torch.no_grad():
        loss.proxies.copy_(worker.full_proxies(index, worker.NUM_CLASSES))
    embeddings = model(inputs)
    if ratio == 1.0:
        value = loss(embeddings, labels)
    else:  # Partial FC: the negatives are the sampled classes only.
        pairs = loss.make_pairs(embeddings, labels, None, None)
        scored = torch.zeros(worker.NUM_CLASSES, dtype=torch.bool)
        scored[kept] = True
        pairs = Pairs(pairs.sim, pairs.pos, pairs.neg & scored[None, :])
        value = mean_over_valid(loss.per_anchor(pairs), pairs.valid)
    value.backward()
    return model, loss, value


def test_sharded_proxies_three_ranks_equal_unsharded(
    run_ranks: Callable[[str, int], list[Any]], worker: ModuleType
) -> None:
    ranks = run_ranks("sharded", 3)
    for index, (name, _, shard_sizes, ratio) in enumerate(worker.SHARDED_CASES):
        results = [r[index] for r in ranks]
        kept = torch.cat([r["kept"] for r in results])
        model, loss, value = _reference(worker, index, kept)
        labels = worker.sharded_labels(index)
        assert set(labels.tolist()) <= set(kept.tolist()), "every class of the batch is scored"
        if ratio < 1.0:
            assert len(kept) < worker.NUM_CLASSES, "sampling left some classes out"
        shards = [ProxyShard.from_state_dict(r["state"]) for r in results]
        assert [s.stop - s.start for s in shards] == shard_sizes
        grad_shards = [
            ProxyShard(s.start, s.stop, s.num_classes, r["proxy_grad"]) for s, r in zip(shards, results, strict=True)
        ]
        for rank, got in enumerate(results):
            context = f"{name} shards {shard_sizes} ratio {ratio} rank {rank}"
            assert_close(got["loss"], value.detach(), **TOL, msg=context)
            for param_name, param in model.named_parameters():
                assert_close(got["grads"][param_name], param.grad, **TOL, msg=f"{context} grad {param_name}")
        assert loss.proxies.grad is not None
        assert_close(consolidate_shards(grad_shards), loss.proxies.grad, **TOL, msg=f"{name} proxy grads")
        stepped = loss.proxies.detach() - worker.LR * loss.proxies.grad
        assert_close(consolidate_shards(shards), stepped, **TOL, msg=f"{name} proxies after one step")
