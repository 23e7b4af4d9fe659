"""The local half of a sharded class-level loss: a logsumexp over the shard's classes, streamed.

Each rank needs, for every anchor of the global batch, ``logsumexp_j z_n(s_ij)`` over its own
classes (the heads of :mod:`pairsim.distributed.heads` say what ``z_n`` is). With ``C / W`` classes of a
million, the ``(N, C / W)`` similarities are never held: blocks of classes are scored and folded into
an online logsumexp, and rescored in the backward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pairsim.distributed.heads import ProxyHead

# Elements of one (N, block) similarity block: about 16 MB in float32, a good fit for CPU caches and GPUs alike.
BLOCK_ELEMENTS = 1 << 22


def local_negative_logsumexp(
    head: ProxyHead, x: Tensor, proxies: Tensor, local_labels: Tensor, block_size: int | None = None
) -> Tensor:
    """``logsumexp_j z_n(s_ij)`` over the local classes ``j`` other than anchor ``i``'s own.

    Blocks of classes are scored one at a time and folded into an online logsumexp (running max,
    rescaled sum); the backward pass rescores each block and applies ``d lse_i / d s_ij =
    softmax_j(z_n) dz_n/ds``, so memory is a few ``(N, block)`` matrices whatever the shard size.
    Differentiable once (no double backward).

    Args:
        head: the loss's scoring rule.
        x: ``(N, D)`` anchors, normalised when ``head.cosine``.
        proxies: ``(c, D)`` the local (possibly sampled) raw proxies.
        local_labels: ``(N,)`` each anchor's class as a row of ``proxies``, ``-1`` if not local.
        block_size: classes per block; ``None``: ``BLOCK_ELEMENTS // N``.

    Returns:
        ``(N,)``; ``-inf`` where the shard has no negative class for the anchor.
    """
    block = max(1, block_size or BLOCK_ELEMENTS // max(1, len(x)))
    return _NegativeLogSumExp.apply(x, proxies, local_labels, head, block)


def _scores(head: ProxyHead, x: Tensor, rows: Tensor, buffer: Tensor) -> tuple[Tensor, Tensor]:
    """Similarities ``(N, b)`` of ``x`` to a block of raw proxies ``(b, D)``, and the proxies' norms ``(b,)``.

    Written into ``buffer`` (at least ``N b`` elements): reusing one buffer for all blocks spares a fresh
    multi-megabyte allocation, and its page faults, per block.
    """
    sim = torch.matmul(x, rows.T, out=_view(buffer, len(x), len(rows)))  # (N, b)
    if not head.cosine:
        return sim, torch.ones_like(rows[:, 0])
    norms = torch.linalg.vector_norm(rows, dim=1).clamp_min(1e-12)
    return sim.div_(norms), norms  # scaling the product saves a normalised copy of the block


def _view(buffer: Tensor, rows: int, cols: int) -> Tensor:
    """A contiguous ``(rows, cols)`` view of the start of a flat buffer."""
    return buffer[: rows * cols].view(rows, cols)


def _exclude_own(logits: Tensor, labels: Tensor, lo: int) -> Tensor:
    """``logits`` of block ``[lo, lo + b)`` with each anchor's own class set to ``-inf``."""
    own = ((labels >= lo) & (labels < lo + logits.shape[1])).nonzero()[:, 0]
    logits[own, labels[own] - lo] = float("-inf")
    return logits


class _NegativeLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, proxies: Tensor, labels: Tensor, head: ProxyHead, block: int) -> Tensor:
        peak = torch.full((len(x),), float("-inf"), dtype=x.dtype, device=x.device)  # (N,) running max
        total = torch.zeros_like(peak)  # (N,) running sum of exp(z - peak)
        buffer = x.new_empty(len(x) * min(block, len(proxies)))
        with torch.no_grad():
            for lo in range(0, len(proxies), block):
                sim, _ = _scores(head, x, proxies[lo : lo + block].to(x.dtype), buffer)
                logits = _exclude_own(head.negative_(sim), labels, lo)  # (N, b)
                new_peak = torch.maximum(peak, logits.amax(dim=1))
                safe = torch.where(torch.isfinite(new_peak), new_peak, torch.zeros_like(new_peak))
                total = total * torch.exp(peak - safe) + logits.sub_(safe[:, None]).exp_().sum(dim=1)
                peak = new_peak
        out = torch.where(total > 0, torch.log(total) + peak, torch.full_like(total, float("-inf")))
        ctx.save_for_backward(x, proxies, labels, out)
        ctx.head, ctx.block = head, block
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, proxies, labels, out = ctx.saved_tensors
        head: ProxyHead = ctx.head
        finite = torch.isfinite(out)
        grad = torch.where(finite, grad, torch.zeros_like(grad))[:, None]  # (N, 1); no terms: no gradient
        shift = torch.where(finite, out, torch.zeros_like(out))[:, None]  # (N, 1)
        grad_x, grad_p = torch.zeros_like(x), torch.zeros_like(proxies)
        size = len(x) * min(ctx.block, len(proxies))
        buffer, slope_buffer = x.new_empty(size), x.new_empty(size)
        rows_buffer = x.new_empty(min(ctx.block, len(proxies)) * x.shape[1])
        for lo in range(0, len(proxies), ctx.block):
            rows = proxies[lo : lo + ctx.block].to(x.dtype)  # (b, D)
            sim, norms = _scores(head, x, rows, buffer)
            slope = head.negative_slope(sim, _view(slope_buffer, *sim.shape))
            # d out_i / d s_ij = softmax_j(z_n) dz_n/ds (own classes: exp(-inf) = 0).
            dsim = _exclude_own(head.negative_(sim), labels, lo).sub_(shift).exp_().mul_(grad).mul_(slope)
            if head.cosine:
                dunit = torch.matmul(dsim.T, x, out=_view(rows_buffer, len(rows), x.shape[1]))  # (b, D), d/d(w/|w|)
                grad_x += dsim.div_(norms) @ rows  # dsim @ (w / |w|)
                # Through w / |w|: drop the radial part, divide by the norm.
                radial = torch.linalg.vecdot(dunit, rows) / norms.square()  # (b,)
                grad_p[lo : lo + len(rows)] = dunit.addcmul_(rows, radial[:, None], value=-1.0).div_(norms[:, None])
            else:
                grad_x += dsim @ rows
                grad_p[lo : lo + len(rows)] = dsim.T @ x
        return grad_x, grad_p, None, None, None
