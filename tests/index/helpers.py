"""A tiny embedding model checkpoint and a folder of labelled images for the index and service tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pairsim.models import create_model, model_spec, save_state

SIDE = 16


def make_checkpoint(path: Path, seed: int = 0, dim: int = 16) -> Path:
    """A randomly initialised small CNN (1 channel, 16 px) saved the way the trainer saves its model."""
    torch.manual_seed(seed)
    model = create_model("small-cnn", embedding_dim=dim, in_channels=1)
    model.preprocessing = dataclasses.replace(model.preprocessing, image_size=SIDE)
    with torch.no_grad():  # untrained features are tiny: without the head's bias every image maps alike
        model.head.linear.bias.zero_()
    save_state({"model_spec": model_spec("small-cnn", model), "model": model.state_dict()}, path)
    return path


def make_folder(root: Path, num_classes: int = 4, per_class: int = 5, seed: int = 0) -> Path:
    """``root/c<i>/<j>.png``: a random 4x4 pattern per class, shifted and noisy, as 16 px grayscale PNGs."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 2, (num_classes, 4, 4)).repeat(4, 1).repeat(4, 2)
    for c in range(num_classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            image = np.roll(patterns[c], tuple(rng.integers(-2, 3, 2)), axis=(0, 1)) * 200.0
            image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / f"c{c}" / f"{j}.png")
    return root
