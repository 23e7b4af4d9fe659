"""A small CNN for small grayscale images (Fashion-MNIST, 32-64 px glyphs), trained from scratch."""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from pairsim.models.embedding import EmbeddingModel, Preprocessing
from pairsim.models.registry import register_model

WIDTHS = (32, 64, 128, 256)


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers, then 2x2 max pooling (halves the side)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    """Four conv blocks and global average pooling: ``(N, C, H, W)`` to ``(N, 256)``."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        widths = (in_channels, *WIDTHS)
        self.blocks = nn.Sequential(*(conv_block(a, b) for a, b in itertools.pairwise(widths)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x).mean(dim=(2, 3))  # (N, 256)


@register_model("small-cnn")
def small_cnn(embedding_dim: int, in_channels: int, pretrained: bool) -> EmbeddingModel:
    """The small CNN with an embedding head; it has no published weights.

    Raises:
        ValueError: if ``pretrained`` is asked for.
    """
    if pretrained:
        raise ValueError("small-cnn has no pretrained weights; set model.pretrained to false")
    prep = Preprocessing(in_channels=in_channels, backbone_channels=in_channels)
    return EmbeddingModel(SmallCNN(in_channels), WIDTHS[-1], embedding_dim, prep)
