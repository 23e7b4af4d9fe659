"""The contract every registered loss keeps, in every paradigm it supports.

Parametrised over ``list_losses()``: a new loss is tested here the moment it registers. The
paradigms come from the class attributes ``supports_pair_wise`` / ``supports_class_level``;
nothing here branches on a loss's name.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pairsim import create_loss, list_losses
from pairsim.losses import PairLoss, get_loss_class

C, D = 5, 16
PK_LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def _configs() -> list[tuple[str, str]]:
    configs = []
    for name in list_losses():
        cls = get_loss_class(name)
        if cls.supports_pair_wise:
            configs.append((name, "pair_wise"))
        if cls.supports_class_level:
            configs.append((name, "class_level"))
    return configs


CONFIGS = _configs()
PAIR_WISE = [(name, paradigm) for name, paradigm in CONFIGS if paradigm == "pair_wise"]
CLASS_LEVEL = [(name, paradigm) for name, paradigm in CONFIGS if paradigm == "class_level"]


def _build(name: str, paradigm: str, seed: int = 0) -> PairLoss:
    torch.manual_seed(seed)
    if paradigm == "pair_wise":
        return create_loss(name)
    return create_loss(name, num_classes=C, embedding_dim=D)


def test_every_loss_is_built_in_some_paradigm() -> None:
    names = list_losses()
    assert {"circle", "unified", "softmax", "triplet", "proxy_anchor"} <= set(names)
    assert {name for name, _ in CONFIGS} == set(names)


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_forward_backward_finite(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    x = torch.randn(len(PK_LABELS), D, requires_grad=True)
    loss = loss_fn(x, PK_LABELS)
    assert loss.dim() == 0
    assert torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    if loss_fn.proxies is not None:
        assert loss_fn.proxies.grad is not None
        assert torch.isfinite(loss_fn.proxies.grad).all()
        assert loss_fn.proxies.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "paradigm"), PAIR_WISE)
def test_pair_wise_with_references_finite(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    x = torch.randn(len(PK_LABELS), D, requires_grad=True)
    refs = torch.randn(6, D, requires_grad=True)
    loss = loss_fn(x, PK_LABELS, refs, torch.tensor([0, 1, 2, 3, 4, 0]))
    loss.backward()
    assert torch.isfinite(loss)
    for grad in (x.grad, refs.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_bf16_close_to_fp32(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    x32 = torch.randn(len(PK_LABELS), D, generator=torch.Generator().manual_seed(1)).requires_grad_()
    x16 = x32.detach().bfloat16().requires_grad_()
    loss32, loss16 = loss_fn(x32, PK_LABELS), loss_fn(x16, PK_LABELS)
    assert torch.isfinite(loss16)
    torch.testing.assert_close(loss16.float(), loss32.float(), rtol=2e-2, atol=1e-3)
    (grad32,) = torch.autograd.grad(loss32, x32)
    (grad16,) = torch.autograd.grad(loss16, x16)
    assert grad16.dtype == torch.bfloat16
    assert torch.isfinite(grad16).all()
    # bf16 keeps 8 bits: ask for the same direction and size, not the same digits.
    cos = torch.cosine_similarity(grad16.float().flatten(), grad32.flatten(), dim=0)
    assert cos > 0.95
    torch.testing.assert_close(grad16.float().norm(), grad32.norm(), rtol=0.1, atol=1e-6)


def _assert_exact_zero(loss_fn: PairLoss, x: Tensor, labels: Tensor) -> None:
    loss = loss_fn(x, labels)
    assert loss.dim() == 0
    assert loss.item() == 0.0
    assert loss.requires_grad, "a zero loss must stay attached to the graph"
    loss.backward()
    assert x.grad is not None
    assert (x.grad == 0).all()
    if loss_fn.proxies is not None:
        assert loss_fn.proxies.grad is None or (loss_fn.proxies.grad == 0).all()


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_empty_batch_is_exactly_zero(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    _assert_exact_zero(loss_fn, torch.zeros(0, D, requires_grad=True), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize(("name", "paradigm"), PAIR_WISE)
def test_one_class_batch_is_exactly_zero(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    _assert_exact_zero(loss_fn, torch.randn(6, D, requires_grad=True), torch.zeros(6, dtype=torch.long))


@pytest.mark.parametrize(("name", "paradigm"), PAIR_WISE)
def test_all_distinct_labels_is_exactly_zero(name: str, paradigm: str) -> None:
    # No anchor has a positive: nothing qualifies.
    loss_fn = _build(name, paradigm)
    _assert_exact_zero(loss_fn, torch.randn(6, D, requires_grad=True), torch.arange(6))


@pytest.mark.parametrize(("name", "paradigm"), PAIR_WISE)
def test_anchors_without_positives_are_left_out(name: str, paradigm: str) -> None:
    # Against references, anchors do not see each other: an extra anchor whose class has no
    # reference has no positive and must change neither the value nor the gradients.
    loss_fn = _build(name, paradigm)
    x, extra = torch.randn(len(PK_LABELS), D, requires_grad=True), torch.randn(1, D)
    refs, ref_labels = torch.randn(6, D), torch.tensor([0, 1, 2, 3, 1, 0])
    loss = loss_fn(x, PK_LABELS, refs, ref_labels)
    loss_extra = loss_fn(torch.cat([x, extra]), torch.cat([PK_LABELS, torch.tensor([7])]), refs, ref_labels)
    torch.testing.assert_close(loss_extra, loss)
    torch.testing.assert_close(torch.autograd.grad(loss_extra, x)[0], torch.autograd.grad(loss, x)[0])


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_invalid_input_raises(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    x, y = torch.randn(4, D), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="shape"):
        loss_fn(x[0], y)
    with pytest.raises(ValueError, match="shape"):
        loss_fn(x[None], y)
    with pytest.raises(ValueError, match="length"):
        loss_fn(x, y[:3])
    with pytest.raises(ValueError, match="NaN"):
        loss_fn(torch.where(torch.arange(4)[:, None] == 2, float("nan"), x), y)
    with pytest.raises(ValueError, match="integer"):
        loss_fn(x, y.float())
    with pytest.raises(ValueError, match="floating point"):
        loss_fn(torch.ones(4, D, dtype=torch.long), y)


@pytest.mark.parametrize(("name", "paradigm"), PAIR_WISE)
def test_invalid_references_raise(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    x, y = torch.randn(4, D), torch.tensor([0, 0, 1, 1])
    refs, ref_y = torch.randn(3, D), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="dtype"):
        loss_fn(x, y, refs.double(), ref_y)
    with pytest.raises(ValueError, match="dimension"):
        loss_fn(x, y, refs[:, :-1], ref_y)
    with pytest.raises(ValueError, match="length"):
        loss_fn(x, y, refs, ref_y[:2])
    with pytest.raises(ValueError, match="ref_labels"):
        loss_fn(x, y, refs)
    with pytest.raises(ValueError, match="NaN"):
        loss_fn(x, y, refs * float("nan"), ref_y)


@pytest.mark.parametrize(("name", "paradigm"), CLASS_LEVEL)
def test_invalid_class_level_input_raises(name: str, paradigm: str) -> None:
    loss_fn = _build(name, paradigm)
    x = torch.randn(4, D)
    with pytest.raises(ValueError, match="class id"):
        loss_fn(x, torch.tensor([0, 1, C, 2]))
    with pytest.raises(ValueError, match="class id"):
        loss_fn(x, torch.tensor([0, -1, 1, 2]))
    with pytest.raises(ValueError, match="dimension"):
        loss_fn(torch.randn(4, D + 1), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="ref_embeddings"):
        loss_fn(x, torch.tensor([0, 1, 2, 3]), torch.randn(2, D), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", list_losses())
def test_unsupported_paradigm_raises(name: str) -> None:
    cls = get_loss_class(name)
    if not cls.supports_pair_wise:
        with pytest.raises(ValueError, match="num_classes"):
            create_loss(name)
    if not cls.supports_class_level:
        with pytest.raises(ValueError, match="num_classes"):
            create_loss(name, num_classes=C, embedding_dim=D)
    if cls.supports_class_level:
        with pytest.raises(ValueError, match="embedding_dim"):
            create_loss(name, num_classes=C)
        with pytest.raises(ValueError, match="num_classes"):
            create_loss(name, num_classes=0, embedding_dim=D)


def test_unknown_loss_raises() -> None:
    with pytest.raises(ValueError, match="unknown loss 'no_such_loss'"):
        create_loss("no_such_loss")
