"""An index directory: faiss vectors, a SQLite table of items, a manifest; updated atomically.

Layout of ``DIR``::

    manifest.json        model fingerprint, checkpoint hash, embedding dim, preprocessing (written once)
    model.pt             the embedding model (spec and weights), so the index answers image queries alone
    items.sqlite         items(id, path, label, checksum, added_at, source, embedding), meta(key, value),
                         pending(token, path, since): pins of adds in progress (see pairsim.index.staging)
    vectors/gen-N.faiss  the faiss index of generation N (meta.generation names the current one)
    images/              the content-addressed image store (item paths are relative to it)
    .lock                taken (flock) by writers

Atomicity: an update runs in one SQLite write transaction. Inside it, the rows change, the faiss index
of the next generation is written under a new file name, and ``meta.generation`` is bumped; the commit
is the switch. A process killed at any point leaves either the old generation (its faiss file is
deleted only after the commit) or the new one; files of generations never committed are ignored and
swept by the next writer. The embeddings are kept in SQLite too, so a missing or damaged faiss file
(its SHA-256 is recorded in ``meta.faiss_sha256``) is rebuilt in memory from the committed rows.

Image files and rows change together: an add pins its files' names before writing them and commits its
rows with the pins' removal; a remove deletes, under the writer lock and after its commit, only the
files no row or pin names (:mod:`pairsim.index.staging`). Opening checks the manifest's schema and the
database (``PRAGMA quick_check``) and raises :class:`IndexDamagedError` naming what is damaged.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pairsim.index import staging
from pairsim.index import vectors as fv
from pairsim.index.errors import StorageError, storage_errors
from pairsim.index.generations import faiss_path, sweep, transaction, write_faiss, writer_lock
from pairsim.index.images import image_name, resolve_in_store, store_image, sync_store_directories
from pairsim.index.manifest import Manifest, read_manifest, write_manifest
from pairsim.index.records import Hit, Item, NewItem, Snapshot, create_database, verify_database
from pairsim.index.snapshots import grown_index, load_snapshot, meta, read_vectors
from pairsim.index.staging import Stage

log = logging.getLogger(__name__)


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
        verify_database(self._db)
        self._snapshot: Snapshot | None = None
        # False only while a new index is built in a temporary directory that is fsynced as a whole
        # before it is renamed into place (build_index): 27k fsyncs were half of the demo's index build.
        self.sync_each_image = True
        self._lock = threading.RLock()
        self._local = threading.local()

    @classmethod
    def create(cls, directory: str | Path, manifest: Manifest, kind: str = "auto") -> IndexStore:
        """Make an empty index in ``directory`` (created; must not hold an index already)."""
        directory = Path(directory)
        fv.resolve_kind(kind, 0)  # validates the name
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory} already holds an index")
        with storage_errors("a new index", directory):
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
        return meta(conn)

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
        return load_snapshot(conn, self.directory, self.manifest.embedding_dim)

    def _vectors(self, conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
        return read_vectors(conn, self.directory, self.manifest.embedding_dim)

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
            "faiss_file": snap.note,
        }

    # -- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """A connection of the one writer (threads and processes wait their turn; see ``writer_lock``)."""
        with writer_lock(self.directory, self._lock):
            conn = self._connect()
            try:
                yield conn
            finally:
                conn.close()

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        with transaction(conn):
            staging.ensure_table(conn)
            yield conn

    def _commit_index(self, conn: sqlite3.Connection, index: Any) -> Snapshot:
        """Write ``index`` as the next generation and bump ``meta.generation`` (inside the transaction)."""
        generation = int(self._meta(conn)["generation"]) + 1
        digest = write_faiss(index, faiss_path(self.directory, generation))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'concrete_kind'", (fv.kind_of(index),))
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('faiss_sha256', ?)", (digest,))
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

    @contextlib.contextmanager
    def staging(self) -> Iterator[Stage]:
        """Pins for the files of one add (see :mod:`pairsim.index.staging`): write them with
        :meth:`put_images`, commit with ``add(..., stage=stage)``; pins and files of an add that did not
        commit are dropped when the block ends."""
        stage = Stage()
        try:
            yield stage
        finally:
            if stage.paths and not stage.committed:
                try:
                    with self._locked() as conn:
                        with self._transaction(conn):
                            paths = staging.unpin(conn, stage.token)
                        staging.delete_files(self.images_dir, staging.unreferenced(conn, paths))
                except (StorageError, sqlite3.Error) as error:  # leaves pins only; `index check --repair` drops them
                    log.warning("could not drop the pins of a failed add: %s", error)

    def put_images(self, stage: Stage, images: Sequence[tuple[bytes, str]]) -> list[tuple[str, str]]:
        """Pin, then write the image files ``(data, suffix)`` that are not in the store yet.

        Returns:
            ``(path relative to the store, checksum)`` of each image.

        Raises:
            StorageError: the disk refused a write (the files written stay pinned until the stage ends).
        """
        named = [image_name(data, suffix) for data, suffix in images]
        with self._locked() as conn, self._transaction(conn):
            staging.pin(conn, stage.token, sorted({path for path, _ in named}))
        stage.paths += [path for path, _ in named]
        for data, suffix in images:
            store_image(self.images_dir, data, suffix, durable=self.sync_each_image)
        if self.sync_each_image:
            sync_store_directories(self.images_dir, [path for path, _ in named])
        return named

    def add(self, embeddings: np.ndarray, items: Sequence[NewItem], stage: Stage | None = None) -> list[int]:
        """Add items with their ``(n, D)`` float32 unit embeddings, atomically; returns their new ids.

        The image files must already be in the store: written by :meth:`put_images` into ``stage``
        (whose pins this commit drops), so that no concurrent remove can delete them first.

        Raises:
            ValueError: the embeddings are not ``(n, D)`` finite unit vectors.
            StorageError: the disk refused a write; nothing is committed.
        """
        embeddings = np.ascontiguousarray(np.atleast_2d(embeddings), np.float32)
        if embeddings.shape != (len(items), self.manifest.embedding_dim):
            raise ValueError(
                f"embeddings {embeddings.shape} do not match {len(items)} items of dimension "
                f"{self.manifest.embedding_dim}"
            )
        if len(bad := fv.faulty_rows(embeddings)):
            raise ValueError(f"embeddings must be finite unit vectors; rows {bad[:10].tolist()} are not")
        for item in items:
            resolve_in_store(self.images_dir, item.path)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._locked() as conn:
            with self._transaction(conn):
                self._check_staged(stage)
                ids = [self._insert(conn, item, vector, now) for item, vector in zip(items, embeddings, strict=True)]
                committed = self._commit_index(
                    conn, fv.tune(grown_index(conn, self._current(conn), self.directory, embeddings, ids))
                )
                if stage is not None:
                    staging.unpin(conn, stage.token)
            if stage is not None:
                stage.committed = True
            self._snapshot = committed
            self._sweep()
        return ids

    def _check_staged(self, stage: Stage | None) -> None:
        """The files of ``stage`` are in the store (they are pinned; a missing one was deleted by hand)."""
        for path in sorted(set(stage.paths if stage else ())):
            if not resolve_in_store(self.images_dir, path).is_file():
                raise StorageError(
                    errno.ENOENT, "image file vanished from the store before its row was committed", path
                )

    @staticmethod
    def _insert(conn: sqlite3.Connection, item: NewItem, vector: np.ndarray, now: str) -> int:
        cursor = conn.execute(
            "INSERT INTO items (path, label, checksum, added_at, source, embedding) VALUES (?, ?, ?, ?, ?, ?)",
            (item.path, item.label, item.checksum, now, item.source, vector.tobytes()),
        )
        return int(cursor.lastrowid or 0)

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Remove items by id, atomically (all or none); returns the ids removed.

        Their image files are deleted when no other item (or add in progress) uses them.

        Raises:
            KeyError: naming the ids that do not exist (nothing is removed).
            StorageError: the disk refused a write; nothing is removed.
        """
        wanted = sorted({int(i) for i in ids})
        marks = ",".join("?" * len(wanted))
        with self._locked() as conn:
            with self._transaction(conn):
                found = {r[0] for r in conn.execute(f"SELECT id FROM items WHERE id IN ({marks})", wanted)}
                if missing := [i for i in wanted if i not in found]:
                    raise KeyError(f"no item with id {', '.join(map(str, missing))}")
                paths = [r[0] for r in conn.execute(f"SELECT DISTINCT path FROM items WHERE id IN ({marks})", wanted)]
                conn.execute(f"DELETE FROM items WHERE id IN ({marks})", wanted)
                all_ids, vecs = self._vectors(conn)
                kind = fv.resolve_kind(self._meta(conn)["kind"], len(all_ids))
                # Rebuilding keeps every kind exact about what it holds (HNSW cannot remove in place).
                committed = self._commit_index(conn, fv.build_faiss(kind, self.manifest.embedding_dim, vecs, all_ids))
            self._snapshot = committed
            self._sweep()
            # After the commit (a kill here leaves an unused file only) and before the lock is released (an
            # add of the same image pins the file first, or finds it gone and writes it again).
            staging.delete_files(self.images_dir, staging.unreferenced(conn, paths))
        return wanted

    def rewrite_vectors(self) -> Snapshot:
        """Write the faiss file again from the rows (a new generation with its checksum), for ``index check --repair``.

        Raises:
            IndexDamagedError: a row's embedding is damaged (nothing is written).
        """
        with self._locked() as conn:
            with self._transaction(conn):
                ids, vecs = self._vectors(conn)
                kind = fv.resolve_kind(self._meta(conn)["kind"], len(ids))
                committed = self._commit_index(
                    conn, fv.tune(fv.build_faiss(kind, self.manifest.embedding_dim, vecs, ids))
                )
            self._snapshot = committed
            self._sweep()
        return committed

    def locked_connection(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The writer lock and a connection, for maintenance that must not race writers (``index check --repair``)."""
        return self._locked()
