"""The library on a CUDA device: the same numbers as on the CPU, and the sizes the issue names.

Run by hand on a machine with a GPU (``pytest -m gpu tests/gpu``); ``make test`` deselects the
``gpu`` marker, and without CUDA the module is skipped as a whole (nothing here can run on a CPU).
Each check compares the GPU's result with the CPU's on the same inputs, so it fails when a code path
is device-specific in a wrong way (a mask built on the wrong device, a CPU-only kernel taken for a
CUDA tensor, a float32 overflow that only the GPU's kernels hit).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pairsim import CircleLoss, create_loss, list_losses
from pairsim.evaluation import retrieval_metrics
from pairsim.functional.circle_streaming import circle_loss_streaming
from pairsim.losses import PairLoss, get_loss_class

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")
D = 32
LABELS = torch.arange(16).repeat_interleave(4)  # P = 16 classes x K = 4


def _configs() -> list[tuple[str, bool]]:
    out = []
    for name in list_losses():
        cls = get_loss_class(name)
        out += [(name, False)] if cls.supports_pair_wise else []
        out += [(name, True)] if cls.supports_class_level else []
    return out


def _build(name: str, class_level: bool) -> PairLoss:
    torch.manual_seed(0)
    return create_loss(name, num_classes=20, embedding_dim=D) if class_level else create_loss(name)


def _loss_and_grads(loss_fn: PairLoss, x: Tensor, labels: Tensor) -> tuple[Tensor, list[Tensor]]:
    x = x.detach().requires_grad_(True)
    params = [x] + [p for p in loss_fn.parameters()]
    loss = loss_fn(x, labels)
    return loss.detach(), list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize(("name", "class_level"), _configs())
def test_every_loss_on_cuda_equals_the_cpu_in_float64(name: str, class_level: bool) -> None:
    x = torch.randn(len(LABELS), D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cpu_fn = _build(name, class_level).double()
    gpu_fn = _build(name, class_level).double().to(CUDA)
    loss_cpu, grads_cpu = _loss_and_grads(cpu_fn, x, LABELS)
    loss_gpu, grads_gpu = _loss_and_grads(gpu_fn, x.to(CUDA), LABELS.to(CUDA))
    assert loss_gpu.device.type == "cuda"
    assert float(loss_cpu) > 0
    torch.testing.assert_close(loss_gpu.cpu(), loss_cpu, rtol=1e-9, atol=1e-12)
    for g_gpu, g_cpu in zip(grads_gpu, grads_cpu, strict=True):
        assert g_gpu.device.type == "cuda"
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("mode", ["self", "refs", "class"])
@pytest.mark.parametrize("block", [1, 7, 64, None])
def test_circle_fast_path_on_cuda_equals_the_plain_path(mode: str, block: int | None) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(len(LABELS), D, dtype=torch.float64, generator=g).to(CUDA).requires_grad_(True)
    labels = LABELS.to(CUDA)
    refs = ref_labels = None
    if mode == "refs":
        refs = torch.randn(40, D, dtype=torch.float64, generator=g).to(CUDA).requires_grad_(True)
        ref_labels = torch.arange(40, device=CUDA) % 20
    kwargs = {"num_classes": 20, "embedding_dim": D} if mode == "class" else {}
    fast = CircleLoss(m=0.25, gamma=64.0, fast_path=True, block_size=block, **kwargs).double().to(CUDA)
    plain = CircleLoss(m=0.25, gamma=64.0, fast_path=False, **kwargs).double().to(CUDA)
    plain.load_state_dict(fast.state_dict())
    inputs = [x] + ([refs] if refs is not None else []) + list(fast.parameters())
    plain_inputs = [x] + ([refs] if refs is not None else []) + list(plain.parameters())
    loss_fast = fast(x, labels, refs, ref_labels)
    loss_plain = plain(x, labels, refs, ref_labels)
    torch.testing.assert_close(loss_fast, loss_plain, rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(loss_fast, inputs), torch.autograd.grad(loss_plain, plain_inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_circle_matches_pml_on_cuda() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    x = torch.randn(256, 64, device=CUDA, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(64, device=CUDA).repeat_interleave(4)
    ours = CircleLoss(m=0.4, gamma=80.0)(x, labels)
    theirs = pml_losses.CircleLoss(m=0.4, gamma=80.0)(x, labels)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, x), torch.autograd.grad(theirs, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("class_level", [False, True])
def test_circle_at_gamma_1024_in_half_precision_on_cuda(dtype: torch.dtype, class_level: bool) -> None:
    torch.manual_seed(3)
    classes, dim = (16, 128) if class_level else (None, None)
    loss_fn = CircleLoss(m=0.25, gamma=1024.0, num_classes=classes, embedding_dim=dim).to(CUDA)
    x32 = torch.randn(len(LABELS), 128, device=CUDA)
    expected = loss_fn(x32, LABELS.to(CUDA))
    x = x32.to(dtype).requires_grad_(True)
    loss = loss_fn(x, LABELS.to(CUDA))
    loss.backward()
    assert torch.isfinite(loss)
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()
    assert float(x.grad.float().abs().sum()) > 0
    # Rounding the inputs to 8 (bf16) or 11 (fp16) bits moves the loss by gamma x rounding at most.
    torch.testing.assert_close(loss.float(), expected, rtol=0.05, atol=0.5)


def test_class_level_circle_with_a_million_classes_fits_twice_the_proxy_matrix() -> None:
    """Issue 2's size (C = 1e6, D = 512, B = 256) on the GPU: peak extra memory <= 2x the proxies."""
    torch.manual_seed(4)
    loss_fn = CircleLoss(m=0.25, gamma=256.0, num_classes=1_000_000, embedding_dim=512).to(CUDA)
    x = torch.randn(256, 512, device=CUDA, requires_grad=True)
    labels = torch.randint(0, 1_000_000, (256,), device=CUDA)
    proxies = loss_fn.proxies
    assert proxies is not None
    proxy_bytes = proxies.numel() * proxies.element_size()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = loss_fn(x, labels)
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert proxies.grad is not None and torch.isfinite(proxies.grad).all()
    # The proxies' gradient itself is one proxy matrix; the rest must fit in one more.
    assert extra <= 2 * proxy_bytes, f"peak extra {extra / 2**20:.0f} MiB vs proxies {proxy_bytes / 2**20:.0f} MiB"


@pytest.mark.parametrize("with_queries", [False, True])
def test_retrieval_metrics_on_cuda_equal_the_cpu(with_queries: bool) -> None:
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 300, (3000,), generator=g)
    centres = torch.randn(300, 64, generator=g)
    x = centres[labels] + 1.5 * torch.randn(3000, 64, generator=g)
    queries = q_labels = None
    if with_queries:
        q_labels = torch.randint(0, 300, (500,), generator=g)
        queries = centres[q_labels] + 1.5 * torch.randn(500, 64, generator=g)
    cpu = retrieval_metrics(x, labels, queries, q_labels)
    on_gpu = (None, None) if queries is None or q_labels is None else (queries.to(CUDA), q_labels.to(CUDA))
    gpu = retrieval_metrics(x.to(CUDA), labels.to(CUDA), *on_gpu)
    assert set(cpu) == set(gpu)
    assert 0.2 < cpu["precision_at_1"] < 0.99  # neither trivial nor hopeless
    for key, value in cpu.items():
        assert gpu[key] == pytest.approx(value, abs=1e-6), key


def test_streaming_circle_half_inputs_on_cuda_give_float32_losses() -> None:
    x = torch.randn(64, D, device=CUDA, dtype=torch.bfloat16, requires_grad=True)
    losses, valid = circle_loss_streaming(x, LABELS.to(CUDA), m=0.25, gamma=256.0)
    assert losses.dtype == torch.float32 and bool(valid.all())
    losses.sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


def test_circle_dispatch_on_cuda_prefers_the_plain_path_for_small_pair_wise_batches() -> None:
    small, big = torch.randn(1024, 8, device=CUDA), torch.randn(4097, 8, device=CUDA)
    assert not CircleLoss().uses_fast_path(small)
    assert CircleLoss().uses_fast_path(big)
    assert CircleLoss(num_classes=3, embedding_dim=8).to(CUDA).uses_fast_path(small)
    assert CircleLoss(fast_path=True).uses_fast_path(small)


@pytest.mark.parametrize("name", ["cosface", "arcface", "normface"])
@pytest.mark.parametrize("block", [3, None])
def test_margin_softmax_streamed_path_on_cuda_equals_the_plain_path(name: str, block: int | None) -> None:
    torch.manual_seed(6)
    fast = create_loss(name, num_classes=20, embedding_dim=D, block_size=block).double().to(CUDA)
    plain = create_loss(name, num_classes=20, embedding_dim=D, fast_path=False).double().to(CUDA)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(len(LABELS), D, dtype=torch.float64, device=CUDA, requires_grad=True)
    labels = LABELS.to(CUDA) % 20
    a, b = fast(x, labels), plain(x, labels)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    ga = torch.autograd.grad(a, [x, *fast.parameters()])
    gb = torch.autograd.grad(b, [x, *plain.parameters()])
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-8, atol=1e-12)
