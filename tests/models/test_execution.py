"""Execution settings: what ``auto`` resolves to, layouts, BatchNorm folding, fast-path embeddings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from pairsim.models import (
    EXACT,
    CpuFeatures,
    Execution,
    create_model,
    embed,
    inference_model,
    resolve_execution,
)
from pairsim.models import execution as execution_module
from pairsim.models.batchnorm_folding import fold_batchnorm
from pairsim.models.efficientnet import native_same_padding
from pairsim.models.inference import PREPARED_FOR

PLAIN = CpuFeatures(avx512_bf16=False, amx=False)
AVX512_BF16 = CpuFeatures(avx512_bf16=True, amx=False)
AMX = CpuFeatures(avx512_bf16=True, amx=True)

#: Documented tolerance of bf16 inference: each embedding within this cosine of its fp32 one.
BF16_MIN_COSINE = 0.99


@pytest.mark.parametrize(
    ("cpu", "phase", "precision"),
    [
        (PLAIN, "train", "fp32"),
        (PLAIN, "inference", "fp32"),
        (AVX512_BF16, "train", "fp32"),  # bf16 depthwise backward is slower without AMX
        (AVX512_BF16, "inference", "bf16"),
        (AMX, "train", "bf16"),
        (AMX, "inference", "bf16"),
    ],
)
def test_auto_precision_follows_the_cpu(cpu: CpuFeatures, phase: str, precision: str) -> None:
    got = resolve_execution(device="cpu", phase=phase, cpu=cpu)  # type: ignore[arg-type]
    assert got == Execution(precision, channels_last=True, compile=False)


def test_explicit_settings_are_kept() -> None:
    got = resolve_execution("bf16", False, True, device="cpu", phase="train", cpu=PLAIN)
    assert got == Execution("bf16", channels_last=False, compile=True)
    assert resolve_execution("fp32", False, False, cpu=AMX).exact


def test_the_probe_is_what_auto_asks_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution_module, "probe_cpu", lambda: PLAIN)
    assert resolve_execution(phase="inference").precision == "fp32"
    monkeypatch.setattr(execution_module, "probe_cpu", lambda: AVX512_BF16)
    assert resolve_execution(phase="inference").precision == "bf16"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "precision must be 'auto', 'fp32' or 'bf16', got 'fp16'"),
        ({"channels_last": "yes"}, "channels_last must be 'auto', true or false, got 'yes'"),
        ({"compile": 1}, "compile must be 'auto', true or false, got 1"),
    ],
)
def test_bad_settings_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_execution(**kwargs)  # type: ignore[arg-type]


def test_layout_makes_4d_batches_nhwc_and_leaves_others() -> None:
    x = torch.rand(2, 3, 4, 5)
    fast = Execution(channels_last=True)
    assert fast.layout(x).is_contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast.layout(x), x)
    flat = torch.rand(3, 4)
    assert fast.layout(flat) is flat
    assert EXACT.layout(x) is x


class ConvBnReused(nn.Module):
    """A convolution whose output feeds a BatchNorm and is also used again: folding would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def _trained_statistics(model: nn.Module, x: Tensor) -> nn.Module:
    """Give the BatchNorms non-trivial running statistics and affine parameters."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", ["small-cnn", "efficientnet-lite0"])
def test_folded_batchnorm_gives_the_same_embeddings(name: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 1, 32, 32)
    model = _trained_statistics(create_model(name, 16, 1, pretrained=False), x)
    folded = fold_batchnorm(model, x[:2])
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    left = [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not left  # every BatchNorm of these models follows a convolution
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_folding_is_refused_where_the_convolution_output_is_used_again() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    model = _trained_statistics(ConvBnReused(), x)
    folded = fold_batchnorm(model, x)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.equal(folded(x), model(x))


def test_native_padding_keeps_outputs_and_parameters() -> None:
    torch.manual_seed(0)
    model = create_model("efficientnet-lite0", 16, 1, pretrained=False).eval()
    params, keys = list(model.parameters()), list(model.state_dict())
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        before = model(x)
        assert native_same_padding(model) > 10
        assert torch.equal(model(x), before)
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert list(model.state_dict()) == keys


def _lite0_with_images() -> tuple[nn.Module, np.ndarray]:
    torch.manual_seed(0)
    model = create_model("efficientnet-lite0", 32, 1, pretrained=True)
    model.preprocessing = dataclasses.replace(model.preprocessing, image_size=48)
    # Smooth images (blurred noise) rather than raw noise: closer to what the model embeds.
    noise = torch.rand(48, 1, 12, 12)
    images = torch.nn.functional.interpolate(noise, size=48, mode="bilinear").mul(255).to(torch.uint8).numpy()
    return model, images


def test_fp32_fast_path_equals_the_exact_embeddings() -> None:
    model, images = _lite0_with_images()
    exact = embed(model, images, batch_size=16)
    fast = Execution("fp32", channels_last=True)
    torch.testing.assert_close(embed(model, images, batch_size=16, execution=fast), exact, rtol=0, atol=1e-4)


def test_bf16_embeddings_are_within_the_documented_tolerance() -> None:
    model, images = _lite0_with_images()
    exact = embed(model, images, batch_size=16)
    fast = embed(model, images, batch_size=16, execution=Execution("bf16", channels_last=True))
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast.norm(dim=1), torch.ones(len(images)), rtol=0, atol=1e-5)
    assert float(torch.nn.functional.cosine_similarity(fast, exact).min()) >= BF16_MIN_COSINE
    assert not torch.equal(fast, exact)  # bf16 did run


def test_a_prepared_model_is_used_as_it_is() -> None:
    model, images = _lite0_with_images()
    fast = Execution("fp32", channels_last=True)
    prepared = inference_model(model, fast)
    assert getattr(prepared, PREPARED_FOR) == fast and prepared is not model
    assert inference_model(model, EXACT) is model
    assert model.training and not prepared.training  # the original keeps its mode
    torch.testing.assert_close(embed(prepared, images, execution=fast), embed(model, images, execution=fast))
