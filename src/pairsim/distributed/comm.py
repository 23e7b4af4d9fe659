"""Differentiable collectives: the all-gather and all-reduces the distributed losses are built from.

Every function also works without an initialised process group (one process, world size 1): the
collectives become identities, so the distributed losses run unchanged in a single process.

Two backward conventions are used, and each function says which:

- **owner-summed** (:func:`gather_with_grad`): each rank computes its *own* loss from the gathered
  tensor; the gradient that all ranks send to one rank's slice is summed on its owner
  (a reduce-scatter), as the chain rule over the sum of the ranks' losses requires;
- **replicated** (:func:`all_reduce_sum`, :func:`all_reduce_logsumexp`): every rank computes the *same*
  function of the reduced value (the same upstream gradient everywhere), so each rank's input gets
  that gradient times its local partial derivative, with no communication (Megatron-LM's rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.function import FunctionCtx

Group = Any  # a torch.distributed ProcessGroup, or None for the default group


def world(group: Group = None) -> tuple[int, int]:
    """``(rank, world_size)`` of this process in ``group``; ``(0, 1)`` without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


@dataclass
class CommLog:
    """Payload bytes handed to each kind of collective by this process (for the benchmark).

    Payload is what one rank passes in (all-reduce, reduce-scatter) or gets out (all-gather); the
    bytes a ring algorithm puts on the wire per rank are ``2 (W-1)/W`` times the payload for an
    all-reduce and ``(W-1)/W`` for an all-gather or a reduce-scatter.
    """

    enabled: bool = False
    payload: dict[str, int] = field(default_factory=dict)

    def record(self, kind: str, tensor: Tensor) -> None:
        if self.enabled:
            self.payload[kind] = self.payload.get(kind, 0) + tensor.numel() * tensor.element_size()

    def wire_bytes(self, world_size: int) -> int:
        """Bytes sent per rank by ring collectives for the recorded payloads."""
        if world_size < 2:
            return 0
        share = (world_size - 1) / world_size
        factor = {"all_reduce": 2 * share, "all_gather": share, "reduce_scatter": share}
        return round(sum(factor[kind] * size for kind, size in self.payload.items()))


COMM_LOG = CommLog()


def _all_reduce(x: Tensor, op: Any, group: Group) -> Tensor:
    """In-place all-reduce of ``x`` (returned), or ``x`` itself with one process."""
    if world(group)[1] > 1:
        COMM_LOG.record("all_reduce", x)
        dist.all_reduce(x, op=op, group=group)
    return x


def all_gather_sizes(n: int, device: torch.device, group: Group = None) -> list[int]:
    """Every rank's ``n`` (its number of rows), in rank order."""
    size = world(group)[1]
    if size == 1:
        return [n]
    local = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.empty_like(local) for _ in range(size)]
    COMM_LOG.record("all_gather", local.repeat(size))
    dist.all_gather(out, local, group=group)
    return [int(t.item()) for t in out]


def all_gather_rows(x: Tensor, sizes: list[int], group: Group = None) -> Tensor:
    """Concatenation of every rank's ``x`` (``(sizes[r], ...)`` each) along dimension 0, no gradient.

    Ranks may hold different numbers of rows: all are padded to the largest, gathered, then trimmed.
    """
    if len(sizes) == 1:
        return x
    peak = max(sizes)
    padded = x.new_zeros((peak, *x.shape[1:]))
    padded[: len(x)] = x
    out = [torch.empty_like(padded) for _ in sizes]
    COMM_LOG.record("all_gather", padded.repeat(len(sizes), *([1] * (x.dim() - 1))))
    dist.all_gather(out, padded.contiguous(), group=group)
    return torch.cat([part[:n] for part, n in zip(out, sizes, strict=True)])


def sum_scatter_rows(grad: Tensor, sizes: list[int], rank: int, group: Group = None) -> Tensor:
    """Rank ``rank``'s rows of the sum over ranks of ``grad`` (``(sum(sizes), ...)`` on every rank).

    The adjoint of :func:`all_gather_rows`: a reduce-scatter (on NCCL), else an all-reduce and a slice.
    """
    if len(sizes) == 1:
        return grad
    peak = max(sizes)
    padded = grad.new_zeros((len(sizes), peak, *grad.shape[1:]))  # (W, peak, ...)
    for r, part in enumerate(torch.split(grad, sizes)):
        padded[r, : len(part)] = part
    if dist.get_backend(group) == "nccl":
        out = padded.new_empty(padded.shape[1:])
        COMM_LOG.record("reduce_scatter", padded)
        dist.reduce_scatter_tensor(out, padded, group=group)
    else:  # gloo has no reduce-scatter; the all-reduce moves twice the bytes.
        out = _all_reduce(padded, dist.ReduceOp.SUM, group)[rank]
    return out[: sizes[rank]]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, sizes: list[int], rank: int, group: Group, grad_scale: float) -> Tensor:
        ctx.sizes, ctx.rank, ctx.group, ctx.grad_scale = sizes, rank, group, grad_scale  # type: ignore[attr-defined]
        return all_gather_rows(x, sizes, group) if len(sizes) > 1 else x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        out = sum_scatter_rows(grad.contiguous(), ctx.sizes, ctx.rank, ctx.group)
        if ctx.grad_scale != 1.0:
            out = out * ctx.grad_scale
        return out, None, None, None, None


def gather_with_grad(x: Tensor, group: Group = None, grad_scale: float = 1.0) -> tuple[Tensor, list[int]]:
    """All-gather ``x`` from every rank, with the owner-summed backward.

    Forward: the ranks' ``x`` concatenated in rank order. Backward: each rank's slice of the
    gradient, summed over all ranks, goes back to the rank that owns the slice. So if rank ``r``
    computes ``loss_r`` from the gathered tensor, ``x.grad`` on rank ``r`` is
    ``d(sum_s loss_s)/dx_r``, exactly as if one process had computed ``sum_s loss_s`` on the
    concatenated batch.

    Args:
        x: ``(B_r, ...)``; ranks may hold different ``B_r``.
        group: process group; ``None`` for the default one.
        grad_scale: multiplies the gradient returned to ``x`` (see :mod:`pairsim.distributed` for
            why the losses pass ``world_size`` under DDP).

    Returns:
        ``(gathered, sizes)``: ``(sum_r B_r, ...)`` and the list of the ranks' ``B_r``.

    Example:
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> y, sizes = gather_with_grad(x)  # one process: the identity
        >>> y.shape, sizes
        (torch.Size([2, 3]), [2])
    """
    rank, size = world(group)
    sizes = all_gather_sizes(len(x), x.device, group)
    if size == 1 and grad_scale == 1.0:
        return x, sizes
    return _GatherWithGrad.apply(x, sizes, rank, group, float(grad_scale)), sizes


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, group: Group) -> Tensor:
        return _all_reduce(x.clone(), dist.ReduceOp.SUM, group)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def all_reduce_sum(x: Tensor, group: Group = None) -> Tensor:
    """Sum of ``x`` over ranks, with the replicated backward (the gradient passes through unchanged).

    Right when every rank goes on to compute the same function of the sum: then
    ``d(loss)/dx_r = d(loss)/d(sum)`` on each rank.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0])).tolist()
        [1.0, 2.0]
    """
    return _AllReduceSum.apply(x, group) if world(group)[1] > 1 else x


class _AllReduceLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, group: Group) -> Tensor:
        # Combine per-rank logsumexps: the max is all-reduced first so the exponentials cannot overflow.
        peak = _all_reduce(x.clone(), dist.ReduceOp.MAX, group)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))  # all -inf: no terms anywhere
        total = _all_reduce(torch.exp(x - peak), dist.ReduceOp.SUM, group)
        out = torch.log(total) + peak  # -inf where no rank has a term
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, out = ctx.saved_tensors
        # d out / d x_r = exp(x_r - out): this rank's share of the total; 0 where there was no term.
        share = torch.where(torch.isfinite(out), torch.exp(x - out), torch.zeros_like(x))
        return grad * share, None


def all_reduce_logsumexp(x: Tensor, group: Group = None) -> Tensor:
    """``log(sum_r exp(x_r))`` over ranks, elementwise, with the replicated backward.

    Entries may be ``-inf`` (an empty local sum); the result is ``-inf`` only where all are, and
    its gradient there is 0.

    Example:
        >>> all_reduce_logsumexp(torch.tensor([0.5, float("-inf")])).tolist()
        [0.5, -inf]
    """
    return _AllReduceLogSumExp.apply(x, group) if world(group)[1] > 1 else x


def all_reduce_detached(x: Tensor, group: Group = None) -> Tensor:
    """Sum over ranks of a detached copy of ``x`` (for counts and logged values)."""
    return _all_reduce(x.detach().clone(), dist.ReduceOp.SUM, group)
