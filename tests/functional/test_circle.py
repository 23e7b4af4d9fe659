"""The plain Circle loss (Eq. 6) against the loop reference, its closed-form gradients (Eq. 9-10)
against autograd, and the decision boundary of Eq. 8."""

from __future__ import annotations

import pytest
import torch
from tests.reference.circle import anchor_pairs, circle_reference, paper_eq_9_10

from pairsim.functional import (
    batch_pairs,
    circle_decision_margin,
    circle_logits,
    circle_loss,
    circle_similarity_grad,
    proxy_pairs,
)


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # anchor 6 has no positive in the batch
    refs = torch.randn(6, 5, generator=g, dtype=torch.float64)
    ref_labels = torch.tensor([1, 0, 3, 3, 4, 1])
    proxies = torch.randn(5, 5, generator=g, dtype=torch.float64)
    return x, labels, refs, ref_labels, proxies


@pytest.mark.parametrize("source", ["batch", "refs", "proxies"])
@pytest.mark.parametrize(("m", "gamma"), [(0.25, 8.0), (0.4, 30.0), (0.0, 2.0)])
def test_circle_loss_matches_loop_reference(source: str, m: float, gamma: float) -> None:
    x, labels, refs, ref_labels, proxies = _inputs(0)
    if source == "proxies":
        pairs = proxy_pairs(x, labels, proxies)
        ref, valid = circle_reference(anchor_pairs(x, labels, proxies=proxies), m, gamma)
    elif source == "refs":
        pairs = batch_pairs(x, labels, refs, ref_labels)
        ref, valid = circle_reference(anchor_pairs(x, labels, refs, ref_labels), m, gamma)
    else:
        pairs = batch_pairs(x, labels)
        ref, valid = circle_reference(anchor_pairs(x, labels), m, gamma)
    assert torch.equal(pairs.valid, valid)
    assert not bool(valid.all()) or source == "proxies"
    torch.testing.assert_close(circle_loss(pairs.sim, pairs.pos, pairs.neg, m, gamma), ref)


@pytest.mark.parametrize("gamma", [1.0, 16.0, 256.0])
def test_closed_form_gradient_matches_autograd(gamma: float) -> None:
    x, *_ = _inputs(1)
    pairs = batch_pairs(x, torch.tensor([0, 0, 1, 1, 1, 2, 2]))
    sim = pairs.sim.detach().requires_grad_(True)
    weights = torch.rand(len(x), dtype=torch.float64)
    (circle_loss(sim, pairs.pos, pairs.neg, 0.25, gamma) * weights).sum().backward()
    closed = circle_similarity_grad(sim.detach(), pairs.pos, pairs.neg, 0.25, gamma) * weights[:, None]
    assert sim.grad is not None
    torch.testing.assert_close(closed, sim.grad)
    assert closed[pairs.pos].lt(0).all() and closed[pairs.neg].ge(0).all()


def test_closed_form_gradient_is_the_papers_eq_9_10() -> None:
    # Eq. 9-10 as printed hold where no alpha is clipped, i.e. s_n > -m (s_p <= 1 < 1 + m always).
    m, gamma = 0.25, 6.0
    s_p, s_n = [0.9, 0.5, 0.7], [0.1, -0.2, 0.6, 0.3]
    sim = torch.tensor([s_p + s_n], dtype=torch.float64)
    pos = torch.tensor([[True] * 3 + [False] * 4])
    d_p, d_n = paper_eq_9_10(s_p, s_n, m, gamma)
    grad = circle_similarity_grad(sim, pos, ~pos, m, gamma)[0]
    torch.testing.assert_close(grad, torch.tensor(d_p + d_n, dtype=torch.float64))


def test_closed_form_gradient_without_positives_or_negatives_is_zero() -> None:
    sim = torch.tensor([[0.3, 0.2], [0.5, -0.4]], dtype=torch.float64)
    pos = torch.tensor([[False, False], [True, True]])
    grad = circle_similarity_grad(sim, pos, ~pos, 0.25, 64.0)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_decision_boundary_is_the_circle_of_eq_8() -> None:
    m, gamma = 0.3, 4.0
    radius = 2**0.5 * m
    angles = torch.linspace(0.05, 1.5, 9, dtype=torch.float64)  # arc with s_n > -m, s_p < 1 + m
    for scale, sign in [(1.0, 0), (0.6, -1), (1.4, 1)]:
        s_n = scale * radius * torch.cos(angles)
        s_p = 1.0 - scale * radius * torch.sin(angles)
        logit_p, _ = circle_logits(s_p, m, gamma)
        _, logit_n = circle_logits(s_n, m, gamma)
        # Binary case: the exponent of Eq. 6 is gamma [alpha_n (s_n - m) - alpha_p (s_p - 1 + m)].
        exponent = logit_n + logit_p
        margin = circle_decision_margin(s_n, s_p, m)
        if sign == 0:
            torch.testing.assert_close(exponent, torch.zeros_like(exponent))
            torch.testing.assert_close(margin, torch.zeros_like(margin))
        else:
            assert torch.all(torch.sign(exponent) == sign) and torch.all(torch.sign(margin) == sign)
