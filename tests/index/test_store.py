"""IndexStore: search equals brute force, updates, reloads, rebuilds, and the image-store boundary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pairsim.index import IndexStore, Manifest, ModelMismatchError, NewItem, OutsideStoreError
from pairsim.index import vectors as fv
from pairsim.index.images import resolve_in_store

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def new_store(directory: Path, kind: str = "flat", dim: int = DIM) -> IndexStore:
    manifest = Manifest("small-cnn", "f" * 64, "c" * 64, "ckpt.pt", dim, {}, "2026-01-01T00:00:00Z")
    return IndexStore.create(directory, manifest, kind=kind)


def items(n: int, start: int = 0) -> list[NewItem]:
    return [NewItem(f"x/{start + i}.png", f"sum{start + i}", f"l{(start + i) % 5}") for i in range(n)]


def brute_force(db: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    scores = queries @ db.T  # (Q, N)
    return [ids[np.argsort(-row, kind="stable")[:k]].tolist() for row in scores]


def test_flat_search_equals_brute_force_topk(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = new_store(tmp_path / "i")
    db = unit(rng, 300)
    ids = np.asarray(store.add(db[:200], items(200)) + store.add(db[200:], items(100, 200)))
    queries = unit(rng, 20)
    hits = store.search(queries, k=10)
    assert [[h.item.id for h in row] for row in hits] == brute_force(db, ids, queries, 10)
    expected_scores = np.sort(queries @ db.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose([[h.score for h in row] for row in hits], expected_scores, rtol=1e-5, atol=1e-6)


def test_search_after_remove_equals_brute_force_over_the_rest(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = new_store(tmp_path / "i")
    db = unit(rng, 100)
    ids = np.asarray(store.add(db, items(100)))
    gone = ids[::3].tolist()
    assert store.remove(gone) == sorted(gone)
    keep = ~np.isin(ids, gone)
    queries = unit(rng, 5)
    got = [[h.item.id for h in row] for row in store.search(queries, k=7)]
    assert got == brute_force(db[keep], ids[keep], queries, 7)
    assert len(store) == int(keep.sum())
    with pytest.raises(KeyError, match=f"no item with id {gone[0]}"):
        store.get(gone[0])


def test_remove_with_an_unknown_id_removes_nothing(tmp_path: Path) -> None:
    store = new_store(tmp_path / "i")
    ids = store.add(unit(np.random.default_rng(2), 3), items(3))
    with pytest.raises(KeyError, match="no item with id 99"):
        store.remove([ids[0], 99])
    assert len(store) == 3 and store.snapshot().index.ntotal == 3


def test_ids_are_never_reused(tmp_path: Path) -> None:
    store = new_store(tmp_path / "i")
    rng = np.random.default_rng(3)
    first = store.add(unit(rng, 2), items(2))
    store.remove([first[1]])
    assert store.add(unit(rng, 1), items(1, 2)) == [first[1] + 1]


def test_k_larger_than_the_collection_and_empty_index(tmp_path: Path) -> None:
    store = new_store(tmp_path / "i")
    assert store.search(unit(np.random.default_rng(4), 1), k=5) == [[]]
    store.add(unit(np.random.default_rng(5), 3), items(3))
    assert len(store.search(unit(np.random.default_rng(6), 1), k=5)[0]) == 3
    with pytest.raises(ValueError, match="k must be >= 1"):
        store.search(unit(np.random.default_rng(6), 1), k=0)
    with pytest.raises(ValueError, match="dimension 8"):
        store.search(np.ones((1, 8), np.float32), k=1)


def test_reopened_store_and_lost_faiss_file_give_the_same_answers(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = new_store(tmp_path / "i")
    store.add(unit(rng, 50), items(50))
    store.remove([3, 4])
    queries = unit(rng, 4)
    before = [[(h.item.id, round(h.score, 5)) for h in row] for row in store.search(queries, k=5)]
    assert [
        [(h.item.id, round(h.score, 5)) for h in row] for row in IndexStore(tmp_path / "i").search(queries, 5)
    ] == before
    files = list((tmp_path / "i" / "vectors").iterdir())
    assert [f.name for f in files] == ["gen-00000002.faiss"]  # older generations swept
    files[0].write_bytes(b"damaged")
    rebuilt = IndexStore(tmp_path / "i")
    assert [[(h.item.id, round(h.score, 5)) for h in row] for row in rebuilt.search(queries, 5)] == before


def test_a_commit_by_another_writer_is_seen(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    reader = new_store(tmp_path / "i")
    reader.add(unit(rng, 5), items(5))
    writer = IndexStore(tmp_path / "i")
    new_id = writer.add(unit(rng, 1), items(1, 5))[0]
    assert len(reader) == 6 and reader.snapshot().index.ntotal == 6
    assert new_id in {h.item.id for h in reader.search(unit(rng, 1), k=6)[0]}


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_most_of_the_exact_neighbours(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(9)
    store = new_store(tmp_path / "i", kind=kind)
    db = unit(rng, 400)
    ids = np.asarray(store.add(db, items(400)))
    assert store.snapshot().kind == kind
    queries = unit(rng, 20)
    exact = brute_force(db, ids, queries, 10)
    got = [[h.item.id for h in row] for row in store.search(queries, k=10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact, strict=True)])
    assert recall >= 0.9


def test_auto_switches_to_hnsw_when_the_collection_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fv, "AUTO_APPROXIMATE_AT", 30)
    store = new_store(tmp_path / "i", kind="auto")
    rng = np.random.default_rng(10)
    store.add(unit(rng, 20), items(20))
    assert store.snapshot().kind == "flat"
    store.add(unit(rng, 20), items(20, 20))
    assert store.snapshot().kind == "hnsw" and store.snapshot().index.ntotal == 40


def test_create_refuses_an_existing_index_and_unknown_kinds(tmp_path: Path) -> None:
    new_store(tmp_path / "i")
    with pytest.raises(FileExistsError):
        new_store(tmp_path / "i")
    with pytest.raises(ValueError, match="unknown index kind"):
        new_store(tmp_path / "j", kind="lsh")
    with pytest.raises(FileNotFoundError, match="not a pairsim index"):
        IndexStore(tmp_path / "nothing")


def test_manifest_refuses_another_model() -> None:
    manifest = Manifest("small-cnn", "a" * 64, "b" * 64, "x.pt", 8, {}, "t")
    manifest.check_model("a" * 64)
    with pytest.raises(ModelMismatchError, match="not the model of this index"):
        manifest.check_model("b" * 64)


@pytest.mark.parametrize("path", ["../manifest.json", "/etc/passwd", "a/../../x", "", "link/secret", "."])
def test_paths_that_leave_the_image_store_are_refused(tmp_path: Path, path: str) -> None:
    store_dir = tmp_path / "images"
    store_dir.mkdir()
    os.symlink(tmp_path, store_dir / "link")
    with pytest.raises(OutsideStoreError, match="leaves the image store"):
        resolve_in_store(store_dir, path)
    assert resolve_in_store(store_dir, "ab/c.png") == (store_dir / "ab" / "c.png").resolve()


def test_add_refuses_item_paths_outside_the_store(tmp_path: Path) -> None:
    store = new_store(tmp_path / "i")
    with pytest.raises(OutsideStoreError):
        store.add(unit(np.random.default_rng(11), 1), [NewItem("../../evil.png", "x")])
    assert len(store) == 0


def test_ivf_is_retrained_when_the_collection_outgrows_it(tmp_path: Path) -> None:
    import faiss

    store = new_store(tmp_path / "i", kind="ivf")
    rng = np.random.default_rng(12)
    store.add(unit(rng, 40), items(40))
    assert faiss.downcast_index(store.snapshot().index.index).nlist == 1
    store.add(unit(rng, 2000), items(2000, 40))
    assert faiss.downcast_index(store.snapshot().index.index).nlist == fv.ivf_cells(2040) > 1
    assert store.snapshot().index.ntotal == 2040


@pytest.mark.parametrize("link", ["file", "directory", "store"])
def test_a_store_name_behind_a_link_out_of_the_store_is_refused(tmp_path: Path, link: str) -> None:
    """Names the store makes take a fast path; a symbolic link anywhere on it still sends them to the check."""
    outside = tmp_path / "outside"
    (outside / "ab").mkdir(parents=True)
    name = "ab/" + "ab" * 32 + ".png"
    (outside / name).write_bytes(b"secret")
    store_dir = tmp_path / "index" / "images"
    if link == "store":
        store_dir.parent.mkdir()
        store_dir.symlink_to(outside, target_is_directory=True)
        # The store itself a link: its target is the store, so the name is inside it.
        assert resolve_in_store(store_dir, name) == (outside / name).resolve()
        return
    (store_dir / "ab").mkdir(parents=True) if link == "file" else store_dir.mkdir(parents=True)
    if link == "file":
        (store_dir / name).symlink_to(outside / name)
    else:
        (store_dir / "ab").symlink_to(outside / "ab", target_is_directory=True)
    with pytest.raises(OutsideStoreError, match="leaves the image store"):
        resolve_in_store(store_dir, name)
    assert resolve_in_store(store_dir, "cd/" + "cd" * 32 + ".png").parent.name == "cd"
