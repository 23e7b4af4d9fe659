"""Circle loss fast path: streamed over blocks of references, with the closed-form backward.

The references (batch samples or class proxies) are visited in blocks; each block is scored and
folded into an online logsumexp (running max, rescaled sum) for the positive and the negative terms
of Eq. 6. The backward pass recomputes each block's similarities and applies Eq. 9-10, so extra
memory is ``O(B x block)``, not ``O(B x M)``. When one block covers all references, the forward
keeps its ``dL/ds`` instead, and against the batch itself the gradient is one GEMM, ``(G + G^T) X``.

The batch against itself in one block, on CPU in float32 (the usual pair-wise training step), goes
through the fused numba kernels of :mod:`pairsim.functional.circle_kernels` instead: the upper
triangle of the similarities only, one pass for the forward and one for ``G + G^T``. The torch code
below remains the path for everything else, and when numba is not installed. All GEMMs go through
:func:`~pairsim.functional.circle_kernels.matmul_nt` (oneDNN where usable: twice as fast as MKL on
this project's CPU). B = 1024, D = 512, 2 threads, forward + backward: 6.5 ms with the kernels,
7.7 ms with the torch code (10.3 and 11.7 ms with MKL's GEMMs).

With the paper's reduced parameters the exponents are squares (Eq. 9-10): ``gamma (u^2 - m^2)``
with ``u = max(s_n, -m)`` and ``gamma (v^2 - m^2)`` with ``v = max(1 - s_p, -m)``; ``-gamma m^2``
leaves the logsumexp and the weights ``a_n = u + m``, ``a_p = v + m`` are reused. Positives are
few (one per anchor against proxies), so they are gathered, not scored densely.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from pairsim.functional import circle_kernels

# Default blocks (measured, CPU time, D = 512): one while B x M <= 2**24, dL/ds kept, a GEMM less (B = 256, M = 8192:
# 76 vs 110 ms); beyond, 2**19 // B references that stay in cache (C = 1e5: 1.2 s, 1.5 s with 2**24 // B).
SINGLE_BLOCK_ELEMENTS, BLOCK_ELEMENTS = 1 << 24, 1 << 19
# On a GPU each block costs a few dozen kernel launches and syncs (nonzero), not cache misses: the CPU's blocks
# made class-level Circle 11x slower than the plain path on an H100 (C = 1e5, B = 256: 69 vs 6.3 ms). One block
# while B x M <= 2**27 (512 MiB per float32 matrix), else 2**25 // B references (128 MiB blocks).
GPU_SINGLE_BLOCK_ELEMENTS, GPU_BLOCK_ELEMENTS = 1 << 27, 1 << 25


def circle_loss_streaming(
    embeddings: Tensor,
    labels: Tensor,
    references: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    class_level: bool = False,
    m: float = 0.25,
    gamma: float = 256.0,
    block_size: int | None = None,
    eps: float = 1e-12,
) -> tuple[Tensor, Tensor]:
    """Per-anchor Circle loss (Eq. 6) from raw embeddings, streamed over blocks of references.

    Equal to ``circle_loss(cosine_similarity_matrix(x, r), pos, neg, m, gamma)`` with the masks
    of :func:`batch_pairs` / :func:`proxy_pairs` (alphas detached), but holds at most a few
    ``(B, block_size)`` matrices and no normalised copy of the references. Half-precision inputs
    are scored in float32 (and so are the losses); gradients come back in the inputs' dtypes.
    A CPU batch against itself in one block takes the fused kernels of :mod:`circle_kernels` when
    :func:`~pairsim.functional.circle_kernels.kernels_usable` allows (float32 compute, finite inputs).

    Args:
        embeddings: ``(B, D)`` raw anchors.
        labels: ``(B,)`` integer labels (class ids in ``[0, C)`` when ``class_level``).
        references: ``(M, D)`` raw references, or ``(C, D)`` class proxies when ``class_level``;
            ``None`` scores the anchors against themselves, self-pairs excluded.
        ref_labels: ``(M,)`` labels of ``references`` (pair-wise only; proxies are ``arange(C)``).
        class_level: ``references`` are class proxies, one positive per anchor.
        m: relaxation margin (``O_p = 1 + m, O_n = -m, Delta_p = 1 - m, Delta_n = m``).
        gamma: scale factor.
        block_size: references per block; ``None``: all while ``B x M <= 2**24``, else ``2**19 // B``
            (on a GPU: ``2**27`` and ``2**25 // B``).
        eps: floor of the L2 norms, as in :func:`cosine_similarity_matrix`.

    Returns:
        ``(losses, valid)``: ``(B,)`` per-anchor losses (0 where not valid) and ``(B,)`` bool,
        anchors with at least one positive and one negative.

    Raises:
        ValueError: on inconsistent arguments.

    Example:
        >>> x, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> losses, valid = circle_loss_streaming(x, y, m=0.4, gamma=80.0, block_size=4)
        >>> losses.shape, bool(valid.all())
        (torch.Size([6]), True)
    """
    if class_level:
        if references is None or ref_labels is not None:
            raise ValueError("class_level needs the class proxies as references and no ref_labels")
    elif (references is None) != (ref_labels is None):
        raise ValueError("references and ref_labels go together")
    if references is not None and references.shape[1] != embeddings.shape[1]:
        raise ValueError(f"references have dimension {references.shape[1]}, embeddings {embeddings.shape[1]}")
    size, rows = len(embeddings) if references is None else len(references), max(1, len(embeddings))
    if block_size is None:
        block_size = default_block_size(rows, size, embeddings.device)
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    block = max(1, min(block_size, size))
    if references is None and block >= size >= 2 and circle_kernels.kernels_usable(embeddings):
        x_norm = embeddings.detach().to(torch.float32).norm(dim=1)  # (B,)
        # The kernels assume finite values; other inputs take the torch path (its results, whatever they are).
        if bool(torch.isfinite(x_norm).all()):
            losses, valid = _CircleSelfFused.apply(embeddings, x_norm, labels, float(m), float(gamma), eps)
            return losses, valid
    losses, valid = _CircleStreaming.apply(
        embeddings, references, labels, ref_labels, class_level, float(m), float(gamma), block, eps
    )
    return losses, valid


def default_block_size(rows: int, size: int, device: torch.device) -> int:
    """References per block for ``rows`` anchors against ``size`` references: all of them while the
    ``(rows, size)`` matrix is small, else a block of :data:`BLOCK_ELEMENTS` (GPU: larger, see above).

    Example:
        >>> cpu = torch.device("cpu")
        >>> default_block_size(256, 1000, cpu), default_block_size(256, 10**6, cpu)
        (1000, 2048)
    """
    on_cpu = device.type == "cpu"
    single, blocked = (
        (SINGLE_BLOCK_ELEMENTS, BLOCK_ELEMENTS) if on_cpu else (GPU_SINGLE_BLOCK_ELEMENTS, GPU_BLOCK_ELEMENTS)
    )
    rows = max(1, rows)
    return max(1, size) if rows * size <= single else max(1, blocked // rows)


class _Blocks:
    """What forward and backward share: normalised anchors, and how to score one block."""

    def __init__(
        self,
        x: Tensor,
        refs: Tensor | None,
        labels: Tensor,
        ref_labels: Tensor | None,
        class_level: bool,
        m: float,
        gamma: float,
        eps: float,
    ) -> None:
        self.in_dtype = x.dtype
        self.dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        xf = x.to(self.dtype)
        self.x_norm = xf.norm(dim=1)  # (B,)
        self.xh = xf / self.x_norm.clamp_min(eps)[:, None]  # (B, D)
        self.refs, self.labels, self.class_level = refs, labels, class_level
        self.m, self.gamma, self.eps = m, gamma, eps
        self.ref_labels = labels if refs is None else ref_labels
        self.size = len(x) if refs is None else len(refs)
        # Clamped reference norms, filled by the forward pass and reused by the backward pass.
        self.ref_norms = None if refs is None else torch.empty(self.size, dtype=self.dtype, device=x.device)

    def ref_rows(self, lo: int, hi: int, norms_known: bool = False) -> tuple[Tensor, Tensor | None]:
        """References ``[lo, hi)`` in the compute dtype, raw, with their norms clamped at ``eps``
        (``None`` against the batch itself: those rows are normalised already)."""
        if self.refs is None or self.ref_norms is None:
            return (self.xh if hi - lo == len(self.xh) else self.xh[lo:hi]), None
        rb = self.refs[lo:hi].to(self.dtype)  # (n, D), a view unless the references are half
        if not norms_known:
            torch.linalg.vector_norm(rb, dim=1, out=self.ref_norms[lo:hi]).clamp_min_(self.eps)
        return rb, self.ref_norms[lo:hi]  # (n,)

    def sim(self, rb: Tensor, den: Tensor | None) -> Tensor:
        """``(B, n)`` cosine similarities; scaling the product, not the ``(n, D)`` block, saves a copy."""
        if rb is self.xh:
            return _gram(self.xh)
        s = circle_kernels.matmul_nt(self.xh, rb)  # (B, n)
        return s if den is None else s.div_(den)

    def positives(self, lo: int, hi: int) -> tuple[Tensor, Tensor, Tensor | tuple[Tensor, Tensor]]:
        """``(rows, cols)`` of the block's positive pairs, and its same-label pairs (not negatives):
        their ``(rows, cols)`` when few, as is usual, else a ``(B, n)`` bool mask."""
        if self.class_level:
            rows = ((self.labels >= lo) & (self.labels < hi)).nonzero()[:, 0]
            cols = self.labels[rows] - lo
            return rows, cols, (rows, cols)
        assert self.ref_labels is not None
        same = self.labels[:, None] == self.ref_labels[None, lo:hi]  # (B, n)
        rows, cols = same.nonzero(as_tuple=True)
        not_neg: Tensor | tuple[Tensor, Tensor] = (rows, cols) if 8 * len(rows) < same.numel() else same
        if self.refs is None:  # a sample is not its own positive
            keep = rows != cols + lo
            rows, cols = rows[keep], cols[keep]
        return rows, cols, not_neg

    def neg_exponents(self, s: Tensor, not_neg: Tensor | tuple[Tensor, Tensor], reuse: bool) -> tuple[Tensor, Tensor]:
        """``u = max(s, -m)`` and ``u^2``, ``-inf`` off the negatives; ``reuse``: ``u^2`` overwrites ``s``."""
        u = s.clamp_min(-self.m)
        q = torch.mul(u, u, out=s) if reuse else u * u
        if isinstance(not_neg, Tensor):
            q.masked_fill_(not_neg, -torch.inf)
        else:
            q[not_neg] = -torch.inf
        return u, q


def _gram(x: Tensor) -> Tensor:
    """``x @ x.T``, computing the row bands on and right of the diagonal and mirroring the rest.

    In bands of 256 rows (at most 8) this takes ~30% less CPU time than one GEMM at B = 1024-4096
    (measured with MKL's GEMMs).
    """
    n = len(x)
    parts = max(1, min(8, n // 256)) if x.device.type == "cpu" else 1  # a GPU is faster with one GEMM
    if parts == 1:
        return circle_kernels.matmul_nt(x, x)
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    edges = [n * k // parts for k in range(parts + 1)]
    for a, b in itertools.pairwise(edges):
        circle_kernels.matmul_nt(x[a:b], x[a:], out=out[a:b, a:])  # (b - a, n - a)
        out[b:, a:b] = out[a:b, b:].T
    return out


def _fold(run_max: Tensor, run_sum: Tensor, block_max: Tensor) -> Tensor:
    """Move the online logsumexp to a new max (in place); returns the finite shift to use."""
    new_max = torch.maximum(run_max, block_max)
    # Rows with nothing seen yet keep a finite shift of 0, so exp(-inf - 0) = 0, never NaN.
    shift = torch.where(torch.isfinite(new_max), new_max, 0.0)
    run_sum.mul_(torch.exp(run_max - shift))
    run_max.copy_(shift)
    return shift


def _lse(run_max: Tensor, run_sum: Tensor) -> Tensor:
    return torch.where(run_sum > 0, run_sum.clamp_min(torch.finfo(run_sum.dtype).tiny).log() + run_max, -torch.inf)


class _CircleStreaming(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        refs: Tensor | None,
        labels: Tensor,
        ref_labels: Tensor | None,
        class_level: bool,
        m: float,
        gamma: float,
        block: int,
        eps: float,
    ) -> tuple[Tensor, Tensor]:
        bk = _Blocks(x, refs, labels, ref_labels, class_level, m, gamma, eps)
        B = len(x)
        init = torch.tensor([[-torch.inf], [0.0], [-torch.inf], [0.0]], dtype=bk.dtype, device=x.device)
        max_p, sum_p, max_n, sum_n = init.repeat(1, B)  # (B,) each: running max and sum, positives, negatives
        for lo in range(0, bk.size, block):
            hi = min(lo + block, bk.size)
            s = bk.sim(*bk.ref_rows(lo, hi))
            rows, cols, not_neg = bk.positives(lo, hi)
            v = (1.0 - s[rows, cols]).clamp_min_(-m)  # (P,) positives of the block
            lp = v.square().mul_(gamma)
            shift_p = _fold(max_p, sum_p, torch.full_like(max_p, -torch.inf).scatter_reduce_(0, rows, lp, "amax"))
            e_p = torch.exp(lp - shift_p[rows])
            sum_p.index_add_(0, rows, e_p)
            u, q = bk.neg_exponents(s, not_neg, reuse=True)
            shift_n = _fold(max_n, sum_n, q.amax(dim=1).mul_(gamma))
            e_n = torch.add(-shift_n[:, None], q, alpha=gamma, out=q).exp_()  # (B, n), in place of q
            sum_n.add_(e_n.sum(dim=1))
        lse_p, lse_n = _lse(max_p, sum_p), _lse(max_n, sum_n)
        total = lse_p + lse_n - 2.0 * gamma * m * m  # (B,), -inf for anchors without positives or negatives
        losses = F.softplus(total)
        valid = torch.isfinite(total)
        zgam = torch.sigmoid(total) * gamma  # (B,), gamma Z of Eq. 9-10
        ctx.bk, ctx.block = bk, block
        ctx.mark_non_differentiable(valid)
        h = row_scale = None
        if bk.size <= block and B > 0:
            # The one block is still at hand: keep dL/ds = row_scale * h * (upstream grad) instead of
            # recomputing it; the row scale gamma Z / sum_n is applied to the (B,) upstream grad.
            h = e_n.mul_(u.add_(m))
            row_scale = zgam / sum_n.clamp_min(torch.finfo(bk.dtype).tiny)  # (B,)
            h[rows, cols] = -(e_p * (v + m)) * (sum_n[rows] / sum_p[rows])  # gamma Z / sum_p, over row_scale
        ctx.save_for_backward(h, row_scale, lse_p, lse_n, zgam)
        return losses, valid

    @staticmethod
    @once_differentiable  # the closed-form backward is not itself differentiable: refuse a double backward
    def backward(ctx: Any, grad_losses: Tensor, _grad_valid: Tensor | None) -> tuple[Tensor | None, ...]:
        bk: _Blocks = ctx.bk
        h, row_scale, lse_p, lse_n, zgam = ctx.saved_tensors
        need_x, need_refs = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and bk.refs is not None
        g = grad_losses.to(bk.dtype)
        grad_xh = torch.zeros_like(bk.xh)
        grad_refs = torch.empty_like(bk.refs) if need_refs and bk.refs is not None else None
        # Shifts that fold gamma Z g into the exponent; rows with zero weight get +inf, so exp(...) = 0.
        log_w = torch.where(zgam * g != 0, (zgam * g).abs().log(), -torch.inf)
        flip, sign = bool((g < 0).any()), torch.where(g < 0, -1.0, 1.0).to(bk.dtype)
        c_p = torch.where(torch.isfinite(lse_p), lse_p, 0.0) - log_w
        c_n = torch.where(torch.isfinite(lse_n), lse_n, 0.0) - log_w
        for lo in range(0, bk.size, ctx.block):
            hi = min(lo + ctx.block, bk.size)
            rb, den = bk.ref_rows(lo, hi, norms_known=True)
            s = None
            if h is not None:  # h stays intact, for a retained graph
                gs = g * row_scale  # (B,)
                G = h * gs[:, None] if bk.refs is not None else h.T.contiguous().mul_(gs[None, :])
            else:
                s = bk.sim(rb, den)
                rows, cols, not_neg = bk.positives(lo, hi)
                v = (1.0 - s[rows, cols]).clamp_min_(-bk.m)
                gp = torch.exp(v.square().mul_(bk.gamma) - c_p[rows]).mul_(v + bk.m).mul_(sign[rows])
                # Against other references s is still needed, for the normalisation's backward.
                u, q = bk.neg_exponents(s, not_neg, reuse=bk.refs is None)
                G = torch.add(-c_n[:, None], q, alpha=bk.gamma, out=q).exp_().mul_(u.add_(bk.m))
                if flip:
                    G.mul_(sign[:, None])
                del u
                G[rows, cols] = -gp
            if bk.refs is None:
                if h is not None:
                    # G + G^T in one GEMM; G is a contiguous transpose (much cheaper than a strided add) + diag(gs) h.
                    grad_xh = circle_kernels.matmul_nt(G.addcmul_(h, gs[:, None]), bk.xh.T)
                else:
                    circle_kernels.matmul_nt(G, rb.T, out=grad_xh, add=True)
                    circle_kernels.matmul_nt(G.T, bk.xh.T, out=grad_xh[lo:hi], add=True)
                continue
            assert den is not None
            G.div_(den)  # dL/ds / |r|: both GEMMs below then use the raw references
            if grad_refs is not None:
                in_place = grad_refs.dtype == bk.dtype
                out = grad_refs[lo:hi] if in_place else torch.empty_like(rb)
                circle_kernels.matmul_nt(G.T, bk.xh.T, out=out)  # (n, D), dL/d r_hat / |r|
                # Backward of r / max(|r|, eps): (g - r_hat (r_hat . g)) / |r| = out - r (r_hat . g) / |r|^2;
                # r_hat . g = sum_b G_bj s_bj reads the (B, n) block rather than the (n, D) one.
                coef = (G * s).sum(dim=0).div_(den) if s is not None else (rb * out).sum(dim=1).div_(den.square())
                out.addcmul_(rb, coef.mul_(den > bk.eps)[:, None], value=-1.0)
                if not in_place:
                    grad_refs[lo:hi] = out
            if need_x:
                circle_kernels.matmul_nt(G, rb.T, out=grad_xh, add=True)
        grad_x = None
        if need_x:
            radial_x = (bk.xh * grad_xh).sum(dim=1, keepdim=True).mul_((bk.x_norm > bk.eps)[:, None])
            grad_x = (grad_xh - bk.xh * radial_x).div_(bk.x_norm.clamp_min(bk.eps)[:, None]).to(bk.in_dtype)
        return grad_x, grad_refs, None, None, None, None, None, None, None


class _CircleSelfFused(torch.autograd.Function):
    """The batch against itself, in one block, with the fused kernels of :mod:`circle_kernels`.

    Holds one ``(B, B)`` float32 matrix: the upper triangle of the similarities, which the backward
    pass overwrites with ``W = G + G^T`` (then ``dL/dX_hat = W X_hat``, one GEMM). A second backward
    (``retain_graph=True``) recomputes the similarities first.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, x_norm: Tensor, labels: Tensor, m: float, gamma: float, eps: float
    ) -> tuple[Tensor, Tensor]:
        xh = x.detach().to(torch.float32) / x_norm.clamp_min(eps)[:, None]  # (B, D)
        sim = circle_kernels.gram_upper(xh)  # (B, B), upper triangle
        losses, valid, stats = circle_kernels.circle_self_forward(sim, labels, m, gamma)
        ctx.mark_non_differentiable(valid)
        ctx.sim = sim if ctx.needs_input_grad[0] else None
        ctx.in_dtype, ctx.m, ctx.gamma, ctx.eps = x.dtype, m, gamma, eps
        ctx.save_for_backward(xh, x_norm, labels, stats)
        return losses, valid

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_losses: Tensor, _grad_valid: Tensor | None) -> tuple[Tensor | None, ...]:
        xh, x_norm, labels, stats = ctx.saved_tensors
        sim = ctx.sim if ctx.sim is not None else circle_kernels.gram_upper(xh)
        ctx.sim = None  # overwritten below
        circle_kernels.circle_self_backward(sim, labels, ctx.m, ctx.gamma, stats, grad_losses)
        grad_xh = circle_kernels.matmul_nt(sim, xh.T)  # (B, D), (G + G^T) X_hat
        del sim
        # Backward of x / max(|x|, eps): (g - x_hat (x_hat . g)) / |x|, the radial part only where |x| > eps.
        radial = torch.linalg.vecdot(xh, grad_xh).mul_(x_norm > ctx.eps)  # (B,)
        grad_x = grad_xh.addcmul_(xh, radial[:, None], value=-1.0).div_(x_norm.clamp_min(ctx.eps)[:, None])
        return grad_x.to(ctx.in_dtype), None, None, None, None, None
