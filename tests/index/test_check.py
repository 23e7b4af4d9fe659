"""Damaged indexes: opening names the damage (fault 7), ``check_index`` finds it, ``repair`` fixes what is safe."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pairsim.index import IndexDamagedError, IndexStore, Searcher, check_index
from pairsim.index import vectors as fv
from pairsim.index.generations import faiss_path


def current_faiss(directory: Path) -> Path:
    return faiss_path(directory, IndexStore(directory).snapshot().generation)


def nan_in_faiss_data(directory: Path) -> None:
    """Flip bytes inside the vectors of the faiss file to 0xFF (a float32 NaN), as a bad disk would."""
    path = current_faiss(directory)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def levels(directory: Path, **kwargs: bool) -> dict[str, str]:
    return {f.check: f.level for f in check_index(directory, **kwargs).findings}


def test_a_sound_index_checks_clean(index_copy: Path) -> None:
    report = check_index(index_copy)
    assert report.ok and set(levels(index_copy).values()) == {"ok"}, report.findings


def test_nan_vectors_in_the_faiss_file_are_found_not_served_and_repaired(index_copy: Path) -> None:
    import faiss

    queries = np.stack([IndexStore(index_copy).snapshot().index.reconstruct(i) for i in (1, 7)])
    before = [[h.item.id for h in row] for row in IndexStore(index_copy).search(queries, k=5)]
    nan_in_faiss_data(index_copy)
    damaged = faiss.read_index(str(current_faiss(index_copy)))  # the precondition: it parses, with NaNs
    assert damaged.ntotal == 20 and sum(len(fv.faulty_rows(v)) for _, v in fv.stored_vectors(damaged)) > 0
    store = IndexStore(index_copy)
    assert store.info()["faiss_file"].startswith("rebuilt from items.sqlite: the faiss file does not match")
    assert [[h.item.id for h in row] for row in store.search(queries, k=5)] == before  # served from the rows
    report = check_index(index_copy)
    assert not report.ok and report.problems() == [
        f"faiss file: {current_faiss(index_copy).name} does not match its recorded SHA-256; --repair rewrites it"
    ]
    repaired = check_index(index_copy, repair=True)
    assert repaired.ok and any("wrote the faiss file again" in r for r in repaired.repairs)
    assert IndexStore(index_copy).info()["faiss_file"] == "verified"


def test_an_older_index_without_a_checksum_still_opens_and_its_nan_vectors_are_not_served(index_copy: Path) -> None:
    with sqlite3.connect(index_copy / "items.sqlite") as conn:
        conn.execute("DELETE FROM meta WHERE key = 'faiss_sha256'")
    assert IndexStore(index_copy).info()["faiss_file"].startswith("unverified")
    assert levels(index_copy)["faiss file"] == "warning" and check_index(index_copy).ok
    nan_in_faiss_data(index_copy)
    info = IndexStore(index_copy).info()
    assert "vectors that are not finite unit vectors" in info["faiss_file"]
    assert not check_index(index_copy).ok
    assert check_index(index_copy, repair=True).ok and IndexStore(index_copy).info()["faiss_file"] == "verified"


def test_damaged_embeddings_in_the_rows_too_refuse_to_open_naming_the_items(index_copy: Path) -> None:
    with sqlite3.connect(index_copy / "items.sqlite") as conn:
        conn.execute("UPDATE items SET embedding = ? WHERE id IN (3, 5)", (np.full(16, np.nan, np.float32).tobytes(),))
    nan_in_faiss_data(index_copy)
    with pytest.raises(IndexDamagedError, match=r"embeddings of 2 items are damaged \(ids 3, 5\)"):
        Searcher(index_copy).store.snapshot()
    report = check_index(index_copy, repair=True)
    assert any("ids 3, 5" in p and p.startswith("embeddings") for p in report.problems())
    IndexStore(index_copy).remove([3, 5])  # what the message says to do; then it serves again
    assert check_index(index_copy, repair=True).ok and len(IndexStore(index_copy)) == 18


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: overwrite(d / "items.sqlite"), "items.sqlite is damaged: file is not a database"),
        (lambda d: truncate(d / "items.sqlite"), "items.sqlite is damaged"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json is damaged: not JSON"),
        (lambda d: (d / "manifest.json").write_text('{"format_version": 1}'), "manifest.json is damaged: missing"),
        (lambda d: drop_meta(d), "meta has no 'generation'"),
    ],
)
def test_a_damaged_database_or_manifest_raises_index_damaged_on_open(
    index_copy: Path, damage: Callable[[Path], object], message: str
) -> None:
    damage(index_copy)
    with pytest.raises(IndexDamagedError, match=message):
        Searcher(index_copy)
    report = check_index(index_copy, repair=True)
    assert not report.ok and report.repairs == ()


def checkpoint(db: Path) -> None:
    """Move the WAL into the database file (else SQLite reads the pages from the WAL, not the damage)."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def overwrite(db: Path) -> None:
    checkpoint(db)
    db.write_bytes(b"not a database at all" * 100)


def truncate(db: Path) -> None:
    """Cut the database in the middle of its pages (a disk that lost the end of the file)."""
    checkpoint(db)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def drop_meta(directory: Path) -> None:
    with sqlite3.connect(directory / "items.sqlite") as conn:
        conn.execute("DELETE FROM meta WHERE key = 'generation'")


def test_files_rows_and_leftovers_are_reported_and_only_the_safe_ones_repaired(index_copy: Path) -> None:
    store = IndexStore(index_copy)
    first, second = store.get(1), store.get(2)
    store.image_path(first).unlink()  # a row without its file: reported, never "repaired" away
    store.image_path(second).write_bytes(b"altered")
    stray = index_copy / "images" / "zz" / "stray.png"
    stray.parent.mkdir()
    stray.write_bytes(b"no row uses me")
    (stray.parent / ".abc.png.k3j2l1.tmp").write_bytes(b"a killed writer's")
    (index_copy / "vectors" / "gen-00000099.faiss").write_bytes(b"never committed")
    report = check_index(index_copy)
    assert not report.ok
    problems = "\n".join(report.problems())
    assert "1 items have no image file (ids 1)" in problems and "1 items have an altered image file (ids 2)" in problems
    found = levels(index_copy)
    assert found["unused files"] == "warning" and found["faiss file"] == "warning"
    repaired = check_index(index_copy, repair=True)
    assert "deleted 2 files in the store that no item uses" in repaired.repairs
    assert not stray.exists() and not list((index_copy / "images").rglob("*.tmp"))
    assert [p.name for p in (index_copy / "vectors").iterdir()] == [current_faiss(index_copy).name]
    assert len(IndexStore(index_copy)) == 20  # no row removed
    assert levels(index_copy)["unused files"] == "ok" and len(check_index(index_copy).problems()) == 2


def test_repair_keeps_files_pinned_by_an_add_in_progress_and_drops_pins_of_dead_ones(index_copy: Path) -> None:
    store = IndexStore(index_copy)
    with store.staging() as stage:
        [(path, _)] = store.put_images(stage, [(b"pinned bytes", ".png")])
        assert check_index(index_copy, repair=True).repairs == ()  # the add in progress keeps its file
        assert (index_copy / "images" / path).is_file()
    assert not (index_copy / "images" / path).exists()  # the add never committed: its file went with its pins
    with store.staging() as stage:
        store.put_images(stage, [(b"of a writer that died", ".png")])
        with sqlite3.connect(index_copy / "items.sqlite") as conn:
            conn.execute("UPDATE pending SET since = ?", (time.time() - 2 * 86400,))
        assert levels(index_copy)["pins"] == "warning"
        assert check_index(index_copy, repair=True).repairs == (
            "dropped 1 pins of adds that died",
            "deleted 1 files in the store that no item uses",
        )
        stage.paths.clear()  # what a killed writer leaves: nothing to release
    assert check_index(index_copy).ok and set(levels(index_copy).values()) == {"ok"}


def test_stored_vectors_are_numpy_even_after_faiss_torch_utils_is_imported(index_copy: Path) -> None:
    """pytorch-metric-learning imports faiss.contrib.torch_utils, after which faiss hands back torch tensors."""
    import faiss
    import faiss.contrib.torch_utils  # patches faiss for the rest of the process, as PML does

    index = faiss.read_index(str(current_faiss(index_copy)))
    (_ids, vectors), *_ = fv.stored_vectors(index)
    assert isinstance(vectors, np.ndarray) and vectors.shape == (20, vectors.shape[1])
    assert len(fv.faulty_rows(vectors)) == 0
