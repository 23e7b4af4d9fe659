"""The items of the index: add (``POST /items``), read, delete, and their stored image files.

Adding and deleting need the API key (or a server started with ``--allow-anonymous-writes``): those
two routes, and no others, carry the :func:`~pairsim.service.dependencies.require_api_key` dependency.
An item's ``source`` (the uploader's file name) is shown only to a request carrying the key.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
import io
import mimetypes
import warnings
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from PIL import Image

from pairsim.index import ImageDecodeError, IndexStore, OutsideStoreError
from pairsim.index.images import resolve_in_store
from pairsim.service.dependencies import (
    ConfigDep,
    DecodeSlotsDep,
    KeyGivenDep,
    SearcherDep,
    StoreDep,
    read_upload,
    require_api_key,
)
from pairsim.service.errors import error_responses

FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
#: Item ids are SQLite integers: a larger id in a path is a 422, never a query that overflows.
MAX_ID = 2**63 - 1
ItemId = Annotated[int, PathParam(ge=0, le=MAX_ID, description="item id")]

router = APIRouter()


def image_suffix(data: bytes) -> str:
    """The file suffix of an image's format as Pillow detects it from the header (``.img`` when it cannot).

    Only a name: whether the bytes decode is :func:`~pairsim.index.decode_image`'s to say, with a
    message naming the problem, so nothing Pillow raises while probing is an error here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:  # lazy: reads the header only
                return FORMAT_SUFFIX.get(str(probe.format), ".img")
    except Exception:  # OSError, SyntaxError, DecompressionBombError, ...: all mean "unknown" here
        return ".img"


def no_item(item_id: int) -> HTTPException:
    """The 404 of an unknown item id."""
    return HTTPException(404, f"no item with id {item_id}")


def image_file(store: IndexStore, relative: str) -> Response:
    """The file ``relative`` of the image store, with the media type of its suffix.

    The file is read whole before the answer starts: a file deleted while it is sent (a racing
    ``DELETE``) can then not cut the body short of its ``Content-Length``.

    Raises:
        HTTPException: 400 when ``relative`` leaves the store, 404 when there is no such file (a name
            too long for the file system and a symbolic-link loop included).
    """
    try:
        path = resolve_in_store(store.images_dir, relative)
        data = path.read_bytes()
    except OutsideStoreError as error:
        raise HTTPException(400, str(error)) from None
    except (OSError, RuntimeError):  # missing, a directory, ENAMETOOLONG, ELOOP (RuntimeError before 3.13)
        raise HTTPException(404, f"no image {relative!r} in the store") from None
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(data, media_type=media)


@router.post(
    "/items",
    status_code=201,
    summary="Add an image (API key)",
    dependencies=[Depends(require_api_key)],
    responses=error_responses(400, 401, 403, 408, 413, 422, 503, 507),
)
def add_item(
    searcher: SearcherDep,
    config: ConfigDep,
    slots: DecodeSlotsDep,
    image: Annotated[UploadFile, File(description="image file")],
    label: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    """The new item's id, label and image URL.

    Errors: 401 without the key in header ``X-API-Key``, 403 when writes are off or the request is
    cross-origin, 413 for an upload over the size limit, 400 for an empty upload or one that is not a
    decodable image, 507 when the server's disk is full.
    """
    data = read_upload(image, config.max_upload_bytes)
    try:
        with slots.slot():
            item_id = searcher.add_bytes(data, image_suffix(data), label, image.filename)
    except ImageDecodeError as error:
        raise HTTPException(400, f"upload {image.filename!r}: {error}") from None
    return {"id": item_id, "label": label, "image_url": f"/items/{item_id}/image"}


@router.get("/items/{item_id}", summary="An item's record", responses=error_responses(400, 404, 422))
def get_item(item_id: ItemId, store: StoreDep, key_given: KeyGivenDep) -> dict[str, Any]:
    """The item's label, checksum, time added and image URL; with the API key also ``source``, the
    uploader's file name. 404 for an unknown id."""
    try:
        item = store.get(item_id)
    except KeyError:
        raise no_item(item_id) from None
    out = {
        "id": item.id,
        "label": item.label,
        "checksum": item.checksum,
        "added_at": item.added_at,
        "image_url": f"/items/{item.id}/image",
    }
    return {**out, "source": item.source} if key_given else out


@router.delete(
    "/items/{item_id}",
    summary="Remove an item (API key)",
    dependencies=[Depends(require_api_key)],
    responses=error_responses(400, 401, 403, 404, 422, 503, 507),
)
def delete_item(item_id: ItemId, store: StoreDep) -> dict[str, Any]:
    """Removes the item from the index; 401 without the key, 403 when writes are off, 404 for an unknown id."""
    try:
        store.remove([item_id])
    except KeyError:
        raise no_item(item_id) from None
    return {"deleted": item_id}


@router.get(
    "/items/{item_id}/image",
    summary="An item's stored image file",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "the image file"}, **error_responses(400, 404, 422)},
)
def item_image(item_id: ItemId, store: StoreDep) -> Response:
    """The image file as it was uploaded or indexed; 404 for an unknown id."""
    try:
        relative = store.get(item_id).path
    except KeyError:
        raise no_item(item_id) from None
    return image_file(store, relative)


@router.get(
    "/images/{path:path}",
    summary="A file of the image store by its path",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "the image file"}, **error_responses(400, 404)},
)
def store_file(path: str, store: StoreDep) -> Response:
    """The file at ``path`` inside the image store; 400 for a path leaving the store, 404 for none."""
    return image_file(store, path)
