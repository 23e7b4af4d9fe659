"""The k-NN: blocked exact search against a full stable sort, ties, faiss and HNSW options, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pairsim.evaluation.knn import knn, topk_by_index_ties


def _sorted_reference(q: torch.Tensor, ref: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    scores = (q.double() @ ref.double().T).clone()
    if exclude_self:
        scores.fill_diagonal_(float("-inf"))
    # Stable sort on the negated score: ties keep increasing index, the documented convention.
    return (-scores).sort(dim=1, stable=True).indices[:, :k]


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("block_bytes", [64, 10_000, 2**28])
def test_exact_matches_full_sort(exclude_self: bool, block_bytes: int) -> None:
    g = torch.Generator().manual_seed(0)
    ref = F.normalize(torch.randn(70, 8, generator=g, dtype=torch.float64), dim=1)
    q = ref if exclude_self else F.normalize(torch.randn(23, 8, generator=g, dtype=torch.float64), dim=1)
    for k in (1, 5, 69):
        got = knn(q, ref, k, exclude_self=exclude_self, block_bytes=block_bytes)
        assert torch.equal(got.indices, _sorted_reference(q, ref, k, exclude_self))
        expected_scores = (q @ ref.T).gather(1, got.indices)
        assert torch.allclose(got.scores, expected_scores)
        if exclude_self:
            assert not bool((got.indices == torch.arange(len(q))[:, None]).any())


@pytest.mark.parametrize("seed", range(6))
def test_ties_are_broken_by_index_also_at_the_cut(seed: int) -> None:
    # Integer scores in a small range: nearly every row has ties, many straddling the k-th place.
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (40, 30), generator=g).float()
    scores[:, 5] = float("-inf")  # an excluded self-pair: the heaps cannot fill k = 30, torch.topk takes over
    for k in (1, 3, 7, 29, 30):
        idx, vals = topk_by_index_ties(scores.clone(), k)
        expected = (-scores).sort(dim=1, stable=True).indices[:, :k]
        assert torch.equal(idx, expected)
        assert torch.equal(vals, scores.gather(1, expected))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(4))
def test_long_rows_are_exact(seed: int, dtype: torch.dtype) -> None:
    # float64 takes the grouped search of topk_values, float32 the faiss heaps; integer scores put
    # ties at the cut, -inf entries stand for excluded self-pairs; 3001 columns leave a partial group.
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 50 if seed % 2 else 100_000, (25, 3001), generator=g).to(dtype)
    scores[torch.arange(25), torch.arange(25) * 7] = float("-inf")
    for k in (1, 4, 20, 90):
        idx, vals = topk_by_index_ties(scores, k)
        expected = (-scores).sort(dim=1, stable=True).indices[:, :k]
        assert torch.equal(idx, expected)
        assert torch.equal(vals, scores.gather(1, expected))
    tail_best = scores.clone()
    tail_best[:, -1] = 1e9  # the best column sits in the partial last group
    assert topk_by_index_ties(tail_best, 3)[0][:, 0].eq(3000).all()


def test_duplicate_embeddings_rank_by_index() -> None:
    x = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]])
    got = knn(x, x, 3, exclude_self=True)
    assert got.indices.tolist()[:4] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]


@pytest.mark.parametrize("exclude_self", [False, True])
def test_faiss_exact_matches_torch_exact(exclude_self: bool) -> None:
    g = torch.Generator().manual_seed(1)
    ref = F.normalize(torch.randn(300, 16, generator=g), dim=1)
    q = ref if exclude_self else F.normalize(torch.randn(50, 16, generator=g), dim=1)
    a = knn(q, ref, 10, exclude_self=exclude_self, method="exact")
    b = knn(q, ref, 10, exclude_self=exclude_self, method="faiss", block_bytes=4096)
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.scores, b.scores, atol=1e-5)


def test_hnsw_is_close_to_exact() -> None:
    g = torch.Generator().manual_seed(2)
    ref = F.normalize(torch.randn(2000, 16, generator=g), dim=1)
    exact = knn(ref, ref, 10, exclude_self=True)
    approx = knn(ref, ref, 10, exclude_self=True, method="hnsw")
    pairs = zip(exact.indices.tolist(), approx.indices.tolist(), strict=True)
    recall = sum(len(set(a) & set(b)) for a, b in pairs) / exact.indices.numel()
    assert recall > 0.9
    assert not bool((approx.indices == torch.arange(len(ref))[:, None]).any())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 11}, "larger than"),
        ({"k": 10, "exclude_self": True}, "larger than"),
        ({"k": 0}, "positive integer"),
        ({"k": 2, "method": "annoy"}, "unknown k-NN method"),
        ({"k": 2, "block_bytes": 0}, "block_bytes"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match=message):
        knn(x, x, **kwargs)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shapes"):
        knn(torch.randn(3, 4), torch.randn(5, 3), 1)
    with pytest.raises(ValueError, match="exclude_self"):
        knn(torch.randn(3, 4), torch.randn(5, 4), 1, exclude_self=True)
