"""The records of an index directory: the SQLite schema and the typed rows handed to callers."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def create_database(path: Path, kind: str) -> None:
    """The empty items table and the meta rows of generation 0, in WAL mode (readers never wait for a writer)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        rows = [("generation", "0"), ("kind", kind), ("concrete_kind", "")]
        conn.executemany("INSERT INTO meta VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
