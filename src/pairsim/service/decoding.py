"""A bounded number of images decoded (and embedded) at once, so concurrent big uploads cannot exhaust memory.

The endpoints are plain ``def`` functions run in the server's thread pool (40 threads): without a
bound, 40 uploads near the pixel limit decode at the same time. :class:`DecodeSlots` is a semaphore
the image endpoints hold around the decode; a request that waits longer than ``wait_s`` gets a 503
with ``Retry-After`` rather than queueing without end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException


class DecodeSlots:
    """At most ``workers`` holders of :meth:`slot` at a time.

    Example:
        >>> slots = DecodeSlots(workers=2, wait_s=1.0)
        >>> with slots.slot():
        ...     pass
    """

    def __init__(self, workers: int, wait_s: float) -> None:
        self.workers = workers
        self.wait_s = wait_s
        self._semaphore = threading.BoundedSemaphore(workers)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one decoding slot for the ``with`` block (blocks the calling worker thread until free).

        Raises:
            HTTPException: 503 with ``Retry-After`` when no slot frees within ``wait_s``.
        """
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise HTTPException(503, f"the server is busy decoding {self.workers} images; retry", {"Retry-After": "1"})
        try:
            yield
        finally:
            self._semaphore.release()
