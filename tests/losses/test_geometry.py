"""Every registered loss on the (s_n, s_p) plane (Fig. 1 and 2 of Sun et al.): its value is its own
forward on a real one-positive-one-negative batch, its field is autograd's and matches finite
differences, and the fields of Circle, triplet and the unified loss are those of the paper's formulas.

The paradigms come from ``supports_pair_wise`` / ``supports_class_level``; nothing here branches on a
loss's name except the formula checks, which name the loss whose formula they write out.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.losses import CircleLoss, PairLoss, create_loss, get_loss_class, list_losses
from pairsim.losses.geometry import (
    decision_boundary_margin,
    gradient_field,
    one_pair_anchors,
    pair_plane_loss,
    plane_grid,
)

F64 = torch.float64
# torch's softplus is linear above 20 (threshold=20): value and gradient there are off by about exp(-20) = 2e-9.
RTOL, ATOL = 1e-8, 1e-8
# Pairs on both sides of every boundary: s_p small and large, s_n negative and positive.
S_N = [-0.6, -0.1, 0.3, 0.8]
S_P = [-0.5, 0.2, 0.7, 0.95]


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


def _build(name: str, paradigm: str, **kwargs: object) -> PairLoss:
    torch.manual_seed(0)
    if paradigm == "class_level":
        kwargs |= {"num_classes": 2, "embedding_dim": 3}
    return create_loss(name, **kwargs).double()


def _unit_vectors(s_n: float, s_p: float) -> tuple[Tensor, Tensor, Tensor]:
    """Anchor, positive and negative in 3-D with cos(a, p) = s_p and cos(a, n) = s_n."""
    anchor = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    positive = torch.tensor([s_p, math.sqrt(1 - s_p**2), 0.0], dtype=F64)
    negative = torch.tensor([s_n, 0.0, math.sqrt(1 - s_n**2)], dtype=F64)
    return anchor, positive, negative


def _forward_one_anchor(loss: PairLoss, s_n: float, s_p: float) -> Tensor:
    """The loss's own forward on a batch of one anchor with one positive and one negative."""
    anchor, positive, negative = _unit_vectors(s_n, s_p)
    if loss.class_level:
        assert loss.proxies is not None
        with torch.no_grad():
            loss.proxies.copy_(torch.stack([positive, negative]))  # (2, 3): class 0 is the anchor's
        return loss(anchor[None], torch.tensor([0]))
    refs = torch.stack([positive, negative])  # (2, 3), a memory of two references
    return loss(anchor[None], torch.tensor([0]), refs, torch.tensor([0, 1]))


def _central_difference(loss: PairLoss, s_n: Tensor, s_p: Tensor, h: float = 1e-6) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        d_n = (pair_plane_loss(loss, s_n + h, s_p) - pair_plane_loss(loss, s_n - h, s_p)) / (2 * h)
        d_p = (pair_plane_loss(loss, s_n, s_p + h) - pair_plane_loss(loss, s_n, s_p - h)) / (2 * h)
    return d_n, d_p


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_plane_loss_is_the_forward_of_a_one_pair_batch(name: str, paradigm: str) -> None:
    loss = _build(name, paradigm)
    s_n, s_p = torch.meshgrid(torch.tensor(S_N, dtype=F64), torch.tensor(S_P, dtype=F64), indexing="ij")
    plane = pair_plane_loss(loss, s_n.reshape(-1), s_p.reshape(-1))  # (16,)
    forward = torch.stack(
        [
            _forward_one_anchor(loss, a, b)
            for a, b in zip(s_n.reshape(-1).tolist(), s_p.reshape(-1).tolist(), strict=True)
        ]
    )
    torch.testing.assert_close(plane, forward, rtol=1e-9, atol=1e-9)
    assert plane.dtype == F64


# Circle loss detaches its self-paced weights (Eq. 9-10), so its gradient is not the derivative of its value:
# its field is checked against the paper's closed form and against its own backward instead.
SELF_PACED = {"circle"}
FD_CONFIGS = [(name, paradigm) for name, paradigm in CONFIGS if name not in SELF_PACED]


def _disk_points(n: int, radius: float = 0.95) -> tuple[Tensor, Tensor]:
    """``n`` random pairs with ``s_n^2 + s_p^2 < radius^2``, so that one unit anchor can have both cosines."""
    g = torch.Generator().manual_seed(0)
    r = radius * torch.rand(n, generator=g, dtype=F64).sqrt()  # (n,)
    theta = 2 * math.pi * torch.rand(n, generator=g, dtype=F64)  # (n,)
    return r * torch.cos(theta), r * torch.sin(theta)


@pytest.mark.parametrize(("name", "paradigm"), FD_CONFIGS)
def test_field_matches_finite_differences(name: str, paradigm: str) -> None:
    loss = _build(name, paradigm)
    g = torch.Generator().manual_seed(0)
    s_n, s_p = (torch.rand(2, 20, generator=g, dtype=F64) * 1.8 - 0.9).unbind(0)  # (20,) each, inside the square
    field = gradient_field(loss, s_n, s_p)
    d_n, d_p = _central_difference(loss, s_n, s_p)
    torch.testing.assert_close(field.descent_s_n, -d_n, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(field.descent_s_p, -d_p, rtol=1e-5, atol=1e-5)
    assert all(t.dtype == F64 and t.shape == (20,) and t.grad_fn is None for t in field)


def test_circle_field_is_not_the_derivative_of_its_value() -> None:
    loss = CircleLoss(m=0.25, gamma=32.0)
    s_n, s_p = torch.tensor([0.5], dtype=F64), torch.tensor([0.5], dtype=F64)
    field = gradient_field(loss, s_n, s_p)
    d_n, _ = _central_difference(loss, s_n, s_p)
    # With one pair, dL/ds_n = Z gamma alpha_n = Z gamma (s_n + m); the value's derivative has 2 s_n instead.
    ratio = float(field.descent_s_n / -d_n)
    assert ratio == pytest.approx((0.5 + 0.25) / (2 * 0.5), rel=1e-4)


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_field_is_the_backward_of_the_loss_on_a_real_batch(name: str, paradigm: str) -> None:
    """The arrows are what training sees: the loss's own forward and backward (fast paths included)."""
    loss = _build(name, paradigm)
    s_n, s_p = _disk_points(12)
    field = gradient_field(loss, s_n, s_p)
    refs = torch.eye(2, 3, dtype=F64)  # (2, 3): e_1 is the positive reference or proxy, e_2 the negative
    if loss.class_level:
        assert loss.proxies is not None
        with torch.no_grad():
            loss.proxies.copy_(refs)
    for i in range(len(s_n)):
        a, b = s_n[i].clone().requires_grad_(True), s_p[i].clone().requires_grad_(True)
        anchor = torch.stack([b, a, (1 - a**2 - b**2).sqrt()])[None]  # (1, 3), unit: cos to e_1 is s_p, to e_2 is s_n
        value = (
            loss(anchor, torch.tensor([0]))
            if loss.class_level
            else loss(anchor, torch.tensor([0]), refs, torch.tensor([0, 1]))
        )
        grad_n, grad_p = torch.autograd.grad(value, (a, b))
        torch.testing.assert_close(field.descent_s_n[i], -grad_n, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(field.descent_s_p[i], -grad_p, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("name", "paradigm"), CONFIGS)
def test_every_loss_pushes_s_n_down_and_pulls_s_p_up(name: str, paradigm: str) -> None:
    field = gradient_field(_build(name, paradigm))
    assert field.loss.shape == (41, 41) and bool(torch.isfinite(field.loss).all())
    assert bool((field.descent_s_n <= 0).all()) and bool((field.descent_s_p >= 0).all())
    assert bool((field.descent_s_n < 0).any()) and bool((field.descent_s_p > 0).any())


@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.4, 80.0)])
@pytest.mark.parametrize("paradigm", ["pair_wise", "class_level"])
def test_circle_field_is_eq_9_10(m: float, gamma: float, paradigm: str) -> None:
    s_n, s_p = plane_grid(41)
    field = gradient_field(_build("circle", paradigm, m=m, gamma=gamma), s_n, s_p)
    sn, sp = s_n.numpy(), s_p.numpy()
    alpha_p = np.maximum(1 + m - sp, 0.0)  # Eq. 5, [O_p - s_p]_+ with O_p = 1 + m, detached
    alpha_n = np.maximum(sn + m, 0.0)  # Eq. 5, [s_n - O_n]_+ with O_n = -m, detached
    arg = gamma * (alpha_n * (sn - m) - alpha_p * (sp - (1 - m)))  # Eq. 6 with Delta_n = m, Delta_p = 1 - m
    z = _sigmoid(arg)  # Z = 1 - exp(-L)
    # Eq. 9-10 with a single s_n and s_p: the softmax weights are 1.
    np.testing.assert_allclose(field.loss.numpy(), np.logaddexp(0.0, arg), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(field.descent_s_n.numpy(), -z * gamma * alpha_n, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(field.descent_s_p.numpy(), z * gamma * alpha_p, rtol=RTOL, atol=ATOL)
    # Fig. 2 (c): at A = (0.8, 0.8) the larger push is on s_n; at (0.1, 0.2) the larger pull is on s_p.
    a = gradient_field(_build("circle", paradigm, m=m, gamma=gamma), torch.tensor([0.8, 0.1]), torch.tensor([0.8, 0.2]))
    assert -a.descent_s_n[0] > a.descent_s_p[0] and a.descent_s_p[1] > -a.descent_s_n[1]


@pytest.mark.parametrize("mining", ["batch_hard", "all"])
@pytest.mark.parametrize("paradigm", ["pair_wise", "class_level"])
def test_triplet_field_is_constant_where_the_hinge_is_active(mining: str, paradigm: str) -> None:
    margin = 0.2
    s_n, s_p = plane_grid(41)
    field = gradient_field(_build("triplet", paradigm, margin=margin, mining=mining), s_n, s_p)
    arg = (s_n - s_p + margin).numpy()  # Eq. 3: [s_n - s_p + m]_+
    np.testing.assert_allclose(field.loss.numpy(), np.maximum(arg, 0.0), atol=1e-12)
    off_hinge = np.abs(arg) > 1e-9  # relu'(0) is a convention
    active = arg > 0
    np.testing.assert_array_equal(field.descent_s_n.numpy()[off_hinge], np.where(active, -1.0, 0.0)[off_hinge])
    np.testing.assert_array_equal(field.descent_s_p.numpy()[off_hinge], np.where(active, 1.0, 0.0)[off_hinge])


@pytest.mark.parametrize("paradigm", ["pair_wise", "class_level"])
def test_unified_field_has_equal_components(paradigm: str) -> None:
    m, gamma = 0.35, 64.0
    s_n, s_p = plane_grid(41)
    field = gradient_field(_build("unified", paradigm, m=m, gamma=gamma), s_n, s_p)
    arg = gamma * (s_n - s_p + m).numpy()  # Eq. 1 with one s_n and one s_p: softplus(gamma (s_n + m - s_p))
    np.testing.assert_allclose(field.loss.numpy(), np.logaddexp(0.0, arg), rtol=RTOL, atol=ATOL)
    # Section 2: the same amplitude on s_n and s_p, direction (-1, 1) / sqrt(2) everywhere.
    np.testing.assert_allclose(field.descent_s_n.numpy(), -gamma * _sigmoid(arg), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(field.descent_s_p.numpy(), gamma * _sigmoid(arg), rtol=RTOL, atol=ATOL)


def test_cosface_and_normface_are_the_unified_loss_on_the_plane() -> None:
    """Eq. 2: AM-Softmax (CosFace) is Eq. 1 with class-level labels; NormFace is it with m = 0."""
    s_n, s_p = plane_grid(21)
    unified = gradient_field(_build("unified", "class_level", m=0.35, gamma=64.0), s_n, s_p)
    cosface = gradient_field(_build("cosface", "class_level", m=0.35, gamma=64.0), s_n, s_p)
    normface = gradient_field(_build("normface", "class_level", gamma=64.0), s_n, s_p)
    unified_0 = gradient_field(_build("unified", "class_level", m=0.0, gamma=64.0), s_n, s_p)
    for a, b in ((unified, cosface), (unified_0, normface)):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=RTOL, atol=ATOL)


def test_proxy_anchor_plane_is_eq_4_with_two_proxies() -> None:
    """Kim et al. Eq. 4 on one sample, its proxy and one other: the negative term is averaged over both proxies."""
    alpha, delta = 32.0, 0.1
    s_n, s_p = plane_grid(21)
    field = gradient_field(_build("proxy_anchor", "class_level", alpha=alpha, delta=delta), s_n, s_p)
    sn, sp = s_n.numpy(), s_p.numpy()
    expected = np.logaddexp(0.0, -alpha * (sp - delta)) + np.logaddexp(0.0, alpha * (sn + delta)) / 2
    np.testing.assert_allclose(field.loss.numpy(), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        field.descent_s_n.numpy(), -alpha / 2 * _sigmoid(alpha * (sn + delta)), rtol=RTOL, atol=ATOL
    )


def test_decision_boundary_comes_from_the_loss_hook_only() -> None:
    s_n, s_p = plane_grid(11)
    assert decision_boundary_margin(create_loss("multi_similarity"), s_n, s_p) is None  # two terms: no one boundary
    margin = decision_boundary_margin(CircleLoss(m=0.25, gamma=256.0), s_n, s_p)
    assert margin is not None
    torch.testing.assert_close(margin, s_n.square() + (s_p - 1).square() - 2 * 0.25**2)  # Eq. 8
    for loss, m in ((create_loss("triplet", margin=0.2), 0.2), (create_loss("unified", m=0.3, gamma=64.0), 0.3)):
        boundary = decision_boundary_margin(loss, s_n, s_p)
        assert boundary is not None
        torch.testing.assert_close(boundary, s_n - s_p + m)  # the hinge's / Eq. 1's line


def test_circle_loss_is_log_2_on_its_eq_8_circle() -> None:
    """The boundary hook and the loss agree: the softplus argument of Eq. 6 is gamma times Eq. 8's margin."""
    m, gamma = 0.25, 256.0
    theta = torch.linspace(0, 2 * math.pi, 17, dtype=F64)  # (17,)
    s_n, s_p = math.sqrt(2) * m * torch.cos(theta), 1 + math.sqrt(2) * m * torch.sin(theta)
    inside = (s_n > -m) & (s_p < 1 + m)  # where neither alpha is clamped to 0
    values = pair_plane_loss(CircleLoss(m=m, gamma=gamma), s_n[inside], s_p[inside])
    torch.testing.assert_close(values, torch.full_like(values, math.log(2)))


def test_bad_hook_and_bad_grids_raise() -> None:
    class BadHook(CircleLoss):
        def decision_margin(self, s_n: Tensor, s_p: Tensor) -> Tensor:
            return s_n.sum()

    s_n, s_p = plane_grid(5)
    with pytest.raises(ValueError, match=r"BadHook\.decision_margin must return a tensor of shape \(5, 5\)"):
        decision_boundary_margin(BadHook(), s_n, s_p)
    with pytest.raises(ValueError, match="same shape"):
        pair_plane_loss(CircleLoss(), torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="or neither"):
        gradient_field(CircleLoss(), s_n, None)
    with pytest.raises(ValueError, match="steps >= 2"):
        plane_grid(1)


def test_a_loss_without_per_anchor_or_reduce_is_named() -> None:
    class Bare(PairLoss):
        pass

    with pytest.raises(ValueError, match="Bare implements neither per_anchor nor reduce"):
        pair_plane_loss(Bare(), torch.zeros(3), torch.zeros(3))


def test_a_batch_only_loss_that_cannot_be_vmapped_is_scored_one_anchor_at_a_time() -> None:
    class HardestGap(PairLoss):
        """A batch-level loss with Python control flow on tensor values."""

        supports_class_level: ClassVar[bool] = False

        def reduce(self, pairs: Pairs) -> Tensor:
            if not bool(pairs.valid.any()):
                return pairs.sim.sum() * 0
            return (pairs.sim[pairs.neg].max() - pairs.sim[pairs.pos].min()).exp()

    s_n, s_p = torch.tensor([0.1, 0.5, -0.3], dtype=F64), torch.tensor([0.9, 0.4, 0.0], dtype=F64)
    torch.testing.assert_close(pair_plane_loss(HardestGap(), s_n, s_p), (s_n - s_p).exp())
    field = gradient_field(HardestGap(), s_n, s_p)
    torch.testing.assert_close(field.descent_s_p, (s_n - s_p).exp())


def test_one_pair_anchors_layout() -> None:
    pairs = one_pair_anchors(torch.tensor([0.1, 0.2], dtype=F64), torch.tensor([0.8, 0.9], dtype=F64))
    assert pairs.sim.tolist() == [[0.8, 0.1], [0.9, 0.2]]
    assert pairs.pos.tolist() == [[True, False]] * 2 and pairs.neg.tolist() == [[False, True]] * 2
    s_n, s_p = plane_grid(3)
    assert s_n[0].tolist() == [-1.0, 0.0, 1.0] and s_p[:, 0].tolist() == [-1.0, 0.0, 1.0]
