"""CircleLoss, both paradigms and both paths: the loop reference, pytorch-metric-learning's
CircleLoss, half-precision stability, the fast-path dispatch and its equality with the plain path."""

from __future__ import annotations

import pytest
import torch
from tests.reference.circle import anchor_pairs, circle_reference, frozen_alpha_gradient, mean_of_valid
from torch import Tensor

from pairsim import CircleLoss, create_loss
from pairsim.functional import circle_kernels
from pairsim.losses.circle_loss import FAST_PATH_MIN_PAIRS

PATHS = [False, True]


def _batch(seed: int, n: int = 10, d: int = 6, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 0])[:n]
    return torch.randn(n, d, generator=g, dtype=dtype), labels


def _loss(fast: bool | None, **kwargs: object) -> CircleLoss:
    torch.manual_seed(0)  # same proxies for both paths
    return CircleLoss(fast_path=fast, block_size=3 if fast else None, **kwargs).double()  # type: ignore[arg-type]


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("with_refs", [False, True])
def test_pair_wise_matches_loop_reference(fast: bool, with_refs: bool) -> None:
    x, labels = _batch(0)
    refs, ref_labels = _batch(1, n=7)
    loss = _loss(fast, m=0.4, gamma=20.0)
    if with_refs:
        value = loss(x, labels, refs, ref_labels)
        ref = circle_reference(anchor_pairs(x, labels, refs, ref_labels), 0.4, 20.0)
    else:
        value = loss(x, labels)
        ref = circle_reference(anchor_pairs(x, labels), 0.4, 20.0)
    assert not bool(ref[1].all())  # anchor 6 (label 2) has no positive either way
    torch.testing.assert_close(value, mean_of_valid(*ref))


@pytest.mark.parametrize("fast", PATHS)
def test_class_level_matches_loop_reference(fast: bool) -> None:
    x, labels = _batch(2)
    loss = _loss(fast, m=0.25, gamma=32.0, num_classes=6, embedding_dim=6)
    assert loss.proxies is not None
    ref = circle_reference(anchor_pairs(x, labels, proxies=loss.proxies.detach()), 0.25, 32.0)
    torch.testing.assert_close(loss(x, labels), mean_of_valid(*ref))


@pytest.mark.parametrize("class_level", [False, True])
@pytest.mark.parametrize("block_size", [1, 4, 100])
def test_fast_path_equals_plain_path(class_level: bool, block_size: int) -> None:
    x, labels = _batch(3)
    kwargs: dict[str, object] = {"m": 0.25, "gamma": 64.0}
    if class_level:
        kwargs.update(num_classes=5, embedding_dim=6)
    values, grads = [], []
    for fast in PATHS:
        torch.manual_seed(0)
        loss = CircleLoss(fast_path=fast, block_size=block_size, **kwargs).double()  # type: ignore[arg-type]
        leaf = x.clone().requires_grad_(True)
        value = loss(leaf, labels)
        values.append(value)
        grads.append(torch.autograd.grad(value, [leaf, *loss.parameters()]))
    torch.testing.assert_close(values[1], values[0])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("source", ["batch", "refs", "proxies"])
def test_float64_gradient_matches_finite_differences(fast: bool, source: str) -> None:
    """The gradcheck of a detached-alpha loss: analytic gradients (embeddings, references, proxies)
    against central differences of the loop reference with alphas frozen at the inputs."""
    x, labels = _batch(7, n=6, d=4)
    refs, ref_labels = _batch(8, n=5, d=4)
    loss = _loss(fast, m=0.25, gamma=10.0, **({"num_classes": 5, "embedding_dim": 4} if source == "proxies" else {}))
    if source == "proxies":
        assert loss.proxies is not None
        inputs, leaves = [x, loss.proxies.detach().clone()], [x.clone().requires_grad_(True), loss.proxies]
        value = loss(leaves[0], labels)
    elif source == "refs":
        inputs, leaves = [x, refs], [x.clone().requires_grad_(True), refs.clone().requires_grad_(True)]
        value = loss(leaves[0], labels, leaves[1], ref_labels)
    else:
        inputs, leaves = [x], [x.clone().requires_grad_(True)]
        value = loss(leaves[0], labels)
    anchors = anchor_pairs(x, labels, refs if source == "refs" else None, ref_labels)
    weights = torch.tensor([a.valid for a in anchors] if source != "proxies" else [True] * 6, dtype=torch.float64)
    numeric = frozen_alpha_gradient(
        inputs, labels, ref_labels, source == "proxies", weights / weights.sum(), 0.25, 10.0
    )
    for analytic, expected in zip(torch.autograd.grad(value, leaves), numeric, strict=True):
        torch.testing.assert_close(analytic, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fast", PATHS)
def test_no_valid_anchor_is_exactly_zero_with_zero_gradient(fast: bool) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    value = CircleLoss(fast_path=fast)(x, torch.arange(4))
    value.backward()
    assert value.item() == 0.0 and x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("with_refs", [False, True])
def test_agrees_with_pytorch_metric_learning(fast: bool, with_refs: bool) -> None:
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    x, labels = _batch(4, dtype=torch.float32)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 0])  # every anchor valid: PML averages non-zero losses
    refs, ref_labels = _batch(5, n=8, dtype=torch.float32)
    ours_x, theirs_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours_r, theirs_r = refs.clone().requires_grad_(True), refs.clone().requires_grad_(True)
    ours, theirs = CircleLoss(m=0.4, gamma=80.0, fast_path=fast), pml.CircleLoss(m=0.4, gamma=80)
    if with_refs:
        a = ours(ours_x, labels, ours_r, ref_labels)
        b = theirs(theirs_x, labels, ref_emb=theirs_r, ref_labels=ref_labels)
        inputs = ([ours_x, ours_r], [theirs_x, theirs_r])
    else:
        a, b = ours(ours_x, labels), theirs(theirs_x, labels)
        inputs = ([ours_x], [theirs_x])
    torch.testing.assert_close(a, b)
    for ga, gb in zip(torch.autograd.grad(a, inputs[0]), torch.autograd.grad(b, inputs[1]), strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("class_level", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gamma_1024_in_half_precision(fast: bool, class_level: bool, dtype: torch.dtype) -> None:
    x, labels = _batch(6, dtype=torch.float32)
    kwargs: dict[str, object] = {"num_classes": 5, "embedding_dim": 6} if class_level else {}
    torch.manual_seed(0)
    loss = CircleLoss(m=0.25, gamma=1024.0, fast_path=fast, **kwargs)  # type: ignore[arg-type]
    half = x.to(dtype).requires_grad_(True)
    single = half.detach().float().requires_grad_(True)
    value, reference = loss(half, labels), loss(single, labels)
    value.backward()
    reference.backward()
    assert half.grad is not None and single.grad is not None
    assert bool(torch.isfinite(value)) and bool(torch.isfinite(half.grad).all())
    torch.testing.assert_close(value, reference)
    scale = single.grad.abs().max().item()
    torch.testing.assert_close(half.grad.float(), single.grad, rtol=2e-2, atol=scale * 1e-2)


def test_dispatch_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(4, 3)
    assert CircleLoss(num_classes=3, embedding_dim=3).uses_fast_path(x)
    assert not CircleLoss(fast_path=False, num_classes=3, embedding_dim=3).uses_fast_path(x)
    assert CircleLoss(fast_path=True).uses_fast_path(x)
    big = torch.randn(int(FAST_PATH_MIN_PAIRS**0.5) + 1, 3)
    small, small_refs = torch.randn(2, 3), torch.randn(3, 3)
    # The fused kernels (float32 on CPU, against the batch itself, one block) take any batch size.
    assert CircleLoss().uses_fast_path(small) == circle_kernels.kernels_usable(small)
    assert CircleLoss().fused_kernels_apply(small) == circle_kernels.AVAILABLE
    assert not CircleLoss(block_size=1).fused_kernels_apply(small)
    assert not CircleLoss().fused_kernels_apply(torch.randn(1, 3))  # no pairs: plain path
    assert not CircleLoss(num_classes=3, embedding_dim=3).fused_kernels_apply(small)
    # Otherwise the fast path's torch code takes batches of FAST_PATH_MIN_PAIRS pairs and more.
    monkeypatch.setattr(circle_kernels, "ENABLED", False)
    for x_big in (big, big.double()):
        assert CircleLoss().uses_fast_path(x_big)
    assert FAST_PATH_MIN_PAIRS > 2 * 3
    for x_small, refs in ((small, None), (small.double(), None), (small, small_refs)):
        assert not CircleLoss().uses_fast_path(x_small, refs)
    monkeypatch.setattr(circle_kernels, "ENABLED", True)
    assert not CircleLoss().uses_fast_path(small.double())
    assert not CircleLoss().uses_fast_path(small, small_refs)


@pytest.mark.parametrize("batch", [2, 5, 64])
def test_small_batches_through_the_fused_kernels_match_the_plain_path(batch: int) -> None:
    """The fused kernels take small float32 batches too (no threshold): same loss and gradient."""
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 16, generator=g)
    labels = torch.arange(batch) // 2
    values, grads = [], []
    for fast in (None, False):
        leaf = x.clone().requires_grad_(True)
        loss = CircleLoss(m=0.4, gamma=80.0, fast_path=fast)
        assert loss.uses_fast_path(leaf) == (fast is None and circle_kernels.AVAILABLE)
        value = loss(leaf, labels)
        value.backward()
        assert leaf.grad is not None
        values.append(value)
        grads.append(leaf.grad)
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * grads[1].abs().max().item())


def test_registry_and_validation() -> None:
    loss = create_loss("circle", m=0.3, gamma=16.0, fast_path=True, block_size=2)
    assert isinstance(loss, CircleLoss) and loss.block_size == 2
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="block_size"):
            CircleLoss(block_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        CircleLoss(fast_path=True)(torch.randn(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class id"):
        CircleLoss(fast_path=True, num_classes=2, embedding_dim=2)(torch.randn(2, 2), torch.tensor([0, 2]))
