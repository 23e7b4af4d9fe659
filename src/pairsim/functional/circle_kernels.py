"""CPU kernels of the Circle loss fast path: fused numba kernels for a batch against itself, oneDNN GEMMs.

The batch's cosine similarities ``S = X_hat X_hat^T`` are symmetric, so only their upper triangle
is computed (:func:`gram_upper`, ~55% of a full GEMM) and read (``S[i, j]`` with ``i <= j``), and
nothing else of size ``(B, B)`` is made. :func:`circle_self_forward` turns ``S`` into the per-anchor
losses of Eq. 6 and four numbers per anchor; :func:`circle_self_backward` overwrites ``S`` with the
symmetric weights ``W = G + G^T`` of ``dL/dX_hat = W X_hat`` (``G[i, j] = g_i dL_i/ds_ij``,
Eq. 9-10), recomputing the exponentials rather than keeping a ``(B, B)`` matrix of them. Both are
one pass of a fused numba kernel, in place of a dozen torch passes (masks, clamps, exponentials,
online logsumexp, Eq. 9-10 weights). All GEMMs of the fast path, these and those of its torch code
(other references, class proxies), go through :func:`matmul_nt`: oneDNN where it is usable.
B = 1024, D = 512, 2 threads, forward + backward: 6.5 ms, of which 1.5 ms GEMM for the upper
triangle, 2.2 ms GEMM for ``W X_hat``, 0.9 ms forward kernel, 0.6 ms backward kernel.

With the paper's reduced parameters (``O_p = 1 + m, O_n = -m, Delta_p = 1 - m, Delta_n = m``) a
pair's exponent is ``gamma (a^2 - m^2)`` and its self-paced weight ``a + m`` (Eq. 5), with
``a = max(s, -m)`` for a negative pair and ``a = max(1 - s, -m)`` for a positive one; ``-gamma m^2``
leaves the logsumexp. Each anchor's exponents are shifted by their largest, so every exponential
lies in ``(0, 1]``.

This module is an implementation detail of :func:`pairsim.functional.circle_loss_streaming`, which
uses the numba kernels when :func:`kernels_usable` says so and otherwise takes its torch code path
(same results up to float32 rounding). The numba kernels need the optional extra ``fast``
(``pip install pairsim[fast]``) and work in float32 only; they compile once per machine
(``cache=True``, a few seconds) and load in ~0.4 s in each new process.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _import_numba() -> Any:
    try:
        return importlib.import_module("numba")
    except ImportError:  # the optional extra `fast` is not installed: the torch code path is used
        return None


numba: Any = _import_numba()

#: Whether numba could be imported.
AVAILABLE = numba is not None
#: Whether the numba kernels may be used at all; tests set it to ``False`` to force the torch path.
ENABLED = True
#: Whether the GEMMs of the fast path may go through oneDNN (see :func:`matmul_nt`).
ONEDNN = True

ROWS = 16  # anchors per task of the forward kernel: 16 float32 lanes, one cache line per reference
TILE = 64  # side of the square tiles of the backward kernel (16 KiB of float32, in L1 cache)
_LEAF = 256  # diagonal blocks of gram_upper up to this size are computed whole (measured, B = 256-4096)
# exp() below this is under float32's smallest normal number (2^-126): those exponentials are taken as 0.
_EXP_MIN = -87.0
# ln 2 split in a part with few significant bits (k * _LN2_HI is exact for |k| < 2^15) and the rest.
_LN2_HI = 0.693359375
_LN2_LO = math.log(2.0) - _LN2_HI
_LOG2_E = 1.0 / math.log(2.0)

_onednn_checked: bool | None = None  # the one-time check of oneDNN against torch.mm, once made
# numba's OpenMP thread pool does not survive fork(): a child forked after the pool started is killed when it
# launches a kernel, so such a child (a data loader worker, a fork pool) takes the torch path.
_forked_after_pool = False


def _after_fork_in_child() -> None:
    global _forked_after_pool
    # numba's flag of a started pool (no import here: the import lock may be held at fork); unknown counts as started.
    pool = sys.modules.get("numba.np.ufunc.parallel")
    _forked_after_pool = _forked_after_pool or bool(getattr(pool, "_is_initialized", True))


if numba is not None:
    os.register_at_fork(after_in_child=_after_fork_in_child)


def kernels_usable(x: Tensor) -> bool:
    """Whether the numba kernels may score ``x``: numba present and :data:`ENABLED`, a CPU tensor whose
    compute dtype is float32 (float32, float16 or bfloat16), and not a forked child of a process that
    already ran them. (The caller checks that the values are finite.)

    Example:
        >>> kernels_usable(torch.zeros(2, 3, dtype=torch.float64))
        False
    """
    if not (ENABLED and AVAILABLE) or x.device.type != "cpu":
        return False
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    return not _forked_after_pool


def matmul_nt(a: Tensor, b: Tensor, out: Tensor | None = None, *, add: bool = False) -> Tensor:
    """``a @ b.T`` for float32 CPU matrices through oneDNN when it is usable, else with ``torch.mm``.

    On this project's AMD EPYC CPU, torch's MKL runs its AVX2 code (~225 GFLOP/s on 2 threads)
    while oneDNN, which torch also ships, runs AVX-512: the GEMMs of the fast path take half the
    time (B = 1024, D = 512: 2.2 ms against 4.9 ms). oneDNN is reached through
    ``torch.ops.mkldnn._linear_pointwise`` (the op behind torch.compile's CPU linear layers),
    checked against ``torch.mm`` once; if it is missing, fails or disagrees, if :data:`ONEDNN` or
    ``torch.backends.mkldnn`` is off, or for other dtypes and devices, ``torch.mm`` is used.

    Args:
        a: ``(M, K)``.
        b: ``(N, K)`` (a transposed view is fine).
        out: ``(M, N)`` to write the product into (oneDNN has no ``out=``: it is copied there).
            Empty matrices, and any call oneDNN refuses, go to ``torch.mm``.
        add: add the product to ``out`` instead.

    Returns:
        ``(M, N)``: ``out``, or a new tensor.

    Example:
        >>> a, b = torch.randn(3, 4), torch.randn(5, 4)
        >>> torch.allclose(matmul_nt(a, b), a @ b.T, atol=1e-5)
        True
    """
    prod: Tensor | None = None
    if a.dtype == b.dtype == torch.float32 and a.device.type == b.device.type == "cpu" and a.numel() and b.numel():
        prod = _onednn_nt(a, b)  # None when oneDNN is not usable
    if prod is not None:
        if out is None:
            return prod
        return out.add_(prod) if add else out.copy_(prod)
    if out is None:
        return a @ b.T
    return out.addmm_(a, b.T) if add else torch.mm(a, b.T, out=out)


def gram_upper(x: Tensor) -> Tensor:
    """The upper triangle (diagonal included) of ``x @ x.T``; below it, memory is left unset.

    Recursive halving: the two diagonal halves recurse, the off-diagonal quarter is one GEMM, and
    diagonal blocks of at most 256 rows are computed whole: ~55% of the full product's arithmetic.
    B = 1024, D = 512, 2 threads: 1.5 ms with oneDNN (2.1 ms for the full product), 3.0 ms with
    MKL (4.8 ms).

    Args:
        x: ``(B, D)``.

    Returns:
        ``(B, B)``, contiguous.

    Example:
        >>> x = torch.randn(600, 3)
        >>> torch.allclose(gram_upper(x).triu(), (x @ x.T).triu(), atol=1e-5)
        True
    """
    n = len(x)
    out = torch.empty(n, n, dtype=x.dtype, device=x.device)
    todo = [(0, n, 0, n)]  # blocks still to compute: rows [r0, r1), columns [c0, c1)
    while todo:
        r0, r1, c0, c1 = todo.pop()
        if r0 == c0 and r1 - r0 > _LEAF:
            mid = (r0 + r1) // 2
            todo += [(r0, mid, r0, mid), (r0, mid, mid, r1), (mid, r1, mid, r1)]
        else:
            matmul_nt(x[r0:r1], x[c0:c1], out=out[r0:r1, c0:c1])
    return out


def circle_self_forward(sim: Tensor, labels: Tensor, m: float, gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-anchor Circle loss (Eq. 6) of a batch against itself, from the upper triangle of ``S``.

    Args:
        sim: ``(B, B)`` float32, C-contiguous, CPU; ``sim[i, j]`` for ``i <= j`` are the cosine
            similarities (the lower triangle is not read). Left unchanged.
        labels: ``(B,)`` integer labels; ``i != j`` is a positive pair when their labels are equal.
        m: relaxation margin.
        gamma: scale factor.

    Returns:
        ``(losses, valid, stats)``: ``(B,)`` float32 losses (0 where not valid); ``(B,)`` bool,
        anchors with at least one positive and one negative; ``(4, B)`` float32 per-anchor numbers
        for :func:`circle_self_backward`: the shifts of the negative and of the positive exponents,
        and ``gamma Z / sum_n``, ``gamma Z / sum_p`` of Eq. 9-10 (``Z = sigmoid(lse_n + lse_p)``).

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(6, 4))
        >>> labels = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> if AVAILABLE:
        ...     losses, valid, stats = circle_self_forward(x @ x.T, labels, m=0.4, gamma=80.0)
        ...     assert bool(valid.all()) and bool((losses > 0).all()) and stats.shape == (4, 6)
    """
    n = len(sim)
    losses = torch.empty(n, dtype=torch.float32)
    valid = torch.empty(n, dtype=torch.bool)
    stats = torch.empty(4, n, dtype=torch.float32)
    if n:
        _launch(_forward_kernel, sim.numpy(), _labels(labels), m, gamma, losses.numpy(), valid.numpy(), stats.numpy())
    return losses, valid, stats


def circle_self_backward(sim: Tensor, labels: Tensor, m: float, gamma: float, stats: Tensor, grad: Tensor) -> None:
    """Overwrite ``sim`` with ``W = G + G^T``, ``G[i, j] = grad_i dL_i/ds_ij`` (Eq. 9-10), in place.

    ``dL/dX_hat = W X_hat`` is then one GEMM. ``W`` is symmetric, with a zero diagonal.

    Args:
        sim: ``(B, B)`` float32, C-contiguous: the similarities :func:`circle_self_forward` read
            (upper triangle); all of it is overwritten.
        labels: ``(B,)`` the same labels.
        m: relaxation margin.
        gamma: scale factor.
        stats: ``(4, B)`` from :func:`circle_self_forward`.
        grad: ``(B,)`` upstream gradient of the per-anchor losses.
    """
    if len(sim):
        g = grad.to(torch.float32).contiguous()  # an expanded grad (from .sum()) has stride 0
        _launch(_backward_kernel, sim.numpy(), _labels(labels), m, gamma, stats.numpy(), g.numpy())


def _onednn_nt(a: Tensor, b: Tensor) -> Tensor | None:
    if not _onednn_usable():
        return None
    try:
        prod: Tensor = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    except RuntimeError:  # a shape or layout this build of oneDNN refuses: torch.mm takes it
        return None
    return prod


def _onednn_usable() -> bool:
    global _onednn_checked
    if not (ONEDNN and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    if _onednn_checked is None:
        try:
            g = torch.Generator().manual_seed(0)
            a, b = torch.randn(9, 40, generator=g), torch.randn(7, 40, generator=g)
            got = torch.ops.mkldnn._linear_pointwise(a, b.T.contiguous().T, None, "none", [], "")
            _onednn_checked = got.shape == (9, 7) and bool(torch.allclose(got, a @ b.T, rtol=1e-5, atol=1e-5))
        except (AttributeError, RuntimeError):  # the op is missing, or this build refuses it
            _onednn_checked = False
    return _onednn_checked


def _labels(labels: Tensor) -> np.ndarray:
    # One dtype for all label tensors: one compiled specialisation of each kernel.
    return labels.to(torch.int64).contiguous().numpy()


def _launch(kernel: Callable[..., None], *args: Any) -> None:
    """Run a kernel on as many threads as torch uses (capped by the size of numba's pool)."""
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        kernel(*args)
    finally:
        # numba's OpenMP layer leaves the calling thread's OpenMP count at its pool size, which torch then
        # uses: a run set to 1 thread went on with 2 after its first loss (and channels-last BatchNorm,
        # whose sums depend on the thread count, stopped repeating exactly on resume).
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the kernels
# Without numba they stay plain Python functions, never called (kernels_usable() is False).


def _jit(parallel: bool) -> Callable[[Callable[..., Any]], Any]:
    if numba is None:
        return lambda fn: fn
    if parallel:
        return numba.njit(parallel=True, cache=True, fastmath=False)
    return numba.njit(cache=True, fastmath=False, inline="always")


_prange: Any = range if numba is None else numba.prange


def _bitcast_intrinsic() -> Any:
    """An int32 -> float32 bit reinterpretation numba can inline and vectorise (LLVM ``bitcast``)."""
    types = importlib.import_module("numba.core.types")

    def typer(typingctx: Any, bits: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], context.get_value_type(types.float32))

        return types.float32(types.int32), codegen

    return importlib.import_module("numba.extending").intrinsic(typer)


def _bitcast_python(bits: Any) -> Any:
    return np.array([bits], dtype=np.int32).view(np.float32)[0]


_bits_to_float32: Any = _bitcast_python if numba is None else _bitcast_intrinsic()


@_jit(parallel=False)
def _exp_nonpositive(x: Any) -> Any:
    """``exp(x)`` for float32 ``x <= 0``, within about 1 ulp; 0 below ``_EXP_MIN``.

    libm's ``expf`` is a call, which keeps numba's loops scalar (~3.5x slower here); this is
    ``2^k exp(r)`` with ``k = round(x / ln 2)``, ``|r| <= ln(2) / 2`` (Cody-Waite reduction with the
    split ``ln 2``), ``exp(r)`` by its Taylor polynomial of degree 7 (truncation ``0.35^8 / 8! < 6e-9``)
    and ``2^k`` made from its bits.
    """
    xc = max(x, np.float32(_EXP_MIN))
    k = np.floor(xc * np.float32(_LOG2_E) + np.float32(0.5))  # float32, where math.floor gives int64
    r = xc - k * np.float32(_LN2_HI)
    r = r - k * np.float32(_LN2_LO)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    scale = _bits_to_float32(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))  # 2^k, k in [-126, 0]
    return p * scale if x >= np.float32(_EXP_MIN) else np.float32(0.0)


@_jit(parallel=False)
def _pair_term(s: Any, same: Any, m: Any) -> Any:
    """``a`` of a pair (float32): ``max(1 - s, -m)`` if positive (``a + m = O_p - s_p``), else ``max(s, -m)``."""
    return max(np.float32(1.0) - s if same else s, -m)


@_jit(parallel=True)
def _forward_kernel(
    sim: np.ndarray,
    labels: np.ndarray,
    m: float,
    gamma: float,
    losses: np.ndarray,
    valid: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Eq. 6 per anchor from the upper triangle of ``sim``; see :func:`circle_self_forward`.

    Each task takes ``ROWS`` anchors and first copies their full rows, transposed, into a strip
    ``(B, ROWS)`` (references before the block come from the upper triangle as contiguous slices);
    then two passes over the strip, vectorised across the anchors: the largest exponent of each
    anchor's positives and negatives, then the shifted sums of exponentials.
    """
    n = sim.shape[0]
    m32, g32 = np.float32(m), np.float32(gamma)
    # Shift of anchors without positives (or negatives): an upper bound of every exponent, so the
    # unused exponentials still stay in (0, 1].
    safe_shift = g32 * np.float32((1.0 + m) * (1.0 + m))
    for task in _prange((n + ROWS - 1) // ROWS):
        r0 = task * ROWS
        rows = min(ROWS, n - r0)
        strip = np.empty((n, ROWS), dtype=np.float32)  # strip[j, r] = s(r0 + r, j)
        if rows < ROWS:
            strip[:, rows:] = 0.0
        for j in range(r0):  # references before the block: S[j, r0:r0 + rows], j < i
            for r in range(rows):
                strip[j, r] = sim[j, r0 + r]
        for r in range(rows):  # the triangle inside the block, from above the diagonal
            for j in range(r0, r0 + r):
                strip[j, r] = sim[j, r0 + r]
        for j0 in range(r0, n, 256):  # the block's rows, in chunks that keep the strip lines in L1
            for r in range(rows):
                i = r0 + r
                for j in range(max(j0, i), min(j0 + 256, n)):
                    strip[j, r] = sim[i, j]
        lab = np.empty(ROWS, dtype=labels.dtype)
        for r in range(ROWS):
            lab[r] = labels[min(r0 + r, n - 1)]  # padding lanes (r >= rows) are computed, then dropped
        # Pass 1: largest a^2 over each anchor's positives and negatives (-1: none).
        top_p = np.full(ROWS, np.float32(-1.0), dtype=np.float32)
        top_n = np.full(ROWS, np.float32(-1.0), dtype=np.float32)
        for j in range(n):
            lj = labels[j]
            for r in range(ROWS):
                same = lab[r] == lj
                pos = same & (j != r0 + r)  # a sample is not its own positive
                a = _pair_term(strip[j, r], same, m32)
                aa = a * a
                top_p[r] = max(top_p[r], aa) if pos else top_p[r]
                top_n[r] = top_n[r] if same else max(top_n[r], aa)
        shift_p = np.empty(ROWS, dtype=np.float32)
        shift_n = np.empty(ROWS, dtype=np.float32)
        for r in range(ROWS):
            shift_p[r] = g32 * top_p[r] if top_p[r] >= 0 else safe_shift
            shift_n[r] = g32 * top_n[r] if top_n[r] >= 0 else safe_shift
        # Pass 2: sums of exp(gamma a^2 - shift), in float64 lanes.
        sum_p = np.zeros(ROWS, dtype=np.float64)
        sum_n = np.zeros(ROWS, dtype=np.float64)
        for j in range(n):
            lj = labels[j]
            for r in range(ROWS):
                same = lab[r] == lj
                pos = same & (j != r0 + r)
                a = _pair_term(strip[j, r], same, m32)
                e = _exp_nonpositive(g32 * (a * a) - (shift_p[r] if same else shift_n[r]))
                sum_p[r] += e if pos else np.float32(0.0)
                sum_n[r] += np.float32(0.0) if same else e
        for r in range(rows):
            i = r0 + r
            stats[0, i], stats[1, i] = shift_n[r], shift_p[r]
            if top_p[r] < 0 or top_n[r] < 0:
                losses[i], valid[i] = 0.0, False
                stats[2, i], stats[3, i] = 0.0, 0.0
                continue
            # sum_* >= 1: the largest term is exp(0).
            total = math.log(sum_p[r]) + shift_p[r] + math.log(sum_n[r]) + shift_n[r] - 2.0 * gamma * m * m
            ez = math.exp(-abs(total))
            losses[i] = max(total, 0.0) + math.log1p(ez)  # softplus
            z = 1.0 / (1.0 + ez) if total >= 0 else ez / (1.0 + ez)  # sigmoid: Z of Eq. 9-10
            valid[i] = True
            stats[2, i] = gamma * z / sum_n[r]
            stats[3, i] = gamma * z / sum_p[r]


@_jit(parallel=True)
def _backward_kernel(
    sim: np.ndarray, labels: np.ndarray, m: float, gamma: float, stats: np.ndarray, grad: np.ndarray
) -> None:
    """``W = G + G^T`` in place of ``sim``; see :func:`circle_self_backward`.

    Tasks are the tiles on and above the diagonal. For ``i < j`` (one positive or negative pair for
    both anchors), ``W[i, j] = W[j, i] = (a + m) (w_i exp(gamma a^2 - c_i) + w_j exp(gamma a^2 - c_j))``
    with each anchor's shift ``c`` and weight ``w = g gamma Z / sum`` (negated for positives, Eq. 10).
    The tile is written in place and, through a small buffer, transposed below the diagonal, which no
    task reads.
    """
    n = sim.shape[0]
    m32, g32 = np.float32(m), np.float32(gamma)
    shift_n, shift_p = stats[0], stats[1]
    weight_n = np.empty(n, dtype=np.float32)
    weight_p = np.empty(n, dtype=np.float32)
    for i in range(n):
        weight_n[i] = grad[i] * stats[2, i]
        weight_p[i] = -grad[i] * stats[3, i]
    tiles = (n + TILE - 1) // TILE
    pairs = tiles * (tiles + 1) // 2
    tile_i = np.empty(pairs, dtype=np.int64)
    tile_j = np.empty(pairs, dtype=np.int64)
    pair = 0
    for ti in range(tiles):
        for tj in range(ti, tiles):
            tile_i[pair], tile_j[pair] = ti, tj
            pair += 1
    for p in _prange(pairs):
        r0, c0 = tile_i[p] * TILE, tile_j[p] * TILE
        r1, c1 = min(r0 + TILE, n), min(c0 + TILE, n)
        diagonal = r0 == c0
        buf = np.empty((TILE, TILE + 1), dtype=np.float32)  # buf[i - r0, j - c0] = W[i, j]; +1: no set aliasing
        for i in range(r0, r1):
            li = labels[i]
            wn_i, wp_i, cn_i, cp_i = weight_n[i], weight_p[i], shift_n[i], shift_p[i]
            lo = i + 1 if diagonal else c0
            # Views starting at lo, indexed from 0: a loop from a variable start keeps numba's check for
            # negative indices, which stops LLVM from vectorising it (4-5x slower).
            row, lab, sh_n, sh_p = sim[i, lo:c1], labels[lo:c1], shift_n[lo:c1], shift_p[lo:c1]
            w_n, w_p, out = weight_n[lo:c1], weight_p[lo:c1], buf[i - r0, lo - c0 :]
            for j in range(c1 - lo):
                same = li == lab[j]
                a = _pair_term(row[j], same, m32)
                ga = g32 * (a * a)
                e_i = _exp_nonpositive(ga - (cp_i if same else cn_i))
                e_j = _exp_nonpositive(ga - (sh_p[j] if same else sh_n[j]))
                w = (a + m32) * ((wp_i if same else wn_i) * e_i + (w_p[j] if same else w_n[j]) * e_j)
                row[j] = w
                out[j] = w
            if diagonal:
                sim[i, i] = 0.0
        for j in range(c0, c1):  # below the diagonal: W[j, i] = W[i, j]
            hi = min(r1, j) if diagonal else r1
            dst = sim[j, r0:hi]
            for k in range(hi - r0):
                dst[k] = buf[k, j - c0]
