"""Pins on image files an add is about to reference, so no interleaving of add and remove loses a file.

The image store is content-addressed: the same bytes added twice share one file, and a remove deletes
the file with the last row that references it. Without pins an add could find the file present (and
write nothing), a remove of the last old row could then delete it, and the add would commit a row
whose file is gone. So an add first pins the names of its files (a row of ``pending``, committed under
the writer lock), then writes the files that are missing, then commits its rows and drops its pins in
one transaction. A remove, still holding the writer lock after its commit, deletes only the files that
no row of ``items`` or ``pending`` names.

A writer killed between pinning and committing leaves pins (and at worst files no row uses); they are
harmless, and ``pairsim index check --repair`` drops pins older than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pairsim.index.images import OutsideStoreError, resolve_in_store
from pairsim.index.records import PENDING_SCHEMA

log = logging.getLogger(__name__)

#: A pin this old (seconds) belongs to a writer that died; no add takes a day between pinning and commit.
STALE_AFTER_S = 24 * 3600.0


@dataclass
class Stage:
    """The pins of one add in progress (see the module docstring); made by ``IndexStore.staging()``.

    Attributes:
        token: names this add's rows of ``pending``.
        paths: the files pinned so far (relative to the image store).
        committed: the add committed its rows (its pins went with the same transaction).
    """

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    paths: list[str] = field(default_factory=list)
    committed: bool = False


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create ``pending`` in an index written before pins existed (inside a write transaction)."""
    conn.execute(PENDING_SCHEMA)


def has_table(conn: sqlite3.Connection) -> bool:
    """Whether the database has a ``pending`` table (indexes of earlier versions have none until written)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pending'").fetchone()
    return row is not None


def pin(conn: sqlite3.Connection, token: str, paths: Iterable[str]) -> None:
    """Pin ``paths`` for the add ``token`` (inside a write transaction)."""
    now = time.time()
    conn.executemany("INSERT INTO pending (token, path, since) VALUES (?, ?, ?)", [(token, p, now) for p in paths])


def unpin(conn: sqlite3.Connection, token: str) -> list[str]:
    """Drop the pins of ``token``; returns the paths they held."""
    paths = [r[0] for r in conn.execute("SELECT DISTINCT path FROM pending WHERE token = ?", (token,))]
    conn.execute("DELETE FROM pending WHERE token = ?", (token,))
    return paths


def drop_stale(conn: sqlite3.Connection, older_than_s: float = STALE_AFTER_S) -> list[str]:
    """Drop pins older than ``older_than_s`` seconds (of killed writers); returns the paths they held."""
    cutoff = time.time() - older_than_s
    paths = [r[0] for r in conn.execute("SELECT DISTINCT path FROM pending WHERE since < ?", (cutoff,))]
    conn.execute("DELETE FROM pending WHERE since < ?", (cutoff,))
    return paths


def referenced(conn: sqlite3.Connection) -> set[str]:
    """Every path a row of ``items`` or ``pending`` names."""
    used = {r[0] for r in conn.execute("SELECT DISTINCT path FROM items")}
    if has_table(conn):
        used |= {r[0] for r in conn.execute("SELECT DISTINCT path FROM pending")}
    return used


def unreferenced(conn: sqlite3.Connection, paths: Iterable[str]) -> list[str]:
    """The ``paths`` that no row of ``items`` or ``pending`` names (their files may be deleted)."""
    wanted = sorted(set(paths))
    if not wanted:
        return []
    used: set[str] = set()
    for start in range(0, len(wanted), 500):  # SQLite caps the parameters of one statement
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        used |= {r[0] for r in conn.execute(f"SELECT path FROM items WHERE path IN ({marks})", chunk)}
        if has_table(conn):
            used |= {r[0] for r in conn.execute(f"SELECT path FROM pending WHERE path IN ({marks})", chunk)}
    return [p for p in wanted if p not in used]


def delete_files(images_dir: Path, paths: Iterable[str]) -> list[str]:
    """Delete the store files ``paths`` (call with the writer lock held, after checking
    :func:`unreferenced`); returns the paths deleted. A file already gone or outside the store is skipped."""
    deleted = []
    for path in paths:
        try:
            resolve_in_store(images_dir, path).unlink()
        except (FileNotFoundError, OutsideStoreError):
            continue
        except OSError as error:  # the rows are committed: a file left behind is only unused (check finds it)
            log.warning("could not delete unused image %s: %s", path, error)
            continue
        deleted.append(path)
    return deleted
