"""``POST /search``: the items most similar to an uploaded image."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, UploadFile

from pairsim.index import Hit, ImageDecodeError
from pairsim.service.dependencies import ConfigDep, DecodeSlotsDep, SearcherDep, read_upload
from pairsim.service.errors import error_responses

router = APIRouter()


def hit_json(hit: Hit, query_label: str | None) -> dict[str, Any]:
    """One search result; ``match`` (same label as the query) only when the query has a label."""
    out: dict[str, Any] = {
        "id": hit.item.id,
        "label": hit.item.label,
        "score": round(hit.score, 6),
        "image_url": f"/items/{hit.item.id}/image",
    }
    if query_label is not None:
        out["match"] = hit.item.label == query_label
    return out


@router.post(
    "/search",
    summary="The k items most similar to an uploaded image",
    responses=error_responses(400, 403, 408, 413, 422, 503),
)
def search(
    searcher: SearcherDep,
    config: ConfigDep,
    slots: DecodeSlotsDep,
    image: Annotated[UploadFile, File(description="query image file")],
    k: int = 10,
    label: str | None = None,
) -> dict[str, Any]:
    """Results best first; ``label`` (the query's own, optional) marks each result's ``match``.

    Errors: 422 for ``k`` outside 1 to the server's limit, 413 for an upload over the size limit,
    400 for an empty upload or one that is not a decodable image, 403 for a cross-origin request,
    503 when the server is busy decoding other images.
    """
    if not 1 <= k <= config.max_k:
        raise HTTPException(422, f"k must be between 1 and {config.max_k}, got {k}")
    data = read_upload(image, config.max_upload_bytes)
    try:
        with slots.slot():  # decoding and embedding, a bounded number at a time
            hits = searcher.search_bytes(data, k)
    except ImageDecodeError as error:
        raise HTTPException(400, f"upload {image.filename!r}: {error}") from None
    return {"query_label": label, "results": [hit_json(h, label) for h in hits]}
