"""folder: class sub-folders or a path,label CSV; corrupt files are skipped, counted and listed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairsim.data import load_dataset

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "owl": (0, 0, 255)}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_tree(root: Path) -> Path:
    """3 classes x 3 images of assorted modes and sizes, plus a corrupt and a truncated file."""
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        Image.new("RGB", (40, 30), colour).save(root / name / "a.png")
        Image.new("RGBA", (20, 50), (*colour, 255)).save(root / name / "b.png")
        Image.new("RGB", (64, 64), colour).convert("P").save(root / name / "c.gif")
    (root / "cat" / "broken.jpg").write_bytes(b"this is not a jpeg")
    truncated = (root / "dog" / "a.png").read_bytes()
    (root / "dog" / "cut.png").write_bytes(truncated[: len(truncated) // 2])
    (root / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    (root / "stray.png").write_bytes((root / "owl" / "a.png").read_bytes())  # not in a class folder
    return root


def test_class_folders(tmp_path: Path, cache: Path) -> None:
    root = make_tree(tmp_path / "photos")
    s = load_dataset("folder", "all", root, image_size=16, progress=False)
    assert s.class_keys == ("cat", "dog", "owl") and len(s) == 9
    assert s.image_shape == (3, 16, 16)
    for image, label in zip(s.images, s.labels, strict=True):
        assert tuple(image[:, 8, 8]) == COLOURS[s.class_keys[label]]
    assert len(s.skipped) == 2
    assert any("broken.jpg" in line for line in s.skipped) and any("cut.png" in line for line in s.skipped)
    (build,) = (cache / "folder").glob("build-*")
    assert json.loads((build / "report.json").read_text())["skipped"] == 2
    # A class-disjoint split works on the user's classes too.
    train, test = (load_dataset("folder", split, root, image_size=16, progress=False) for split in ("train", "test"))
    assert set(train.class_keys).isdisjoint(test.class_keys) and train.num_classes + test.num_classes == 3


def test_csv(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "photos")
    rows = ["path,label", "photos/cat/a.png,feline", "photos/cat/b.png,feline", str(root / "dog" / "a.png") + ",canine"]
    rows += ["photos/cat/broken.jpg,feline", "photos/missing.png,canine"]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    s = load_dataset("folder", "all", csv_path, image_size=8, progress=False)
    assert s.class_keys == ("canine", "feline") and np.bincount(s.labels).tolist() == [1, 2]
    assert len(s.skipped) == 2 and any("missing.png" in line for line in s.skipped)


def test_cache_follows_changes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "photos")
    assert len(load_dataset("folder", "all", root, image_size=8, progress=False)) == 9
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "owl" / "d.png")
    assert len(load_dataset("folder", "all", root, image_size=8, progress=False)) == 10


def test_empty_or_missing_folder_and_bad_csv(tmp_path: Path) -> None:
    (tmp_path / "empty" / "class-without-images").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no classes"):
        load_dataset("folder", "all", tmp_path / "empty", progress=False)
    with pytest.raises(ValueError, match="neither a directory"):
        load_dataset("folder", "all", tmp_path / "nowhere", progress=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,cat,extra\n")
    with pytest.raises(ValueError, match="expected `path,label`"):
        load_dataset("folder", "all", bad, progress=False)
