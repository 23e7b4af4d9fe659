"""Retrieval metrics against loops written from the definitions, scikit-learn and PML's AccuracyCalculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import average_precision_score
from tests.reference.evaluation_loops import map_at_k_loop, retrieval_loop

from pairsim.evaluation import map_at_100, retrieval_metrics

KS = (1, 2, 4, 8)


def _clustered(n: int, classes: int, dim: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim))
    return centres[labels] + noise * rng.normal(size=(n, dim)), labels


def _assert_close(got: dict[str, float], expected: dict[str, float], tol: float = 1e-12) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=tol), name


@pytest.mark.parametrize("seed", range(3))
def test_leave_one_out_matches_loop(seed: int) -> None:
    x, y = _clustered(120, 70, 6, seed)  # some classes have a single item: lone queries
    got = retrieval_metrics(x, y, ks=KS)
    expected = retrieval_loop(x, y, None, None, KS)
    assert expected["num_lone_queries"] > 0
    _assert_close(got, expected)


@pytest.mark.parametrize("seed", range(3))
def test_query_gallery_matches_loop(seed: int) -> None:
    x, y = _clustered(150, 20, 6, seed)
    q, ql = x[:40], y[:40]
    got = retrieval_metrics(x[40:], y[40:], q, ql, ks=KS)
    _assert_close(got, retrieval_loop(x[40:], y[40:], q, ql, KS))


def test_ties_match_loop() -> None:
    # Few distinct directions: most similarities are exactly tied, duplicates of the query included.
    rng = np.random.default_rng(7)
    directions = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    x = directions[rng.integers(0, 4, 90)]
    y = rng.integers(0, 6, 90)
    _assert_close(retrieval_metrics(x, y, ks=KS), retrieval_loop(x, y, None, None, KS))
    _assert_close(
        retrieval_metrics(x[30:], y[30:], x[:30], y[:30], ks=KS), retrieval_loop(x[30:], y[30:], x[:30], y[:30], KS)
    )


@pytest.mark.parametrize("quantized", [False, True])
def test_first_relevant_rank_beyond_the_top_k_matches_loop(quantized: bool) -> None:
    # Labels unrelated to the embeddings and k = 1: most queries have no hit in the retrieved top
    # R, so their MRR comes from the whole ranking; quantized directions add exact ties.
    rng = np.random.default_rng(11)
    x = rng.normal(size=(150, 4))
    if quantized:
        x = np.where(x >= 0, 1.0, -1.0)  # 16 directions, normalised entries +-0.5: exact cosines
    y = rng.integers(0, 40, 150)
    for got, expected in (
        (retrieval_metrics(x, y, ks=(1,), block_bytes=3000), retrieval_loop(x, y, None, None, (1,))),
        (
            retrieval_metrics(x[50:], y[50:], x[:50], y[:50], ks=(1,)),
            retrieval_loop(x[50:], y[50:], x[:50], y[:50], (1,)),
        ),
    ):
        _assert_close(got, expected)
    assert expected["mrr"] < 0.5


def test_blocks_and_numpy_inputs_do_not_change_results() -> None:
    x, y = _clustered(200, 30, 8, 3)
    base = retrieval_metrics(torch.from_numpy(x), torch.from_numpy(y))
    _assert_close(retrieval_metrics(x, y, block_bytes=5000), base)
    _assert_close(retrieval_metrics(x.astype(np.float32), y.astype(np.int32)), base, tol=1e-6)


def test_normalize_false_on_normalized_input_is_the_same() -> None:
    x, y = _clustered(100, 10, 5, 4)
    xn = F.normalize(torch.from_numpy(x), dim=1)
    _assert_close(retrieval_metrics(xn, y, normalize=False), retrieval_metrics(x, y))


def test_full_depth_map_matches_sklearn_average_precision() -> None:
    x, y = _clustered(80, 6, 5, 5)
    xn = F.normalize(torch.from_numpy(x), dim=1).numpy()
    q, ql, g, gl = xn[:20], y[:20], xn[20:], y[20:]
    aps = [average_precision_score(gl == ql[i], g @ q[i]) for i in range(len(q)) if (gl == ql[i]).any()]
    got = retrieval_metrics(g, gl, q, ql, map_depth=len(g))
    assert got["map"] == pytest.approx(float(np.mean(aps)), abs=1e-12)


def _pml(q: np.ndarray, ql: np.ndarray, g: np.ndarray | None, gl: np.ndarray | None) -> dict[str, float]:
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "mean_average_precision"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    return calc.get_accuracy(q, ql, g, gl)


@pytest.mark.parametrize("per_class", [3, 12])
def test_matches_pml_leave_one_out_and_query_gallery(per_class: int) -> None:
    rng = np.random.default_rng(per_class)
    y = np.repeat(np.arange(300 // per_class), per_class)
    raw = rng.normal(size=(len(y), 16)).astype(np.float32) + 2 * y[:, None] % 7
    x = F.normalize(torch.from_numpy(raw), dim=1).numpy()
    ours = retrieval_metrics(x, y)
    pml = _pml(x, y, None, None)
    perm = rng.permutation(len(y))
    q, g = perm[:100], perm[100:]
    ours_qg = retrieval_metrics(x[g], y[g], x[q], y[q])
    pml_qg = _pml(x[q], y[q], x[g], y[g])
    for o, p in ((ours, pml), (ours_qg, pml_qg)):
        assert o["precision_at_1"] == pytest.approx(p["precision_at_1"], abs=1e-12)
        assert o["r_precision"] == pytest.approx(p["r_precision"], abs=1e-12)
        assert o["map_at_r"] == pytest.approx(p["mean_average_precision_at_r"], abs=1e-12)
        assert o["map"] == pytest.approx(p["mean_average_precision"], abs=1e-12)


def test_map_at_100_matches_loop_with_distractors() -> None:
    x, y = _clustered(260, 15, 6, 9)
    g_labels = y[60:].copy()
    g_labels[::4] = -1  # distractors: relevant to no query
    q_labels = y[:60].copy()
    q_labels[:3] = 99  # no relevant gallery item: left out
    got = map_at_100(x[:60], q_labels, x[60:], g_labels)
    assert got == pytest.approx(map_at_k_loop(x[:60], q_labels, x[60:], g_labels, 100), abs=1e-12)
    small_k = map_at_100(x[:60], q_labels, x[60:], g_labels, k=5)
    assert small_k == pytest.approx(map_at_k_loop(x[:60], q_labels, x[60:], g_labels, 5), abs=1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.zeros((0, 4)), np.zeros(0, dtype=int)), {}, "empty"),
        ((np.ones((5, 4)), np.zeros(4, dtype=int)), {}, "length 4 but there are 5"),
        ((np.full((5, 4), np.nan), np.zeros(5, dtype=int)), {}, "NaN"),
        ((np.ones((5, 4)), np.zeros(5)), {}, "integers"),
        ((np.ones((5, 4)), np.zeros(5, dtype=int)), {"ks": (5,)}, "larger than the gallery"),
        ((np.ones((5, 4)), np.zeros(5, dtype=int)), {"map_depth": 9, "ks": (1,)}, "map_depth"),
        ((np.ones((5, 4)), np.arange(5)), {"ks": (1,)}, "lone"),
        ((np.ones((5, 4)), np.zeros(5, dtype=int), np.ones((2, 3)), np.zeros(2, dtype=int)), {}, "dimension"),
        ((np.ones((5, 4)), np.zeros(5, dtype=int), np.ones((2, 4))), {}, "query_labels is required"),
        ((np.ones((1, 4)), np.zeros(1, dtype=int)), {}, "at least 2"),
    ],
)
def test_bad_input_raises(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(*args, **kwargs)


def test_map_at_100_bad_input_raises() -> None:
    x = np.ones((5, 4))
    with pytest.raises(ValueError, match="larger than"):
        map_at_100(x, np.zeros(5, dtype=int), x, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="no query"):
        map_at_100(x, np.zeros(5, dtype=int), x, -np.ones(5, dtype=int), k=2)
