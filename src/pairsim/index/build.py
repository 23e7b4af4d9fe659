"""From a checkpoint and images to an index, and from a query image to its neighbours.

The functions here glue the model file (:mod:`pairsim.models.files`), the image inputs
(:mod:`pairsim.index.images`) and the storage (:class:`~pairsim.index.store.IndexStore`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pairsim import models
from pairsim._io import atomic_directory
from pairsim.data.base import ImageSet
from pairsim.index.images import StoredImage, decode_image, iter_images
from pairsim.index.manifest import Manifest
from pairsim.index.records import Hit, NewItem
from pairsim.index.staging import Stage
from pairsim.index.store import IndexStore
from pairsim.models import EmbeddingModel, LoadedModel

MODEL_FILE = "model.pt"


def load_model(checkpoint: str | Path) -> LoadedModel:
    """The embedding model of a trainer checkpoint (or of an index's ``model.pt``), with its fingerprint."""
    return models.load_model(checkpoint)


def inference_execution(model: EmbeddingModel) -> models.Execution:
    """How an index embeds with ``model``: the automatic inference settings of its device (bf16 and
    channels-last on CPUs with AVX512-BF16; see :func:`pairsim.models.resolve_execution`)."""
    return models.resolve_execution(device=next(model.parameters()).device, phase="inference")


def embed(model: EmbeddingModel, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``(N, C, S, S)`` uint8 images to ``(N, D)`` float32 unit embeddings, under
    :func:`inference_execution` (a model from :func:`prepared_model` is used as it is)."""
    execution = inference_execution(model)
    return models.embed(model, pixels, batch_size=batch_size, execution=execution).numpy().astype(np.float32)


def prepared_model(model: EmbeddingModel) -> EmbeddingModel:
    """``model`` prepared once for :func:`embed` (BatchNorm folded, its layout), for many calls."""
    return models.inference_model(model, inference_execution(model))


def add_stored_images(
    store: IndexStore,
    model: EmbeddingModel,
    images: list[StoredImage],
    batch_size: int = 256,
    vectors: np.ndarray | None = None,
) -> list[int]:
    """Embed ``images`` (unless their ``(n, D)`` ``vectors`` are given), put their files in the store,
    and add them as one atomic update; returns their ids."""
    with store.staging() as stage:
        vectors, items = prepare_images(store, stage, model, images, batch_size, vectors)
        return store.add(vectors, items, stage=stage) if items else []


def prepare_images(
    store: IndexStore,
    stage: Stage,
    model: EmbeddingModel,
    images: list[StoredImage],
    batch_size: int = 256,
    vectors: np.ndarray | None = None,
) -> tuple[np.ndarray, list[NewItem]]:
    """Embed ``images`` (unless ``vectors`` are given) and write their files into the store, pinned by
    ``stage`` (no commit: ``store.add(..., stage=stage)`` does it)."""
    if vectors is None:
        pixels = np.stack([im.pixels for im in images]) if images else np.zeros((0, 1, 1, 1), np.uint8)
        vectors = embed(model, pixels, batch_size)  # (n, D)
    named = store.put_images(stage, [(im.data, im.suffix) for im in images])
    items = [NewItem(path, digest, im.label, im.source) for im, (path, digest) in zip(images, named, strict=True)]
    return vectors, items


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_index` / :func:`add_images` did."""

    directory: Path
    added: int
    total: int
    seconds: float


def build_index(
    checkpoint: str | Path,
    images: str | ImageSet,
    out: str | Path,
    *,
    kind: str = "auto",
    batch_size: int = 256,
    embeddings: np.ndarray | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> BuildResult:
    """Build a new index directory ``out`` from a checkpoint and images.

    The index is built in a temporary directory beside ``out`` and renamed to ``out`` at the end, so
    ``out`` never holds half an index.

    Args:
        checkpoint: a trainer checkpoint (``last.pt`` / ``best.pt``).
        images: a folder of class sub-folders, a ``path,label`` CSV, ``NAME:SPLIT[:MAX_CLASSES]`` of a
            built-in data set, or an :class:`ImageSet`.
        out: the index directory to create (must not exist, or be empty).
        kind: ``auto`` (exact, HNSW from ``vectors.AUTO_APPROXIMATE_AT`` items), ``flat``, ``ivf`` or ``hnsw``.
        batch_size: images per forward pass.
        embeddings: ``(N, D)`` embeddings of an :class:`ImageSet` ``images`` already made by this
            checkpoint's model (the demo has them from its evaluation), so they are not computed again.
        say: progress messages.

    Raises:
        FileExistsError: ``out`` exists and is not empty.
        ValueError: ``embeddings`` given for images that are not an :class:`ImageSet` of as many rows.
    """
    if embeddings is not None and (not isinstance(images, ImageSet) or len(embeddings) != len(images)):
        raise ValueError("embeddings= needs an ImageSet of as many images")
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists; add images to it with `pairsim index add` or choose another --out")
    loaded = load_model(checkpoint)
    with atomic_directory(out) as work:
        models.save_model_file({"model_spec": loaded.spec, "model": loaded.model.state_dict()}, work / MODEL_FILE)
        manifest = Manifest(
            model_name=str(loaded.spec["name"]),
            model_fingerprint=loaded.fingerprint,
            checkpoint_sha256=loaded.file_sha256,  # of the bytes loaded: the checkpoint is read once
            checkpoint_path=str(Path(checkpoint).resolve()),
            embedding_dim=loaded.model.embedding_dim,
            preprocessing=dataclasses.asdict(loaded.preprocessing),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        store = IndexStore.create(work, manifest, kind=kind)
        store.sync_each_image = False  # atomic_directory fsyncs every file before `out` appears
        added = _add_all(store, loaded, images, batch_size, say, embeddings)
    return BuildResult(out, added, added, time.perf_counter() - started)


def add_images(
    directory: str | Path,
    images: str | ImageSet,
    *,
    checkpoint: str | Path | None = None,
    batch_size: int = 256,
    say: Callable[[str], None] = lambda _: None,
) -> BuildResult:
    """Embed ``images`` with the index's model and add them all as one atomic update.

    Args:
        checkpoint: embed with this checkpoint instead of the index's ``model.pt``; refused
            (:class:`~pairsim.index.manifest.ModelMismatchError`) unless it holds the same model.
    """
    started = time.perf_counter()
    store = IndexStore(directory)
    loaded = open_model(store, checkpoint)
    added = _add_all(store, loaded, images, batch_size, say)
    return BuildResult(store.directory, added, len(store), time.perf_counter() - started)


def _add_all(
    store: IndexStore,
    loaded: LoadedModel,
    images: str | ImageSet,
    batch_size: int,
    say: Callable[[str], None],
    embeddings: np.ndarray | None = None,
) -> int:
    # Embedded chunk by chunk (bounded image memory), committed once: the whole add or none of it, and
    # the faiss file is written once rather than once a chunk.
    vectors: list[np.ndarray] = []
    items: list[NewItem] = []
    model = prepared_model(loaded.model) if embeddings is None else loaded.model
    with store.staging() as stage:  # every chunk's files stay pinned until the one commit
        for chunk in iter_images(images, loaded.preprocessing):
            given = None if embeddings is None else np.asarray(embeddings[len(items) : len(items) + len(chunk)])
            chunk_vectors, chunk_items = prepare_images(store, stage, model, chunk, batch_size, given)
            vectors.append(np.asarray(chunk_vectors, np.float32))
            items += chunk_items
            say(f"embedded {len(items)} images")
        if items:
            store.add(np.concatenate(vectors), items, stage=stage)
    return len(items)


def open_model(store: IndexStore, checkpoint: str | Path | None = None) -> LoadedModel:
    """The index's own model, or ``checkpoint``'s after checking it is the same model."""
    loaded = load_model(checkpoint if checkpoint is not None else store.directory / MODEL_FILE)
    store.manifest.check_model(loaded.fingerprint, what=f"the model of {checkpoint}" if checkpoint else f"{MODEL_FILE}")
    return loaded


class Searcher:
    """Answers image queries against an index with the index's model.

    Args:
        directory: the index directory.
        checkpoint: use this checkpoint's model (must be the index's; see :func:`open_model`).

    Raises:
        IndexDamagedError: the index's database, manifest or vectors are damaged (the message names which).
    """

    def __init__(self, directory: str | Path, checkpoint: str | Path | None = None) -> None:
        self.store = IndexStore(directory)
        self.store.snapshot()  # loaded now: a damaged index fails here (IndexDamagedError), not per query
        self.loaded = open_model(self.store, checkpoint)
        self.model = prepared_model(self.loaded.model)  # prepared once, not per request

    def embed_bytes(self, data: bytes) -> np.ndarray:
        """``(1, D)`` embedding of an image file's bytes (``ImageDecodeError`` when not an image)."""
        return embed(self.model, decode_image(data, self.loaded.preprocessing)[None])

    def search_bytes(self, data: bytes, k: int = 10) -> list[Hit]:
        """The ``k`` nearest items to the image in ``data``, best first."""
        return self.store.search(self.embed_bytes(data), k)[0]

    def add_bytes(self, data: bytes, suffix: str, label: str | None, source: str | None) -> int:
        """Add one image file's bytes as a new item; returns its id."""
        pixels = decode_image(data, self.loaded.preprocessing)
        return add_stored_images(self.store, self.model, [StoredImage(pixels, data, suffix, label, source)])[0]
