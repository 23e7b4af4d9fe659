"""FastAPI dependencies: the app's config and searcher, the API-key check, and reading an upload.

:func:`~pairsim.service.app.create_app` keeps the config and the searcher on ``app.state``; endpoints
get them through :data:`ConfigDep`, :data:`SearcherDep` and :data:`StoreDep`, so a test can swap any of
them with ``app.dependency_overrides``.
"""

# No `from __future__ import annotations`: FastAPI reads these signatures at run time.
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, UploadFile

from pairsim.index import IndexStore, Searcher
from pairsim.service.config import ServiceConfig

# The dependencies below are `async def` because they never block: FastAPI would otherwise run each
# in the thread pool, one hop per dependency per request.


async def get_config(request: Request) -> ServiceConfig:
    """The :class:`ServiceConfig` that ``create_app`` stored on ``app.state``."""
    config: ServiceConfig = request.app.state.config
    return config


async def get_searcher(request: Request) -> Searcher:
    """The :class:`~pairsim.index.Searcher` that ``create_app`` stored on ``app.state``."""
    searcher: Searcher = request.app.state.searcher
    return searcher


async def get_store(searcher: Annotated[Searcher, Depends(get_searcher)]) -> IndexStore:
    """The index store of the app's searcher."""
    return searcher.store


ConfigDep = Annotated[ServiceConfig, Depends(get_config)]
SearcherDep = Annotated[Searcher, Depends(get_searcher)]
StoreDep = Annotated[IndexStore, Depends(get_store)]


async def require_api_key(config: ConfigDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Let the request through when no key is configured or header ``X-API-Key`` carries it.

    The parameter stays a plain header (not ``fastapi.security.APIKeyHeader``) so the OpenAPI
    document lists ``x-api-key`` on the write routes exactly as before.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: X-API-Key`` when the key is missing or wrong.
    """
    if config.api_key is None:
        return
    # Constant time, so the response time does not tell how much of a guessed key was right.
    if not hmac.compare_digest((x_api_key or "").encode(), config.api_key.encode()):
        raise HTTPException(401, "missing or wrong API key (header X-API-Key)", {"WWW-Authenticate": "X-API-Key"})


def read_upload(image: UploadFile, limit: int) -> bytes:
    """The bytes of an uploaded file, read no further than one byte past ``limit``.

    A helper rather than a dependency: endpoints call it after their own parameter checks (a bad
    ``k`` is reported before a bad upload).

    Raises:
        HTTPException: 413 over ``limit`` bytes, 400 when empty.
    """
    data = image.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"image upload is over the {limit} byte limit")
    if not data:
        raise HTTPException(400, "image upload is empty")
    return data
