"""Error answers: every HTTP and validation error as a JSON body ``{"error": ...}``, and a 413 body limit.

:func:`install_error_handling` registers both exception handlers and the middleware on an app.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import RequestResponseEndpoint

from pairsim.service.config import MULTIPART_OVERHEAD
from pairsim.service.dependencies import get_config


def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    """Any HTTP error (raised by an endpoint, or a 404/405 of the router) as ``{"error": detail}``."""
    return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)


def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    """A request that does not fit the endpoint's parameters as a 422 naming each bad field."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or e['loc'][0]}: {e['msg']}" for e in error.errors())
    return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)


async def refuse_large_bodies(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Answer 413 without reading the body when ``Content-Length`` announces more than an upload may be."""
    limit = (await get_config(request)).max_upload_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD:
        return JSONResponse({"error": f"request body of {length} bytes is over the {limit} byte limit"}, 413)
    return await call_next(request)


def install_error_handling(app: FastAPI) -> None:
    """Register the exception handlers and the body-size middleware of this module on ``app``."""
    # The decorator forms, because add_exception_handler's type wants handlers of any Exception.
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.middleware("http")(refuse_large_bodies)
