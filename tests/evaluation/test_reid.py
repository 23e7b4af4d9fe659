"""Re-ID CMC / mAP / mINP against a loop of the Market-1501 protocol and scikit-learn's AP."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from tests.reference.evaluation_loops import cosine, reid_loop

from pairsim.evaluation import reid_metrics


def _data(seed: int, quantize: bool = False) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 12, 160)
    cams = rng.integers(0, 3, 160)
    x = rng.normal(size=(12, 5))[ids] + rng.normal(size=(160, 5))
    if quantize:
        # 16 directions whose normalised entries are +-0.5: cosines are exact, so ties stay ties.
        x = np.where(x[:, :4] >= 0, 1.0, -1.0)
    return x[:40], ids[:40], cams[:40], x[40:], ids[40:], cams[40:]


@pytest.mark.parametrize(("seed", "quantize"), [(0, False), (1, False), (2, True), (3, True)])
def test_matches_loop(seed: int, quantize: bool) -> None:
    q, qi, qc, g, gi, gc = _data(seed, quantize)
    qi[0] = 99  # identity absent from the gallery: skipped
    got = reid_metrics(q, qi, qc, g, gi, gc, max_rank=10, block_bytes=4000)
    cmc, mean_ap, minp, used = reid_loop(q, qi, qc, g, gi, gc, 10)
    assert got.num_queries == used and got.num_skipped_queries == len(q) - used
    assert np.allclose(got.cmc, cmc, atol=1e-12)
    assert got.rank_1 == pytest.approx(cmc[0], abs=1e-12)
    assert got.map == pytest.approx(mean_ap, abs=1e-12)
    assert got.minp == pytest.approx(minp, abs=1e-12)


def test_same_camera_matches_are_excluded() -> None:
    # The only other view of identity 1 in camera 0 is removed; the one in camera 1 is ranked 3rd.
    q = np.array([[1.0, 0.0]])
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.5, 0.5]])
    s = reid_metrics(q, [1], [0], g, np.array([1, 2, 3, 1]), np.array([0, 1, 1, 1]), max_rank=3)
    assert s.cmc == (0.0, 0.0, 1.0)
    assert s.map == pytest.approx(1 / 3)


def test_map_matches_sklearn_average_precision() -> None:
    q, qi, qc, g, gi, gc = _data(4)
    qn, gn = cosine(q), cosine(g)
    aps = []
    for i in range(len(q)):
        keep = ~((gi == qi[i]) & (gc == qc[i]))
        if (gi[keep] == qi[i]).any():
            aps.append(average_precision_score(gi[keep] == qi[i], gn[keep] @ qn[i]))
    assert reid_metrics(q, qi, qc, g, gi, gc, max_rank=5).map == pytest.approx(np.mean(aps), abs=1e-12)


def test_bad_input_raises() -> None:
    q, qi, qc, g, gi, gc = _data(5)
    with pytest.raises(ValueError, match="max_rank"):
        reid_metrics(q, qi, qc, g, gi, gc, max_rank=len(g) + 1)
    with pytest.raises(ValueError, match="query_camera_ids has length"):
        reid_metrics(q, qi, qc[:3], g, gi, gc)
    with pytest.raises(ValueError, match="no query"):
        reid_metrics(q, qi + 100, qc, g, gi, gc)
