"""FastAPI dependencies: the app's config, searcher and decoding slots, the API-key checks, reading an upload.

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
from pairsim.service.decoding import DecodeSlots

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


def key_matches(config: ServiceConfig, given: str | None) -> bool:
    """Whether ``given`` (header ``X-API-Key``) is the configured key; never when none is configured."""
    if config.api_key is None or given is None:
        return False
    # Constant time, so the response time does not tell how much of a guessed key was right.
    return hmac.compare_digest(given.encode(), config.api_key.encode())


async def require_api_key(config: ConfigDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Let a write through when header ``X-API-Key`` carries the key, or the server allows anonymous writes.

    The parameter stays a plain header (not ``fastapi.security.APIKeyHeader``) so the OpenAPI
    document lists ``x-api-key`` on the write routes exactly as before.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: X-API-Key`` when the key is missing or wrong; 403
            when the server has no key and does not allow anonymous writes (writes are off).
    """
    if config.allow_anonymous_writes or key_matches(config, x_api_key):
        return
    if config.api_key is None:
        raise HTTPException(
            403, "writes are disabled: the server has no API key (set PAIRSIM_API_KEY, or --allow-anonymous-writes)"
        )
    raise HTTPException(401, "missing or wrong API key (header X-API-Key)", {"WWW-Authenticate": "X-API-Key"})


async def has_api_key(config: ConfigDep, x_api_key: Annotated[str | None, Header()] = None) -> bool:
    """Whether the request carries the API key (it may then see what only the operator should, e.g. ``source``)."""
    return key_matches(config, x_api_key)


async def get_decode_slots(request: Request) -> DecodeSlots:
    """The :class:`~pairsim.service.decoding.DecodeSlots` that ``create_app`` stored on ``app.state``."""
    slots: DecodeSlots = request.app.state.decode_slots
    return slots


KeyGivenDep = Annotated[bool, Depends(has_api_key)]
DecodeSlotsDep = Annotated[DecodeSlots, Depends(get_decode_slots)]


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
