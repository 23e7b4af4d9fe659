"""The paper's diagnostics against a loop over anchors written from the definitions."""

from __future__ import annotations

import numpy as np
import torch

from pairsim.functional.pairs import batch_pairs
from pairsim.training.diagnostics import hardest_pairs, similarity_diagnostics


def loop_outside_share(sim: np.ndarray, labels: np.ndarray, m: float) -> float:
    outside, valid = 0, 0
    for i in range(len(labels)):
        s_p = [sim[i, j] for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        s_n = [sim[i, j] for j in range(len(labels)) if labels[j] != labels[i]]
        if not s_p or not s_n:
            continue
        valid += 1
        outside += max(s_n) ** 2 + (min(s_p) - 1) ** 2 > 2 * m * m
    return outside / valid


def test_diagnostics_match_a_loop_reference() -> None:
    torch.manual_seed(0)
    x = torch.randn(24, 4)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] * 2)
    pairs = batch_pairs(x, labels)
    d = similarity_diagnostics(pairs, m=0.4)
    sim = pairs.sim.numpy()
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(24, dtype=torch.bool)
    s_p, s_n = sim[(same & off_diagonal).numpy()], sim[(~same).numpy()]
    assert d["sp_mean"] == np.float32(s_p.mean()).item() or abs(d["sp_mean"] - s_p.mean()) < 1e-6
    assert abs(d["sn_mean"] - s_n.mean()) < 1e-6
    for q in (10, 50, 90):
        assert abs(d[f"sp_q{q}"] - np.quantile(s_p, q / 100)) < 1e-5
        assert abs(d[f"sn_q{q}"] - np.quantile(s_n, q / 100)) < 1e-5
    assert d["outside_circle"] == loop_outside_share(sim, labels.numpy(), m=0.4)


def test_hardest_pairs_skip_anchors_without_positives() -> None:
    x = torch.eye(3)
    pairs = batch_pairs(x, torch.tensor([0, 0, 1]))  # anchor 2 has no positive
    s_n, s_p = hardest_pairs(pairs)
    assert s_n.shape == s_p.shape == (2,)


def test_a_separated_batch_is_inside_the_circle() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    d = similarity_diagnostics(batch_pairs(x, torch.tensor([0, 0, 1, 1])), m=0.25)
    assert d["outside_circle"] == 0.0
    d = similarity_diagnostics(batch_pairs(x, torch.tensor([0, 1, 0, 1])), m=0.25)
    assert d["outside_circle"] == 1.0
