"""The two ways an index directory can fail a caller that did nothing wrong: damage and storage.

:class:`IndexDamagedError` says what is damaged when an index is opened (``pairsim index check DIR``
lists everything); :class:`StorageError` is a write the disk refused (full, I/O error), raised after
the previous state was kept. Callers map them to one ``error:`` line (the CLI) or a 5xx naming the
cause (the service); neither is a mistake in the request.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator


class IndexDamagedError(ValueError):
    """An index directory whose database, manifest or vectors are damaged (the message names which)."""


class StorageError(OSError):
    """A write of the index that the storage refused (``errno`` kept: ``ENOSPC``, ``EIO``, ...).

    Nothing of the failed update is committed, and its temporary files are removed.

    Example:
        >>> error = StorageError(errno.ENOSPC, "No space left on device while writing the image store", "/srv/i")
        >>> error.errno == errno.ENOSPC, isinstance(error, OSError)
        (True, True)
    """


#: SQLite's primary result codes that are storage failures, as the errno they correspond to.
_SQLITE_ERRNO = {sqlite3.SQLITE_FULL: errno.ENOSPC, sqlite3.SQLITE_IOERR: errno.EIO}
#: SQLite's primary result codes that mean the database file itself is damaged.
_SQLITE_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@contextlib.contextmanager
def storage_errors(what: str, filename: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Turn an ``OSError`` or a SQLite storage failure raised inside the block into :class:`StorageError`.

    Args:
        what: what was being written, for the message (``"the image store"``, ``"items.sqlite"``).
        filename: the file, when the error does not name one.

    Raises:
        StorageError: with the original ``errno`` (``EIO`` for SQLite I/O errors, ``ENOSPC`` when full).
        IndexDamagedError: SQLite found the database file damaged.
    """
    try:
        yield
    except (StorageError, IndexDamagedError):
        raise
    except OSError as error:
        code = error.errno or errno.EIO
        reason = error.strerror or os.strerror(code)
        raise StorageError(code, f"{reason} while writing {what}", error.filename or filename) from error
    except sqlite3.DatabaseError as error:
        primary = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
        if primary in _SQLITE_DAMAGED:
            raise IndexDamagedError(f"{filename or what} is damaged ({error}); see `pairsim index check`") from error
        if primary not in _SQLITE_ERRNO:
            raise
        code = _SQLITE_ERRNO[primary]
        raise StorageError(code, f"{os.strerror(code)} while writing {what} ({error})", filename) from error
