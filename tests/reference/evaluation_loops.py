"""Loop references for the evaluators, written from the definitions, one query at a time, in float64.

Ranking: decreasing cosine similarity, equal similarities by increasing reference index (Python's
stable ``sorted`` on the negated score).
"""

from __future__ import annotations

import math

import numpy as np


def cosine(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ranking(query: np.ndarray, reference: np.ndarray, skip: int | None = None) -> list[int]:
    """Reference indices by decreasing similarity to one query, ties by index; ``skip`` left out."""
    scores = reference @ query
    order = sorted(range(len(reference)), key=lambda j: -scores[j])
    return [j for j in order if j != skip]


def retrieval_loop(
    ref: np.ndarray, ref_labels: np.ndarray, queries: np.ndarray | None, q_labels: np.ndarray | None, ks: tuple
) -> dict[str, float]:
    """Every metric of ``retrieval_metrics`` with the default ``map_depth`` (the largest R)."""
    loo = queries is None or q_labels is None
    ref = cosine(ref)
    if queries is None or q_labels is None:
        queries, q_labels = ref, ref_labels
    else:
        queries = cosine(queries)
    rs = []
    for i in range(len(queries)):
        rs.append(sum(int(ref_labels[j] == q_labels[i] and not (loo and j == i)) for j in range(len(ref))))
    depth = max(rs)
    sums: dict[str, float] = {}
    used = lone = 0
    for i in range(len(queries)):
        r = rs[i]
        if r == 0:
            lone += 1
            continue
        used += 1
        order = ranking(queries[i], ref, i if loo else None)
        rel = [ref_labels[j] == q_labels[i] for j in order]
        values = {
            "precision_at_1": float(rel[0]),
            "r_precision": sum(rel[:r]) / r,
            "map_at_r": _ap_terms(rel, r) / r,
            "map": _ap_terms(rel, depth) / r,
            "mrr": 1.0 / (rel.index(True) + 1),
        }
        for k in ks:
            values[f"recall_at_{k}"] = float(any(rel[:k]))
        for name, v in values.items():
            sums[name] = sums.get(name, 0.0) + v
    out = {name: v / used for name, v in sums.items()}
    out["num_queries"] = float(used)
    out["num_lone_queries"] = float(lone)
    return out


def _ap_terms(rel: list[bool], depth: int) -> float:
    """``sum_{i <= depth} rel_i * precision@i``."""
    total, hits = 0.0, 0
    for i, r in enumerate(rel[:depth], start=1):
        if r:
            hits += 1
            total += hits / i
    return total


def map_at_k_loop(
    queries: np.ndarray, q_labels: np.ndarray, gallery: np.ndarray, g_labels: np.ndarray, k: int
) -> float:
    """Google Landmark Retrieval mAP@k; negative gallery labels are distractors."""
    queries, gallery = cosine(queries), cosine(gallery)
    aps = []
    for i in range(len(queries)):
        m = sum(1 for g in g_labels if g >= 0 and g == q_labels[i])
        if m == 0:
            continue
        rel = [g_labels[j] == q_labels[i] for j in ranking(queries[i], gallery)]
        aps.append(_ap_terms(rel, k) / min(m, k))
    return sum(aps) / len(aps)


def reid_loop(
    queries: np.ndarray,
    q_ids: np.ndarray,
    q_cams: np.ndarray,
    gallery: np.ndarray,
    g_ids: np.ndarray,
    g_cams: np.ndarray,
    max_rank: int,
) -> tuple[list[float], float, float, int]:
    """CMC, mAP, mINP and the number of evaluated queries (Market-1501: same id and camera removed)."""
    queries, gallery = cosine(queries), cosine(gallery)
    cmc = [0.0] * max_rank
    ap_sum = inp_sum = 0.0
    used = 0
    for i in range(len(queries)):
        order = [j for j in ranking(queries[i], gallery) if not (g_ids[j] == q_ids[i] and g_cams[j] == q_cams[i])]
        rel = [g_ids[j] == q_ids[i] for j in order]
        if not any(rel):
            continue
        used += 1
        first = rel.index(True)
        for r in range(first, max_rank):
            cmc[r] += 1
        ap_sum += _ap_terms(rel, len(rel)) / sum(rel)
        last = max(p for p, r in enumerate(rel) if r) + 1
        inp_sum += sum(rel) / last
    return [c / used for c in cmc], ap_sum / used, inp_sum / used, used


def tar_at_far_loop(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Largest TPR over thresholds (accept ``>= t``) whose FPR is at most ``far``."""
    best = 0.0
    impostors = int((~same).sum())
    genuine = int(same.sum())
    for t in [math.inf, *sorted(set(scores.tolist()))]:
        accept = scores >= t
        fpr = int((accept & ~same).sum()) / impostors
        if fpr <= far:
            best = max(best, int((accept & same).sum()) / genuine)
    return best


def best_accuracy_loop(scores: np.ndarray, same: np.ndarray) -> float:
    """Largest accuracy over thresholds (accept ``>= t``), the reject-all threshold included."""
    best = 0.0
    for t in [math.inf, *sorted(set(scores.tolist()))]:
        accept = scores >= t
        best = max(best, float((accept == same).mean()))
    return best
