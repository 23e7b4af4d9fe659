"""Error answers: every error as a JSON body ``{"error": ...}``, and the error statuses each route declares.

:func:`install_error_handling` registers the handlers: HTTP and validation errors (4xx); storage
failures as 507 (disk full) or 503 (I/O error, damaged index), the previous state intact; and, as a
last resort, any other exception as a JSON 500, so a client never gets a plain-text answer or a reset
connection. Messages never name a server path. :func:`error_responses` is what a route passes as
``responses=`` so the OpenAPI document lists the statuses it returns, with :class:`ErrorBody`.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from pairsim.index import IndexDamagedError

log = logging.getLogger(__name__)

#: errno values of a storage that is full, answered 507 Insufficient Storage.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

#: What each error status means, as the OpenAPI document describes it.
MEANING = {
    400: "bad request: not a decodable image, an empty upload, a malformed form, a path leaving the "
    "image store, or a Host header the server does not answer to",
    401: "missing or wrong API key (header X-API-Key)",
    403: "writes disabled (no key configured), or a cross-origin write",
    404: "no such item or image",
    408: "the request body stopped arriving",
    413: "the request body or the image is over the size limit",
    422: "a parameter out of range or of the wrong type",
    503: "busy (retry), a storage I/O error, or a damaged index",
    507: "the server's storage is full; nothing was changed",
}


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route answering ``statuses`` (and, as every route may, 500).

    Example:
        >>> sorted(error_responses(404))
        [404, 500]
    """
    meaning = {**MEANING, 500: "unexpected server error (the server log has the traceback)"}
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in (*statuses, 500)}


def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Any HTTP error (raised by an endpoint, or a 404/405 of the router) as ``{"error": detail}``."""
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    """A request that does not fit the endpoint's parameters as a 422 naming each bad field."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or e['loc'][0]}: {e['msg']}" for e in error.errors())
    return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)


def storage_error(_: Request, error: OSError) -> JSONResponse:
    """A write the disk refused: 507 when full, 503 otherwise; ``strerror`` only (never the file's path)."""
    reason = error.strerror or "storage error"
    if error.errno in FULL:
        return JSONResponse({"error": f"the server's storage is full ({reason}); nothing was changed"}, 507)
    log.error("storage error: %s", error)
    return JSONResponse({"error": f"the server's storage failed ({reason}); retry later"}, 503, {"Retry-After": "60"})


def damaged_index(_: Request, error: IndexDamagedError) -> JSONResponse:
    """An index found damaged while answering: 503, with the details in the server log only."""
    log.error("damaged index: %s", error)
    return JSONResponse({"error": "the index is damaged; the operator must run `pairsim index check`"}, 503)


def internal_error(_: Request, error: Exception) -> JSONResponse:
    """The last resort: an unexpected exception as a JSON 500 (the server still logs the traceback)."""
    return JSONResponse({"error": f"internal server error ({type(error).__name__})"}, 500)


def install_error_handling(app: FastAPI) -> None:
    """Register the exception handlers of this module on ``app``."""
    # The decorator forms, because add_exception_handler's type wants handlers of any Exception.
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(OSError)(storage_error)
    app.exception_handler(IndexDamagedError)(damaged_index)
    app.exception_handler(Exception)(internal_error)
