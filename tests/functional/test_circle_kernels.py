"""The fused CPU kernels of the Circle loss (numba, oneDNN) equal the plain path, and the torch path
is taken whenever they cannot be used (no numba, switched off, float64, non-finite input, forked child)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor

from pairsim.functional import batch_pairs, circle_kernels, circle_loss, circle_similarity_grad
from pairsim.functional.circle_streaming import circle_loss_streaming

needs_numba = pytest.mark.skipif(not circle_kernels.AVAILABLE, reason="needs the optional extra 'fast' (numba)")


@pytest.fixture(autouse=True)
def _kernel_switches() -> Iterator[None]:
    """Every test starts with the kernels and oneDNN switched on, and leaves them so."""
    saved = circle_kernels.ENABLED, circle_kernels.ONEDNN
    circle_kernels.ENABLED, circle_kernels.ONEDNN = True, True
    yield
    circle_kernels.ENABLED, circle_kernels.ONEDNN = saved


def _labels(kind: str, n: int, g: torch.Generator) -> Tensor:
    if kind == "pk":  # P-K batches, K = 4
        return torch.arange(n) // 4
    if kind == "few":  # a few large classes
        return torch.randint(0, 3, (n,), generator=g)
    if kind == "many":  # many classes: some anchors have no positive
        return torch.randint(0, max(1, n // 2), (n,), generator=g)
    if kind == "one":  # one class: no negatives anywhere
        return torch.full((n,), 7)
    return torch.arange(n) * 3 - 5  # all distinct (and negative ids): no positives anywhere


def _embeddings(n: int, d: int, seed: int) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _path_name(losses: Tensor) -> str:
    assert losses.grad_fn is not None
    return losses.grad_fn.name()


SIZES = [2, 3, 15, 16, 17, 63, 64, 65, 130, 300]
LABELS = ["pk", "few", "many", "one", "distinct"]


@needs_numba
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", LABELS)
@pytest.mark.parametrize(("m", "gamma"), [(0.4, 80.0), (0.25, 256.0), (0.0, 1024.0)])
def test_forward_kernel_equals_plain_loss_on_the_same_similarities(n: int, kind: str, m: float, gamma: float) -> None:
    """From one float32 similarity matrix: the kernel (reading its upper triangle) against the plain
    float64 Eq. 6 with the masks of ``batch_pairs``."""
    g = torch.Generator().manual_seed(n)
    x, labels = torch.nn.functional.normalize(_embeddings(n, 8, n)), _labels(kind, n, g)
    sim = x @ x.T
    sim_lower_garbage = sim.triu() + torch.full((n, n), float("nan")).tril(-1)  # the lower triangle is never read
    losses, valid, stats = circle_kernels.circle_self_forward(sim_lower_garbage, labels, m, gamma)
    pairs = batch_pairs(x.double(), labels)
    sym = sim.triu() + sim.triu(1).T  # exactly symmetric, like what the kernel reads
    expected = torch.where(pairs.valid, circle_loss(sym.double(), pairs.pos, pairs.neg, m, gamma), 0.0)
    assert torch.equal(valid, pairs.valid)
    assert kind not in ("one", "distinct") or not bool(valid.any())
    torch.testing.assert_close(losses.double(), expected, rtol=2e-6, atol=2e-6)
    assert bool(torch.isfinite(stats).all())


@needs_numba
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", LABELS)
@pytest.mark.parametrize(("m", "gamma"), [(0.4, 80.0), (0.25, 256.0), (0.0, 1024.0)])
def test_backward_kernel_equals_closed_form_gradient(n: int, kind: str, m: float, gamma: float) -> None:
    """``W = G + G^T`` with ``G = diag(g) dL/ds`` (Eq. 9-10, float64), for a signed upstream ``g``."""
    g = torch.Generator().manual_seed(100 + n)
    x, labels = torch.nn.functional.normalize(_embeddings(n, 8, n)), _labels(kind, n, g)
    sim = (x @ x.T).triu()
    sym = sim + sim.triu(1).T
    upstream = torch.randn(n, generator=g)
    _, valid, stats = circle_kernels.circle_self_forward(sim, labels, m, gamma)
    circle_kernels.circle_self_backward(sim, labels, m, gamma, stats, upstream)
    pairs = batch_pairs(x.double(), labels)
    grad_s = circle_similarity_grad(sym.double(), pairs.pos, pairs.neg, m, gamma)
    grad_s = grad_s * (upstream.double() * valid)[:, None]  # (B, B), G
    expected = grad_s + grad_s.T
    assert torch.equal(sim, sim.T) and not bool(sim.diagonal().any())
    # Each weight is exp(gamma a^2 - shift) with the exponent in float32, as on the torch path: with
    # a^2 <= 4, a few times 4 gamma 2^-24 relative (the plain path in float32 is off by as much).
    rtol = 8.0 * 4.0 * gamma * 2.0**-24
    scale = max(expected.abs().max().item(), 1e-30)
    torch.testing.assert_close(sim.double(), expected, rtol=rtol, atol=1e-6 * scale)


@needs_numba
@pytest.mark.parametrize("n", [17, 130, 700])
@pytest.mark.parametrize("kind", ["pk", "few", "many"])
def test_fused_path_equals_plain_path_end_to_end(n: int, kind: str) -> None:
    """``circle_loss_streaming`` in float32 through the kernels, against the plain float64 path:
    losses and gradients for a signed upstream gradient (D = 32, half the rows scaled up)."""
    g = torch.Generator().manual_seed(n)
    x = _embeddings(n, 32, n) * torch.where(torch.arange(n) % 2 == 0, 3.0, 0.5)[:, None]
    labels, weights = _labels(kind, n, g), torch.randn(n, generator=g)
    x32 = x.clone().requires_grad_(True)
    fast, valid = circle_loss_streaming(x32, labels, m=0.4, gamma=80.0)
    assert _path_name(fast) == "_CircleSelfFusedBackward"
    (grad,) = torch.autograd.grad((fast * weights).sum(), x32)
    x64 = x.double().requires_grad_(True)
    pairs = batch_pairs(x64, labels)
    plain = circle_loss(pairs.sim, pairs.pos, pairs.neg, 0.4, 80.0)
    (expected,) = torch.autograd.grad((plain * weights.double() * pairs.valid).sum(), x64)
    assert torch.equal(valid, pairs.valid)
    torch.testing.assert_close(fast.double(), torch.where(pairs.valid, plain, 0.0).detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@needs_numba
def test_fused_path_equals_the_torch_path_in_float32() -> None:
    """The same float32 call with the kernels switched off (the torch code path): equal up to rounding."""
    x, labels = _embeddings(300, 64, 1), torch.arange(300) // 4
    results = []
    for enabled in (True, False):
        circle_kernels.ENABLED = enabled
        leaf = x.clone().requires_grad_(True)
        losses, valid = circle_loss_streaming(leaf, labels, m=0.25, gamma=256.0)
        assert _path_name(losses) == ("_CircleSelfFusedBackward" if enabled else "_CircleStreamingBackward")
        (grad,) = torch.autograd.grad(losses.mean(), leaf)
        results.append((losses, valid, grad))
    (fast, fast_valid, fast_grad), (ref, ref_valid, ref_grad) = results
    assert torch.equal(fast_valid, ref_valid)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-3, atol=1e-4 * ref_grad.abs().max().item())


@needs_numba
def test_onednn_off_gives_the_same_results() -> None:
    x, labels = _embeddings(300, 64, 2), torch.arange(300) // 4
    results = []
    for onednn in (True, False):
        circle_kernels.ONEDNN = onednn
        leaf = x.clone().requires_grad_(True)
        losses, _ = circle_loss_streaming(leaf, labels, m=0.4, gamma=80.0)
        results.append((losses, torch.autograd.grad(losses.sum(), leaf)[0]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-5 * results[1][1].abs().max().item())


@pytest.mark.parametrize("onednn", [True, False])
def test_gram_upper_and_matmul_nt(onednn: bool) -> None:
    circle_kernels.ONEDNN = onednn
    x, y = _embeddings(700, 24, 3), _embeddings(50, 24, 4)
    full = x @ x.T
    torch.testing.assert_close(circle_kernels.gram_upper(x).triu(), full.triu(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(circle_kernels.matmul_nt(x, y), x @ y.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(circle_kernels.matmul_nt(x, y.T.contiguous().T), x @ y.T, rtol=1e-5, atol=1e-5)
    acc = torch.ones(700, 50)
    assert circle_kernels.matmul_nt(x, y, out=acc, add=True) is acc
    torch.testing.assert_close(acc, x @ y.T + 1.0, rtol=1e-5, atol=1e-5)
    circle_kernels.matmul_nt(x, y, out=acc)
    torch.testing.assert_close(acc, x @ y.T, rtol=1e-5, atol=1e-5)
    for empty in (x[:0], torch.empty(700, 0)):  # oneDNN refuses empty shapes: torch.mm takes them
        other = y[:, : empty.shape[1]]
        assert circle_kernels.matmul_nt(empty, other).shape == (len(empty), 50)
    x64 = x.double()  # never through oneDNN
    torch.testing.assert_close(circle_kernels.gram_upper(x64).triu(), (x64 @ x64.T).triu())


def test_torch_path_when_the_kernels_cannot_be_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switched off, numba missing, float64, a forked child: the torch path, with the same losses."""
    x, labels = _embeddings(40, 8, 5), torch.arange(40) // 4
    circle_kernels.ENABLED = False
    expected, _ = circle_loss_streaming(x.requires_grad_(True), labels, m=0.4, gamma=80.0)
    assert _path_name(expected) == "_CircleStreamingBackward"
    circle_kernels.ENABLED = True
    cases = {
        "no numba": lambda: monkeypatch.setattr(circle_kernels, "AVAILABLE", False),
        "forked child": lambda: monkeypatch.setattr(circle_kernels, "_forked_after_pool", True),
    }
    for name, patch in cases.items():
        with monkeypatch.context():
            patch()
            losses, _ = circle_loss_streaming(x, labels, m=0.4, gamma=80.0)
            assert _path_name(losses) == "_CircleStreamingBackward", name
            torch.testing.assert_close(losses, expected)
    losses64, _ = circle_loss_streaming(x.double(), labels, m=0.4, gamma=80.0)
    assert _path_name(losses64) == "_CircleStreamingBackward"
    assert not circle_kernels.kernels_usable(x.double())


@needs_numba
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_takes_the_torch_path(bad: float) -> None:
    """The kernels assume finite values; other inputs get exactly what the torch path gives them."""
    x, labels = _embeddings(40, 8, 6), torch.arange(40) // 4
    x[3, 1] = bad
    losses, valid = circle_loss_streaming(x.requires_grad_(True), labels, m=0.4, gamma=80.0)
    assert _path_name(losses) == "_CircleStreamingBackward"
    circle_kernels.ENABLED = False
    expected, expected_valid = circle_loss_streaming(x, labels, m=0.4, gamma=80.0)
    torch.testing.assert_close(losses, expected, equal_nan=True)
    assert torch.equal(valid, expected_valid)


@pytest.mark.parametrize("n", [0, 1])
def test_batches_without_pairs_with_default_blocks(n: int) -> None:
    x = torch.randn(n, 4, requires_grad=True)
    losses, valid = circle_loss_streaming(x, torch.zeros(n, dtype=torch.long), m=0.4, gamma=80.0)
    assert losses.shape == (n,) and not bool(valid.any()) and not bool(losses.any())
    losses.sum().backward()
    assert x.grad is not None and not bool(x.grad.any())


@needs_numba
def test_retained_graph_gives_the_same_gradient_twice() -> None:
    """The backward overwrites the similarities; a second backward recomputes them."""
    x, labels = _embeddings(100, 16, 7).requires_grad_(True), torch.arange(100) // 4
    losses, _ = circle_loss_streaming(x, labels, m=0.4, gamma=80.0)
    assert _path_name(losses) == "_CircleSelfFusedBackward"
    (first,) = torch.autograd.grad(losses.sum(), x, retain_graph=True)
    (second,) = torch.autograd.grad(losses.sum(), x)
    torch.testing.assert_close(first, second)


@needs_numba
def test_zero_embedding_and_expanded_upstream_gradient() -> None:
    """A zero row (norm under eps) and the stride-0 gradient of ``.sum()``: as the torch path."""
    x, labels = _embeddings(40, 8, 8), torch.arange(40) // 4
    x[5] = 0.0
    grads = []
    for enabled in (True, False):
        circle_kernels.ENABLED = enabled
        leaf = x.clone().requires_grad_(True)
        losses, _ = circle_loss_streaming(leaf, labels, m=0.25, gamma=64.0)
        losses.sum().backward()
        assert leaf.grad is not None
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_go_through_the_kernels_in_float32(dtype: torch.dtype) -> None:
    x, labels = _embeddings(64, 16, 9).to(dtype), torch.arange(64) // 4
    half = x.clone().requires_grad_(True)
    losses, _ = circle_loss_streaming(half, labels, m=0.25, gamma=1024.0)
    assert _path_name(losses) == "_CircleSelfFusedBackward" and losses.dtype == torch.float32
    (grad,) = torch.autograd.grad(losses.mean(), half)
    single = x.float().requires_grad_(True)
    ref, _ = circle_loss_streaming(single, labels, m=0.25, gamma=1024.0)
    (ref_grad,) = torch.autograd.grad(ref.mean(), single)
    assert grad.dtype == dtype
    torch.testing.assert_close(losses, ref)
    torch.testing.assert_close(grad.float(), ref_grad, rtol=2e-2, atol=ref_grad.abs().max().item() * 1e-2)


@needs_numba
def test_double_backward_is_refused() -> None:
    x, labels = _embeddings(20, 4, 10).requires_grad_(True), torch.arange(20) // 4
    losses, _ = circle_loss_streaming(x, labels, m=0.4, gamma=80.0)
    (grad,) = torch.autograd.grad(losses.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


@needs_numba
def test_exp_is_within_two_ulp_and_flushes_under_the_normal_range() -> None:
    xs = np.concatenate([-np.linspace(0.0, 86.9, 20001), -np.logspace(-8, 0, 200)]).astype(np.float32)
    got = np.array([circle_kernels._exp_nonpositive(v) for v in xs], dtype=np.float64)
    exact = np.exp(xs.astype(np.float64))
    assert np.max(np.abs(got / exact - 1.0)) < 2.0 * 2.0**-24
    assert circle_kernels._exp_nonpositive(np.float32(0.0)) == 1.0
    assert circle_kernels._exp_nonpositive(np.float32(-88.0)) == 0.0
    assert circle_kernels._exp_nonpositive(np.float32(-np.inf)) == 0.0


def _path_in_child(queue: multiprocessing.queues.Queue) -> None:  # type: ignore[type-arg]
    # torch's own OpenMP pool does not survive fork() either: a forked child works on one thread, as
    # torch's data loader workers do.
    torch.set_num_threads(1)
    x = torch.randn(40, 8, requires_grad=True)
    losses, _ = circle_loss_streaming(x, torch.arange(40) // 4, m=0.4, gamma=80.0)
    losses.sum().backward()
    queue.put(_path_name(losses))


@needs_numba
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork()")
def test_forked_child_takes_the_torch_path() -> None:
    """After the kernels ran here, numba's OpenMP pool cannot serve a forked child (numba kills it): it must not try."""
    x = torch.randn(40, 8, requires_grad=True)
    losses, _ = circle_loss_streaming(x, torch.arange(40) // 4, m=0.4, gamma=80.0)
    assert _path_name(losses) == "_CircleSelfFusedBackward"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_path_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0 and queue.get(timeout=5) == "_CircleStreamingBackward"
    assert circle_kernels.kernels_usable(x)  # the parent keeps its kernels


@needs_numba
def test_kernels_leave_torchs_thread_count_as_it_was() -> None:
    """numba's OpenMP layer resets the calling thread's OpenMP count to its pool size; torch reads that
    count, so a run set to one thread went on with more after its first loss."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        x = _embeddings(40, 16, 3).requires_grad_(True)
        labels = torch.arange(40) // 4
        fast, _ = circle_loss_streaming(x, labels, m=0.25, gamma=64.0)
        assert _path_name(fast) == "_CircleSelfFusedBackward"
        fast.sum().backward()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
