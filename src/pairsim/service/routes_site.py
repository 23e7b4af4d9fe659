"""The web page (``/``, its files under ``/static``) and the health check."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from pairsim.service.dependencies import StoreDep
from pairsim.service.errors import error_responses

#: The web page and its script and style sheet; ``create_app`` mounts it at ``/static``.
STATIC = Path(__file__).parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The search page."""
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/healthz", summary="Liveness and index size", responses=error_responses(400, 503))
def healthz(store: StoreDep) -> dict[str, Any]:
    """Answers ``ok`` with the number of items, the index generation and the index kind."""
    info = store.info()
    return {"status": "ok", "items": info["items"], "generation": info["generation"], "kind": info["index_kind"]}
