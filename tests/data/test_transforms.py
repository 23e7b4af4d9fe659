"""Tensor transforms: conversion, resizing and the kornia augmentation pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pairsim.data.transforms import AugmentConfig, build_augmentation, resize
from pairsim.models import to_float


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


def test_to_float_gives_standard_strides_for_numpy_views() -> None:
    # A fancy-indexed (N, 1, H, W) numpy array gets strides torch reads as channels-last, and the
    # convolutions' last bits depend on the layout: a fresh build and its cache must train alike.
    base = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)[:, None]
    picked = torch.from_numpy(base[[3, 1]])
    assert picked.is_contiguous(memory_format=torch.channels_last)
    x = to_float(picked)
    assert x.stride() == (64, 64, 8, 1)
    assert torch.equal(x, torch.from_numpy(base[[3, 1]].copy()).float() / 255.0)
