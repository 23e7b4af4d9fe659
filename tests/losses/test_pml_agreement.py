"""Agreement with pytorch-metric-learning 2.9.0 where the definitions coincide (float64).

PML reducers are chosen to match our reductions; where PML's default differs, the docstring of
our class says so, and the labels here are chosen where both reductions coincide (P x K).
Circle loss agreement lives with the Circle tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from pairsim import (
    ArcFaceLoss,
    ContrastiveLoss,
    CosFaceLoss,
    MultiSimilarityLoss,
    NormFaceLoss,
    NTXentLoss,
    PairLoss,
    ProxyAnchorLoss,
    TripletLoss,
)

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")

D, C = 6, 5
PK_LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
UNEVEN_LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])  # class 2 and 4 singletons
PK_REF_LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # every anchor: 2 positives, 6 negatives
RTOL, ATOL = 1e-7, 1e-9


def _x(n: int, seed: int) -> Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).requires_grad_()


def _compare_pair_wise(
    ours: PairLoss,
    theirs: Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor],
    labels: Tensor,
    ref_labels: Tensor | None,
) -> None:
    x = _x(len(labels), seed=0)
    refs = None if ref_labels is None else _x(len(ref_labels), seed=1)
    inputs = [x] if refs is None else [x, refs]
    loss = ours(x, labels, refs, ref_labels)
    expected = theirs(x, labels, refs, ref_labels)
    assert float(expected.detach()) > 0
    torch.testing.assert_close(loss, expected, rtol=RTOL, atol=ATOL)
    for grad, grad_pml in zip(torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs), strict=True):
        torch.testing.assert_close(grad, grad_pml, rtol=RTOL, atol=ATOL)


def _no_miner(pml: nn.Module) -> Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]:
    return lambda x, y, refs, ref_y: pml(x, y, ref_emb=refs, ref_labels=ref_y)


def _cosine() -> object:
    return pml_distances.CosineSimilarity()


@pytest.mark.parametrize("labels", [PK_LABELS, UNEVEN_LABELS], ids=["pk", "uneven"])
@pytest.mark.parametrize("with_refs", [False, True], ids=["batch", "refs"])
def test_triplet_batch_hard(labels: Tensor, with_refs: bool) -> None:
    # BatchHardMiner drops anchors without a positive or a negative, as we do, so any labels agree.
    miner = pml_miners.BatchHardMiner(distance=_cosine())
    pml = pml_losses.TripletMarginLoss(margin=0.3, distance=_cosine(), reducer=pml_reducers.MeanReducer())

    def theirs(x: Tensor, y: Tensor, refs: Tensor | None, ref_y: Tensor | None) -> Tensor:
        return pml(x, y, miner(x, y, refs, ref_y), ref_emb=refs, ref_labels=ref_y)

    ref_labels = torch.tensor([0, 1, 3, 0, 1, 3, 0]) if with_refs else None
    _compare_pair_wise(TripletLoss(margin=0.3, mining="batch_hard"), theirs, labels, ref_labels)


@pytest.mark.parametrize("labels", [PK_LABELS, UNEVEN_LABELS], ids=["pk", "uneven"])
@pytest.mark.parametrize("with_refs", [False, True], ids=["batch", "refs"])
def test_triplet_all(labels: Tensor, with_refs: bool) -> None:
    # Mean over all valid triplets, inactive ones included: PML's MeanReducer, for any labels.
    pml = pml_losses.TripletMarginLoss(
        margin=0.3, distance=_cosine(), reducer=pml_reducers.MeanReducer(), triplets_per_anchor="all"
    )
    ref_labels = torch.tensor([0, 1, 3, 0, 1, 3, 0]) if with_refs else None
    _compare_pair_wise(TripletLoss(margin=0.3, mining="all"), _no_miner(pml), labels, ref_labels)


def test_triplet_all_equals_pml_default_reducer_when_every_triplet_is_active() -> None:
    # PML's default AvgNonZeroReducer averages the triplets with a positive loss; with a margin
    # of 2 on cosine similarity every triplet is active and it coincides with our mean.
    pml = pml_losses.TripletMarginLoss(margin=2.0, distance=_cosine(), triplets_per_anchor="all")
    _compare_pair_wise(TripletLoss(margin=2.0, mining="all"), _no_miner(pml), UNEVEN_LABELS, None)


@pytest.mark.parametrize("with_refs", [False, True], ids=["batch", "refs"])
def test_contrastive(with_refs: bool) -> None:
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0.8, neg_margin=0.1, distance=_cosine(), reducer=pml_reducers.MeanReducer()
    )
    ours = ContrastiveLoss(pos_margin=0.8, neg_margin=0.1)
    _compare_pair_wise(ours, _no_miner(pml), PK_LABELS, PK_REF_LABELS if with_refs else None)


def test_contrastive_reductions_differ_on_uneven_batches() -> None:
    # Documented difference: PML averages over pairs, we average per anchor then over anchors.
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0.8, neg_margin=0.1, distance=_cosine(), reducer=pml_reducers.MeanReducer()
    )
    x = _x(len(UNEVEN_LABELS), seed=2)
    ours = ContrastiveLoss(pos_margin=0.8, neg_margin=0.1)(x, UNEVEN_LABELS)
    assert abs(float(ours.detach()) - float(pml(x, UNEVEN_LABELS).detach())) > 1e-3


@pytest.mark.parametrize("with_refs", [False, True], ids=["batch", "refs"])
def test_multi_similarity(with_refs: bool) -> None:
    pml = pml_losses.MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.3)  # MeanReducer over anchors
    ours = MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.3)
    _compare_pair_wise(ours, _no_miner(pml), PK_LABELS, PK_REF_LABELS if with_refs else None)


@pytest.mark.parametrize("with_refs", [False, True], ids=["batch", "refs"])
def test_ntxent(with_refs: bool) -> None:
    pml = pml_losses.NTXentLoss(temperature=0.2)  # MeanReducer over positive pairs
    _compare_pair_wise(NTXentLoss(temperature=0.2), _no_miner(pml), PK_LABELS, PK_REF_LABELS if with_refs else None)


def _compare_class_level(ours: PairLoss, pml: nn.Module, weight_name: str, transposed: bool, labels: Tensor) -> None:
    assert ours.proxies is not None
    weight = getattr(pml, weight_name)
    with torch.no_grad():  # PML's W is (D, C) for the softmax family and (C, D) for Proxy-Anchor
        weight.copy_(ours.proxies.T if transposed else ours.proxies)
    x = _x(len(labels), seed=3)
    with torch.no_grad():  # one target angle past pi - 0.5, where ArcFace switches to its fallback
        x[0] = -ours.proxies[labels[0]] + 0.05 * x[0]
        assert float(torch.cosine_similarity(x[0], ours.proxies[labels[0]], dim=0)) < -math.cos(0.5)
    loss, expected = ours(x, labels), pml(x, labels)
    torch.testing.assert_close(loss, expected, rtol=RTOL, atol=ATOL)
    grad_x, grad_w = torch.autograd.grad(loss, [x, ours.proxies])
    grad_x_pml, grad_w_pml = torch.autograd.grad(expected, [x, weight])
    torch.testing.assert_close(grad_x, grad_x_pml, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(grad_w, grad_w_pml.T if transposed else grad_w_pml, rtol=RTOL, atol=ATOL)


def _proxies_loss(loss: PairLoss) -> PairLoss:
    return loss.double()


@pytest.mark.parametrize("labels", [PK_LABELS, UNEVEN_LABELS], ids=["pk", "uneven"])
def test_cosface(labels: Tensor) -> None:
    torch.manual_seed(0)
    ours = _proxies_loss(CosFaceLoss(m=0.35, gamma=8.0, num_classes=C, embedding_dim=D))
    pml = pml_losses.CosFaceLoss(num_classes=C, embedding_size=D, margin=0.35, scale=8.0).double()
    _compare_class_level(ours, pml, "W", transposed=True, labels=labels)


@pytest.mark.parametrize("labels", [PK_LABELS, UNEVEN_LABELS], ids=["pk", "uneven"])
def test_arcface(labels: Tensor) -> None:
    torch.manual_seed(0)
    ours = _proxies_loss(ArcFaceLoss(m=0.5, gamma=8.0, num_classes=C, embedding_dim=D))
    pml = pml_losses.ArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(0.5), scale=8.0).double()
    _compare_class_level(ours, pml, "W", transposed=True, labels=labels)


def test_normface_is_pml_normalized_softmax_with_cosine() -> None:
    torch.manual_seed(0)
    ours = _proxies_loss(NormFaceLoss(gamma=8.0, num_classes=C, embedding_dim=D))
    pml = pml_losses.NormalizedSoftmaxLoss(
        num_classes=C, embedding_size=D, temperature=1 / 8.0, distance=_cosine()
    ).double()
    _compare_class_level(ours, pml, "W", transposed=True, labels=UNEVEN_LABELS)


@pytest.mark.parametrize("labels", [PK_LABELS, UNEVEN_LABELS], ids=["pk", "uneven"])
def test_proxy_anchor(labels: Tensor) -> None:
    torch.manual_seed(0)
    ours = _proxies_loss(ProxyAnchorLoss(alpha=8.0, delta=0.1, num_classes=C, embedding_dim=D))
    pml = pml_losses.ProxyAnchorLoss(num_classes=C, embedding_size=D, margin=0.1, alpha=8.0).double()
    _compare_class_level(ours, pml, "proxies", transposed=False, labels=labels)
