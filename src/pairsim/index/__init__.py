"""The retrieval index: faiss vectors + a SQLite item table + a manifest in one directory.

``build_index(checkpoint, images, out)`` makes one, ``add_images`` / ``IndexStore.remove`` update it
atomically, ``Searcher`` answers image queries, ``check_index`` verifies (and repairs) a directory;
``pairsim index|search|serve`` wrap these. ``IndexDamagedError`` and ``StorageError`` are what a
damaged directory and a refusing disk raise.
"""

from pairsim.index.build import (
    BuildResult,
    Searcher,
    add_images,
    build_index,
    load_model,
    open_model,
)
from pairsim.index.check import CheckReport, Finding, check_index
from pairsim.index.errors import IndexDamagedError, StorageError
from pairsim.index.images import ImageDecodeError, OutsideStoreError, decode_image
from pairsim.index.manifest import Manifest, ModelMismatchError
from pairsim.index.records import Hit, Item, NewItem
from pairsim.index.store import IndexStore

__all__ = [
    "BuildResult",
    "CheckReport",
    "Finding",
    "Hit",
    "ImageDecodeError",
    "IndexDamagedError",
    "IndexStore",
    "Item",
    "Manifest",
    "ModelMismatchError",
    "NewItem",
    "OutsideStoreError",
    "Searcher",
    "StorageError",
    "add_images",
    "build_index",
    "check_index",
    "decode_image",
    "load_model",
    "open_model",
]
