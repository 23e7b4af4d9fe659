"""A request body limit and a body timeout, enforced on the bytes as they arrive (pure ASGI middleware).

``Content-Length`` cannot be trusted (a chunked upload has none), so :class:`BodyLimits` counts the
body bytes the app receives and stops at the first byte past the limit: a 413 before the multipart
parser spools anything further, and before the API key is checked (FastAPI reads a form body before
it resolves dependencies). A body that stops arriving for ``timeout_s`` is a 408. Both are answered
with a JSON body and ``Connection: close``, so the rest of an upload is never read.
"""

from __future__ import annotations

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """A request body over the limit (413); an ``HTTPException`` so FastAPI's form parsing re-raises it."""


class BodyTimeout(HTTPException):
    """A request body that stopped arriving (408)."""


def too_large(limit: int, announced: str | None = None) -> BodyTooLarge:
    """The 413 of a body over ``limit`` bytes (``announced``: its ``Content-Length``, when known)."""
    size = f"request body of {announced} bytes" if announced else "request body"
    return BodyTooLarge(413, f"{size} is over the {limit} byte limit", CLOSE)


class BodyLimits:
    """Refuse a request body over ``max_bytes`` (413) or pausing longer than ``timeout_s`` (408).

    Args:
        app: the ASGI app to guard.
        max_bytes: the most body bytes a request may send, framing included.
        timeout_s: the longest wait for each next part of the body.

    Example:
        >>> from starlette.applications import Starlette
        >>> guarded = BodyLimits(Starlette(), max_bytes=1_000, timeout_s=30)
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = _header(scope, b"content-length")
        if announced is not None and announced.isdigit() and int(announced) > self.max_bytes:
            # Refused unread. (The server refuses a Content-Length that is no number before the app.)
            await _answer(too_large(self.max_bytes, announced), scope, receive, send)
            return
        received = 0
        body_done = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # the body is in: what is left is waiting for a disconnect, with no deadline
                return await receive()
            try:
                with anyio.fail_after(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(408, f"request body not received within {self.timeout_s:g} s", CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except (BodyTooLarge, BodyTimeout) as error:
            # Raised where no exception handler answered it (outside FastAPI's routes); answer it here.
            if started:
                raise
            await _answer(error, scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1").strip())
    return None


async def _answer(error: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)
    await response(scope, receive, send)
