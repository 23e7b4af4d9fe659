"""Google Landmark Retrieval mAP@100 on hand-made rankings with a known answer.

``AP@k(q) = (1 / min(m_q, k)) sum_{i<=k} P(i) rel(i)``, ``m_q`` the relevant gallery items of ``q``; negative
gallery labels are distractors; queries without a relevant item are left out of the mean.
"""

from __future__ import annotations

import numpy as np
import pytest

from pairsim.evaluation import map_at_100

QUERY = np.array([[1.0, 0.0]])


def _gallery_in_order(n: int) -> np.ndarray:
    """``n`` unit vectors whose cosine to ``QUERY`` strictly decreases: gallery item i is ranked i-th."""
    angles = np.linspace(0.01, 1.5, n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _score(ranked_labels: list[int], query_label: int = 7, k: int = 100) -> float:
    gallery = _gallery_in_order(len(ranked_labels))
    return map_at_100(QUERY, np.array([query_label]), gallery, np.array(ranked_labels), k=k)


def test_every_relevant_item_ranked() -> None:
    # 7 -1 7 3 7, m = 3: AP = (1/3)(1/1 + 2/3 + 3/5) = 34/45
    assert _score([7, -1, 7, 3, 7], k=5) == pytest.approx(34 / 45, abs=1e-15)


def test_divides_by_min_of_relevant_and_k() -> None:
    # 7 -1 7 7 7 7, m = 5, k = 3: top 3 = 7 -1 7: (1/1 + 2/3) / min(5, 3) = 5/9
    # (not / m = 1/3, nor / hits = 5/6)
    assert _score([7, -1, 7, 7, 7, 7], k=3) == pytest.approx(5 / 9, abs=1e-15)


def test_relevant_item_below_the_cut_counts_in_the_denominator() -> None:
    # 3 7 -1 7, m = 2, k = 2: top 2 = 3 7: (1/2) / min(2, 2) = 1/4
    assert _score([3, 7, -1, 7], k=2) == pytest.approx(1 / 4, abs=1e-15)


def test_depth_100_by_default() -> None:
    # 150 items, relevant at ranks 1 and 120: only rank 1 is within 100: (1/1) / min(2, 100) = 1/2
    labels = [0] * 150
    labels[0] = labels[119] = 7
    assert _score(labels) == pytest.approx(1 / 2, abs=1e-15)
    assert _score(labels, k=150) == pytest.approx((1 + 2 / 120) / 2, abs=1e-15)


def test_distractors_are_relevant_to_no_query() -> None:
    # a query labelled -1 matches no distractor: it has no relevant item, so it is left out
    assert _score([-1, 7, -1], k=3) == pytest.approx(1 / 2, abs=1e-15)
    with pytest.raises(ValueError, match="no query"):
        _score([-1, 7, -1], query_label=-1, k=3)


def test_queries_without_relevant_items_are_left_out() -> None:
    gallery = _gallery_in_order(4)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    # query 0 (label 7): 3 7 -1 7 -> (1/2 + 2/4) / 2 = 1/2; query 1 (label 99) has nothing relevant
    got = map_at_100(queries, np.array([7, 99]), gallery, np.array([3, 7, -1, 7]), k=4)
    assert got == pytest.approx(1 / 2, abs=1e-15)
