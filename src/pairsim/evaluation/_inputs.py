"""Input conversion and checks shared by the evaluators: bad input fails loudly, naming the problem."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def as_embeddings(name: str, x: Any, *, normalize: bool = True) -> Tensor:
    """``x`` as a finite ``(N, D)`` floating tensor with ``N >= 1``, L2-normalised unless told not to.

    Half precision is promoted to float32 (the inner products of a 512-d bf16 embedding keep only
    ~3 significant digits); float32 and float64 are kept as given.
    """
    if isinstance(x, list | tuple):
        x = np.asarray(x, dtype=np.float64)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, numpy.ndarray or list, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    # A row sum is finite unless the row holds NaN / inf (or overflows): one cheap pass, no (N, D)
    # mask (torch.isfinite(x).all(1) peaks at ~3 GB extra for 1e6 x 512); suspects are checked exactly.
    suspects = (~torch.isfinite(x.sum(dim=1))).nonzero().flatten()
    if len(suspects) > 0:
        bad = suspects[~torch.isfinite(x[suspects]).all(dim=1)]
        if len(bad) > 0:
            raise ValueError(f"{name} contains NaN or infinite values (first in row {int(bad[0])})")
    return F.normalize(x, dim=1) if normalize else x


def as_labels(name: str, y: Any, expected_len: int, device: torch.device | None = None) -> Tensor:
    """``y`` as an int64 ``(N,)`` tensor of length ``expected_len``."""
    if isinstance(y, list | tuple):
        y = np.asarray(y)
    if isinstance(y, np.ndarray):
        if not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
            raise ValueError(f"{name} must hold integers, got dtype {y.dtype}")
        y = torch.from_numpy(np.ascontiguousarray(y).astype(np.int64, copy=False))
    if not isinstance(y, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, numpy.ndarray or list, got {type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {y.dtype}")
    if len(y) != expected_len:
        raise ValueError(f"{name} has length {len(y)} but there are {expected_len} embeddings")
    y = y.long()
    return y if device is None else y.to(device)


def check_same_space(query: Tensor, reference: Tensor) -> None:
    """Queries and references must share dimension, dtype and device."""
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"query_embeddings have dimension {query.shape[1]}, embeddings have {reference.shape[1]}")
    if query.dtype != reference.dtype:
        raise ValueError(f"query_embeddings have dtype {query.dtype}, embeddings have {reference.dtype}")
    if query.device != reference.device:
        raise ValueError(f"query_embeddings are on {query.device}, embeddings on {reference.device}")


def check_k(k: int, available: int, what: str = "the gallery") -> None:
    """``1 <= k <= available``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > available:
        raise ValueError(f"k={k} is larger than {what} ({available} candidates per query)")
