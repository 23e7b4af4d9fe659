"""UnifiedLoss (Eq. 1) against its loop reference, and the paper's claims about it: with proxies
it is AM-Softmax / CosFace (Eq. 2), with m = 0 NormFace, and L / gamma tends to the hard-mining
triplet loss (Eq. 3)."""

from __future__ import annotations

import itertools

import pytest
import torch
from tests.reference.circle import anchor_pairs, mean_of_valid
from tests.reference.unified import (
    cosface_reference,
    hard_triplet_reference,
    normface_reference,
    unified_reference,
)
from torch import Tensor

from pairsim import UnifiedLoss
from pairsim.functional import batch_pairs, unified_loss


def _batch(seed: int, n: int = 9) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0])[:n]


def _class_level(m: float, gamma: float, num_classes: int = 6) -> UnifiedLoss:
    torch.manual_seed(0)
    return UnifiedLoss(m=m, gamma=gamma, num_classes=num_classes, embedding_dim=5).double()


@pytest.mark.parametrize("with_refs", [False, True])
def test_pair_wise_matches_loop_reference(with_refs: bool) -> None:
    x, labels = _batch(0)
    refs, ref_labels = _batch(1, n=6)
    anchors = anchor_pairs(x, labels, refs, ref_labels) if with_refs else anchor_pairs(x, labels)
    valid = torch.tensor([a.valid for a in anchors])
    assert not bool(valid.all())
    loss = UnifiedLoss(m=0.3, gamma=12.0)
    value = loss(x, labels, refs, ref_labels) if with_refs else loss(x, labels)
    torch.testing.assert_close(value, mean_of_valid(unified_reference(anchors, 0.3, 12.0), valid))


def test_class_level_matches_loop_reference() -> None:
    x, labels = _batch(2)
    loss = _class_level(0.35, 16.0)
    assert loss.proxies is not None
    anchors = anchor_pairs(x, labels, proxies=loss.proxies.detach())
    ref = unified_reference(anchors, 0.35, 16.0).mean()
    torch.testing.assert_close(loss(x, labels), ref)


@pytest.mark.parametrize("class_level", [False, True])
def test_gradcheck(class_level: bool) -> None:
    x, labels = _batch(3, n=6)
    x.requires_grad_(True)
    if class_level:
        loss = _class_level(0.35, 4.0, num_classes=4)
        assert loss.proxies is not None
        torch.autograd.gradcheck(lambda a: loss(a, labels), (x,))
        proxies = loss.proxies.detach().clone().requires_grad_(True)
        torch.autograd.gradcheck(lambda w: torch.func.functional_call(loss, {"proxies": w}, (x, labels)), (proxies,))
    else:
        refs, ref_labels = _batch(4, n=5)
        refs.requires_grad_(True)
        loss = UnifiedLoss(m=0.2, gamma=4.0)
        torch.autograd.gradcheck(lambda a: loss(a, labels), (x,))
        torch.autograd.gradcheck(lambda a, r: loss(a, labels, r, ref_labels), (x, refs))


@pytest.mark.parametrize(("m", "gamma"), [(0.35, 64.0), (0.1, 8.0)])
def test_with_proxies_it_is_cosface_eq_2(m: float, gamma: float) -> None:
    x, labels = _batch(5)
    loss = _class_level(m, gamma)
    assert loss.proxies is not None
    anchors = anchor_pairs(x, labels, proxies=loss.proxies.detach())
    value = loss(x, labels)
    torch.testing.assert_close(value, cosface_reference(anchors, m, gamma).mean())
    losses = pytest.importorskip("pairsim.losses")
    if hasattr(losses, "CosFaceLoss"):
        torch.manual_seed(0)
        cosface = losses.CosFaceLoss(m=m, gamma=gamma, num_classes=6, embedding_dim=5).double()
        torch.testing.assert_close(value, cosface(x, labels))


def test_m_zero_is_normface() -> None:
    x, labels = _batch(6)
    loss = _class_level(0.0, 30.0)
    assert loss.proxies is not None
    anchors = anchor_pairs(x, labels, proxies=loss.proxies.detach())
    value = loss(x, labels)
    torch.testing.assert_close(value, normface_reference(anchors, 30.0).mean())
    losses = pytest.importorskip("pairsim.losses")
    if hasattr(losses, "NormFaceLoss"):
        torch.manual_seed(0)
        normface = losses.NormFaceLoss(gamma=30.0, num_classes=6, embedding_dim=5).double()
        torch.testing.assert_close(value, normface(x, labels))


def test_over_gamma_tends_to_hard_mining_triplet_eq_3() -> None:
    x, labels = _batch(7)
    m = 0.2
    pairs = batch_pairs(x, labels)
    anchors = anchor_pairs(x, labels)
    valid = torch.tensor([a.valid for a in anchors])
    triplet = hard_triplet_reference(anchors, m)[valid]
    assert bool((triplet > 0).any())
    errors = []
    for gamma in [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0]:
        approx = unified_loss(pairs.sim, pairs.pos, pairs.neg, m, gamma)[valid] / gamma
        errors.append((approx - triplet).abs().max().item())
    assert all(b <= a for a, b in itertools.pairwise(errors)), errors
    assert errors[0] > 0.1 and errors[-1] < 1e-3, errors
