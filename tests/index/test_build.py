"""Building from images and answering image queries with the index's model (and only with it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairsim.data.base import ImageSet
from pairsim.index import (
    ImageDecodeError,
    IndexStore,
    ModelMismatchError,
    Searcher,
    add_images,
    build_index,
    decode_image,
    load_model,
)
from pairsim.index.build import embed
from pairsim.index.images import encode_png
from pairsim.models import Preprocessing


def test_built_index_holds_every_image_with_its_label(assets: dict[str, Path]) -> None:
    store = IndexStore(assets["index"])
    assert len(store) == 20
    labels = sorted(item.label or "" for item in store.get_many(list(range(1, 21))).values())
    assert labels == sorted(f"c{c}" for c in range(4) for _ in range(5))
    info = store.info()
    assert info["items"] == 20 and info["labels"] == 4 and info["index_kind"] == "flat" and info["embedding_dim"] == 16


def test_each_indexed_image_finds_itself_first_and_the_ranking_is_brute_force(assets: dict[str, Path]) -> None:
    searcher = Searcher(assets["index"])
    files = sorted(assets["images"].rglob("*.png"))
    model = load_model(assets["checkpoint"])
    db = embed(model.model, np.stack([decode_image(f.read_bytes(), model.preprocessing) for f in files]))
    for row, file in enumerate(files[:6]):
        hits = searcher.search_bytes(file.read_bytes(), k=5)
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert Path(hits[0].item.source or "") == file
        expected = np.sort(db @ db[row])[::-1][:5]
        np.testing.assert_allclose([h.score for h in hits], expected, atol=1e-5)


def test_search_refuses_a_query_model_other_than_the_index_model(assets: dict[str, Path]) -> None:
    with pytest.raises(ModelMismatchError, match="not the model of this index"):
        Searcher(assets["index"], checkpoint=assets["other_checkpoint"])
    Searcher(assets["index"], checkpoint=assets["checkpoint"])  # the same model is fine


def test_add_from_folder_and_csv_and_refuses_another_model(assets: dict[str, Path], index_copy: Path) -> None:
    assert add_images(index_copy, str(assets["more_images"])).total == 30
    csv = assets["more_images"] / "list.csv"
    csv.write_text("path,label\nc0/0.png,new-label\nc1/1.png,other\n")
    result = add_images(index_copy, str(csv))
    assert (result.added, result.total) == (2, 32)
    assert {item.label for item in IndexStore(index_copy).get_many([31, 32]).values()} == {"new-label", "other"}
    with pytest.raises(ModelMismatchError):
        add_images(index_copy, str(assets["more_images"]), checkpoint=assets["other_checkpoint"])
    assert len(IndexStore(index_copy)) == 32


def test_build_from_an_image_set_and_refuses_an_existing_directory(assets: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 1, 16, 16), dtype=np.uint8)
    image_set = ImageSet(images, np.array([0, 0, 1, 1, 2, 2]), ("a", "b", "c"), tuple("uvwxyz"), "toy", "test")
    result = build_index(assets["checkpoint"], image_set, tmp_path / "idx", kind="hnsw")
    store = IndexStore(tmp_path / "idx")
    assert result.added == 6 and store.snapshot().kind == "hnsw"
    stored = store.get(3)
    assert stored.label == "b" and stored.source == "toy:test:w"
    assert np.array_equal(np.asarray(Image.open(store.image_path(stored)))[None], images[2])
    with pytest.raises(FileExistsError, match="exists"):
        build_index(assets["checkpoint"], image_set, tmp_path / "idx")
    assert not list(tmp_path.glob(".idx.*"))


def test_a_failed_build_leaves_nothing(assets: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither an existing folder"):
        build_index(assets["checkpoint"], "no-such-thing:test", tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []


def png(size: tuple[int, int] = (20, 30), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format="PNG")
    return out.getvalue()


def test_decode_image_fits_and_refuses_bad_bytes() -> None:
    prep = Preprocessing(in_channels=3, backbone_channels=3, image_size=8)
    assert decode_image(png(), prep).shape == (3, 8, 8)
    assert decode_image(png(mode="LA"), Preprocessing(1, 1, image_size=8)).shape == (1, 8, 8)
    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        decode_image(b"GIF89a not really", prep)
    with pytest.raises(ImageDecodeError):
        decode_image(png((64, 64))[:-40], prep)  # truncated
    pixels = np.arange(48, dtype=np.uint8).reshape(3, 4, 4)
    assert np.array_equal(decode_image(encode_png(pixels), Preprocessing(3, 3, image_size=4)), pixels)


def test_build_demo_index_uses_given_embeddings_and_says_how_to_serve(assets: dict[str, Path], tmp_path: Path) -> None:
    from pairsim.jobs.demo import build_demo_index

    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (5, 1, 16, 16), dtype=np.uint8)
    image_set = ImageSet(images, np.array([0, 0, 1, 1, 2]), ("a", "b", "c"), tuple("vwxyz"), "toy", "test")
    model = load_model(assets["checkpoint"])
    vectors = embed(model.model, images)
    said: list[str] = []
    out = tmp_path / "runs" / "demo" / "index"
    out.mkdir(parents=True)
    (out / "old-file").write_text("replaced")
    result = build_demo_index(assets["checkpoint"], image_set, out, embeddings=vectors, say=said.append)
    assert result.added == 5 and not (out / "old-file").exists()
    assert any(f"pairsim serve {out}" in line for line in said)
    store = IndexStore(out)
    stored = np.stack([store.snapshot().index.reconstruct(i) for i in range(1, 6)])
    np.testing.assert_array_equal(stored, vectors)
    with pytest.raises(ValueError, match="as many images"):
        build_demo_index(assets["checkpoint"], image_set, tmp_path / "x", embeddings=vectors[:3], say=said.append)


def test_a_new_index_fsyncs_each_image_and_image_directory_before_it_appears(
    assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The images of a new index are fsynced once each, by the build's directory commit (not twice), and
    the store's sub-directories too, all before the index directory is renamed into place."""
    import os

    import pairsim._io as io_module

    synced: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename
    renamed: list[int] = []  # how many fsyncs had happened when the index directory was renamed

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def rename(src: str | Path, dst: str | Path) -> None:
        renamed.append(len(synced))
        real_rename(src, dst)

    monkeypatch.setattr(io_module.os, "fsync", fsync)
    monkeypatch.setattr(io_module.os, "rename", rename)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (8, 1, 16, 16), dtype=np.uint8)
    image_set = ImageSet(images, np.arange(8) // 2, ("a", "b", "c", "d"), tuple("stuvwxyz"), "toy", "test")
    build_index(assets["checkpoint"], image_set, tmp_path / "idx")
    image_syncs = [p for p in synced if "/images/" in p and p.endswith(".png")]
    assert len(image_syncs) == 8 == len(set(image_syncs))  # once each
    image_dirs = {str(Path(p).parent) for p in image_syncs}
    assert image_dirs <= set(synced)  # each images/ab/ directory entry made durable too
    assert renamed and renamed[0] == len(synced) - 1  # all of it before the rename; the parent after
