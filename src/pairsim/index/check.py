"""``pairsim index check DIR [--repair]``: verify everything an index directory holds, and repair what is safe.

Checked: the manifest's schema; SQLite's ``PRAGMA integrity_check`` and the tables; every row's embedding
(finite, unit norm); the current faiss file (its recorded SHA-256, one vector per row and no other, each
equal to the row's embedding); every row's image file (inside the store, present, its SHA-256 the row's
checksum); files in the store that no row or pin names; pins of adds that died.

``repair=True`` does only what loses nothing, holding the writer lock (no add or remove runs meanwhile):
it drops pins older than :data:`~pairsim.index.staging.STALE_AFTER_S`, deletes store files (and
temporary files) that no row or pin names, writes the faiss file again from the rows when it is
missing, damaged, unverified or disagrees with them, and sweeps faiss files of other generations. It
never deletes or changes a row: a damaged database, a damaged embedding, a missing or altered image
file are reported with what to do, and stay problems.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pairsim.index import staging
from pairsim.index import vectors as fv
from pairsim.index.generations import faiss_path, read_faiss, sweep
from pairsim.index.images import OutsideStoreError, resolve_in_store
from pairsim.index.manifest import file_sha256, read_manifest
from pairsim.index.records import database_problems
from pairsim.index.store import IndexStore

#: What a finding means for the exit status: only problems make ``pairsim index check`` fail.
LEVELS = ("ok", "warning", "problem")


@dataclass(frozen=True)
class Finding:
    """One line of a check report: what was checked, ``ok`` / ``warning`` / ``problem``, and the details."""

    check: str
    level: str
    detail: str


@dataclass(frozen=True)
class CheckReport:
    """The findings (after the repairs, when repairing) and what the repairs did."""

    directory: Path
    findings: tuple[Finding, ...]
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No finding is a problem (warnings allowed)."""
        return all(f.level != "problem" for f in self.findings)

    def problems(self) -> list[str]:
        """``check: detail`` of each problem."""
        return [f"{f.check}: {f.detail}" for f in self.findings if f.level == "problem"]


@dataclass
class _Facts:
    """What one pass over the directory found (the raw material of the findings and of the repairs)."""

    findings: list[Finding] = dataclasses.field(default_factory=list)
    database_ok: bool = False
    rows_ok: bool = False
    faiss_stale: bool = False  # the faiss file should be written again from the rows
    leftovers: list[Path] = dataclasses.field(default_factory=list)  # other generations' faiss files
    unreferenced: list[Path] = dataclasses.field(default_factory=list)
    stale_pins: int = 0

    def add(self, check: str, level: str, detail: str) -> None:
        self.findings.append(Finding(check, level, detail))


def check_index(directory: str | Path, repair: bool = False) -> CheckReport:
    """Check the index in ``directory`` (see the module docstring); with ``repair``, repair what is safe first.

    Example:
        >>> import tempfile
        >>> from pairsim.index import Manifest
        >>> d = Path(tempfile.mkdtemp()) / "idx"
        >>> _ = IndexStore.create(d, Manifest("small-cnn", "f" * 64, "c" * 64, "c.pt", 2, {}, "t"))
        >>> report = check_index(d)
        >>> report.ok, [f.check for f in report.findings]
        (True, ['manifest', 'database', 'embeddings', 'faiss file', 'image files', 'unused files', 'pins'])
    """
    directory = Path(directory)
    facts = _inspect(directory)
    if not repair:
        return CheckReport(directory, tuple(facts.findings))
    repairs = _repair(directory, facts)
    return CheckReport(directory, tuple(_inspect(directory).findings), tuple(repairs))


def _inspect(directory: Path) -> _Facts:
    facts = _Facts()
    try:
        manifest = read_manifest(directory)
        facts.add("manifest", "ok", f"{manifest.model_name}, dimension {manifest.embedding_dim}")
    except (OSError, ValueError, TypeError) as error:
        facts.add("manifest", "problem", f"{error}; restore manifest.json from a backup or build the index again")
        return facts
    db = directory / "items.sqlite"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, isolation_level=None, timeout=60.0)
    except sqlite3.Error as error:
        facts.add("database", "problem", f"{db}: {error}")
        return facts
    try:
        conn.execute("BEGIN")  # one read transaction: rows, pins and meta agree
        problems = database_problems(conn, "integrity_check")
        if problems:
            facts.add("database", "problem", "; ".join(problems) + "; restore items.sqlite from a backup")
            return facts
        facts.database_ok = True
        facts.add("database", "ok", "SQLite integrity_check ok")
        rows = _check_rows(conn, manifest.embedding_dim, facts)
        _check_faiss(directory, conn, rows, facts)
        _check_files(directory, conn, facts)
    except sqlite3.DatabaseError as error:
        facts.add("database", "problem", f"{db}: {error}; restore items.sqlite from a backup")
    finally:
        conn.close()
    return facts


def _ids_text(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _check_rows(conn: sqlite3.Connection, dim: int, facts: _Facts) -> dict[int, np.ndarray]:
    """Every row's embedding, by id (damaged ones reported and left out)."""
    rows: dict[int, np.ndarray] = {}
    bad: list[int] = []
    for item_id, blob in conn.execute("SELECT id, embedding FROM items ORDER BY id"):
        vector = np.frombuffer(blob, np.float32) if len(blob) == 4 * dim else None
        if vector is None or len(fv.faulty_rows(vector[None])):
            bad.append(int(item_id))
        else:
            rows[int(item_id)] = vector
    facts.rows_ok = not bad
    if bad:
        facts.add(
            "embeddings",
            "problem",
            f"{len(bad)} items have a damaged embedding (ids {_ids_text(bad)}): remove them with "
            "`pairsim index remove` and add their images again",
        )
    else:
        facts.add("embeddings", "ok", f"{len(rows)} finite unit vectors")
    return rows


def _check_faiss(directory: Path, conn: sqlite3.Connection, rows: dict[int, np.ndarray], facts: _Facts) -> None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    generation = int(meta["generation"])
    path = faiss_path(directory, generation)
    facts.leftovers = [p for p in sorted((directory / "vectors").glob("*")) if p.name != path.name]
    leftovers = f"; {len(facts.leftovers)} files of other generations (swept)" if facts.leftovers else ""
    if generation == 0:
        facts.add("faiss file", "warning" if facts.leftovers else "ok", "empty index, no faiss file yet" + leftovers)
        return
    try:
        index, digest = read_faiss(path)
    except (OSError, RuntimeError) as error:
        facts.faiss_stale = True
        facts.add("faiss file", "problem", f"{path.name} cannot be read ({error}); --repair writes it from the rows")
        return
    recorded = meta.get("faiss_sha256")
    disagree = _disagreements(index, rows)
    facts.faiss_stale = recorded != digest or bool(disagree) or bool(facts.leftovers)
    if recorded is not None and recorded != digest:
        facts.add("faiss file", "problem", f"{path.name} does not match its recorded SHA-256; --repair rewrites it")
    elif disagree:
        facts.add("faiss file", "problem", f"{path.name}: {disagree}; --repair writes it from the rows")
    elif recorded is None:
        facts.add("faiss file", "warning", f"{path.name} agrees with the rows, no checksum recorded (older index)")
    else:
        facts.add(
            "faiss file", "warning" if leftovers else "ok", f"{path.name} verified, {index.ntotal} vectors" + leftovers
        )


def _disagreements(index: object, rows: dict[int, np.ndarray]) -> str:
    """How the faiss index differs from the rows: ids missing either side, vectors not equal ("" when none)."""
    seen: set[int] = set()
    differ: list[int] = []
    for ids, vecs in fv.stored_vectors(index):
        for item_id, vector in zip(ids.tolist(), vecs, strict=True):
            seen.add(item_id)
            row = rows.get(item_id)
            if row is not None and not np.array_equal(row, vector):
                differ.append(item_id)
    without_vector = sorted(set(rows) - seen)
    without_row = sorted(seen - set(rows))
    parts = [f"rows without a vector: ids {_ids_text(without_vector)}"] if without_vector else []
    parts += [f"vectors without a row: ids {_ids_text(without_row)}"] if without_row else []
    parts += [f"vectors unlike their rows' embeddings: ids {_ids_text(sorted(differ))}"] if differ else []
    return "; ".join(parts)


def _check_files(directory: Path, conn: sqlite3.Connection, facts: _Facts) -> None:
    images = directory / "images"
    missing: list[int] = []
    altered: list[int] = []
    outside: list[int] = []
    for item_id, relative, checksum in conn.execute("SELECT id, path, checksum FROM items ORDER BY id"):
        try:
            path = resolve_in_store(images, relative)
            if file_sha256(path) != checksum:
                altered.append(int(item_id))
        except OutsideStoreError:
            outside.append(int(item_id))
        except OSError:  # missing, or not a readable file
            missing.append(int(item_id))
    remedy = "remove them with `pairsim index remove` (and add the images again when you have them)"
    for what, ids in (
        ("have no image file", missing),
        ("have an altered image file", altered),
        ("name a path outside the store", outside),
    ):
        if ids:
            facts.add("image files", "problem", f"{len(ids)} items {what} (ids {_ids_text(ids)}): {remedy}")
    if not (missing or altered or outside):
        facts.add("image files", "ok", "every item's file is present and matches its checksum")
    used = {resolve_in_store(images, p) for p in staging.referenced(conn) if _inside(images, p)}
    facts.unreferenced = [p for p in _store_entries(images) if p not in used]
    level = "warning" if facts.unreferenced else "ok"
    facts.add("unused files", level, f"{len(facts.unreferenced)} files in the store that no item uses")
    pins = conn.execute("SELECT COUNT(*) FROM pending").fetchone()[0] if staging.has_table(conn) else 0
    cutoff = time.time() - staging.STALE_AFTER_S
    stale = conn.execute("SELECT COUNT(*) FROM pending WHERE since < ?", (cutoff,)).fetchone()[0] if pins else 0
    facts.stale_pins = int(stale)
    facts.add(
        "pins", "warning" if stale else "ok", f"{pins} files pinned by adds in progress, {stale} of adds that died"
    )


def _inside(images: Path, relative: str) -> bool:
    try:
        resolve_in_store(images, relative)
    except OutsideStoreError:
        return False
    return True


def _store_entries(images: Path) -> Iterator[Path]:
    """Every file and symbolic link in the store, without following links (a link loop cannot trap us)."""
    for root, _, files in os.walk(images, followlinks=False):
        for name in files:
            path = Path(root) / name
            yield path if path.is_symlink() else path.resolve()


def _repair(directory: Path, facts: _Facts) -> list[str]:
    """Repair what :func:`check_index` may (see the module docstring); returns what was done."""
    if not facts.database_ok:
        return []
    store = IndexStore(directory)
    done: list[str] = []
    with store.locked_connection() as conn:
        # Under the writer lock: no add pins or writes, no remove deletes, until we are done.
        conn.execute("BEGIN IMMEDIATE")
        staging.ensure_table(conn)
        dropped = staging.drop_stale(conn)
        conn.execute("COMMIT")
        if dropped:
            done.append(f"dropped {len(dropped)} pins of adds that died")
        images = store.images_dir
        used = {resolve_in_store(images, p) for p in staging.referenced(conn) if _inside(images, p)}
        pinned_names = {p.name for p in used}
        removed = 0
        for path in _store_entries(images):
            in_flight = path.name.startswith(".") and path.name[1:].rsplit(".", 2)[0] in pinned_names
            if path not in used and not in_flight:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            done.append(f"deleted {removed} files in the store that no item uses")
    if facts.faiss_stale and facts.rows_ok:
        snap = store.rewrite_vectors()
        done.append(f"wrote the faiss file again from the rows (generation {snap.generation}, checksum recorded)")
    elif facts.leftovers:
        with store.locked_connection() as conn:
            sweep(directory, int(dict(conn.execute("SELECT key, value FROM meta").fetchall())["generation"]))
        done.append(f"deleted {len(facts.leftovers)} faiss files of other generations")
    return done
