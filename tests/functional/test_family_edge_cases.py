"""Edge cases of the per-anchor functions: empty rows give 0 with a zero (never NaN) gradient."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import Tensor

from pairsim.functional import (
    arcface_loss,
    contrastive_loss,
    cosface_loss,
    masked_logsumexp,
    multi_similarity_loss,
    normface_loss,
    ntxent_loss,
    proxy_anchor_terms,
    softmax_loss,
    triplet_loss,
)

PerAnchor = Callable[[Tensor, Tensor, Tensor], Tensor]

FUNCTIONS: dict[str, PerAnchor] = {
    "softmax": softmax_loss,
    "normface": normface_loss,
    "cosface": cosface_loss,
    "arcface": arcface_loss,
    "triplet_hard": partial(triplet_loss, mining="batch_hard"),
    "triplet_all": partial(triplet_loss, mining="all"),
    "contrastive": contrastive_loss,
    "multi_similarity": multi_similarity_loss,
    "ntxent": ntxent_loss,
    "proxy_anchor_pos": lambda s, p, n: proxy_anchor_terms(s, p, n)[0],
    "proxy_anchor_neg": lambda s, p, n: proxy_anchor_terms(s, p, n)[1],
}
# Losses that need both a positive and a negative to be non-zero (the others have one term per side).
NEEDS_BOTH = {"softmax", "normface", "cosface", "arcface", "triplet_hard", "triplet_all", "ntxent"}

# Row 0: positives and negatives; row 1: no positive; row 2: no negative; row 3: neither.
POS = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
NEG = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_empty_rows_give_zero_and_zero_gradient(name: str) -> None:
    sim = torch.tensor(
        [[0.3, 0.5, 0.4, 0.2], [0.1, 0.6, -0.2, 0.9], [0.2, -0.1, 0.4, 0.7], [0.5, 0.5, 0.5, 0.5]],
        dtype=torch.float64,
        requires_grad=True,
    )
    losses = FUNCTIONS[name](sim, POS, NEG)
    assert losses.shape == (4,)
    assert torch.isfinite(losses).all()
    assert losses[0] > 0
    assert losses[3] == 0
    if name in NEEDS_BOTH:
        assert losses[1] == 0 and losses[2] == 0
    (grad,) = torch.autograd.grad(losses.sum(), sim)
    assert torch.isfinite(grad).all()
    assert (grad[3] == 0).all()
    assert (grad[~(POS | NEG)] == 0).all()  # pairs in neither mask (self-pairs) are ignored
    if name in NEEDS_BOTH:
        assert (grad[1:] == 0).all()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_no_references(name: str) -> None:
    sim = torch.zeros(3, 0, requires_grad=True)
    mask = torch.zeros(3, 0, dtype=torch.bool)
    losses = FUNCTIONS[name](sim, mask, mask)
    assert losses.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_huge_similarities_scale_stays_finite(name: str) -> None:
    # fp32 with exponents in the thousands: the log-sum-exp form must not overflow.
    sim = torch.tensor([[1.0, -1.0, 1.0, -1.0]], requires_grad=True)
    pos, neg = torch.tensor([[True, True, False, False]]), torch.tensor([[False, False, True, True]])
    losses = FUNCTIONS[name](sim * 100.0 if name == "softmax" else sim, pos, neg)
    (grad,) = torch.autograd.grad(losses.sum(), sim)
    assert torch.isfinite(losses).all() and torch.isfinite(grad).all()


def test_triplet_all_matches_brute_force_with_ties() -> None:
    # The sort / prefix-sum form against the (B, K, L) broadcast, with ties and hinges exactly at 0.
    # Dyadic values keep the ties exact in both forms (s_n - s_p + m == 0 and s_n + m == s_p).
    sim = torch.tensor([[0.5, 0.5, 0.125, 0.25, 0.25, 0.75], [0.125, 0.375, 0.375, 0.375, 0.0, 0.375]])
    sim = sim.double()
    pos = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 1, 0, 1, 1, 0]], dtype=torch.bool)
    sim.requires_grad_()
    fast = triplet_loss(sim, pos, ~pos, margin=0.25, mining="all")
    hinge = torch.relu(sim[:, None, :] - sim[:, :, None] + 0.25)  # (B, p, n)
    valid = pos[:, :, None] & ~pos[:, None, :]
    brute = (hinge * valid).sum(dim=(1, 2)) / valid.sum(dim=(1, 2))
    torch.testing.assert_close(fast, brute)
    torch.testing.assert_close(torch.autograd.grad(fast.sum(), sim)[0], torch.autograd.grad(brute.sum(), sim)[0])


def test_triplet_unknown_mining() -> None:
    with pytest.raises(ValueError, match="mining"):
        mask = torch.ones(1, 2, dtype=torch.bool)
        triplet_loss(torch.zeros(1, 2), mask, mask, 0.1, "semi")  # type: ignore[arg-type]


def test_cosface_with_zero_margin_is_normface() -> None:
    sim = torch.rand(3, 5, dtype=torch.float64) * 2 - 1
    pos = torch.zeros(3, 5, dtype=torch.bool)
    pos[torch.arange(3), torch.tensor([0, 3, 4])] = True
    torch.testing.assert_close(cosface_loss(sim, pos, ~pos, m=0.0, gamma=7.0), normface_loss(sim, pos, ~pos, gamma=7.0))
    torch.testing.assert_close(arcface_loss(sim, pos, ~pos, m=0.0, gamma=7.0), normface_loss(sim, pos, ~pos, gamma=7.0))


def test_softmax_single_target_path_equals_masked_form() -> None:
    # One positive per row and all else negative takes the fused cross-entropy path; it must
    # equal Eq. 1 (gamma = 1, m = 0) written with masked log-sum-exps, value and gradient.
    logits = (torch.randn(4, 6, dtype=torch.float64) * 5).requires_grad_()
    pos = torch.zeros(4, 6, dtype=torch.bool)
    pos[torch.arange(4), torch.tensor([2, 0, 5, 2])] = True
    fused = softmax_loss(logits, pos, ~pos)
    masked = torch.nn.functional.softplus(masked_logsumexp(logits, ~pos) + masked_logsumexp(-logits, pos))
    torch.testing.assert_close(fused, masked)
    (grad_fused,) = torch.autograd.grad(fused.sum(), logits)
    (grad_masked,) = torch.autograd.grad(masked.sum(), logits)
    torch.testing.assert_close(grad_fused, grad_masked)
