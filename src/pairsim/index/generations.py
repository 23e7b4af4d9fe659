"""Generations of an index directory's faiss file and the exclusive writer that switches them.

``vectors/gen-N.faiss`` holds generation ``N``; ``meta.generation`` in SQLite names the current one and
``meta.faiss_sha256`` the SHA-256 of its file (absent in indexes written before checksums were kept).
A writer writes generation ``N + 1`` under its own name (temporary file, fsync, rename) inside its
SQLite transaction, and the commit switches readers over; files of other generations are swept after,
while the writer still holds the lock (a sweep outside it would delete another writer's new file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pairsim._io import atomic_write
from pairsim._optional import require
from pairsim.index.errors import storage_errors


def faiss_path(directory: Path, generation: int) -> Path:
    """``directory/vectors/gen-<generation>.faiss``.

    Example:
        >>> faiss_path(Path("idx"), 12).as_posix()
        'idx/vectors/gen-00000012.faiss'
    """
    return directory / "vectors" / f"gen-{generation:08d}.faiss"


def write_faiss(index: Any, path: Path) -> str:
    """Write ``index`` to ``path`` completely (temporary file, fsync, rename) or not at all.

    Returns:
        the SHA-256 of the bytes written (recorded as ``meta.faiss_sha256``).

    Raises:
        StorageError: the disk refused the write (the temporary file is removed).
    """
    faiss = require("faiss", "the retrieval index")
    digest = hashlib.sha256()
    with storage_errors("the faiss file", path), atomic_write(path) as f:

        def write(data: bytes) -> int:
            digest.update(data)
            return f.write(data)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))
    return digest.hexdigest()


def read_faiss(path: Path) -> tuple[Any, str]:
    """The faiss index in ``path`` and the SHA-256 of the file, read once.

    Raises:
        OSError: the file is missing or unreadable.
        RuntimeError: faiss cannot parse it.
    """
    faiss = require("faiss", "the retrieval index")
    digest = hashlib.sha256()
    with open(path, "rb") as f:

        def read(size: int) -> bytes:
            data = f.read(size)
            digest.update(data)
            return data

        index = faiss.read_index(faiss.PyCallbackIOReader(read))
        for block in iter(lambda: f.read(1 << 20), b""):  # trailing bytes count as damage too
            digest.update(block)
    return index, digest.hexdigest()


@contextlib.contextmanager
def writer_lock(directory: Path, lock: threading.RLock) -> Iterator[None]:
    """One writer at a time: threads of this process through ``lock``, processes through ``flock`` on
    ``directory/.lock`` (the CLI and the service may write the same index at once)."""
    with lock, open(directory / ".lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A SQLite ``BEGIN IMMEDIATE`` transaction, committed when the block ends and rolled back when it raises.

    Raises:
        StorageError: SQLite could not write (disk full, I/O error); nothing is committed.
    """
    with storage_errors("items.sqlite"):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def sweep(directory: Path, keep: int) -> None:
    """Delete the faiss files of every generation but ``keep`` (old ones, or ones never committed).

    Call with the writer lock held: another writer's temporary file is in ``vectors/`` until its commit.
    """
    name = faiss_path(directory, keep).name
    for path in (directory / "vectors").iterdir():
        if path.name != name:
            path.unlink(missing_ok=True)
