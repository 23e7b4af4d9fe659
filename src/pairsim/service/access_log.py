"""The access log: one line per request (client, method, path, status, latency), with no secrets.

Logged to the ``pairsim.service.access`` logger at INFO. The path is logged without its query string
and no header is logged at all, so neither the API key nor a query's values end up in the log.
Outermost of the app's middleware, so it also sees the 400/403/408/413 answered by the guards.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pairsim.service.access")


class AccessLog:
    """Log ``client method path status latency`` of every HTTP request ``app`` answers.

    Example:
        >>> from starlette.applications import Starlette
        >>> logged = AccessLog(Starlette())
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers when the app raises before it starts a response

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            client = scope.get("client")
            log.info(
                "%s %s %s %d %.1f ms",
                client[0] if client else "-",
                scope["method"],
                # Never the query string (a search's label is the client's business); repr escapes a
                # decoded %0A, so a path cannot forge a log line.
                repr(scope["path"])[1:-1],
                status,
                (time.perf_counter() - start) * 1000,
            )
