"""The streamed NormFace / CosFace / ArcFace path equals the plain path (loss and gradients), block by block."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pairsim import ArcFaceLoss, CosFaceLoss, NormFaceLoss
from pairsim.functional import proxy_pairs
from pairsim.functional.arcface import arcface_loss
from pairsim.functional.cosface import cosface_loss
from pairsim.functional.margin_softmax_streaming import margin_softmax_streaming

CASES = [("cosface", 0.0), ("cosface", 0.35), ("arcface", 0.5), ("arcface", 1.2)]
C, D = 7, 6


def _case(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, D, generator=g, dtype=dtype)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 3, 3])
    x = torch.randn(len(labels), D, generator=g, dtype=dtype)
    x[7] = -3.0 * w[0]  # anti-aligned with its class: ArcFace's theta + m > pi branch
    x[8] = 2.0 * w[3] + 0.01 * x[8]  # nearly aligned: s_y close to 1
    return x, labels, w


def _plain(x: Tensor, labels: Tensor, w: Tensor, kind: str, m: float, gamma: float) -> Tensor:
    pairs = proxy_pairs(x, labels, w)
    fn = cosface_loss if kind == "cosface" else arcface_loss
    return fn(pairs.sim, pairs.pos, pairs.neg, m, gamma)


@pytest.mark.parametrize(("kind", "m"), CASES)
@pytest.mark.parametrize("block", [1, 3, 7, None])
def test_streamed_equals_plain_loss_and_gradients(kind: str, m: float, block: int | None) -> None:
    x, labels, w = _case()
    x.requires_grad_(True)
    w.requires_grad_(True)
    weights = torch.randn(len(labels), dtype=x.dtype, generator=torch.Generator().manual_seed(1))  # signed
    plain = _plain(x, labels, w, kind, m, 16.0)
    fast = margin_softmax_streaming(x, labels, w, kind=kind, m=m, gamma=16.0, block_size=block)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12)
    assert float(plain.detach().min()) > 0
    expected = torch.autograd.grad((plain * weights).sum(), [x, w])
    got = torch.autograd.grad((fast * weights).sum(), [x, w])
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(("kind", "m"), CASES)
def test_gradcheck_float64(kind: str, m: float) -> None:
    x, labels, w = _case(seed=2)
    x, w = x[:, :4].clone().requires_grad_(True), w[:, :4].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: margin_softmax_streaming(a, labels, b, kind=kind, m=m, gamma=4.0, block_size=3), (x, w)
    )


def test_the_kept_block_survives_a_second_backward() -> None:
    x, labels, w = _case(seed=3)
    x.requires_grad_(True)
    loss = margin_softmax_streaming(x, labels, w, kind="cosface", m=0.35, gamma=16.0).sum()
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_zero_norm_proxy_and_anchor_match_the_plain_path() -> None:
    x, labels, w = _case(seed=4)
    w[2] = 0.0
    x[1] = 0.0
    x.requires_grad_(True)
    w.requires_grad_(True)
    plain = _plain(x, labels, w, "arcface", 0.5, 8.0)
    fast = margin_softmax_streaming(x, labels, w, kind="arcface", m=0.5, gamma=8.0, block_size=2)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(fast.sum(), [x, w]), torch.autograd.grad(plain.sum(), [x, w]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_give_float32_losses_and_half_gradients(dtype: torch.dtype) -> None:
    x32, labels, w32 = _case(seed=5, dtype=torch.float32)
    x, w = x32.to(dtype).requires_grad_(True), w32.to(dtype).requires_grad_(True)
    losses = margin_softmax_streaming(x, labels, w, kind="arcface", m=0.5, gamma=64.0, block_size=4)
    assert losses.dtype == torch.float32
    expected = _plain(x.detach().float(), labels, w.detach().float(), "arcface", 0.5, 64.0)
    torch.testing.assert_close(losses, expected, rtol=1e-5, atol=1e-4)
    losses.sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    assert w.grad is not None and w.grad.dtype == dtype and torch.isfinite(w.grad.float()).all()


def test_large_gamma_stays_finite() -> None:
    x, labels, w = _case(seed=6, dtype=torch.float32)
    x.requires_grad_(True)
    losses = margin_softmax_streaming(x, labels, w, kind="cosface", m=0.35, gamma=1024.0, block_size=3)
    losses.sum().backward()
    assert torch.isfinite(losses).all() and x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "sphereface"}, "margin kind"),
        ({"block_size": 0}, "block_size must be positive"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], match: str) -> None:
    x, labels, w = _case()
    with pytest.raises(ValueError, match=match):
        margin_softmax_streaming(x, labels, w, **kwargs)  # type: ignore[arg-type]


def test_one_class_or_a_dimension_mismatch_is_refused() -> None:
    x, _, w = _case()
    with pytest.raises(ValueError, match="at least 2 classes"):
        margin_softmax_streaming(x, torch.zeros(len(x), dtype=torch.long), w[:1])
    with pytest.raises(ValueError, match="dimension"):
        margin_softmax_streaming(x, torch.zeros(len(x), dtype=torch.long), w[:, :3])


@pytest.mark.parametrize(
    "make", [lambda **k: CosFaceLoss(m=0.35, gamma=16.0, **k), lambda **k: ArcFaceLoss(m=0.5, gamma=16.0, **k)]
)
def test_modules_take_the_streamed_path_and_agree_with_the_plain_one(make: object) -> None:
    assert callable(make)
    torch.manual_seed(0)
    fast = make(num_classes=C, embedding_dim=D, block_size=3).double()
    plain = make(num_classes=C, embedding_dim=D, fast_path=False).double()
    plain.load_state_dict(fast.state_dict())
    assert fast.uses_fast_path() and not plain.uses_fast_path()
    x, labels, _ = _case(seed=7)
    x.requires_grad_(True)
    a, b = fast(x, labels), plain(x, labels)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    ga = torch.autograd.grad(a, [x, fast.proxies])
    gb = torch.autograd.grad(b, [x, plain.proxies])
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-11)


def test_normface_is_cosface_without_margin_on_the_streamed_path() -> None:
    torch.manual_seed(0)
    normface = NormFaceLoss(gamma=16.0, num_classes=C, embedding_dim=D).double()
    cosface = CosFaceLoss(m=0.0, gamma=16.0, num_classes=C, embedding_dim=D, fast_path=False).double()
    cosface.load_state_dict(normface.state_dict())
    x, labels, _ = _case(seed=8)
    torch.testing.assert_close(normface(x, labels), cosface(x, labels), rtol=1e-10, atol=1e-12)


def test_one_class_and_empty_batches_take_the_plain_path_rules() -> None:
    single = CosFaceLoss(num_classes=1, embedding_dim=D)
    assert not single.uses_fast_path()
    x = torch.randn(3, D, requires_grad=True)
    assert float(single(x, torch.zeros(3, dtype=torch.long)).detach()) == 0.0
    empty = torch.zeros(0, D, requires_grad=True)
    loss = CosFaceLoss(num_classes=C, embedding_dim=D)(empty, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 0.0


def test_a_double_backward_is_refused_rather_than_wrong() -> None:
    x, labels, w = _case(seed=9)
    x.requires_grad_(True)
    losses = margin_softmax_streaming(x, labels, w, kind="cosface", m=0.35, gamma=16.0)
    weights = torch.ones(len(x), dtype=x.dtype, requires_grad=True)  # an upstream gradient with a graph
    (grad,) = torch.autograd.grad((losses * weights).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()
