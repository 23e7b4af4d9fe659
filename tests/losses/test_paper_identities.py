"""Section 2 of the Circle Loss paper, as identities between our modules.

Eq. 1 against class proxies is CosFace (Eq. 2); with m = 0 it is NormFace; with inner products and
gamma = 1 it is Softmax; on the batch, Eq. 1 / gamma tends to the hard-mining triplet loss (Eq. 3).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pairsim import CosFaceLoss, NormFaceLoss, SoftmaxLoss, TripletLoss, UnifiedLoss

C, D = 6, 8
LABELS = torch.tensor([0, 1, 2, 2, 5, 3, 3, 0])


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(len(LABELS), D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize(("m", "gamma"), [(0.35, 64.0), (0.1, 8.0)])
def test_unified_with_proxies_is_cosface(m: float, gamma: float) -> None:
    torch.manual_seed(0)
    cosface = CosFaceLoss(m=m, gamma=gamma, num_classes=C, embedding_dim=D).double()
    unified = UnifiedLoss(m=m, gamma=gamma, num_classes=C, embedding_dim=D).double()
    unified.load_state_dict(cosface.state_dict())
    x = _x().requires_grad_()
    a, b = cosface(x, LABELS), unified(x, LABELS)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad(a, x)[0], torch.autograd.grad(b, x)[0])


def test_cosface_without_margin_is_normface() -> None:
    torch.manual_seed(0)
    cosface = CosFaceLoss(m=0.0, gamma=16.0, num_classes=C, embedding_dim=D).double()
    normface = NormFaceLoss(gamma=16.0, num_classes=C, embedding_dim=D).double()
    normface.load_state_dict(cosface.state_dict())
    torch.testing.assert_close(cosface(_x(), LABELS), normface(_x(), LABELS))


def test_softmax_is_normface_at_gamma_one_on_unit_vectors() -> None:
    # Softmax scores w^T x without normalising: it equals NormFace (gamma = 1) only on unit
    # vectors, and differs as soon as the norms do.
    torch.manual_seed(0)
    softmax = SoftmaxLoss(num_classes=C, embedding_dim=D).double()
    normface = NormFaceLoss(gamma=1.0, num_classes=C, embedding_dim=D).double()
    with torch.no_grad():
        assert softmax.proxies is not None
        softmax.proxies.copy_(F.normalize(softmax.proxies, dim=1))
    normface.load_state_dict(softmax.state_dict())
    unit = F.normalize(_x(), dim=1)
    torch.testing.assert_close(softmax(unit, LABELS), normface(unit, LABELS))
    assert abs(softmax(3 * unit, LABELS).item() - normface(3 * unit, LABELS).item()) > 1e-3


def test_unified_over_gamma_tends_to_batch_hard_triplet() -> None:
    x = _x(1)
    triplet = TripletLoss(margin=0.35, mining="batch_hard")(x, LABELS)
    gaps = [abs(float(UnifiedLoss(m=0.35, gamma=g)(x, LABELS)) / g - float(triplet)) for g in (16.0, 256.0, 4096.0)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3
