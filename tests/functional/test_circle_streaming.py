"""The Circle loss fast path equals the plain path (loss, valid mask, gradients), block by block."""

from __future__ import annotations

import pytest
import torch
from tests.reference.circle import anchor_pairs, circle_reference, frozen_alpha_gradient
from torch import Tensor

from pairsim.functional import batch_pairs, circle_loss, proxy_pairs
from pairsim.functional.circle_streaming import circle_loss_streaming

MODES = ["self", "refs", "class"]


def _case(
    mode: str, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(9, 6, generator=g, dtype=dtype)
    # 7 has no positive in the batch; against refs, 5 has no positive.
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 4, 3])
    if mode == "self":
        return x, labels, None, None
    if mode == "refs":
        return x, labels, torch.randn(7, 6, generator=g, dtype=dtype), torch.tensor([1, 0, 3, 0, 4, 1, 7])
    return x, labels, torch.randn(7, 6, generator=g, dtype=dtype), None


def _plain(
    x: Tensor, labels: Tensor, refs: Tensor | None, ref_labels: Tensor | None, m: float, gamma: float
) -> tuple[Tensor, Tensor]:
    pairs = (
        proxy_pairs(x, labels, refs)
        if refs is not None and ref_labels is None
        else batch_pairs(x, labels, refs, ref_labels)
    )
    return circle_loss(pairs.sim, pairs.pos, pairs.neg, m, gamma), pairs.valid


def _fast(
    x: Tensor, labels: Tensor, refs: Tensor | None, ref_labels: Tensor | None, m: float, gamma: float, block: int | None
) -> tuple[Tensor, Tensor]:
    class_level = refs is not None and ref_labels is None
    return circle_loss_streaming(
        x, labels, refs, ref_labels, class_level=class_level, m=m, gamma=gamma, block_size=block
    )


def _grads(loss: Tensor, inputs: list[Tensor]) -> tuple[Tensor, ...]:
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", [1, 4, 9, 50, None])
def test_fast_path_equals_plain_path(mode: str, block: int | None) -> None:
    x, labels, refs, ref_labels = _case(mode)
    inputs = [t.requires_grad_(True) for t in (x, refs) if t is not None]
    weights = torch.randn(len(x), dtype=x.dtype)  # signed: both signs of the upstream grad
    plain, valid = _plain(x, labels, refs, ref_labels, 0.3, 12.0)
    fast, fast_valid = _fast(x, labels, refs, ref_labels, 0.3, 12.0, block)
    assert torch.equal(valid, fast_valid)
    assert mode == "class" or not bool(valid.all())  # the case includes anchors without positives
    torch.testing.assert_close(fast, torch.where(valid, plain, 0.0))
    for a, b in zip(
        _grads((plain * weights * valid).sum(), inputs), _grads((fast * weights).sum(), inputs), strict=True
    ):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("block", [None, 300])
def test_fast_path_equals_plain_path_on_a_large_batch(block: int | None) -> None:
    """B = 700: one block takes the banded symmetric Gram matrix and the (G + G^T) X backward."""
    g = torch.Generator().manual_seed(13)
    x = torch.randn(700, 8, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 60, (700,), generator=g)
    weights = torch.rand(700, dtype=torch.float64)
    plain, valid = _plain(x, labels, None, None, 0.4, 30.0)
    fast, fast_valid = _fast(x, labels, None, None, 0.4, 30.0, block)
    assert torch.equal(valid, fast_valid)
    torch.testing.assert_close(fast, torch.where(valid, plain, 0.0))
    (expected,) = _grads((plain * valid * weights).sum(), [x])
    torch.testing.assert_close(_grads((fast * weights).sum(), [x])[0], expected)


@pytest.mark.parametrize("with_refs", [False, True])
@pytest.mark.parametrize("block", [7, 100])
def test_fast_path_equals_plain_path_with_few_positives(with_refs: bool, block: int) -> None:
    """Many classes: the same-label pairs are masked by index, not with a dense mask."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(40) // 2
    refs = torch.randn(30, 6, generator=g, dtype=torch.float64, requires_grad=True) if with_refs else None
    ref_labels = torch.arange(30) % 23 if with_refs else None
    inputs = [t for t in (x, refs) if t is not None]
    plain, valid = _plain(x, labels, refs, ref_labels, 0.4, 30.0)
    fast, fast_valid = _fast(x, labels, refs, ref_labels, 0.4, 30.0, block)
    assert torch.equal(valid, fast_valid)
    torch.testing.assert_close(fast, torch.where(valid, plain, 0.0))
    for a, b in zip(_grads((plain * valid).sum(), inputs), _grads(fast.sum(), inputs), strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", [2, 100])
def test_fast_path_matches_loop_reference(mode: str, block: int) -> None:
    x, labels, refs, ref_labels = _case(mode, seed=3)
    proxies = refs if mode == "class" else None
    anchors = anchor_pairs(x, labels, None if mode == "class" else refs, ref_labels, proxies)
    ref, valid = circle_reference(anchors, 0.25, 20.0)
    fast, fast_valid = _fast(x, labels, refs, ref_labels, 0.25, 20.0, block)
    assert torch.equal(fast_valid, valid)
    torch.testing.assert_close(fast, ref)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", [3, 100])
def test_fast_path_gradient_matches_finite_differences(mode: str, block: int) -> None:
    """float64 gradcheck of the detached-alpha semantics: the analytic gradient against central
    differences of the loop reference whose alphas are frozen at the evaluation point."""
    x, labels, refs, ref_labels = _case(mode, seed=5)
    x, refs = x[:6], None if refs is None else refs[:5]
    labels, ref_labels = labels[:6], None if ref_labels is None else ref_labels[:5]
    weights = torch.rand(len(x), dtype=torch.float64)
    inputs = [t for t in (x, refs) if t is not None]
    numeric = frozen_alpha_gradient(inputs, labels, ref_labels, mode == "class", weights, 0.25, 10.0)
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    fast, _ = _fast(leaves[0], labels, leaves[1] if len(leaves) > 1 else None, ref_labels, 0.25, 10.0, block)
    for analytic, expected in zip(_grads((fast * weights).sum(), leaves), numeric, strict=True):
        torch.testing.assert_close(analytic, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_empty_batch(mode: str) -> None:
    x, labels, refs, ref_labels = _case(mode)
    x = x[:0].requires_grad_(True)
    losses, valid = _fast(x, labels[:0], refs, ref_labels, 0.25, 64.0, 4)
    assert losses.shape == (0,) and valid.shape == (0,)
    losses.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_no_valid_anchor_gives_zero_loss_and_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    for labels in (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])):  # no positives / no negatives
        losses, valid = circle_loss_streaming(x, labels, m=0.25, gamma=256.0, block_size=3)
        assert not bool(valid.any()) and torch.equal(losses, torch.zeros(4))
        (grad,) = torch.autograd.grad(losses.sum(), x)
        assert torch.equal(grad, torch.zeros_like(grad))


def test_zero_embedding_matches_plain_path() -> None:
    x, labels, refs, _ = _case("class")
    x[2] = 0.0
    refs = refs.clone()  # type: ignore[union-attr]
    refs[4] = 0.0
    x.requires_grad_(True)
    refs.requires_grad_(True)
    plain, _ = _plain(x, labels, refs, None, 0.25, 16.0)
    fast, _ = _fast(x, labels, refs, None, 0.25, 16.0, 3)
    torch.testing.assert_close(fast, plain)
    for a, b in zip(_grads(plain.sum(), [x, refs]), _grads(fast.sum(), [x, refs]), strict=True):
        torch.testing.assert_close(b, a)


@pytest.mark.parametrize("block", [2, 100])
def test_retained_graph_gives_the_same_gradient_twice(block: int) -> None:
    x, labels, refs, ref_labels = _case("refs")
    x.requires_grad_(True)
    losses, _ = _fast(x, labels, refs, ref_labels, 0.25, 32.0, block)
    (first,) = torch.autograd.grad(losses.sum(), x, retain_graph=True)
    (second,) = torch.autograd.grad(losses.sum(), x)
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_at_gamma_1024(mode: str, dtype: torch.dtype) -> None:
    x, labels, refs, ref_labels = _case(mode, seed=7, dtype=torch.float32)
    x_half = x.to(dtype).requires_grad_(True)
    refs_half = None if refs is None else refs.to(dtype).requires_grad_(True)
    fast, _ = _fast(x_half, labels, refs_half, ref_labels, 0.25, 1024.0, 4)
    assert fast.dtype == torch.float32 and bool(torch.isfinite(fast).all())
    halves = [t for t in (x_half, refs_half) if t is not None]
    grads = _grads(fast.sum(), halves)
    # The same (rounded) inputs in float32, plain path.
    singles = [t.detach().float().requires_grad_(True) for t in halves]
    plain, valid = _plain(singles[0], labels, singles[1] if len(singles) > 1 else None, ref_labels, 0.25, 1024.0)
    torch.testing.assert_close(fast, torch.where(valid, plain, 0.0), rtol=1e-4, atol=1e-3)
    for grad, single, ref in zip(grads, halves, _grads((plain * valid).sum(), singles), strict=True):
        assert grad.dtype == single.dtype and bool(torch.isfinite(grad).all())
        torch.testing.assert_close(grad.float(), ref, rtol=2e-2, atol=ref.abs().max().item() * 1e-2)


def test_bad_arguments_raise() -> None:
    x, labels = torch.randn(3, 4), torch.tensor([0, 1, 0])
    with pytest.raises(ValueError, match="ref_labels"):
        circle_loss_streaming(x, labels, torch.randn(2, 4))
    with pytest.raises(ValueError, match="class_level"):
        circle_loss_streaming(x, labels, class_level=True)
    with pytest.raises(ValueError, match="dimension"):
        circle_loss_streaming(x, labels, torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="block_size"):
        circle_loss_streaming(x, labels, block_size=0)


@pytest.mark.slow
def test_one_million_classes() -> None:
    """Class-level Circle with C = 1e6, D = 512, B = 256 runs forward and backward; the fast path
    equals the plain path on the first 20,000 classes."""
    torch.manual_seed(0)
    B, C, D = 256, 1_000_000, 512
    x = torch.randn(B, D, requires_grad=True)
    labels = torch.randint(0, 20_000, (B,))
    proxies = torch.randn(C, D).div_(D**0.5).requires_grad_(True)
    losses, valid = circle_loss_streaming(x, labels, proxies, class_level=True, m=0.25, gamma=256.0)
    losses.mean().backward()
    assert bool(valid.all()) and bool(torch.isfinite(losses).all())
    assert proxies.grad is not None and bool(torch.isfinite(proxies.grad).all())
    del proxies
    small = torch.randn(20_000, D).div_(D**0.5).requires_grad_(True)
    x.grad = None
    fast, _ = circle_loss_streaming(x, labels, small, class_level=True, m=0.25, gamma=256.0, block_size=3000)
    fast_grads = _grads(fast.mean(), [x, small])
    plain, _ = _plain(x, labels, small, None, 0.25, 256.0)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-3)
    for a, b in zip(_grads(plain.mean(), [x, small]), fast_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=a.abs().max().item() * 1e-4)


def test_a_double_backward_is_refused_rather_than_wrong() -> None:
    x, labels, refs, ref_labels = _case("refs")
    x.requires_grad_(True)
    losses, _ = circle_loss_streaming(x, labels, refs, ref_labels, m=0.3, gamma=12.0, block_size=4)
    weights = torch.ones(len(x), dtype=x.dtype, requires_grad=True)  # an upstream gradient with a graph
    (grad,) = torch.autograd.grad((losses * weights).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()
