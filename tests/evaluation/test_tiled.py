"""The tiled k-NN (numba kernels, symmetric tiles, exact re-ranking) against full float64 sorts, and
retrieval_metrics on both paths: tiled, and the torch fallback used without numba."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.reference.evaluation_loops import retrieval_loop

from pairsim.evaluation import _exact, _kernels, _relevant, knn, retrieval_metrics, tiled

pytestmark = pytest.mark.skipif(not _kernels.AVAILABLE, reason="numba (the 'fast' extra) is not installed")


def _sorted_reference(q: torch.Tensor, ref: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    scores = q.double() @ ref.double().T
    if exclude_self:
        scores.fill_diagonal_(float("-inf"))
    return (-scores).sort(dim=1, stable=True).indices[:, :k]  # ties by increasing index


def _unit(n: int, d: int, g: torch.Generator, offset: float = 0.0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=g) + offset, dim=1)


def _integers(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    """Small integers: every float32 product and sum is exact, ties are exact; half the rows duplicated."""
    x = torch.randint(-2, 3, (n, d), generator=g).float()
    x[n // 2 :] = x[: n - n // 2].clone()
    return x


@pytest.mark.parametrize("exclude_self", [True, False])
@pytest.mark.parametrize(("n", "d", "tile"), [(1, 3, 1), (2, 5, 1), (97, 7, 10), (130, 33, 64), (300, 300, 1024)])
def test_matches_full_sort(exclude_self: bool, n: int, d: int, tile: int) -> None:
    g = torch.Generator().manual_seed(n + d + tile)
    ref = _unit(n + 1, d, g)
    q = ref if exclude_self else _unit(max(1, n // 3), d, g)
    available = len(ref) - int(exclude_self)
    for k in sorted({1, 3, n // 2, available} & set(range(1, available + 1))):
        got = tiled.tiled_knn(q, ref, k, exclude_self=exclude_self, tile=tile)
        assert torch.equal(got.indices, _sorted_reference(q, ref, k, exclude_self))
        exact = (q.double() @ ref.double().T).gather(1, got.indices)
        assert torch.allclose(got.scores.double(), exact, atol=1e-6)
        assert bool((got.scores[:, 1:] <= got.scores[:, :-1]).all())


@pytest.mark.parametrize("seed", range(4))
def test_near_ties_are_ranked_exactly(seed: int) -> None:
    # All directions within a narrow cone: many scores closer than float32 can order; tiles of 37
    # split the symmetric matrix unevenly.
    g = torch.Generator().manual_seed(seed)
    ref = _unit(211, 257, g, offset=40.0)
    for k in (1, 5, 60):
        got = tiled.tiled_knn(ref, ref, k, exclude_self=True, tile=37)
        assert torch.equal(got.indices, _sorted_reference(ref, ref, k, True))
        q = _unit(19, 257, g, offset=40.0)
        assert torch.equal(tiled.tiled_knn(q, ref, k, tile=37).indices, _sorted_reference(q, ref, k, False))


@pytest.mark.parametrize("seed", range(4))
def test_exact_ties_and_duplicates_rank_by_index(seed: int) -> None:
    # Runs of equal scores longer than the kept margin: those queries are redone from float64 rows.
    g = torch.Generator().manual_seed(seed)
    ref = _integers(150, 3, g)
    q = _integers(20, 3, g)
    for k in (1, 4, 30, 149):
        assert torch.equal(
            tiled.tiled_knn(ref, ref, k, exclude_self=True, tile=16).indices, _sorted_reference(ref, ref, k, True)
        )
        assert torch.equal(tiled.tiled_knn(q, ref, k, tile=16).indices, _sorted_reference(q, ref, k, False))


def test_floor_and_window_bookkeeping() -> None:
    # Exact integer scores: the counts above the window and its contents are known exactly.
    g = torch.Generator().manual_seed(5)
    ref = _integers(120, 4, g)
    scores = ref @ ref.T
    scores.fill_diagonal_(float("-inf"))
    k = 6
    kth = scores.sort(dim=1, descending=True).values[:, k - 1]
    lo, up = kth - 1, kth + 1
    window = tiled.RankWindow(lo.numpy(), up.numpy())
    got = tiled.tiled_knn(ref, ref, k, exclude_self=True, tile=13, floor=(kth - 0.5).numpy(), window=window)
    assert torch.equal(got.indices, _sorted_reference(ref, ref, k, True))
    assert torch.equal(got.above, (scores > up[:, None]).sum(dim=1))
    inside = (scores >= lo[:, None]) & (scores <= up[:, None])
    assert torch.equal(got.window_counts, inside.sum(dim=1))
    for i in range(len(ref)):
        n = min(int(got.window_counts[i]), tiled.WINDOW_CAPACITY)
        kept = set(got.window_indices[i, :n].tolist())
        assert kept <= set(inside[i].nonzero().flatten().tolist())
        assert len(kept) == n
        assert torch.equal(got.window_scores[i, :n], scores[i, got.window_indices[i, :n]])


def test_workers_torch_mm_and_thread_count() -> None:
    g = torch.Generator().manual_seed(6)
    ref = _unit(400, 24, g, offset=3.0)
    expected = _sorted_reference(ref, ref, 9, True)
    saved = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            assert torch.equal(tiled.tiled_knn(ref, ref, 9, exclude_self=True, tile=50).indices, expected)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(saved)
    mm = tiled._torch_scores
    original = tiled._gemm
    try:
        tiled._gemm = lambda: mm  # type: ignore[assignment]
        assert torch.equal(tiled.tiled_knn(ref, ref, 9, exclude_self=True, tile=50).indices, expected)
    finally:
        tiled._gemm = original  # type: ignore[assignment]


def test_float32_error_bound_holds() -> None:
    g = torch.Generator().manual_seed(11)
    for d in (3, 128, 700):
        q, ref = 3 * torch.randn(50, d, generator=g), torch.randn(80, d, generator=g) + 1
        error = ((q @ ref.T).double() - q.double() @ ref.double().T).abs().amax(dim=1)
        bound = _exact.float32_error_bound(q, ref)
        assert bool((error <= bound).all())
        assert bool((bound < 1e-2 * q.double().norm(dim=1) * ref.double().norm(dim=1).max()).all())


def test_bad_arguments_raise() -> None:
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="larger than"):
        tiled.tiled_knn(x, x, 5, exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self"):
        tiled.tiled_knn(x[:4], x, 2, exclude_self=True)


def test_worker_errors_reach_the_caller() -> None:
    def fail(a: int, b: int) -> None:
        raise RuntimeError(f"tile {a}, {b}")

    with pytest.raises(RuntimeError, match="tile"):
        tiled._run_in_workers([(0, 0), (0, 1)], fail)


def test_knn_uses_the_tiled_path(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(7)
    ref = _unit(90, 6, g)
    expected = _sorted_reference(ref, ref, 5, True)
    orders: list[bool] = []
    tile_order = tiled._tile_order
    monkeypatch.setattr(tiled, "_tile_order", lambda *args: orders.append(args[2]) or tile_order(*args))
    got = knn(ref, ref, 5, exclude_self=True, block_bytes=400)  # tiles of 10
    assert torch.equal(got.indices, expected)
    assert orders == [True]  # the symmetric half of the tiles
    assert got.scores.dtype == torch.float32
    # A copy of the reference set: not the same tensor, so every tile is computed; same result.
    assert torch.equal(knn(ref.clone(), ref, 5, exclude_self=True, block_bytes=400).indices, expected)
    assert orders == [True, False]
    monkeypatch.setattr(_kernels, "AVAILABLE", False)  # as without numba: the torch path
    assert torch.equal(knn(ref, ref, 5, exclude_self=True, block_bytes=400).indices, expected)


def test_relevant_scores_match_brute_force() -> None:
    g = torch.Generator().manual_seed(8)
    x = torch.randn(150, 5, generator=g)
    y = torch.randint(0, 30, (150,), generator=g)
    q, ql = torch.randn(40, 5, generator=g), torch.randint(-3, 30, (40,), generator=g)
    for leave_one_out, queries, labels in ((True, x, y), (False, q, ql)):
        sims = queries.double() @ x.double().T
        relevant = labels[:, None] == y[None, :]
        if leave_one_out:
            relevant.fill_diagonal_(False)
        sims = sims.masked_fill(~relevant, float("-inf"))
        for step in (10**9, 300):  # all classes at once; a few queries per step
            saved = _relevant.STEP_BYTES
            _relevant.STEP_BYTES = step
            try:
                best, kth = _relevant.relevant_scores(queries, labels, x, y, leave_one_out, 3)
            finally:
                _relevant.STEP_BYTES = saved
            assert torch.allclose(best, sims.amax(dim=1), atol=1e-5)  # float32 products
            assert torch.equal(best.isinf(), sims.amax(dim=1).isinf())
            third = sims.sort(dim=1, descending=True).values[:, 2]
            assert torch.allclose(kth, third, atol=1e-5)
            assert torch.equal(kth.isinf(), third.isinf())


def _clustered(n: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.normal(size=(classes, dim))[labels] + rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def _assert_close(got: dict[str, float], expected: dict[str, float], tol: float = 1e-12) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=tol), name


@pytest.mark.parametrize("seed", range(3))
def test_retrieval_float32_matches_float64_loop(seed: int) -> None:
    # Lone labels, misses beyond the top R (first relevant rank from the window), query/gallery
    # queries whose label is absent from the gallery; tiles of 17 (block_bytes).
    x, y = _clustered(230, 90, 9, seed)
    ks = (1, 2, 8)
    expected = retrieval_loop(x, y, None, None, ks)
    assert expected["num_lone_queries"] > 0 and expected["mrr"] < expected["recall_at_8"]
    _assert_close(retrieval_metrics(x, y, ks=ks, block_bytes=17 * 17 * 4), expected)
    q, ql = x[:50], y[:50].copy()
    ql[:4] = 1000
    expected = retrieval_loop(x[50:], y[50:], q, ql, ks)
    _assert_close(retrieval_metrics(x[50:], y[50:], q, ql, ks=ks, block_bytes=17 * 17 * 4), expected)


def test_retrieval_with_ties_matches_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Exact integer embeddings, labels unrelated to them: ties everywhere and most first relevant
    # ranks far down; windows overflow and those queries are ranked from float64 rows. The torch
    # path (what runs without numba) computes the same exact scores in float32.
    g = torch.Generator().manual_seed(9)
    x = _integers(160, 3, g).numpy()
    y = np.random.default_rng(9).integers(0, 25, 160)
    ks = (1, 4)
    tiled_loo = retrieval_metrics(x, y, ks=ks, normalize=False, block_bytes=20 * 20 * 4)
    tiled_qg = retrieval_metrics(x[40:], y[40:], x[:40], y[:40], ks=ks, normalize=False)
    assert tiled_loo["mrr"] < 0.5
    monkeypatch.setattr(_kernels, "AVAILABLE", False)
    assert not tiled.available(torch.from_numpy(x), torch.from_numpy(x))
    _assert_close(tiled_loo, retrieval_metrics(x, y, ks=ks, normalize=False, block_bytes=20 * 20 * 4))
    _assert_close(tiled_qg, retrieval_metrics(x[40:], y[40:], x[:40], y[:40], ks=ks, normalize=False))


def _plain_copy(module: Any, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, module.__file__)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    return copy


def test_kernels_run_as_plain_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel modules without numba (separate copies, imported with numba hidden): they still
    # import, say they are not available, and their functions are plain Python with the same result.
    monkeypatch.setitem(sys.modules, "numba", None)
    plain = _plain_copy(_kernels, "plain_kernels")
    monkeypatch.setitem(sys.modules, "pairsim.evaluation._kernels", plain)
    plain_exact = _plain_copy(_exact, "plain_exact")
    assert not plain.AVAILABLE
    g = torch.Generator().manual_seed(10)
    x = _unit(9, 4, g).numpy()
    tile = x @ x.T
    heaps = np.full((9, 4), plain.EMPTY_KEY, np.uint64)
    state = (
        heaps,
        np.full(9, -np.inf, np.float32),
        np.full(9, np.inf, np.float32),
        np.full(9, np.inf, np.float32),
        np.zeros(9, np.int64),
        np.zeros((9, 2), np.float32),
        np.zeros((9, 2), np.int64),
        np.zeros(9, np.int64),
    )
    blocks = (0, 4, 9)  # two blocks of the symmetric matrix: tiles (0, 0), (0, 1), (1, 1)
    for a, b in ((0, 0), (0, 1), (1, 1)):
        part = np.ascontiguousarray(tile[blocks[a] : blocks[a + 1], blocks[b] : blocks[b + 1]])
        plain.scan_rows(part, part.view(np.uint32), blocks[a], blocks[b], a == b, *state)
        if a != b:
            plain.scan_columns(part, part.view(np.uint32), blocks[a], blocks[b], *state)
    indices, scores = np.empty((9, 3), np.int64), np.empty((9, 3), np.float32)
    exact = np.empty(9, np.bool_)
    heaps.sort(axis=1)
    plain_exact.finish_rows(heaps, 0, 9, x, x, np.full(9, 1e-5), False, indices, scores, exact)
    expected = _sorted_reference(torch.from_numpy(x), torch.from_numpy(x), 3, True)
    assert torch.equal(torch.from_numpy(indices), expected)
    assert bool(exact.all())
