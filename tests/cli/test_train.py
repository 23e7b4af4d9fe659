"""``pairsim train``: a YAML configuration and overrides on a small folder data set, then ``--resume``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tests.training.helpers import synthetic_images

from pairsim.cli.main import main
from pairsim.models import load_embedding_model, read_state
from pairsim.training.metrics_log import read_metrics


def write_folder(root: Path, num_classes: int = 12, per_class: int = 4) -> Path:
    images = synthetic_images(num_classes, per_class, side=16)
    for i, (image, label) in enumerate(zip(images.images, images.labels, strict=True)):
        folder = root / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.repeat(image[0][..., None], 3, axis=2)).save(folder / f"{i}.png")
    return root


def test_train_then_resume_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "images")
    out = tmp_path / "run"
    config = {
        "data": {"name": "folder", "root": str(folder), "image_size": 16, "eval_max_classes": None},
        "model": {"name": "small-cnn", "embedding_dim": 8, "pretrained": False},
        "sampler": {"classes_per_batch": 3, "samples_per_class": 2},
        "steps": 3,
        "eval_every": 3,
        "threads": 1,
        "out_dir": str(out),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))

    assert main(["train", str(path), "--set", "loss.params={m: 0.3, gamma: 32}", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained 3 steps" in printed and "precision_at_1" in printed
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["loss"]["params"] == {"m": 0.3, "gamma": 32.0}
    assert resolved["optim"]["lr"] == 1e-3  # defaults are written out too

    overrides = ["--set", "loss.params={m: 0.3, gamma: 32}", "--set", "steps=5", "--no-progress"]
    assert main(["train", str(path), *overrides, "--resume"]) == 0
    assert read_state(out / "last.pt")["step"] == 5
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl", "train")] == [1, 2, 3, 4, 5]
    model, prep = load_embedding_model(out / "last.pt")
    assert (prep.in_channels, prep.image_size, model.embedding_dim) == (3, 16, 8)


def test_unknown_config_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match="unknown key"):
        main(["--debug", "train", str(path)])  # --debug: the error itself, not its one-line report
