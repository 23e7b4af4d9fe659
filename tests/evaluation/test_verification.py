"""Verification ROC / AUC / TAR@FAR / accuracy against scikit-learn and threshold-sweep loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve
from tests.reference.evaluation_loops import best_accuracy_loop, cosine, tar_at_far_loop

from pairsim.evaluation import all_pair_similarities, pair_similarities, roc_curve, verification_scores


def _pairs(seed: int, n: int = 3000, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.5 * same
    if ties:
        scores = np.round(scores, 1)
    return scores, same


@pytest.mark.parametrize("ties", [False, True])
def test_roc_and_auc_match_sklearn(ties: bool) -> None:
    scores, same = _pairs(0, ties=ties)
    roc = roc_curve(scores, same)
    fpr, tpr, thr = sk_roc_curve(same, scores, drop_intermediate=False)
    assert np.allclose(roc.fpr.numpy(), fpr) and np.allclose(roc.tpr.numpy(), tpr)
    assert np.allclose(roc.thresholds.numpy()[1:], thr[1:])
    assert verification_scores(scores, same).auc == pytest.approx(roc_auc_score(same, scores), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_tar_at_far_and_accuracy_match_loops(ties: bool) -> None:
    scores, same = _pairs(1, ties=ties)
    v = verification_scores(scores, same, far_targets=(0.5, 1e-1, 1e-2, 1e-3, 1e-4))
    for far, tar in v.tar_at_far.items():
        if far * (~same).sum() < 1:
            assert math.isnan(tar)
        else:
            assert tar == pytest.approx(tar_at_far_loop(scores, same, far), abs=1e-12)
    assert v.best_accuracy == pytest.approx(best_accuracy_loop(scores, same), abs=1e-12)
    accepted = scores >= v.best_threshold
    assert float((accepted == same).mean()) == pytest.approx(v.best_accuracy, abs=1e-12)
    assert (v.num_genuine, v.num_impostor) == (int(same.sum()), int((~same).sum()))


def test_pair_similarities_match_loop() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 4))
    pairs = rng.integers(0, 20, (30, 2))
    xn = cosine(x)
    expected = [float(xn[a] @ xn[b]) for a, b in pairs]
    assert np.allclose(pair_similarities(x, pairs).numpy(), expected)
    s, same = all_pair_similarities(x, np.arange(20) % 3)
    pairs_all = [(i, j) for i in range(20) for j in range(i + 1, 20)]
    assert np.allclose(s.numpy(), [xn[i] @ xn[j] for i, j in pairs_all])
    assert same.tolist() == [i % 3 == j % 3 for i, j in pairs_all]


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="both genuine"):
        verification_scores(torch.tensor([0.1, 0.2]), torch.tensor([True, True]))
    with pytest.raises(ValueError, match="shape"):
        verification_scores(torch.tensor([0.1, 0.2]), torch.tensor([True]))
    with pytest.raises(ValueError, match="NaN"):
        verification_scores(torch.tensor([0.1, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="out of range"):
        pair_similarities(torch.randn(3, 2), torch.tensor([[0, 3]]))
