"""Input checks shared by the evaluators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pairsim.evaluation._inputs import as_embeddings, as_labels


def test_huge_finite_rows_are_accepted_and_non_finite_rows_named() -> None:
    x = torch.full((4, 8), 3e38)  # row sums overflow to inf, yet every value is finite
    assert torch.equal(as_embeddings("e", x, normalize=False), x)
    x[2, 5] = float("inf")
    with pytest.raises(ValueError, match="row 2"):
        as_embeddings("e", x)


def test_conversions() -> None:
    assert as_embeddings("e", [[3.0, 4.0]]).tolist() == [[0.6, 0.8]]
    assert as_embeddings("e", torch.ones(2, 2, dtype=torch.bfloat16)).dtype == torch.float32
    assert as_labels("y", np.array([1, 2], dtype=np.int32), 2).dtype == torch.int64
    with pytest.raises(ValueError, match="integer"):
        as_labels("y", torch.tensor([True, False]), 2)
    with pytest.raises(ValueError, match="shape"):
        as_embeddings("e", torch.ones(3))
