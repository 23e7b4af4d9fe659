"""FastAPI app over an index directory: search, add, delete, images, health, and the web page.

Every bad input is answered with a 4xx JSON body ``{"error": "<what is wrong>"}`` and the server keeps
serving. Endpoints are plain ``def`` functions, so the CPU work (decoding, the model, faiss) runs in
the thread pool and does not stall the event loop.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time, and
# they name classes imported inside create_app (fastapi is an optional extra).
import hmac
import io
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairsim.index import ImageDecodeError, OutsideStoreError, Searcher
from pairsim.index.images import resolve_in_store
from pairsim.index.records import Hit

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: Multipart framing allowed on top of the image itself before a request is refused unread.
MULTIPART_OVERHEAD = 64 * 1024
FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and access of the service.

    Attributes:
        max_k: the largest ``k`` a search may ask for.
        max_upload_bytes: the largest image upload.
        api_key: when set, ``POST /items`` and ``DELETE /items/{id}`` need header ``X-API-Key``.
    """

    max_k: int = 100
    max_upload_bytes: int = 10_000_000
    api_key: str | None = None


def require_serve_extra() -> Any:
    """The uvicorn module, or an ImportError naming the extra (FastAPI, uvicorn, python-multipart)."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise ImportError(f"pairsim serve needs the [serve] extra: pip install 'pairsim[serve]' ({error})") from error
    return uvicorn


def create_app(directory: str | Path, config: ServiceConfig | None = None, checkpoint: str | None = None) -> Any:
    """The FastAPI app serving the index in ``directory`` (see the module docstring)."""
    require_serve_extra()
    from fastapi import FastAPI, File, Form, Header, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config = config or ServiceConfig()
    searcher = Searcher(directory, checkpoint)
    store = searcher.store
    app = FastAPI(
        title="pairsim index",
        description=f"Image retrieval over {store.directory} ({store.manifest.model_name}).",
        version="1",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(StarletteHTTPException)
    def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or e['loc'][0]}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next: Any) -> Response:
        # Refuse before reading the body when the client announces it is too large.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > config.max_upload_bytes + MULTIPART_OVERHEAD:
            limit = config.max_upload_bytes
            return JSONResponse({"error": f"request body of {length} bytes is over the {limit} byte limit"}, 413)
        response: Response = await call_next(request)
        return response

    def read_upload(image: UploadFile) -> bytes:
        data = image.file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(413, f"image upload is over the {config.max_upload_bytes} byte limit")
        if not data:
            raise HTTPException(400, "image upload is empty")
        return data

    def check_key(key: str | None) -> None:
        if config.api_key is not None and not hmac.compare_digest((key or "").encode(), config.api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (header X-API-Key)", {"WWW-Authenticate": "X-API-Key"})

    def hit_json(hit: Hit, query_label: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": hit.item.id,
            "label": hit.item.label,
            "score": round(hit.score, 6),
            "image_url": f"/items/{hit.item.id}/image",
        }
        if query_label is not None:
            out["match"] = hit.item.label == query_label
        return out

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz", summary="Liveness and index size")
    def healthz() -> dict[str, Any]:
        info = store.info()
        return {"status": "ok", "items": info["items"], "generation": info["generation"], "kind": info["index_kind"]}

    @app.post("/search", summary="The k items most similar to an uploaded image")
    def search(
        image: UploadFile = File(..., description="query image file"),  # noqa: B008
        k: int = 10,
        label: str | None = None,
    ) -> dict[str, Any]:
        if not 1 <= k <= config.max_k:
            raise HTTPException(422, f"k must be between 1 and {config.max_k}, got {k}")
        data = read_upload(image)
        try:
            hits = searcher.search_bytes(data, k)
        except ImageDecodeError as error:
            raise HTTPException(400, f"upload {image.filename!r}: {error}") from None
        return {"query_label": label, "results": [hit_json(h, label) for h in hits]}

    @app.post("/items", status_code=201, summary="Add an image (API key when configured)")
    def add_item(
        image: UploadFile = File(..., description="image file"),  # noqa: B008
        label: str | None = Form(None),
        x_api_key: str | None = Header(None),
    ) -> dict[str, Any]:
        check_key(x_api_key)
        data = read_upload(image)
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as probe:
                suffix = FORMAT_SUFFIX.get(str(probe.format), ".img")
            item_id = searcher.add_bytes(data, suffix, label, image.filename)
        except (ImageDecodeError, OSError) as error:
            raise HTTPException(400, f"upload {image.filename!r}: not a decodable image ({error})") from None
        return {"id": item_id, "label": label, "image_url": f"/items/{item_id}/image"}

    @app.get("/items/{item_id}", summary="An item's record")
    def get_item(item_id: int) -> dict[str, Any]:
        try:
            item = store.get(item_id)
        except KeyError:
            raise HTTPException(404, f"no item with id {item_id}") from None
        return {
            "id": item.id,
            "label": item.label,
            "checksum": item.checksum,
            "added_at": item.added_at,
            "source": item.source,
            "image_url": f"/items/{item.id}/image",
        }

    @app.delete("/items/{item_id}", summary="Remove an item (API key when configured)")
    def delete_item(item_id: int, x_api_key: str | None = Header(None)) -> dict[str, Any]:
        check_key(x_api_key)
        try:
            store.remove([item_id])
        except KeyError:
            raise HTTPException(404, f"no item with id {item_id}") from None
        return {"deleted": item_id}

    @app.get("/items/{item_id}/image", summary="An item's stored image file")
    def item_image(item_id: int) -> FileResponse:
        try:
            return image_file(store.get(item_id).path)
        except KeyError:
            raise HTTPException(404, f"no item with id {item_id}") from None

    @app.get("/images/{path:path}", summary="A file of the image store by its path")
    def store_file(path: str) -> FileResponse:
        return image_file(path)

    def image_file(relative: str) -> FileResponse:
        try:
            path = resolve_in_store(store.images_dir, relative)
        except OutsideStoreError as error:
            raise HTTPException(400, str(error)) from None
        if not path.is_file():
            raise HTTPException(404, f"no image {relative!r} in the store")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media)

    return app
