"""Scores of each query's relevant references (same label), and ranks of the first relevant one.

The tiled k-NN (:mod:`pairsim.evaluation.tiled`) takes two bounds from them, computed class by
class before the search (``sum_c n_c^2 D`` products, small next to the ``N^2 D`` of the search):

- the k-th best relevant score bounds the k-th best score of all from below (there are k candidates
  at least that good), so lower scores are skipped without a heap look-up;
- a window around the best relevant score, where the search keeps the candidates, gives the exact
  rank of the first relevant reference of queries with none in the top k (their reciprocal rank).

Both hold whatever order a GEMM sums in: a float32 inner product of ``D`` terms is within
``gamma_D * |q| |r|`` of the exact one, ``gamma_D = D u / (1 - D u)``, ``u = 2^-24``; the bounds
are widened by twice that (the class-by-class scores are float32 too).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: Memory for one step of the class-by-class products (float64 operands and products).
STEP_BYTES = 64 * 2**20


class LabelIndex:
    """The reference columns of each label, to gather a query's relevant scores from a row of scores."""

    def __init__(self, ref_labels: Tensor) -> None:
        self.order = ref_labels.argsort(stable=True)  # (N,) columns grouped by label
        self.labels, self.counts = torch.unique(ref_labels, return_counts=True)
        self.starts = self.counts.cumsum(0) - self.counts

    def columns(self, query_labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, M)`` columns of each query's label, padded, and the ``(B, M)`` mask of real entries."""
        pos = torch.searchsorted(self.labels, query_labels).clamp(max=len(self.labels) - 1)
        counts = torch.where(self.labels[pos] == query_labels, self.counts[pos], 0)
        offsets = torch.arange(int(counts.max()), device=counts.device)  # (M,)
        mask = offsets[None, :] < counts[:, None]
        where = (self.starts[pos, None] + offsets[None, :]).clamp(max=len(self.order) - 1)
        return self.order[where], mask


def count_above_and_equal(scores: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    """Per row of ``(B, N)`` scores, how many exceed and how many equal the ``(B, 1)`` threshold."""
    if scores.device.type == "cpu":
        # numpy's count_nonzero is ~10x faster than torch's row-wise sum of a bool tensor on CPU.
        s, t = scores.numpy(), threshold.numpy()
        return torch.from_numpy(np.count_nonzero(s > t, axis=1)), torch.from_numpy(np.count_nonzero(s == t, axis=1))
    return torch.count_nonzero(scores > threshold, dim=1), torch.count_nonzero(scores == threshold, dim=1)


def first_relevant_rank(scores: Tensor, query_labels: Tensor, index: LabelIndex) -> Tensor:
    """1-based rank of the best relevant reference in each row of ``(B, N)`` scores, ties by column.

    Rows without a relevant reference (``-inf`` best) get a meaningless rank; callers drop them.
    """
    cols, mask = index.columns(query_labels)  # (B, M)
    best = torch.where(mask, scores.gather(1, cols), float("-inf")).amax(dim=1, keepdim=True)  # (B, 1)
    ahead, equal = count_above_and_equal(scores, best)  # (B,), (B,)
    ranks = (ahead + 1).to(torch.float64)
    # Exact ties with the best relevant score (duplicates): count the tied columns before it.
    for r in (equal > 1).nonzero().flatten().tolist():
        tied = (scores[r] == best[r]).nonzero().flatten()
        relevant_tied = cols[r][mask[r] & (scores[r, cols[r]] == best[r])]
        ranks[r] += float((tied < relevant_tied.min()).sum())
    return ranks


def relevant_scores(
    queries: Tensor, query_labels: Tensor, reference: Tensor, ref_labels: Tensor, leave_one_out: bool, k: int
) -> tuple[Tensor, Tensor]:
    """Best and k-th best inner product of each query with its relevant references.

    Classes are batched by size (padded to powers of two), one ``bmm`` per batch, in the embeddings'
    dtype: each score is within the float32 error bound of the exact one, like a tile's.

    Args:
        queries: ``(Q, D)``; ``reference`` ``(N, D)``; with ``leave_one_out`` they are the same set
            and a query is not its own relevant reference.
        query_labels: ``(Q,)`` int64; ``ref_labels`` ``(N,)``.
        k: which best score to return second.

    Returns:
        ``(Q,)`` float64 best and ``(Q,)`` k-th best scores, ``-inf`` where a query has no (fewer than
        ``k``) relevant references.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> best, second = relevant_scores(x, torch.tensor([0, 0, 0]), x, torch.tensor([0, 0, 0]), True, 2)
        >>> best.tolist(), second.tolist()
        ([0.6000000238418579, 0.800000011920929, 0.800000011920929], [0.0, 0.6000000238418579, 0.0])
    """
    best = torch.full((len(queries),), float("-inf"), dtype=torch.float64)
    kth = best.clone()
    q_order, q_uniq, q_counts, q_starts = _grouped(query_labels)
    r_order, r_uniq, r_counts, r_starts = _grouped(ref_labels)
    pos = torch.searchsorted(r_uniq, q_uniq).clamp(max=len(r_uniq) - 1)
    g_counts = torch.where(r_uniq[pos] == q_uniq, r_counts[pos], 0)  # references of each query label
    g_starts = r_starts[pos]
    keep = g_counts > int(leave_one_out)
    q_pad, g_pad = _pow2(q_counts[keep]), _pow2(g_counts[keep])
    labels = keep.nonzero().flatten()
    dim = queries.shape[1]
    for pq, pg in torch.unique(torch.stack([q_pad, g_pad], dim=1), dim=0).tolist():
        group = labels[(q_pad == pq) & (g_pad == pg)]
        per_query = 8 * (dim + pg)  # bytes per query row: its embedding and its scores
        per_label = 8 * pg * dim + pq * per_query
        labels_per_step = max(1, STEP_BYTES // per_label)
        queries_per_step = pq if per_label <= STEP_BYTES else max(1, (STEP_BYTES - 8 * pg * dim) // per_query)
        for start in range(0, len(group), labels_per_step):
            chunk = group[start : start + labels_per_step]
            gi, g_mask = _members(r_order, g_starts[chunk], g_counts[chunk], pg)  # (L, pg)
            refs = reference[gi].transpose(1, 2)  # (L, D, pg)
            for offset in range(0, pq, queries_per_step):
                width = min(queries_per_step, pq - offset)
                qi, q_mask = _members(q_order, q_starts[chunk] + offset, q_counts[chunk] - offset, width)
                sims = torch.bmm(queries[qi], refs)  # (L, width, pg)
                mask = q_mask[:, :, None] & g_mask[:, None, :]
                if leave_one_out:
                    mask &= qi[:, :, None] != gi[:, None, :]
                sims.masked_fill_(~mask, float("-inf"))
                best[qi[q_mask]] = sims.amax(dim=2)[q_mask].double()
                if pg >= k:  # the k-th largest is the (pg - k + 1)-th smallest; padding is -inf
                    kth[qi[q_mask]] = sims.kthvalue(pg - k + 1, dim=2).values[q_mask].double()
    return best, kth


def round_down(x: Tensor) -> np.ndarray:
    """float64 ``x`` as the largest float32 ``<= x`` (``-inf`` stays)."""
    x64 = x.numpy()
    y = x64.astype(np.float32)
    over = y.astype(np.float64) > x64
    y[over] = np.nextafter(y[over], np.float32(-np.inf))
    return y


def round_up(x: Tensor) -> np.ndarray:
    """float64 ``x`` as the smallest float32 ``>= x`` (``+inf`` stays)."""
    return -round_down(-x)


def _grouped(labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Positions sorted by label, the labels, their counts and where each starts in that order."""
    order = labels.argsort(stable=True)
    uniq, counts = torch.unique(labels, return_counts=True)
    return order, uniq, counts, counts.cumsum(0) - counts


def _pow2(n: Tensor) -> Tensor:
    return 2 ** torch.ceil(torch.log2(n.clamp(min=1).double())).long()


def _members(order: Tensor, starts: Tensor, counts: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """``(L, width)`` members of ``L`` groups (padded with a valid index) and the mask of real ones."""
    offsets = torch.arange(width)
    mask = offsets[None, :] < counts[:, None]
    where = (starts[:, None] + offsets[None, :]).clamp(max=len(order) - 1)
    return order[where], mask
