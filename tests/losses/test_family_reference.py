"""Every loss of the family against its loop-based reference (tests/reference/), value and gradients,
in each paradigm it supports, and float64 gradcheck."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from tests.reference.arcface import arcface_reference
from tests.reference.contrastive import contrastive_reference
from tests.reference.cosface import cosface_reference
from tests.reference.multi_similarity import multi_similarity_reference
from tests.reference.normface import normface_reference
from tests.reference.ntxent import ntxent_reference
from tests.reference.proxy_anchor import proxy_anchor_reference
from tests.reference.similarity_lists import AnchorSims, batch_sims, proxy_sims
from tests.reference.softmax import softmax_reference
from tests.reference.triplet import triplet_all_reference, triplet_batch_hard_reference
from torch import Tensor
from torch.func import functional_call

from pairsim import (
    ArcFaceLoss,
    ContrastiveLoss,
    CosFaceLoss,
    MultiSimilarityLoss,
    NormFaceLoss,
    NTXentLoss,
    PairLoss,
    ProxyAnchorLoss,
    SoftmaxLoss,
    TripletLoss,
)

C, D = 5, 4
LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # classes 2 and 3 are singletons; class 4 is absent
REF_LABELS = torch.tensor([1, 0, 3, 1, 2, 0])


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[..., PairLoss]
    reference: Callable[[list[AnchorSims]], Tensor]
    inner_product: bool = False


CASES = [
    Case("softmax", lambda **kw: SoftmaxLoss(**kw), softmax_reference, inner_product=True),
    Case("normface", lambda **kw: NormFaceLoss(gamma=6.0, **kw), lambda a: normface_reference(a, 6.0)),
    Case("cosface", lambda **kw: CosFaceLoss(m=0.3, gamma=5.0, **kw), lambda a: cosface_reference(a, 0.3, 5.0)),
    Case("arcface", lambda **kw: ArcFaceLoss(m=0.6, gamma=5.0, **kw), lambda a: arcface_reference(a, 0.6, 5.0)),
    Case(
        "triplet_hard",
        lambda **kw: TripletLoss(margin=0.3, mining="batch_hard", **kw),
        lambda a: triplet_batch_hard_reference(a, 0.3),
    ),
    Case(
        "triplet_all",
        lambda **kw: TripletLoss(margin=0.3, mining="all", **kw),
        lambda a: triplet_all_reference(a, 0.3),
    ),
    Case(
        "contrastive",
        lambda **kw: ContrastiveLoss(pos_margin=0.8, neg_margin=0.1, **kw),
        lambda a: contrastive_reference(a, 0.8, 0.1),
    ),
    Case(
        "multi_similarity",
        lambda **kw: MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.3, **kw),
        lambda a: multi_similarity_reference(a, 2.0, 10.0, 0.3),
    ),
    Case("ntxent", lambda **kw: NTXentLoss(temperature=0.5, **kw), lambda a: ntxent_reference(a, 0.5)),
]
PAIR_WISE = [case for case in CASES if case.make(num_classes=C, embedding_dim=D).supports_pair_wise]


def _embeddings(n: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=torch.float64).requires_grad_()


def _class_level(case: Case, seed: int = 0) -> PairLoss:
    torch.manual_seed(seed)
    return case.make(num_classes=C, embedding_dim=D).double()


def _assert_same(loss: Tensor, ref: Tensor, inputs: list[Tensor]) -> None:
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-12)
    grads = torch.autograd.grad(loss, inputs)
    ref_grads = torch.autograd.grad(ref, inputs)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_pair_wise_cases_are_the_pair_wise_family() -> None:
    assert [case.id for case in PAIR_WISE] == [
        "triplet_hard",
        "triplet_all",
        "contrastive",
        "multi_similarity",
        "ntxent",
    ]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_class_level_matches_reference(case: Case) -> None:
    loss_fn = _class_level(case)
    assert loss_fn.proxies is not None
    x = _embeddings(len(LABELS), seed=1)
    with torch.no_grad():  # one sample almost opposite its proxy: theta + m > pi for ArcFace
        x[0] = -loss_fn.proxies[LABELS[0]] + 0.05 * x[0]
        assert float(torch.cosine_similarity(x[0], loss_fn.proxies[LABELS[0]], dim=0)) < -math.cos(0.6)
    loss = loss_fn(x, LABELS)
    ref = case.reference(proxy_sims(x, LABELS, loss_fn.proxies, use_inner=case.inner_product))
    assert float(ref.detach()) > 0
    _assert_same(loss, ref, [x, loss_fn.proxies])


@pytest.mark.parametrize("with_refs", [False, True], ids=["batch", "refs"])
@pytest.mark.parametrize("case", PAIR_WISE, ids=lambda c: c.id)
def test_pair_wise_matches_reference(case: Case, with_refs: bool) -> None:
    loss_fn = case.make()
    x = _embeddings(len(LABELS), seed=2)
    if with_refs:
        refs = _embeddings(len(REF_LABELS), seed=3)
        loss = loss_fn(x, LABELS, refs, REF_LABELS)
        ref = case.reference(batch_sims(x, LABELS, refs, REF_LABELS))
        inputs = [x, refs]
    else:
        loss = loss_fn(x, LABELS)
        ref = case.reference(batch_sims(x, LABELS))
        inputs = [x]
    assert float(ref.detach()) > 0
    _assert_same(loss, ref, inputs)


def test_proxy_anchor_matches_reference() -> None:
    torch.manual_seed(0)
    loss_fn = ProxyAnchorLoss(alpha=4.0, delta=0.2, num_classes=C, embedding_dim=D).double()
    assert loss_fn.proxies is not None
    x = _embeddings(len(LABELS), seed=4)
    loss = loss_fn(x, LABELS)
    ref = proxy_anchor_reference(x, LABELS, loss_fn.proxies, alpha=4.0, delta=0.2)
    _assert_same(loss, ref, [x, loss_fn.proxies])


def test_proxy_anchor_positive_term_divides_by_proxies_present() -> None:
    # With every class present, the positive term's divisor is C; with class 4 absent it is 4.
    torch.manual_seed(0)
    loss_fn = ProxyAnchorLoss(alpha=4.0, delta=0.2, num_classes=C, embedding_dim=D).double()
    assert loss_fn.proxies is not None
    labels = torch.tensor([0, 1, 2, 3, 4, 4, 0])
    x = _embeddings(len(labels), seed=5)
    ref = proxy_anchor_reference(x, labels, loss_fn.proxies, alpha=4.0, delta=0.2)
    torch.testing.assert_close(loss_fn(x, labels), ref, rtol=1e-9, atol=1e-12)


GRADCHECK_LABELS = torch.tensor([0, 0, 1, 1, 2])


def _gradcheck_class_level(loss_fn: PairLoss, labels: Tensor) -> None:
    assert loss_fn.proxies is not None
    x = _embeddings(len(labels), seed=6)
    proxies = loss_fn.proxies.detach().clone().requires_grad_()

    def f(emb: Tensor, prox: Tensor) -> Tensor:
        return functional_call(loss_fn, {"proxies": prox}, (emb, labels))

    assert torch.autograd.gradcheck(f, (x, proxies))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradcheck_class_level(case: Case) -> None:
    _gradcheck_class_level(_class_level(case, seed=7), GRADCHECK_LABELS)


def test_gradcheck_proxy_anchor() -> None:
    torch.manual_seed(7)
    _gradcheck_class_level(
        ProxyAnchorLoss(alpha=4.0, delta=0.2, num_classes=C, embedding_dim=D).double(), GRADCHECK_LABELS
    )


@pytest.mark.parametrize("case", PAIR_WISE, ids=lambda c: c.id)
def test_gradcheck_pair_wise(case: Case) -> None:
    loss_fn = case.make()
    x = _embeddings(len(GRADCHECK_LABELS), seed=8)
    refs = _embeddings(4, seed=9)
    ref_labels = torch.tensor([1, 0, 2, 1])
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, GRADCHECK_LABELS), (x,))
    assert torch.autograd.gradcheck(lambda e, r: loss_fn(e, GRADCHECK_LABELS, r, ref_labels), (x, refs))


def test_arcface_fallback_is_exercised_and_monotone() -> None:
    # The class-level reference test puts one target angle past pi - m; check that it really is,
    # and that the target logit keeps decreasing through the switch point.
    m = 0.6
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    from pairsim.functional import arcface_margin

    logit = arcface_margin(torch.cos(theta), m)
    assert bool((logit[1:] <= logit[:-1] + 1e-12).all())
    past = theta > math.pi - m
    torch.testing.assert_close(logit[past], torch.cos(theta[past]) - m * math.sin(m))
    torch.testing.assert_close(logit[~past], torch.cos(theta[~past] + m))
