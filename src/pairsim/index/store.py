"""An index directory: faiss vectors, a SQLite table of items, a manifest; updated atomically.

Layout of ``DIR``::

    manifest.json        model fingerprint, checkpoint hash, embedding dim, preprocessing (written once)
    model.pt             the embedding model (spec and weights), so the index answers image queries alone
    items.sqlite         items(id, path, label, checksum, added_at, source, embedding) and meta(key, value)
    vectors/gen-N.faiss  the faiss index of generation N (meta.generation names the current one)
    images/              the content-addressed image store (item paths are relative to it)
    .lock                taken (flock) by writers

Atomicity: an update runs in one SQLite write transaction. Inside it, the rows change, the faiss index
of the next generation is written under a new file name, and ``meta.generation`` is bumped; the commit
is the switch. A process killed at any point leaves either the old generation (its faiss file is
deleted only after the commit) or the new one; files of generations never committed are ignored and
swept by the next writer. The embeddings are kept in SQLite too, so a missing or damaged faiss file
is rebuilt from the committed rows.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pairsim._optional import require
from pairsim.index import vectors as fv
from pairsim.index.generations import faiss_path, sweep, write_faiss, write_transaction
from pairsim.index.images import resolve_in_store
from pairsim.index.manifest import Manifest, read_manifest, write_manifest
from pairsim.index.records import Hit, Item, NewItem, Snapshot, create_database


class IndexStore:
    """An open index directory (see the module docstring). Thread-safe; other processes may write too.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()) / "idx"
        >>> m = Manifest("small-cnn", "f" * 64, "c" * 64, "ckpt.pt", 2, {}, "2026-01-01T00:00:00Z")
        >>> store = IndexStore.create(d, m, kind="flat")
        >>> store.add(np.eye(2, dtype=np.float32), [NewItem("a.png", "1", "x"), NewItem("b.png", "2", "y")])
        [1, 2]
        >>> [(h.item.id, h.item.label, round(h.score, 3)) for h in store.search(np.array([[0.6, 0.8]]), k=2)[0]]
        [(2, 'y', 0.8), (1, 'x', 0.6)]
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.manifest: Manifest = read_manifest(self.directory)
        self.images_dir = self.directory / "images"
        self._db = self.directory / "items.sqlite"
        if not self._db.is_file():
            raise FileNotFoundError(f"{self.directory} has no items.sqlite; it is not a complete pairsim index")
        self._snapshot: Snapshot | None = None
        self._lock = threading.RLock()
        self._local = threading.local()

    @classmethod
    def create(cls, directory: str | Path, manifest: Manifest, kind: str = "auto") -> IndexStore:
        """Make an empty index in ``directory`` (created; must not hold an index already)."""
        directory = Path(directory)
        fv.resolve_kind(kind, 0)  # validates the name
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory} already holds an index")
        (directory / "vectors").mkdir(parents=True, exist_ok=True)
        (directory / "images").mkdir(exist_ok=True)
        write_manifest(manifest, directory)
        create_database(directory / "items.sqlite", kind)
        return cls(directory)

    # -- reading ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db, isolation_level=None, timeout=60.0)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _reader(self) -> sqlite3.Connection:
        # One connection per thread for the many small reads of a serving process.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _meta(self, conn: sqlite3.Connection) -> dict[str, str]:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def snapshot(self) -> Snapshot:
        """The latest committed generation (reloaded when another process or thread committed one)."""
        generation = int(self._meta(self._reader())["generation"])
        current = self._snapshot
        if current is not None and current.generation == generation:
            return current
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN")  # one read transaction: meta, count and vectors agree
                snap = self._load(conn)
                conn.execute("COMMIT")
            finally:
                conn.close()
            self._snapshot = snap
            return snap

    def _load(self, conn: sqlite3.Connection) -> Snapshot:
        meta = self._meta(conn)
        generation = int(meta["generation"])
        count = int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        try:
            index = fv.tune(
                require("faiss", "the retrieval index").read_index(str(faiss_path(self.directory, generation)))
            )
            if int(index.ntotal) != count or index.d != self.manifest.embedding_dim:
                raise ValueError("faiss file does not match the items table")
        except (RuntimeError, ValueError):
            # Missing or damaged file (or swept by a writer while we read): rebuild from committed rows.
            ids, vecs = self._vectors(conn)
            index = fv.build_faiss(
                meta["concrete_kind"] or fv.resolve_kind(meta["kind"], count), vecs.shape[1], vecs, ids
            )
        return Snapshot(generation, index, fv.kind_of(index))

    def _vectors(self, conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
        rows = conn.execute("SELECT id, embedding FROM items ORDER BY id").fetchall()
        dim = self.manifest.embedding_dim
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim)
        return ids, vecs

    def __len__(self) -> int:
        return int(self._reader().execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def get(self, item_id: int) -> Item:
        """The item ``item_id``.

        Raises:
            KeyError: no such item (never added, or removed).
        """
        items = self.get_many([item_id])
        if item_id not in items:
            raise KeyError(f"no item with id {item_id}")
        return items[item_id]

    def get_many(self, ids: Sequence[int]) -> dict[int, Item]:
        """The items of ``ids`` that exist, by id."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._reader().execute(
            f"SELECT id, path, label, checksum, added_at, source FROM items WHERE id IN ({marks})",
            [int(i) for i in ids],
        )
        return {row[0]: Item(*row) for row in rows}

    def image_path(self, item: Item) -> Path:
        """The stored image file of ``item`` (checked to lie inside the image store)."""
        return resolve_in_store(self.images_dir, item.path)

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The ``k`` most similar items of each query, best first.

        Args:
            queries: ``(Q, D)`` float32 unit vectors embedded by the index's model (check with
                ``manifest.check_model``).
            k: results per query (fewer when the index holds fewer items).
        """
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != self.manifest.embedding_dim:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the index {self.manifest.embedding_dim}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores, ids = fv.search(self.snapshot().index, queries, k)
        items = self.get_many(sorted({int(i) for i in ids.ravel() if i >= 0}))
        # An id missing from the table was removed after the snapshot was taken: dropped.
        return [
            [Hit(items[int(i)], float(s)) for s, i in zip(row_s, row_i, strict=True) if int(i) in items]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        """Counts and settings, for ``pairsim index info`` and ``GET /healthz``."""
        snap = self.snapshot()
        labels = self._reader().execute("SELECT COUNT(DISTINCT label) FROM items").fetchone()[0]
        return {
            "directory": str(self.directory),
            "items": len(self),
            "labels": int(labels),
            "generation": snap.generation,
            "index_kind": snap.kind,
            "embedding_dim": self.manifest.embedding_dim,
            "model": self.manifest.model_name,
            "model_fingerprint": self.manifest.model_fingerprint,
            "checkpoint_sha256": self.manifest.checkpoint_sha256,
            "preprocessing": self.manifest.preprocessing,
            "created_at": self.manifest.created_at,
        }

    # -- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The exclusive write transaction (see :mod:`pairsim.index.generations`); sweeps after the commit."""
        with self._lock:
            with write_transaction(self.directory, self._connect, self._lock) as conn:
                yield conn
            self._sweep()

    def _commit_index(self, conn: sqlite3.Connection, index: Any) -> Snapshot:
        """Write ``index`` as the next generation and bump ``meta.generation`` (inside the transaction)."""
        generation = int(self._meta(conn)["generation"]) + 1
        write_faiss(index, faiss_path(self.directory, generation))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'concrete_kind'", (fv.kind_of(index),))
        return Snapshot(generation, index, fv.kind_of(index))

    def _current(self, conn: sqlite3.Connection) -> Snapshot:
        """The committed generation as seen by ``conn``'s transaction (from memory when it is the same)."""
        snap = self._snapshot
        if snap is not None and snap.generation == int(self._meta(conn)["generation"]):
            return snap
        return self._load(conn)

    def _sweep(self) -> None:
        """Delete faiss files of other generations (old, or never committed) once a commit is done."""
        sweep(self.directory, int(self._meta(self._reader())["generation"]))

    def add(self, embeddings: np.ndarray, items: Sequence[NewItem]) -> list[int]:
        """Add items with their ``(n, D)`` float32 unit embeddings, atomically; returns their new ids.

        The image files must already be in the store (see ``pairsim.index.images.store_image``).
        """
        embeddings = np.ascontiguousarray(np.atleast_2d(embeddings), np.float32)
        if embeddings.shape != (len(items), self.manifest.embedding_dim):
            raise ValueError(
                f"embeddings {embeddings.shape} do not match {len(items)} items of dimension "
                f"{self.manifest.embedding_dim}"
            )
        for item in items:
            resolve_in_store(self.images_dir, item.path)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._writing() as conn:
            base = self._current(conn)
            ids = []
            for item, vector in zip(items, embeddings, strict=True):
                cursor = conn.execute(
                    "INSERT INTO items (path, label, checksum, added_at, source, embedding) VALUES (?, ?, ?, ?, ?, ?)",
                    (item.path, item.label, item.checksum, now, item.source, vector.tobytes()),
                )
                ids.append(int(cursor.lastrowid or 0))
            meta = self._meta(conn)
            count = int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            kind = fv.resolve_kind(meta["kind"], count)
            if base.kind == kind and int(base.index.ntotal) + len(ids) == count and not fv.outgrown(base.index, count):
                index = require("faiss", "the retrieval index").clone_index(base.index)
                index.add_with_ids(embeddings, np.asarray(ids, np.int64))
            else:  # grew past the approximate-index threshold, or an IVF index outgrew its training
                all_ids, vecs = self._vectors(conn)
                index = fv.build_faiss(kind, self.manifest.embedding_dim, vecs, all_ids)
            committed = self._commit_index(conn, fv.tune(index))
        self._snapshot = committed
        return ids

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Remove items by id, atomically (all or none); returns the ids removed.

        Raises:
            KeyError: naming the ids that do not exist (nothing is removed).
        """
        wanted = sorted({int(i) for i in ids})
        with self._writing() as conn:
            marks = ",".join("?" * len(wanted))
            found = {r[0] for r in conn.execute(f"SELECT id FROM items WHERE id IN ({marks})", wanted)}
            missing = [i for i in wanted if i not in found]
            if missing:
                raise KeyError(f"no item with id {', '.join(map(str, missing))}")
            paths = [r[0] for r in conn.execute(f"SELECT DISTINCT path FROM items WHERE id IN ({marks})", wanted)]
            conn.execute(f"DELETE FROM items WHERE id IN ({marks})", wanted)
            all_ids, vecs = self._vectors(conn)
            kind = fv.resolve_kind(self._meta(conn)["kind"], len(all_ids))
            # Rebuilding keeps every kind exact about what it holds (HNSW cannot remove in place).
            index = fv.build_faiss(kind, self.manifest.embedding_dim, vecs, all_ids)
            committed = self._commit_index(conn, index)
            still_used = {
                r[0]
                for r in conn.execute(f"SELECT path FROM items WHERE path IN ({','.join('?' * len(paths))})", paths)
            }
        self._snapshot = committed
        for path in set(paths) - still_used:  # after the commit: a kill here leaves an unused file only
            with contextlib.suppress(OSError):
                resolve_in_store(self.images_dir, path).unlink()
        return wanted
