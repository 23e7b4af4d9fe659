"""Generations of an index directory's faiss file and the exclusive write transaction that switches them.

``vectors/gen-N.faiss`` holds generation ``N``; ``meta.generation`` in SQLite names the current one.
A writer writes generation ``N + 1`` under its own name (temporary file, fsync, rename) inside its
SQLite transaction, and the commit switches readers over; files of other generations are swept after.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pairsim._io import atomic_write
from pairsim._optional import require


def faiss_path(directory: Path, generation: int) -> Path:
    """``directory/vectors/gen-<generation>.faiss``.

    Example:
        >>> faiss_path(Path("idx"), 12).as_posix()
        'idx/vectors/gen-00000012.faiss'
    """
    return directory / "vectors" / f"gen-{generation:08d}.faiss"


def write_faiss(index: Any, path: Path) -> None:
    """Write ``index`` to ``path`` completely (temporary file, fsync, rename) or not at all."""
    faiss = require("faiss", "the retrieval index")
    with atomic_write(path) as f:
        faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))


@contextlib.contextmanager
def write_transaction(
    directory: Path, connect: Callable[[], sqlite3.Connection], lock: threading.RLock
) -> Iterator[sqlite3.Connection]:
    """One writer at a time (threads: ``lock``; processes: ``flock`` on ``directory/.lock``), inside a
    SQLite ``BEGIN IMMEDIATE`` transaction committed when the block ends and rolled back when it raises."""
    with lock, open(directory / ".lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        conn = connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()


def sweep(directory: Path, keep: int) -> None:
    """Delete the faiss files of every generation but ``keep`` (old ones, or ones never committed)."""
    name = faiss_path(directory, keep).name
    for path in (directory / "vectors").iterdir():
        if path.name != name:
            path.unlink(missing_ok=True)
