"""Tensor image transforms: uint8 to float, resizing, and kornia augmentations for training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AugmentConfig:
    """Random geometric and photometric jitter for training batches (none of it flips: glyphs are chiral).

    Attributes:
        degrees: maximum rotation, in degrees.
        translate: maximum shift, as a fraction of the side.
        scale: ``(min, max)`` zoom factors.
        shear: maximum shear, in degrees.
        brightness: maximum brightness change (0 disables colour jitter).
        contrast: maximum contrast change.
        p: probability of applying the affine transform to an image.
    """

    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    p: float = 1.0

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is asked for."""
        return bool(
            self.degrees or self.translate or self.scale != (1.0, 1.0) or self.shear or self.brightness or self.contrast
        )


def to_float(images: Tensor) -> Tensor:
    """``(N, C, H, W)`` uint8 to float32 in ``[0, 1]``.

    Example:
        >>> to_float(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).tolist()
        [[[[0.0, 1.0]]]]
    """
    # Standard strides whatever the input's: numpy views of (N, 1, H, W) data can carry strides that torch reads
    # as channels-last, and the convolutions' results (last bits) depend on the layout they are given.
    return images.to(dtype=torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def resize(images: Tensor, size: int) -> Tensor:
    """``(N, C, H, W)`` float images to ``(N, C, size, size)`` (area averaging when shrinking).

    Example:
        >>> resize(torch.rand(2, 1, 28, 28), 14).shape
        torch.Size([2, 1, 14, 14])
    """
    if images.shape[-2:] == (size, size):
        return images
    shrinking = images.shape[-1] > size
    return F.interpolate(images, size=(size, size), mode="area" if shrinking else "bilinear", align_corners=None)


def build_augmentation(config: AugmentConfig) -> nn.Module:
    """The kornia pipeline for ``config`` (identity when nothing is enabled).

    It draws from torch's global RNG, which the trainer checkpoints, so resumed runs see the same jitter.

    Example:
        >>> aug = build_augmentation(AugmentConfig(degrees=5.0, translate=0.05))
        >>> aug(torch.rand(4, 1, 32, 32)).shape
        torch.Size([4, 1, 32, 32])
    """
    if not config.enabled:
        return nn.Identity()
    import kornia.augmentation as K

    layers: list[nn.Module] = []
    if config.degrees or config.translate or config.scale != (1.0, 1.0) or config.shear:
        layers.append(
            K.RandomAffine(
                degrees=config.degrees,
                translate=(config.translate, config.translate),
                scale=config.scale,
                shear=config.shear or None,
                padding_mode="border",
                p=config.p,
            )
        )
    if config.brightness or config.contrast:
        layers.append(K.ColorJiggle(brightness=config.brightness, contrast=config.contrast, p=config.p))
    return nn.Sequential(*layers)
