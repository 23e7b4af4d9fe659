"""The items of the index: add (``POST /items``), read, delete, and their stored image files.

Adding and deleting need the API key when one is configured: those two routes, and no others, carry
the :func:`~pairsim.service.dependencies.require_api_key` dependency.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
import io
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse
from PIL import Image

from pairsim.index import ImageDecodeError, IndexStore, OutsideStoreError
from pairsim.index.images import resolve_in_store
from pairsim.service.dependencies import ConfigDep, SearcherDep, StoreDep, read_upload, require_api_key

FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}

router = APIRouter()


def image_suffix(data: bytes) -> str:
    """The file suffix of an image's format as Pillow detects it (``.img`` for others).

    Raises:
        OSError: Pillow cannot identify the image.
    """
    with Image.open(io.BytesIO(data)) as probe:
        return FORMAT_SUFFIX.get(str(probe.format), ".img")


def no_item(item_id: int) -> HTTPException:
    """The 404 of an unknown item id."""
    return HTTPException(404, f"no item with id {item_id}")


def image_file(store: IndexStore, relative: str) -> FileResponse:
    """The file ``relative`` of the image store, with the media type of its suffix.

    Raises:
        HTTPException: 400 when ``relative`` leaves the store, 404 when there is no such file.
    """
    try:
        path = resolve_in_store(store.images_dir, relative)
    except OutsideStoreError as error:
        raise HTTPException(400, str(error)) from None
    if not path.is_file():
        raise HTTPException(404, f"no image {relative!r} in the store")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media)


@router.post(
    "/items",
    status_code=201,
    summary="Add an image (API key when configured)",
    dependencies=[Depends(require_api_key)],
)
def add_item(
    searcher: SearcherDep,
    config: ConfigDep,
    image: Annotated[UploadFile, File(description="image file")],
    label: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    """The new item's id, label and image URL.

    Errors: 401 without the configured key in header ``X-API-Key``, 413 for an upload over the size
    limit, 400 for an empty upload or one that is not a decodable image.
    """
    data = read_upload(image, config.max_upload_bytes)
    try:
        item_id = searcher.add_bytes(data, image_suffix(data), label, image.filename)
    except (ImageDecodeError, OSError) as error:
        raise HTTPException(400, f"upload {image.filename!r}: not a decodable image ({error})") from None
    return {"id": item_id, "label": label, "image_url": f"/items/{item_id}/image"}


@router.get("/items/{item_id}", summary="An item's record")
def get_item(item_id: int, store: StoreDep) -> dict[str, Any]:
    """The item's label, checksum, time added, source file name and image URL; 404 for an unknown id."""
    try:
        item = store.get(item_id)
    except KeyError:
        raise no_item(item_id) from None
    return {
        "id": item.id,
        "label": item.label,
        "checksum": item.checksum,
        "added_at": item.added_at,
        "source": item.source,
        "image_url": f"/items/{item.id}/image",
    }


@router.delete(
    "/items/{item_id}",
    summary="Remove an item (API key when configured)",
    dependencies=[Depends(require_api_key)],
)
def delete_item(item_id: int, store: StoreDep) -> dict[str, Any]:
    """Removes the item from the index; 401 without the configured key, 404 for an unknown id."""
    try:
        store.remove([item_id])
    except KeyError:
        raise no_item(item_id) from None
    return {"deleted": item_id}


@router.get("/items/{item_id}/image", summary="An item's stored image file")
def item_image(item_id: int, store: StoreDep) -> FileResponse:
    """The image file as it was uploaded or indexed; 404 for an unknown id."""
    try:
        relative = store.get(item_id).path
    except KeyError:
        raise no_item(item_id) from None
    return image_file(store, relative)


@router.get("/images/{path:path}", summary="A file of the image store by its path")
def store_file(path: str, store: StoreDep) -> FileResponse:
    """The file at ``path`` inside the image store; 400 for a path leaving the store, 404 for none."""
    return image_file(store, path)
