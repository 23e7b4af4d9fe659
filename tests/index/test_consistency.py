"""Image files and rows stay consistent: add racing remove of the same image, and failing storage (ENOSPC)."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from pairsim.index import IndexStore, OutsideStoreError, Searcher, StorageError, check_index
from pairsim.index import store as store_module

REPO = Path(__file__).resolve().parents[2]
RACE_WORKER = Path(__file__).with_name("race_worker.py")


def assert_every_row_has_its_file(store: IndexStore) -> None:
    items = store.get_many(list(range(1, 10_000)))
    missing = [i for i, item in items.items() if not store.image_path(item).is_file()]
    assert missing == [], f"rows without their image file: {missing}"


def test_a_remove_between_the_file_write_and_the_commit_of_an_add_keeps_the_file(
    assets: dict[str, Path], index_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleaving of fault 4, made deterministic: the add finds the file already in the store (so it
    # writes nothing), then another writer removes the only item that referenced it, then the add commits.
    searcher = Searcher(index_copy)
    other = IndexStore(index_copy)
    old = searcher.store.get(1)
    data = searcher.store.image_path(old).read_bytes()
    add = store_module.IndexStore.add

    def add_after_a_remove(self: IndexStore, *args: object, **kwargs: object) -> list[int]:
        if self is searcher.store:
            other.remove([old.id])
        return add(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.IndexStore, "add", add_after_a_remove)
    new_id = searcher.add_bytes(data, ".png", old.label, "re-upload")
    new = searcher.store.get(new_id)
    assert new.path == old.path
    assert searcher.store.image_path(new).read_bytes() == data


def test_threads_and_processes_adding_and_removing_the_same_image_leave_no_row_without_its_file(
    assets: dict[str, Path], index_copy: Path
) -> None:
    store = IndexStore(index_copy)
    image = store.image_path(store.get(1))
    store.remove([1])  # the file goes with its last row; the workers add it again and again
    assert not image.exists()
    saved = index_copy.parent / "race.png"
    saved.write_bytes((assets["images"] / "c0" / "0.png").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    processes = [
        subprocess.Popen([sys.executable, str(RACE_WORKER), str(index_copy), str(saved), "12"], env=env)
        for _ in range(2)
    ]
    searcher = Searcher(index_copy)
    data = saved.read_bytes()
    kept: list[int] = []
    errors: list[BaseException] = []

    def rounds(keep_every: int) -> None:
        try:
            for n in range(12):
                item_id = searcher.add_bytes(data, ".png", "race", "thread")
                if n % keep_every == keep_every - 1:
                    kept.append(item_id)  # some survive, so the file must too
                else:
                    searcher.store.remove([item_id])
        except BaseException as error:  # collected: the main thread asserts there were none
            errors.append(error)

    threads = [threading.Thread(target=rounds, args=(k,)) for k in (5, 7, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for process in processes:
        assert process.wait(timeout=300) == 0
    assert errors == []
    final = IndexStore(index_copy)
    assert_every_row_has_its_file(final)
    assert len(final) == 19 + len(kept)
    assert sorted(final.get_many(kept)) == sorted(kept)
    report = check_index(index_copy, repair=True)
    assert report.ok, report.problems()
    assert check_index(index_copy).ok
    referenced = {final.image_path(item) for item in final.get_many(list(range(1, 10_000))).values()}
    stored = {p.resolve() for p in (index_copy / "images").rglob("*") if p.is_file()}
    assert stored == referenced  # no unreferenced file left, no temporary file


def fail_writes_of(monkeypatch: pytest.MonkeyPatch, pattern: str) -> None:
    """Make ``os.fsync`` of a temporary file whose name contains ``pattern`` fail as on a full disk."""
    fsync = os.fsync

    def full_disk(fd: int) -> None:
        if pattern in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)


def snapshot_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("pattern", [".png.", ".faiss."])
def test_a_full_disk_is_a_storage_error_and_leaves_the_previous_state(
    assets: dict[str, Path], index_copy: Path, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    searcher = Searcher(index_copy)
    searcher.store.remove([1])  # so the image's file is written again by the add below
    data = (assets["images"] / "c0" / "0.png").read_bytes()
    before = snapshot_files(index_copy / "images"), snapshot_files(index_copy / "vectors")
    fail_writes_of(monkeypatch, pattern)
    with pytest.raises(StorageError) as raised:
        searcher.add_bytes(data, ".png", "c0", "upload")
    assert raised.value.errno == errno.ENOSPC
    assert "No space left on device" in str(raised.value)
    monkeypatch.undo()
    assert (snapshot_files(index_copy / "images"), snapshot_files(index_copy / "vectors")) == before
    assert not [p for p in index_copy.rglob("*.tmp")]  # temporary files removed
    store = IndexStore(index_copy)
    assert len(store) == 19 and check_index(index_copy).ok
    assert store.search(np.asarray(store.snapshot().index.reconstruct(2))[None], k=1)[0][0].item.id == 2


def test_cli_reports_a_full_disk_as_one_error_line(
    assets: dict[str, Path], index_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pairsim.cli.main import main

    fail_writes_of(monkeypatch, ".png.")
    assert main(["index", "add", str(index_copy), str(assets["more_images"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no space left on device"), err
    assert len(IndexStore(index_copy)) == 20


def test_a_symlink_loop_or_an_overlong_name_in_the_store_is_refused_as_a_path_not_a_crash(index_copy: Path) -> None:
    store = IndexStore(index_copy)
    images = index_copy / "images" / "ab"
    images.mkdir(exist_ok=True)
    os.symlink("b", images / "a")
    os.symlink("a", images / "b")
    with pytest.raises(OutsideStoreError, match="loop of symbolic links"):
        store.image_path(dataclasses.replace(store.get(1), path="ab/a"))
    with pytest.raises(OutsideStoreError, match="over 255 bytes"):
        store.image_path(dataclasses.replace(store.get(1), path="ab/" + "x" * 300 + ".png"))
    report = check_index(index_copy, repair=True)  # the loop is two links no row uses: deleted, not followed
    assert report.ok and not (images / "a").is_symlink()
