"""The records of an index directory: the SQLite schema and the typed rows handed to callers."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairsim.index.errors import IndexDamagedError

SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a removed id is never given again
    path TEXT NOT NULL,
    label TEXT,
    checksum TEXT NOT NULL,
    added_at TEXT NOT NULL,
    source TEXT,
    embedding BLOB NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Pins on image files an add is about to reference (see :mod:`pairsim.index.staging`); created by the
#: first writer in indexes made before it existed.
PENDING_SCHEMA = "CREATE TABLE IF NOT EXISTS pending (token TEXT NOT NULL, path TEXT NOT NULL, since REAL NOT NULL)"
ITEM_COLUMNS = ("id", "path", "label", "checksum", "added_at", "source", "embedding")
META_KEYS = ("generation", "kind", "concrete_kind")


@dataclass(frozen=True)
class NewItem:
    """An item to add; ``path`` is relative to the image store."""

    path: str
    checksum: str
    label: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Item:
    """A row of the items table (without its embedding)."""

    id: int
    path: str
    label: str | None
    checksum: str
    added_at: str
    source: str | None


@dataclass(frozen=True)
class Hit:
    """One search result."""

    item: Item
    score: float


@dataclass(frozen=True)
class Snapshot:
    """A committed generation held in memory; replaced, never changed, by updates."""

    generation: int
    index: Any  # faiss.IndexIDMap2
    kind: str
    #: how the faiss file was found: verified by its checksum, unverified (written before checksums), or
    #: rebuilt in memory from the rows of items.sqlite and why.
    note: str = "verified"


def create_database(path: Path, kind: str) -> None:
    """The empty items table and the meta rows of generation 0, in WAL mode (readers never wait for a writer)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in (*SCHEMA.split(";"), PENDING_SCHEMA):
            if statement.strip():
                conn.execute(statement)
        rows = [("generation", "0"), ("kind", kind), ("concrete_kind", "")]
        conn.executemany("INSERT INTO meta VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def database_problems(conn: sqlite3.Connection, integrity: str = "quick_check") -> list[str]:
    """What is wrong with an index database: SQLite's ``PRAGMA quick_check`` (or ``integrity_check``),
    missing tables, columns or meta rows; empty when it is sound.

    Raises:
        sqlite3.DatabaseError: the file is not a SQLite database, or SQLite cannot read it.
    """
    result = [str(r[0]) for r in conn.execute(f"PRAGMA {integrity}").fetchall()]
    if result != ["ok"]:
        return [f"SQLite {integrity}: {line}" for line in result[:5]]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if missing_tables := sorted({"items", "meta"} - tables):
        return [f"no table {', '.join(missing_tables)}"]
    columns = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
    problems = [f"items has no column {c}" for c in ITEM_COLUMNS if c not in columns]
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    problems += [f"meta has no {key!r}" for key in META_KEYS if key not in meta]
    if not str(meta.get("generation", "0")).isdigit():
        problems.append(f"meta generation is {meta['generation']!r}")
    return problems


def verify_database(path: Path) -> None:
    """Raise :class:`IndexDamagedError` naming what is wrong unless ``path`` is a sound index database."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=60.0)
        try:
            problems = database_problems(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        code = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
        if code not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise
        problems = [str(error)]
    if problems:
        raise IndexDamagedError(damaged_message(path, problems))


def damaged_message(path: Path, problems: Sequence[str]) -> str:
    """One line: which file is damaged, how, and what to run."""
    return (
        f"{path} is damaged: {'; '.join(problems)}; run `pairsim index check {path.parent}` "
        "(restore the index from a backup, or build it again)"
    )
