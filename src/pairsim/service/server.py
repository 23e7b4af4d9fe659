"""How uvicorn runs the app: timeouts for slow clients, bounded concurrency, the access log.

A slow client must not hold a connection for ever. uvicorn closes an idle keep-alive connection
(``timeout_keep_alive``) and answers 503 past ``limit_concurrency`` connections, but it has no
deadline for a request's headers: a client trickling a header a byte a second keeps its connection.
:class:`HeaderTimeoutProtocol` (uvicorn's h11 protocol plus a deadline) closes a connection whose
request headers are not complete ``header_timeout_s`` after it opened or after its last answer.
The body's own deadline is :class:`~pairsim.service.body_limits.BodyLimits`'s (a 408).

Needs uvicorn (the ``[serve]`` extra); :mod:`pairsim.service` itself does not import this module.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

from pairsim._optional import require

uvicorn = require("uvicorn", "pairsim serve")
from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402  (after the check that names the extra)


@dataclass(frozen=True)
class ServerSettings:
    """The address and the connection limits of the server.

    Attributes:
        host: the address to listen on.
        port: the port to listen on (0: any free one).
        header_timeout_s: the longest a connection may take to send a request's headers.
        keep_alive_s: how long an idle keep-alive connection stays open.
        limit_concurrency: open connections (and requests) past which uvicorn answers 503.
        graceful_shutdown_s: how long a shutdown waits for requests in progress.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5
    limit_concurrency: int = 64
    graceful_shutdown_s: int = 10


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers take over ``header_timeout_s``."""

    header_timeout_s: float = ServerSettings.header_timeout_s
    _deadline: asyncio.TimerHandle | None = None
    _deadline_cycle: object = None  # uvicorn's request cycle when the deadline started (None before one)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Open the connection and start the deadline of its first request's headers."""
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        """Start the next request's deadline, then let uvicorn finish the answer (it may start that request)."""
        self._arm_header_deadline()
        super().on_response_complete()

    def handle_events(self) -> None:
        """Parse what arrived; headers complete (a new request cycle) clear the deadline."""
        super().handle_events()
        if self.cycle is not self._deadline_cycle and self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline_cycle = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout_s, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.cycle is self._deadline_cycle and not self.transport.is_closing():
            self.transport.close()  # no request began: nothing to answer, the connection just goes


def uvicorn_config(app: Any, settings: ServerSettings) -> Any:
    """The ``uvicorn.Config`` that serves ``app`` with ``settings`` (uvicorn's own access log off).

    Example:
        >>> from starlette.applications import Starlette
        >>> uvicorn_config(Starlette(), ServerSettings(limit_concurrency=8)).limit_concurrency
        8
    """
    protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": settings.header_timeout_s})
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.limit_concurrency,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        access_log=False,  # ours (pairsim.service.access_log) logs the same without query strings
        server_header=False,
        log_level="warning",
    )


def enable_access_log(stream: Any = None) -> None:
    """Print the ``pairsim.service.access`` log lines to ``stream`` (default standard error)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("pairsim.service.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
