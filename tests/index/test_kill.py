"""SIGKILL during ``add`` leaves the previous consistent state (or the committed new one); the next add works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pairsim.index import IndexStore

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("kill_worker.py")


def run_worker(directory: Path, images: Path, point: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, str(WORKER), str(directory), str(images), point]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def check_consistent(directory: Path, expected_count: int) -> IndexStore:
    """Items table, faiss file and image store agree, and search answers from every item."""
    store = IndexStore(directory)
    assert len(store) == expected_count
    snap = store.snapshot()
    assert snap.index.ntotal == expected_count
    assert (directory / "vectors" / f"gen-{snap.generation:08d}.faiss").is_file()  # loaded, not rebuilt
    ids = sorted(store.get_many(list(range(1, 1000))))
    for item in store.get_many(ids).values():
        assert store.image_path(item).is_file()
    last = store.get(ids[-1])
    top = store.search(np.asarray(snap.index.reconstruct(ids[-1])[None]), k=1)[0][0]
    assert top.score == pytest.approx(1.0, abs=1e-5) and top.item.checksum == last.checksum  # or its duplicate
    return store


@pytest.mark.parametrize(
    ("point", "committed"),
    [("before_faiss_write", False), ("faiss_tmp_written", False), ("generation_bumped", False), ("committed", True)],
)
def test_sigkill_at_each_step_of_add(assets: dict[str, Path], index_copy: Path, point: str, committed: bool) -> None:
    generation = IndexStore(index_copy).snapshot().generation
    result = run_worker(index_copy, assets["more_images"], point)
    assert result.returncode == -signal.SIGKILL, result.stderr
    store = check_consistent(index_copy, 30 if committed else 20)
    assert store.snapshot().generation == generation + (1 if committed else 0)
    assert run_worker(index_copy, assets["more_images"], "none").returncode == 0  # the next add works
    check_consistent(index_copy, 40 if committed else 30)
    assert len(list((index_copy / "vectors").iterdir())) == 1  # leftovers of the killed run swept


def test_sigkill_from_outside_at_several_moments(assets: dict[str, Path], index_copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "pairsim", "index", "add", str(index_copy), str(assets["more_images"])]
    count = 20
    for delay in (1.0, 2.5, 4.0):
        process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        now = len(IndexStore(index_copy))
        assert now in (count, count + 10)  # all of the add or none of it
        count = now
        check_consistent(index_copy, count)
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    check_consistent(index_copy, count + 10)
