"""The faiss index of a committed generation: loaded from its file and checked, or rebuilt from the rows.

The rows of ``items.sqlite`` hold every embedding, so the faiss file is a cache that must agree with
them. A file whose SHA-256 is not the one recorded in ``meta.faiss_sha256``, that holds another number
of vectors, or (in an older index, without a recorded checksum) vectors that are not finite unit
vectors, is not served: the index is rebuilt in memory from the rows and the snapshot says so.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from pairsim._optional import require
from pairsim.index import vectors as fv
from pairsim.index.errors import IndexDamagedError
from pairsim.index.generations import faiss_path, read_faiss
from pairsim.index.records import Snapshot, damaged_message

log = logging.getLogger(__name__)


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The ``meta`` table as a dict."""
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def load_snapshot(conn: sqlite3.Connection, directory: Path, dim: int) -> Snapshot:
    """The committed generation seen by ``conn``'s transaction, from its faiss file when that is sound.

    Raises:
        IndexDamagedError: the faiss file is unusable and a row's embedding is damaged too.
    """
    values = meta(conn)
    generation = int(values["generation"])
    count = int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    try:
        index, digest = read_faiss(faiss_path(directory, generation))
        problem = faiss_problem(index, digest, values.get("faiss_sha256"), count, dim)
    except (OSError, RuntimeError) as error:  # missing (or swept by a writer while we read), unparsable
        problem = "is missing" if isinstance(error, FileNotFoundError) else f"is unreadable ({error})"
    if problem is None:
        note = "verified" if "faiss_sha256" in values else "unverified (no checksum recorded: an older index)"
        return Snapshot(generation, fv.tune(index), fv.kind_of(index), note)
    if generation > 0:
        log.warning("%s: the faiss file of generation %d %s; rebuilt from items.sqlite", directory, generation, problem)
    ids, vecs = read_vectors(conn, directory, dim)
    index = fv.build_faiss(values["concrete_kind"] or fv.resolve_kind(values["kind"], count), dim, vecs, ids)
    note = "empty" if generation == 0 else f"rebuilt from items.sqlite: the faiss file {problem}"
    return Snapshot(generation, index, fv.kind_of(index), note)


def faiss_problem(index: Any, digest: str, recorded: str | None, count: int, dim: int) -> str | None:
    """What is wrong with a faiss file that parsed, or ``None`` (checked by content when no checksum is kept)."""
    if recorded is not None and digest != recorded:
        return "does not match its recorded SHA-256"
    if int(index.ntotal) != count or index.d != dim:
        return f"holds {index.ntotal} vectors of dimension {index.d}, the items table {count} of {dim}"
    if recorded is None:
        bad = sum(len(fv.faulty_rows(vecs)) for _, vecs in fv.stored_vectors(index))
        if bad:
            return f"holds {bad} vectors that are not finite unit vectors"
    return None


def read_vectors(conn: sqlite3.Connection, directory: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids (N,), embeddings (N, D))`` of every row, refused when a row's embedding is damaged.

    Raises:
        IndexDamagedError: naming the items whose stored embedding is not a finite unit ``D``-vector.
    """
    rows = conn.execute("SELECT id, embedding FROM items ORDER BY id").fetchall()
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    sized = [len(r[1]) == 4 * dim for r in rows]
    vecs = np.zeros((len(rows), dim), np.float32)  # (N, D); a row of another size stays zero, so faulty
    for row, (blob, ok) in enumerate(zip((r[1] for r in rows), sized, strict=True)):
        if ok:
            vecs[row] = np.frombuffer(blob, np.float32)
    bad = ids[fv.faulty_rows(vecs)]
    if len(bad):
        shown = ", ".join(map(str, bad[:10].tolist())) + (", ..." if len(bad) > 10 else "")
        raise IndexDamagedError(
            damaged_message(
                directory / "items.sqlite", [f"the embeddings of {len(bad)} items are damaged (ids {shown})"]
            )
            + f"; or remove those items (`pairsim index remove {directory} ID...`) and add their images again"
        )
    return ids, vecs


def grown_index(
    conn: sqlite3.Connection, base: Snapshot, directory: Path, embeddings: np.ndarray, ids: list[int]
) -> Any:
    """The faiss index of ``base`` plus the rows ``ids`` just inserted with ``embeddings`` ``(n, D)``
    (inside the add's transaction): added in place, or rebuilt from every row when the kind changes."""
    values = meta(conn)
    count = int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
    kind = fv.resolve_kind(values["kind"], count)
    if base.kind == kind and int(base.index.ntotal) + len(ids) == count and not fv.outgrown(base.index, count):
        index = require("faiss", "the retrieval index").clone_index(base.index)
        index.add_with_ids(embeddings, np.asarray(ids, np.int64))
        return index
    # Grew past the approximate-index threshold, or an IVF index outgrew its training.
    all_ids, vecs = read_vectors(conn, directory, embeddings.shape[1])
    return fv.build_faiss(kind, embeddings.shape[1], vecs, all_ids)
