"""A run reads its training folds and its validation fold, never the test classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.cli.test_train import write_folder

import pairsim.training.run as run_module
from pairsim.data import ImageSet, load_dataset
from pairsim.training.config import load_config
from pairsim.training.run import train


def test_training_loads_train_and_val_but_no_test_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "images", num_classes=24, per_class=4)
    loaded: list[ImageSet] = []

    def recording(*args: Any, **kwargs: Any) -> ImageSet:
        image_set = load_dataset(*args, **kwargs)
        loaded.append(image_set)
        return image_set

    monkeypatch.setattr(run_module, "load_dataset", recording)
    overrides = [
        "data.name=folder",
        f"data.root={folder}",
        "data.image_size=16",
        "data.folds=3",
        "data.fold=1",
        "data.eval_max_classes=null",
        "model.name=small-cnn",
        "model.pretrained=false",
        "model.embedding_dim=8",
        "sampler.classes_per_batch=4",
        "sampler.samples_per_class=2",
        "steps=2",
        "eval_every=1",
        "threads=1",
        f"out_dir={tmp_path / 'run'}",
    ]
    result = train(load_config(None, overrides), progress=False)
    assert [s.split for s in loaded] == ["train", "val"]
    test = load_dataset("folder", "test", folder, image_size=16, progress=False)
    seen = set(loaded[0].class_keys) | set(loaded[1].class_keys)
    assert seen.isdisjoint(test.class_keys) and len(test.class_keys) == 12
    assert set(loaded[0].class_keys).isdisjoint(loaded[1].class_keys) and len(loaded[1].class_keys) == 4
    assert result.best_checkpoint is not None and result.final_eval is not None  # chosen on the val fold
