"""One atomic writer for every file pairsim writes (checkpoints, manifests, faiss files, images, caches).

A file is written under a unique temporary name in its own directory, flushed and fsynced, renamed
over the target, and the directory is fsynced so the rename itself survives a power cut. A writer
that fails or is interrupted removes its temporary file; a reader sees the old file or the new one,
never half of one. :func:`atomic_directory` does the same for a directory of files (a data set cache,
a new index).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload

TEMP_SUFFIX = ".tmp"


def fsync_directory(directory: str | Path) -> None:
    """Make a rename or a new entry in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without O_RDONLY on directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@overload
def atomic_write(
    path: str | Path, mode: Literal["wb"] = "wb", *, sync_directory: bool = True
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
@overload
def atomic_write(
    path: str | Path, mode: Literal["w"], *, sync_directory: bool = True
) -> contextlib.AbstractContextManager[IO[str]]: ...
def atomic_write(
    path: str | Path, mode: Literal["wb", "w"] = "wb", *, sync_directory: bool = True
) -> contextlib.AbstractContextManager[IO[Any]]:
    """A file object whose content replaces ``path`` when the ``with`` block ends without an error.

    Args:
        path: the file to write; its parent directories are created.
        mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
        sync_directory: fsync the directory after the rename. A writer of many files in few directories
            (the image store) passes ``False`` and calls :func:`fsync_directory` once per directory.

    Raises:
        ValueError: for another ``mode``.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a" / "note.txt"
        >>> with atomic_write(target, "w") as f:
        ...     _ = f.write("hello")
        >>> target.read_text()
        'hello'
        >>> try:
        ...     with atomic_write(target, "w") as f:
        ...         _ = f.write("half")
        ...         raise RuntimeError("killed")
        ... except RuntimeError:
        ...     pass
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('hello', ['note.txt'])
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    return _atomic_write(Path(path), mode, sync_directory)


@contextlib.contextmanager
def _atomic_write(path: Path, mode: str, sync_directory: bool, sync_file: bool = True) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name per writer: two writers of the same file never share (or delete) a temporary file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding="utf-8" if mode == "w" else None) as f:
            yield f
            f.flush()
            if sync_file:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes, *, sync_directory: bool = True, sync_file: bool = True) -> None:
    """``path`` holds exactly ``data`` afterwards, or its old content if the write failed.

    ``sync_file=False`` leaves the fsync of the file to the caller: only inside :func:`atomic_directory`,
    which fsyncs everything before the directory appears.
    """
    path = Path(path)
    with _atomic_write(path, "wb", sync_directory, sync_file) as f:
        f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``path`` holds exactly ``text`` (UTF-8) afterwards, or its old content if the write failed."""
    with atomic_write(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A temporary directory beside ``path``, renamed to ``path`` when the ``with`` block ends without an error.

    Every file and sub-directory written into it is fsynced before the rename, and the parent directory
    after it. On an
    error the temporary directory is removed and ``path`` is left as it was.

    Raises:
        FileExistsError: ``path`` exists and is not an empty directory when the block ends (another
            writer finished first); the temporary directory is removed.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "cache"
        >>> with atomic_directory(target) as work:
        ...     _ = (work / "meta.json").write_text("{}")
        >>> sorted(p.name for p in target.iterdir())
        ['meta.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:
        yield work
        for file in sorted(work.rglob("*")):
            if file.is_symlink():
                continue
            if file.is_file():
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
            elif file.is_dir():  # the names in sub-directories (an index's images/ab/) must last too
                fsync_directory(file)
        fsync_directory(work)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        try:
            os.rename(work, path)
        except OSError as error:
            raise FileExistsError(f"{path} exists and is not empty") from error
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    fsync_directory(path.parent)
