"""Fixtures of the index tests: a tiny checkpoint, a folder of images, a built index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.index.helpers import make_checkpoint, make_folder

from pairsim.index import build_index


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint, another model's checkpoint, 20 images in 4 classes, 10 more, and an index of the 20."""
    root = tmp_path_factory.mktemp("index-assets")
    assets = {
        "checkpoint": make_checkpoint(root / "model.pt"),
        "other_checkpoint": make_checkpoint(root / "other.pt", seed=1),
        "images": make_folder(root / "images"),
        "more_images": make_folder(root / "more", num_classes=2, per_class=5, seed=1),
    }
    build_index(assets["checkpoint"], str(assets["images"]), root / "index")
    assets["index"] = root / "index"
    return assets


@pytest.fixture
def index_copy(assets: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh copy of the built index, for tests that change it."""
    return Path(shutil.copytree(assets["index"], tmp_path / "index"))
