"""The manifest of an index directory: which model made its vectors, so queries from another are refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairsim._io import write_text_atomic
from pairsim.index.errors import IndexDamagedError, storage_errors

#: Bumped when the directory layout changes; an index of another format is refused on open.
FORMAT_VERSION = 1


class ModelMismatchError(ValueError):
    """A query or an addition embedded by a model other than the one the index was built with."""


@dataclass(frozen=True)
class Manifest:
    """What an index directory's vectors mean; written once when the index is built.

    Attributes:
        model_name: the registry name of the embedding model (``pairsim.models.list_models()``).
        model_fingerprint: SHA-256 of the model's spec and weights (``pairsim.models.model_fingerprint``).
        checkpoint_sha256: SHA-256 of the checkpoint file the index was built from.
        checkpoint_path: where that checkpoint was (informative; the model is copied into the index).
        embedding_dim: ``D``.
        preprocessing: ``pairsim.models.Preprocessing`` as a dict (channels, scaling, image size).
        created_at: UTC time of the build, ISO 8601.
        metric: the similarity of the faiss index (inner product of unit vectors, i.e. cosine).
        format_version: :data:`FORMAT_VERSION` of the writer.
    """

    model_name: str
    model_fingerprint: str
    checkpoint_sha256: str
    checkpoint_path: str
    embedding_dim: int
    preprocessing: dict[str, Any]
    created_at: str
    metric: str = "inner_product"
    format_version: int = FORMAT_VERSION

    def check_model(self, fingerprint: str, what: str = "the query model") -> None:
        """Raise :class:`ModelMismatchError` unless ``fingerprint`` is this index's model.

        Example:
            >>> m = Manifest("small-cnn", "a" * 64, "b" * 64, "x.pt", 8, {}, "2026-01-01T00:00:00Z")
            >>> try:
            ...     m.check_model("c" * 64)
            ... except ModelMismatchError as error:
            ...     print(str(error)[:70])
            the query model (cccccccccccc) is not the model of this index (aaaaaaa
        """
        if fingerprint != self.model_fingerprint:
            raise ModelMismatchError(
                f"{what} ({fingerprint[:12]}) is not the model of this index ({self.model_fingerprint[:12]}, "
                f"{self.model_name} from {self.checkpoint_path}): use the index's model or build a new index"
            )


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(manifest: Manifest, directory: Path) -> None:
    """``directory/manifest.json``, atomically (:class:`StorageError` when the disk refuses)."""
    text = json.dumps(dataclasses.asdict(manifest), indent=2, sort_keys=True) + "\n"
    with storage_errors("the manifest", directory / "manifest.json"):
        write_text_atomic(directory / "manifest.json", text)


def read_manifest(directory: Path) -> Manifest:
    """The manifest of an index directory.

    Raises:
        FileNotFoundError: ``directory`` is not an index (no ``manifest.json``).
        ValueError: the manifest is of another format version.
        IndexDamagedError: the manifest is not JSON or its fields are missing, unknown or mistyped.
    """
    path = directory / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a pairsim index (no manifest.json); build one with `pairsim index build`"
        )
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexDamagedError(f"{path} is damaged: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise IndexDamagedError(f"{path} is damaged: not a JSON object")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: index format {data.get('format_version')}, this pairsim reads {FORMAT_VERSION}")
    problem = schema_problem(data)
    if problem:
        raise IndexDamagedError(f"{path} is damaged: {problem}")
    return Manifest(**data)


def schema_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's fields (missing, unknown, of the wrong type), or ``None``.

    Example:
        >>> schema_problem({"model_name": "x"})[:50]
        'missing fields checkpoint_path, checkpoint_sha256,'
    """
    hints = typing.get_type_hints(Manifest)
    required = {f.name for f in dataclasses.fields(Manifest) if f.default is dataclasses.MISSING}
    if missing := sorted(required - data.keys()):
        return f"missing fields {', '.join(missing)}"
    if unknown := sorted(data.keys() - hints.keys()):
        return f"unknown fields {', '.join(unknown)}"
    for name, value in data.items():
        expected = typing.get_origin(hints[name]) or hints[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            return f"field {name} is {type(value).__name__}, expected {expected.__name__}"
    if data["embedding_dim"] < 1:
        return f"embedding_dim is {data['embedding_dim']}"
    return None
