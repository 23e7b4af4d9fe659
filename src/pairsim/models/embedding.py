"""An embedding model: input scaling, a backbone that pools to features, a linear L2-normalised head."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Preprocessing:
    """How images must be given to an :class:`EmbeddingModel`, kept in checkpoints for the evaluation CLI.

    The model takes float images in ``[0, 1]`` of shape ``(N, in_channels, H, W)``; inside, pixels are
    rescaled to ``(255 x - offset) / scale`` (``(x - 127) / 128`` on the 0-255 scale for EfficientNet-Lite).

    Attributes:
        in_channels: 1 or 3, what the caller gives.
        backbone_channels: what the backbone's first layer takes; 1 is repeated to 3 when they differ.
        offset: subtracted on the 0-255 scale.
        scale: divided by, on the 0-255 scale.
        image_size: the side the model was trained at (``None`` when not known yet).
    """

    in_channels: int
    backbone_channels: int
    offset: float = 127.0
    scale: float = 128.0
    image_size: int | None = None


class EmbeddingHead(nn.Module):
    """Linear map from backbone features to ``D`` dimensions, then L2 normalisation.

    Example:
        >>> head = EmbeddingHead(8, 4)
        >>> z = head(torch.randn(3, 8))
        >>> z.shape, bool(torch.allclose(z.norm(dim=1), torch.ones(3)))
        (torch.Size([3, 4]), True)
    """

    def __init__(self, in_features: int, embedding_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, embedding_dim)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, F)`` features to ``(B, D)`` unit vectors."""
        return F.normalize(self.linear(features), dim=1)


class EmbeddingModel(nn.Module):
    """Scaling, backbone and head: ``(N, C, H, W)`` images in ``[0, 1]`` to ``(N, D)`` unit embeddings.

    Args:
        backbone: maps ``(N, backbone_channels, H, W)`` scaled images to ``(N, F)`` pooled features.
        num_features: ``F``.
        embedding_dim: ``D``.
        preprocessing: the input convention.
    """

    def __init__(self, backbone: nn.Module, num_features: int, embedding_dim: int, preprocessing: Preprocessing):
        super().__init__()
        self.backbone = backbone
        self.head = EmbeddingHead(num_features, embedding_dim)
        self.preprocessing = preprocessing
        self.num_features = num_features
        self.embedding_dim = embedding_dim

    def scale_input(self, images: Tensor) -> Tensor:
        """``(N, C, H, W)`` in ``[0, 1]`` to what the backbone takes (scaled, channels repeated)."""
        p = self.preprocessing
        if images.shape[1] != p.in_channels:
            raise ValueError(f"the model takes {p.in_channels}-channel images, got shape {tuple(images.shape)}")
        x = (images * 255.0 - p.offset) / p.scale
        if p.backbone_channels != p.in_channels:
            x = x.expand(-1, p.backbone_channels, -1, -1)  # grayscale to RGB, no copy
        return x

    def features(self, images: Tensor) -> Tensor:
        """``(N, F)`` pooled backbone features (the "frozen features" baseline)."""
        return self.backbone(self.scale_input(images))

    def forward(self, images: Tensor) -> Tensor:
        """``(N, D)`` L2-normalised embeddings."""
        return self.head(self.features(images))
