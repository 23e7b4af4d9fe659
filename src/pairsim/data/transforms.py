"""Tensor image transforms: resizing, and kornia augmentations for training (uint8 to float is the model's:
``pairsim.models.to_float``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AugmentConfig:
    """Random geometric and photometric jitter for training batches (none of it flips: glyphs are chiral).

    All zeros (and ``scale`` ``(1.0, 1.0)``), the default, is no augmentation.

    Attributes:
        degrees: maximum rotation, in degrees: an angle drawn in ``[-degrees, degrees]``.
        translate: maximum shift, as a fraction of the side, drawn for each axis.
        scale: ``(min, max)`` zoom factors (both 1.0: no zoom).
        shear: maximum shear parallel to the x axis, in degrees.
        brightness: maximum brightness change: a factor drawn in ``[1 - brightness, 1 + brightness]``.
        contrast: maximum contrast change: a factor drawn in ``[1 - contrast, 1 + contrast]`` (with
            ``brightness`` 0 too, no colour jitter).
        p: probability of applying the affine transform to an image, and, separately, the colour jitter.
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
