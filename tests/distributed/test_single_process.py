"""The distributed pieces in one process (no process group): equal to the plain losses, and their edges."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.testing import assert_close

from pairsim.distributed import (
    GlobalPairLoss,
    ProxyShard,
    ShardedProxyLoss,
    consolidate_shards,
    create_sharded_loss,
    gather_with_grad,
    global_pair_loss,
    shard_ranges,
    split_proxies,
)
from pairsim.distributed.comm import all_reduce_logsumexp
from pairsim.distributed.heads import CircleHead, CosFaceHead, SoftmaxHead, head_for
from pairsim.distributed.logsumexp import local_negative_logsumexp
from pairsim.distributed.pair_wise import anchor_weights, exclude_self
from pairsim.distributed.sharded import sample_classes
from pairsim.functional.circle import circle_logits
from pairsim.functional.pairs import Pairs, batch_pairs
from pairsim.functional.reductions import masked_logsumexp
from pairsim.functional.similarity import cosine_similarity_matrix
from pairsim.losses import CircleLoss, TripletLoss, create_loss

CLASS_LEVEL = [
    ("circle", {"m": 0.25, "gamma": 64.0}),
    ("cosface", {"m": 0.35, "gamma": 16.0}),
    ("arcface", {"m": 0.5, "gamma": 16.0}),
    ("softmax", {}),
]


def _grads(loss_fn: Any, x: Tensor, y: Tensor, proxies: nn.Parameter) -> tuple[Tensor, Tensor, Tensor]:
    x = x.detach().clone().requires_grad_(True)
    value = loss_fn(x, y)
    value.backward()
    assert x.grad is not None and proxies.grad is not None
    return value.detach(), x.grad, proxies.grad


@pytest.mark.parametrize(("name", "kwargs"), CLASS_LEVEL)
@pytest.mark.parametrize("block_size", [None, 3])
def test_sharded_loss_in_one_process_equals_unsharded(
    name: str, kwargs: dict[str, Any], block_size: int | None
) -> None:
    torch.manual_seed(0)
    loss = create_loss(name, num_classes=10, embedding_dim=8, **kwargs).double()
    sharded = ShardedProxyLoss.from_loss(loss, block_size=block_size)
    x, y = torch.randn(7, 8, dtype=torch.float64), torch.tensor([0, 3, 3, 9, 5, 0, 1])
    assert loss.proxies is not None
    expected = _grads(loss, x, y, loss.proxies)
    for got, want in zip(_grads(sharded, x, y, sharded.proxies), expected, strict=True):
        # 1e-8, not 1e-12: F.softplus in functional.circle_loss returns x itself above 20 (off by e^-20).
        assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_sharded_loss_one_class_is_zero_with_zero_gradient() -> None:
    sharded = ShardedProxyLoss.from_loss(CircleLoss(num_classes=1, embedding_dim=4))
    value, x_grad, proxy_grad = _grads(sharded, torch.randn(3, 4), torch.zeros(3, dtype=torch.int64), sharded.proxies)
    assert value.item() == 0.0 and not x_grad.any() and not proxy_grad.any()


def test_sharded_loss_bf16_embeddings_match_float32() -> None:
    torch.manual_seed(1)
    sharded = ShardedProxyLoss.from_loss(CircleLoss(num_classes=6, embedding_dim=8))
    x, y = torch.randn(5, 8).bfloat16(), torch.tensor([0, 1, 2, 3, 5])
    assert_close(sharded(x, y), sharded(x.float(), y))


def test_sharded_loss_rejects_bad_labels_and_non_proxy_losses() -> None:
    sharded = ShardedProxyLoss.from_loss(CircleLoss(num_classes=4, embedding_dim=3))
    with pytest.raises(ValueError, match="class ids"):
        sharded(torch.randn(2, 3), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="pair-wise"):
        ShardedProxyLoss.from_loss(CircleLoss())
    with pytest.raises(ValueError, match="no sharded form"):
        head_for(create_loss("normface", num_classes=3, embedding_dim=2))


def test_sampling_keeps_positives_and_scores_only_kept_classes() -> None:
    torch.manual_seed(2)
    loss = CircleLoss(num_classes=20, embedding_dim=4, m=0.25, gamma=32.0).double()
    sharded = ShardedProxyLoss.from_loss(loss, sample_ratio=0.25, seed=3)
    x, y = torch.randn(3, 4, dtype=torch.float64, requires_grad=True), torch.tensor([2, 17, 2])
    state = sharded.sampler.get_state()
    sharded(x, y).backward()
    sharded.sampler.set_state(state)
    keep, local = sharded.scored_classes(y)
    assert keep is not None and len(keep) == 5 and {2, 17} <= set(keep.tolist())
    assert torch.equal(keep[local], y)
    assert sharded.proxies.grad is not None
    touched = sharded.proxies.grad.abs().sum(dim=1) > 0
    assert set(touched.nonzero()[:, 0].tolist()) <= set(keep.tolist())


def test_a_restored_state_draws_the_same_classes_as_the_uninterrupted_run() -> None:
    sharded = create_sharded_loss("circle", 50, 4, sample_ratio=0.2, seed=1)
    y = torch.tensor([3, 30])
    sharded.scored_classes(y)  # one step done before the checkpoint
    saved = sharded.state_dict()
    ahead = [sharded.scored_classes(y)[0] for _ in range(3)]
    resumed = create_sharded_loss("circle", 50, 4, sample_ratio=0.2, seed=1)
    resumed.load_state_dict(saved)
    again = [resumed.scored_classes(y)[0] for _ in range(3)]
    assert all(a is not None and b is not None and torch.equal(a, b) for a, b in zip(ahead, again, strict=True))
    assert not torch.equal(ahead[0], ahead[1])  # the draws do change from step to step
    with pytest.raises(ValueError, match="does not match"):
        create_sharded_loss("circle", 50, 4, shard=(0, 25)).load_state_dict(saved)


def test_sample_classes_is_sorted_and_capped() -> None:
    gen = torch.Generator().manual_seed(0)
    keep = sample_classes(torch.tensor([1, 4, 6]), 8, 2, gen)
    assert keep.tolist() == [1, 4, 6]
    keep = sample_classes(torch.tensor([1]), 8, 5, gen)
    assert len(keep) == 5 and 1 in keep.tolist() and torch.equal(keep, keep.sort().values)


@pytest.mark.parametrize("loss", [CircleLoss(m=0.4, gamma=80.0), TripletLoss(mining="all"), TripletLoss()])
def test_global_pair_loss_in_one_process_equals_plain_loss(loss: Any) -> None:
    torch.manual_seed(3)
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3])
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = GlobalPairLoss(loss)(xa, y), loss(xb, y)
    got.backward()
    want.backward()
    assert_close(got, want)
    assert_close(xa.grad, xb.grad)


def test_anchor_weights_refuse_unknown_reductions() -> None:
    class HalfTriplet(TripletLoss):
        pass

    class OddReduce(CircleLoss):
        def reduce(self, pairs: Pairs) -> Tensor:
            return self.per_anchor(pairs).max()

    pairs = batch_pairs(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    assert anchor_weights(HalfTriplet(mining="all"), pairs).tolist() == [2.0, 2.0, 2.0, 2.0]
    with pytest.raises(TypeError, match="reduce"):
        anchor_weights(OddReduce(), pairs)
    with pytest.raises(TypeError, match="reduce"):
        global_pair_loss(OddReduce(), torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))


def test_exclude_self_drops_the_offset_diagonal() -> None:
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    refs, ref_y = torch.cat([torch.randn(3, 3), x]), torch.tensor([0, 1, 1, 0, 1])
    pairs = exclude_self(batch_pairs(x, y, refs, ref_y), offset=3)
    assert pairs.pos.int().tolist() == [[1, 0, 0, 0, 0], [0, 1, 1, 0, 0]]
    assert pairs.neg.int().tolist() == [[0, 1, 1, 0, 1], [1, 0, 0, 1, 0]]


def test_collectives_without_process_group_are_identities() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    gathered, sizes = gather_with_grad(x, grad_scale=2.0)
    gathered.sum().backward()
    assert x.grad is not None
    assert sizes == [3] and torch.equal(gathered, x) and torch.equal(x.grad, torch.full((3, 2), 2.0))
    assert torch.equal(all_reduce_logsumexp(torch.tensor([1.0, float("-inf")])), torch.tensor([1.0, float("-inf")]))


def test_shard_ranges() -> None:
    assert shard_ranges(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert shard_ranges(5, 3, [0, 5, 0]) == [(0, 0), (0, 5), (5, 5)]
    with pytest.raises(ValueError, match="do not split"):
        shard_ranges(5, 2, [2, 2])


def test_checkpoint_round_trip_and_consolidation() -> None:
    full = torch.randn(7, 3)
    ranges = shard_ranges(7, 3, [4, 0, 3])
    losses = []
    for shard in split_proxies(full, ranges):
        module = ShardedProxyLoss(head_for(CircleLoss()), 7, 3, (shard.start, shard.stop))
        module.load_state_dict({"proxies": shard.proxies, "_extra_state": module.get_extra_state()})
        losses.append(module)
    states = [m.state_dict() for m in losses]
    assert torch.equal(consolidate_shards([ProxyShard.from_state_dict(s) for s in states[::-1]]), full)
    restored = ShardedProxyLoss(head_for(CircleLoss()), 7, 3, ranges[2])
    restored.load_state_dict(states[2])
    assert torch.equal(restored.proxies.detach(), full[4:])
    with pytest.raises(ValueError, match="does not match"):
        ShardedProxyLoss(head_for(CircleLoss()), 7, 3, (0, 3)).load_state_dict(states[2])


def test_consolidate_rejects_gaps_overlaps_and_mismatches() -> None:
    parts = split_proxies(torch.randn(6, 2), shard_ranges(6, 3))
    with pytest.raises(ValueError, match="gap or overlap"):
        consolidate_shards([parts[0], parts[2]])
    with pytest.raises(ValueError, match="cover"):
        consolidate_shards(parts[:2])
    with pytest.raises(ValueError, match="different"):
        consolidate_shards([parts[0], ProxyShard(2, 4, 6, torch.zeros(2, 5)), parts[2]])
    with pytest.raises(ValueError, match="holds"):
        ProxyShard(0, 3, 6, torch.zeros(2, 2))


@pytest.mark.parametrize("head", [CircleHead(m=0.25, gamma=32.0), CosFaceHead(m=0.35, gamma=8.0), SoftmaxHead()])
def test_streamed_negative_logsumexp_matches_autograd(head: Any) -> None:
    torch.manual_seed(4)
    x = torch.randn(5, 4, dtype=torch.float64)
    proxies = torch.randn(9, 4, dtype=torch.float64)
    labels = torch.tensor([0, 8, -1, 3, 3])  # -1: the anchor's class lives on another rank
    xa, pa = x.clone().requires_grad_(True), proxies.clone().requires_grad_(True)
    xb, pb = x.clone().requires_grad_(True), proxies.clone().requires_grad_(True)
    xn_a = F.normalize(xa, dim=1) if head.cosine else xa
    got = local_negative_logsumexp(head, xn_a, pa, labels, block_size=2)
    sim = cosine_similarity_matrix(xb, pb) if head.cosine else xb @ pb.T  # (5, 9)
    logits = circle_logits(sim, head.m, head.gamma)[1] if isinstance(head, CircleHead) else head.negative_(sim * 1.0)
    neg = labels[:, None] != torch.arange(9)[None, :]
    want = masked_logsumexp(logits, neg)
    weights = torch.randn(5, dtype=torch.float64)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    assert_close(got, want)
    assert_close(xa.grad, xb.grad)
    assert_close(pa.grad, pb.grad)
    if not isinstance(head, CircleHead):  # Circle's alphas are detached: its gradient is not the derivative
        unit = xn_a.detach().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: local_negative_logsumexp(head, a, b, labels, 2), (unit, pb))


def test_create_sharded_loss_checks_arguments_and_builds_the_head() -> None:
    loss = create_sharded_loss("arcface", 10, 4, {"m": 0.3, "gamma": 30.0}, shard=(2, 5))
    assert loss.head == head_for(create_loss("arcface", m=0.3, gamma=30.0, num_classes=2, embedding_dim=4))
    assert loss.proxies.shape == (3, 4) and (loss.start, loss.stop) == (2, 5)
    with pytest.raises(ValueError, match="m must lie"):
        create_sharded_loss("cosface", 10, 4, {"m": 2.0})
