"""Tensor transforms: conversion, resizing and the kornia augmentation pipeline."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pairsim.data.transforms import AugmentConfig, build_augmentation, resize, to_float


def test_to_float_maps_uint8_to_unit_range() -> None:
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    y = to_float(x)
    assert y.dtype == torch.float32
    assert y.min() == 0.0 and y.max() == 1.0
    torch.testing.assert_close(y * 255, x.float())


def test_resize_averages_when_shrinking_and_keeps_same_size() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[..., :2, :2] = 1.0
    torch.testing.assert_close(resize(x, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    assert resize(x, 4) is x
    assert resize(x, 8).shape == (1, 1, 8, 8)


def test_disabled_augmentation_is_the_identity() -> None:
    assert isinstance(build_augmentation(AugmentConfig()), nn.Identity)


@pytest.mark.parametrize(
    "config",
    [AugmentConfig(degrees=10.0), AugmentConfig(translate=0.1, scale=(0.8, 1.2)), AugmentConfig(brightness=0.3)],
)
def test_augmentation_changes_images_reproducibly(config: AugmentConfig) -> None:
    aug = build_augmentation(config)
    x = torch.rand(6, 1, 24, 24)
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    b = aug(x)
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, x)


def test_augmentation_works_on_rgb() -> None:
    aug = build_augmentation(AugmentConfig(degrees=5.0, contrast=0.2))
    assert aug(torch.rand(2, 3, 16, 16)).shape == (2, 3, 16, 16)
