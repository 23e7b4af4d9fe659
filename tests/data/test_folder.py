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
    with pytest.raises(ValueError, match="split 'extra' is not one of train, val, test"):
        load_dataset("folder", "train", root=bad)
    bad.write_text("a.png,cat,train,more\n")
    with pytest.raises(ValueError, match="expected `path,label`"):
        load_dataset("folder", "all", bad, progress=False)


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (value, value, value)).save(path)


def test_train_val_test_folders_name_the_splits(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    layout = {"train": ["a", "b", "c"], "val": ["d"], "test": ["e", "f"]}
    for split, classes in layout.items():
        for i, name in enumerate(classes):
            _png(root / split / name / "1.png", 40 * i)
            _png(root / split / name / "2.png", 40 * i + 10)
    for split, expected in [*layout.items(), ("trainval", ["a", "b", "c", "d"])]:
        s = load_dataset("folder", split, root, image_size=8, folds=4, fold=2, progress=False)
        assert s.class_keys == tuple(expected) and len(s.labels) == 2 * len(expected)
    everything = load_dataset("folder", "all", root, image_size=8, progress=False)
    assert len(everything.class_keys) == 6  # the split folders are not classes


def test_a_split_column_in_the_csv(tmp_path: Path) -> None:
    rows = ["path,label,split"]
    for name, split in [("a", "train"), ("b", "train"), ("c", "val"), ("d", "test")]:
        for j in range(2):
            _png(tmp_path / "img" / f"{name}{j}.png", 30 * j)
            rows.append(f"img/{name}{j}.png,{name},{split}")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    assert load_dataset("folder", "val", csv_path, image_size=8, folds=4, progress=False).class_keys == ("c",)
    assert load_dataset("folder", "test", csv_path, image_size=8, progress=False).class_keys == ("d",)
    assert load_dataset("folder", "train", csv_path, image_size=8, folds=4, progress=False).class_keys == ("a", "b")
    csv_path.write_text("\n".join([*rows, "img/a0.png,a,test"]) + "\n")
    with pytest.raises(ValueError, match="class 'a' is in two splits"):
        load_dataset("folder", "train", csv_path, image_size=8, progress=False)
    csv_path.write_text("\n".join([*rows, "img/a0.png,z"]) + "\n")
    with pytest.raises(ValueError, match="some images name their split"):
        load_dataset("folder", "train", csv_path, image_size=8, progress=False)


def test_test_ratio_zero_trains_on_every_class(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for i in range(6):
        _png(root / f"c{i}" / "1.png", 30 * i)
    assert len(load_dataset("folder", "train", root, image_size=8, test_ratio=0.0, progress=False).class_keys) == 6
    with pytest.raises(ValueError, match="split 'test' of data set 'folder' has no classes"):
        load_dataset("folder", "test", root, image_size=8, test_ratio=0.0, progress=False)
