"""Re-ranking: alpha-QE, DBA and k-reciprocal against plain-loop references written from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pairsim.evaluation import alpha_query_expansion, database_augmentation, k_reciprocal_rerank
from pairsim.evaluation import k_reciprocal as kr
from pairsim.evaluation.knn import knn


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _clustered(n: int, d: int, classes: int, seed: int) -> torch.Tensor:
    """Class centres plus noise: k-reciprocal sets of several items and their expansions occur."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return F.normalize(centres[labels] + 0.6 * torch.randn(n, d, generator=gen), dim=1)


def _ranked(sims: list[float]) -> list[int]:
    """Indices by decreasing similarity, ties by increasing index (the evaluators' convention)."""
    return sorted(range(len(sims)), key=lambda j: (-sims[j], j))


# ----------------------------------------------------------------------------- references (plain loops)


def reference_aqe(q: torch.Tensor, g: torch.Tensor, k: int, alpha: float) -> np.ndarray:
    """q' = normalise(q + sum_{j in N(q)} max(S_qj, 0)^alpha G_j), N(q) the top-k gallery items."""
    qs, gs = q.double().numpy(), g.double().numpy()
    out = []
    for qv in qs:
        sims = [float(qv @ gv) for gv in gs]
        new = qv.copy()
        for j in _ranked(sims)[:k]:
            new = new + max(sims[j], 0.0) ** alpha * gs[j]
        out.append(new / np.linalg.norm(new))
    return np.array(out)


def reference_dba(g: torch.Tensor, k: int, alpha: float) -> np.ndarray:
    """g' = normalise(sum_{j in N(g)} max(S_gj, 0)^alpha G_j), N(g) the top k+1 items, g included."""
    gs = g.double().numpy()
    out = []
    for i, gv in enumerate(gs):
        sims = [float(gv @ other) for other in gs]
        top = _ranked(sims)[: k + 1]
        assert i in top
        new = np.zeros_like(gv)
        for j in top:
            new = new + max(sims[j], 0.0) ** alpha * gs[j]
        out.append(new / np.linalg.norm(new))
    return np.array(out)


def reference_k_reciprocal(
    q: torch.Tensor, g: torch.Tensor, k1: int, k2: int, lam: float, normalize_original: bool = False
) -> tuple[np.ndarray, int]:
    """Zhong et al. (CVPR 2017) with dense (N, N) matrices, as the released code; also the number of expansions."""
    x = torch.cat([q, g]).double().numpy()
    n, n_q = len(x), len(q)
    dist = np.array([[2.0 - 2.0 * float(x[i] @ x[j]) for j in range(n)] for i in range(n)])
    if normalize_original:
        dist = (dist / dist.max(axis=0)).T  # the released code: per column, then transposed
    rank = [_ranked([-dist[i, j] for j in range(n)]) for i in range(n)]

    def reciprocal(p: int, k: int) -> list[int]:
        return [j for j in rank[p][: k + 1] if p in rank[j][: k + 1]]

    half = int(np.around(k1 / 2.0))
    v = np.zeros((n, n))
    expansions = 0
    for p in range(n):
        r = reciprocal(p, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(set(rc) & set(r)) > 2.0 / 3.0 * len(rc):
                expansions += int(not set(rc) <= expanded)
                expanded |= set(rc)
        weights = {j: math.exp(-dist[p, j]) for j in expanded}
        total = sum(weights.values())
        for j, w in weights.items():
            v[p, j] = w / total
    if k2 > 1:
        v = np.array([np.mean([v[j] for j in rank[p][:k2]], axis=0) for p in range(n)])
    out = np.zeros((n_q, len(g)))
    for i in range(n_q):
        for j in range(len(g)):
            a, b = v[i], v[n_q + j]
            pairs = list(zip(a, b, strict=True))
            jaccard = 1.0 - sum(min(s, t) for s, t in pairs) / sum(max(s, t) for s, t in pairs)
            out[i, j] = (1.0 - lam) * jaccard + lam * dist[i, n_q + j]
    return out, expansions


# ----------------------------------------------------------------------------- alpha-QE and DBA


@pytest.mark.parametrize(("k", "alpha"), [(1, 3.0), (4, 1.0), (5, 0.0), (30, 3.0)])
def test_alpha_query_expansion_matches_reference(k: int, alpha: float) -> None:
    q, g = _unit(7, 6, 0), _unit(30, 6, 1)  # k = 30: the whole gallery, negative similarities weigh 0
    got = alpha_query_expansion(q, g, k, alpha)
    assert got.shape == (7, 6) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), reference_aqe(q, g, k, alpha), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("k", "alpha"), [(1, 3.0), (3, 1.0), (4, 0.0), (24, 2.0)])
def test_database_augmentation_matches_reference(k: int, alpha: float) -> None:
    g = _unit(25, 5, 2)
    got = database_augmentation(g, k, alpha)
    np.testing.assert_allclose(got.numpy(), reference_dba(g, k, alpha), atol=1e-6, rtol=0)


def test_k_zero_is_the_identity() -> None:
    q, g = torch.randn(5, 4) * 3, torch.randn(9, 4)
    assert torch.equal(alpha_query_expansion(q, g, 0), F.normalize(q, dim=1))
    assert torch.equal(database_augmentation(g, 0), F.normalize(g, dim=1))


def test_inputs_are_normalised_and_float64_is_kept() -> None:
    q, g = F.normalize(_unit(4, 6, 3).double(), dim=1), F.normalize(_unit(12, 6, 4).double(), dim=1)
    got = alpha_query_expansion(q * 5, g * 2, 3, 3.0)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), reference_aqe(q, g, 3, 3.0), atol=1e-12, rtol=0)
    np.testing.assert_allclose(database_augmentation(g * 7, 2).numpy(), reference_dba(g, 2, 3.0), atol=1e-12, rtol=0)


def test_expansion_does_not_depend_on_the_block_size() -> None:
    q, g = _unit(40, 8, 5), _unit(300, 8, 6)
    base = alpha_query_expansion(q, g, 5)
    torch.testing.assert_close(alpha_query_expansion(q, g, 5, block_bytes=64), base, atol=1e-6, rtol=0)
    base = database_augmentation(g, 5)
    torch.testing.assert_close(database_augmentation(g, 5, block_bytes=64), base, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda q, g: alpha_query_expansion(q, g, 11), "k=11 is larger than the gallery"),
        (lambda q, g: alpha_query_expansion(q, g, -1), "k must be a non-negative integer"),
        (lambda q, g: alpha_query_expansion(q, g, 2.0), "k must be a non-negative integer"),
        (lambda q, g: alpha_query_expansion(q, g[:, :3], 2), "dimension"),
        (lambda q, g: alpha_query_expansion(q, g, 2, -1.0), "alpha must be a finite number >= 0"),
        (lambda q, g: alpha_query_expansion(q, g, 2, float("nan")), "alpha"),
        (lambda q, g: alpha_query_expansion(q[0], g, 2), "queries must have shape"),
        (lambda q, g: alpha_query_expansion(q, torch.full_like(g, float("nan")), 2), "gallery contains NaN"),
        (lambda q, g: database_augmentation(g, 10), "k=10 is larger than the gallery less the item itself"),
        (lambda q, g: database_augmentation(g, 1, -0.5), "alpha"),
        (lambda q, g: database_augmentation(g.double().numpy()[:, :0], 1), "gallery is empty"),
    ],
)
def test_expansion_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call(torch.randn(3, 4), torch.randn(10, 4))


# ----------------------------------------------------------------------------- k-reciprocal


@pytest.mark.parametrize(
    ("k1", "k2", "lam", "normalize_original"),
    [(6, 3, 0.3, False), (5, 1, 0.5, False), (4, 7, 0.0, False), (7, 4, 0.3, True), (1, 2, 0.2, False)],
)
def test_k_reciprocal_matches_dense_reference(k1: int, k2: int, lam: float, normalize_original: bool) -> None:
    x = _clustered(56, 8, 6, seed=k1 + 10 * k2)
    q, g = x[:14], x[14:]
    got = k_reciprocal_rerank(q, g, k1, k2, lam, normalize_original=normalize_original)
    want, expansions = reference_k_reciprocal(q, g, k1, k2, lam, normalize_original)
    assert got.shape == (14, 42) and got.dtype == torch.float32
    if k1 >= 6:  # below, a half-size set of <= 3 items must lie inside R(p, k1) to count: it adds nothing
        assert expansions > 0  # the data exercise the 1/2-k1 expansion
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)


def test_k_reciprocal_on_uniform_data_and_float64() -> None:
    q, g = _unit(10, 16, 7).double(), _unit(35, 16, 8).double()
    got = k_reciprocal_rerank(q, g, 8, 4, 0.3)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), reference_k_reciprocal(q, g, 8, 4, 0.3)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("normalize_original", [False, True])
def test_lambda_one_keeps_the_original_ranking(normalize_original: bool) -> None:
    x = _clustered(80, 8, 5, seed=3)
    q, g = x[:20], x[20:]
    got = k_reciprocal_rerank(q, g, 10, 4, 1.0, normalize_original=normalize_original)
    sims = q @ g.T
    for row, sim in zip(got, sims, strict=True):
        assert bool((row[sim.argsort(descending=True)].diff() >= 0).all())
    if not normalize_original:
        torch.testing.assert_close(got, 2 - 2 * sims, atol=1e-6, rtol=0)


def test_an_item_is_nearest_to_itself_in_the_joint_set() -> None:
    x = _clustered(70, 8, 5, seed=4)
    sparse = pytest.importorskip("scipy.sparse")
    top = knn(x, x, 9).indices.numpy()
    scale = np.ones(len(x))
    v = kr.local_query_expansion(kr.encode(x, top, 8, scale, 2**20, sparse), top[:, :3], sparse)
    everything = np.arange(len(x))
    joint = kr.final_distances(x, v, everything, everything, 0.3, scale, 2**20)  # (N, N)
    assert (joint.argmin(axis=1) == everything).all()
    np.testing.assert_allclose(np.diag(joint), 0.0, atol=1e-6)
    # Through the public function: a query's copy in the gallery is its nearest item.
    got = k_reciprocal_rerank(x[:25], x, 8, 3, 0.3)
    assert (got.argmin(dim=1) == torch.arange(25)).all()


def test_k_reciprocal_does_not_depend_on_the_block_size() -> None:
    x = _clustered(90, 8, 6, seed=5)
    q, g = x[:30], x[30:]
    for normalize_original in (False, True):
        base = k_reciprocal_rerank(q, g, 7, 3, 0.3, normalize_original=normalize_original)
        for block_bytes in (1, 5_000):
            small = k_reciprocal_rerank(q, g, 7, 3, 0.3, normalize_original=normalize_original, block_bytes=block_bytes)
            torch.testing.assert_close(small, base, atol=1e-6, rtol=0)


def test_k_reciprocal_changes_the_ranking() -> None:
    """Not a no-op: with lambda < 1 the ranking of some queries differs from the original one."""
    x = _clustered(120, 8, 6, seed=6)
    q, g = x[:30], x[30:]
    reranked = k_reciprocal_rerank(q, g, 10, 4, 0.3).argsort(dim=1)
    original = (q @ g.T).argsort(dim=1, descending=True)
    assert not torch.equal(reranked, original)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k1": 12}, r"k1=12 is larger than the joint query \+ gallery set allows \(k1 \+ 1 <= 12 items\)"),
        ({"k1": 0}, "k1 must be a positive integer"),
        ({"k2": 13}, "k2=13 is larger than the joint query"),
        ({"k2": 0}, "k2 must be a positive integer"),
        ({"lambda_": 1.5}, r"lambda_ must be a number in \[0, 1\]"),
        ({"lambda_": float("nan")}, "lambda_"),
        ({"block_bytes": 0}, "block_bytes must be positive"),
    ],
)
def test_k_reciprocal_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    params = {"k1": 3, "k2": 2, "lambda_": 0.3, **kwargs}
    with pytest.raises(ValueError, match=match):
        k_reciprocal_rerank(torch.randn(2, 4), torch.randn(10, 4), **params)  # type: ignore[arg-type]


def test_k_reciprocal_bad_embeddings() -> None:
    with pytest.raises(ValueError, match="dimension"):
        k_reciprocal_rerank(torch.randn(2, 4), torch.randn(10, 5), 3, 2)
    with pytest.raises(ValueError, match="queries contains NaN"):
        k_reciprocal_rerank(torch.tensor([[float("nan"), 1.0]]), torch.randn(10, 2), 3, 2)
    with pytest.raises(ValueError, match="gallery must have shape"):
        k_reciprocal_rerank(torch.randn(2, 4), torch.randn(10), 3, 2)
