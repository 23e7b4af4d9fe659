"""Face-verification metrics: ROC, AUC, TAR at fixed FAR and best-threshold accuracy.

A pair is accepted ("same identity") when its cosine similarity is ``>=`` the threshold. The ROC
is exact: one point per distinct score, from (0, 0) to (1, 1), equal scores entering together
(as scikit-learn's ``roc_curve`` with ``drop_intermediate=False``), so the AUC counts a tied
genuine/impostor pair as one half. ``TAR@FAR=f`` is the largest TPR among thresholds whose FPR is
at most ``f`` (no interpolation); it is NaN when ``f < 1 / #impostor pairs``, which that many
pairs cannot resolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pairsim.evaluation._inputs import as_embeddings, as_labels

FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@dataclass(frozen=True)
class RocCurve:
    """``(T,)`` false and true positive rates at decreasing ``thresholds`` (the first is ``+inf``)."""

    fpr: Tensor
    tpr: Tensor
    thresholds: Tensor


@dataclass(frozen=True)
class VerificationScores:
    """Verification results; ``tar_at_far`` maps each FAR target to its TAR."""

    auc: float
    tar_at_far: dict[float, float]
    best_accuracy: float
    best_threshold: float
    num_genuine: int
    num_impostor: int


def roc_curve(scores: Any, is_same: Any) -> RocCurve:
    """Exact ROC of similarity ``scores`` for pairs labelled ``is_same``.

    Example:
        >>> roc = roc_curve(torch.tensor([0.9, 0.8, 0.8, 0.1]), torch.tensor([True, True, False, False]))
        >>> roc.fpr.tolist(), roc.tpr.tolist()
        ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    s, same = _check_pairs(scores, is_same)
    s, order = s.sort(descending=True, stable=True)
    same = same[order]
    tp = same.to(torch.float64).cumsum(0)
    fp = (~same).to(torch.float64).cumsum(0)
    last_of_group = torch.ones_like(same)
    last_of_group[:-1] = s[1:] != s[:-1]  # a threshold admits every pair with an equal score
    zero = torch.zeros(1, dtype=torch.float64, device=s.device)
    tp = torch.cat([zero, tp[last_of_group]])
    fp = torch.cat([zero, fp[last_of_group]])
    inf = torch.full((1,), float("inf"), dtype=s.dtype, device=s.device)
    return RocCurve(fpr=fp / fp[-1], tpr=tp / tp[-1], thresholds=torch.cat([inf, s[last_of_group]]))


def verification_scores(scores: Any, is_same: Any, far_targets: Sequence[float] = FAR_TARGETS) -> VerificationScores:
    """AUC, TAR@FAR and best accuracy from pair similarities.

    Args:
        scores: ``(P,)`` similarity of each pair.
        is_same: ``(P,)`` bool, genuine (same identity) or impostor pair; both kinds needed.
        far_targets: the FARs at which TAR is reported.

    Returns:
        :class:`VerificationScores`.

    Example:
        >>> v = verification_scores(torch.tensor([0.875, 0.75, 0.5, 0.25]), torch.tensor([True, False, True, False]))
        >>> v.auc, v.best_accuracy, v.best_threshold
        (0.75, 0.75, 0.875)
    """
    roc = roc_curve(scores, is_same)
    fpr, tpr = roc.fpr, roc.tpr
    auc = float(torch.trapezoid(tpr, fpr))
    num_genuine, num_impostor = _counts(is_same)
    tar = {}
    for far in far_targets:
        if far * num_impostor < 1:
            tar[float(far)] = float("nan")  # fewer impostor pairs than 1 / FAR: not measurable
        else:
            tar[float(far)] = float(tpr[fpr <= far].max())
    correct = tpr * num_genuine + (1 - fpr) * num_impostor  # (T,) accepted genuine + rejected impostor
    best = int(correct.argmax())
    return VerificationScores(
        auc=auc,
        tar_at_far=tar,
        best_accuracy=float(correct[best]) / (num_genuine + num_impostor),
        best_threshold=float(roc.thresholds[best]),
        num_genuine=num_genuine,
        num_impostor=num_impostor,
    )


def pair_similarities(embeddings: Any, pairs: Any, *, normalize: bool = True) -> Tensor:
    """``(P,)`` cosine similarity of the listed index pairs ``(P, 2)`` of ``embeddings`` ``(N, D)``.

    Example:
        >>> pair_similarities(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0, 1], [1, 1]])).tolist()
        [0.0, 1.0]
    """
    x = as_embeddings("embeddings", embeddings, normalize=normalize)
    p = torch.as_tensor(pairs, device=x.device)
    if p.dim() != 2 or p.shape[1] != 2 or p.is_floating_point() or len(p) == 0:
        raise ValueError(f"pairs must be a non-empty (P, 2) integer array, got shape {tuple(p.shape)}")
    if int(p.min()) < 0 or int(p.max()) >= len(x):
        raise ValueError(f"pairs index embeddings out of range [0, {len(x)})")
    return (x[p[:, 0]] * x[p[:, 1]]).sum(dim=1)


def all_pair_similarities(embeddings: Any, labels: Any, *, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """Similarities and ``is_same`` of all ``N (N - 1) / 2`` pairs ``i < j`` of a labelled set.

    Memory grows as ``N^2``: about 2.5 GB at ``N = 25,000``.

    Example:
        >>> s, same = all_pair_similarities(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0, 1]))
        >>> s.tolist(), same.tolist()
        ([1.0, 0.0, 0.0], [True, False, False])
    """
    x = as_embeddings("embeddings", embeddings, normalize=normalize)
    y = as_labels("labels", labels, len(x), x.device)
    if len(x) < 2:
        raise ValueError("all pairs need at least 2 embeddings")
    i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    sims = x @ x.T  # (N, N)
    return sims[i, j], y[i] == y[j]


def _check_pairs(scores: Any, is_same: Any) -> tuple[Tensor, Tensor]:
    s = torch.as_tensor(scores)
    same = torch.as_tensor(is_same)
    if s.dim() != 1 or not s.is_floating_point():
        raise ValueError(f"scores must be a 1-d floating array, got shape {tuple(s.shape)} dtype {s.dtype}")
    if same.shape != s.shape:
        raise ValueError(f"is_same has shape {tuple(same.shape)} but scores has {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores contain NaN or infinite values")
    same = same.to(device=s.device, dtype=torch.bool) if same.dtype != torch.bool else same.to(s.device)
    if bool(same.all()) or not bool(same.any()):
        raise ValueError("verification needs both genuine (is_same) and impostor pairs")
    return s, same


def _counts(is_same: Any) -> tuple[int, int]:
    same = torch.as_tensor(is_same).to(torch.bool)
    genuine = int(same.sum())
    return genuine, len(same) - genuine
