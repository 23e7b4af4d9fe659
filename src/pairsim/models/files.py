"""Model files: an embedding model saved with what rebuilds it, loaded by anything that embeds.

A model file is a ``torch.save`` dict with at least ``"model_spec"`` (registry name, embedding size,
preprocessing) and ``"model"`` (the state dict). Trainer checkpoints (``last.pt``, ``best.pt``, a
torchrun summary) are model files with more keys; an index keeps its own ``model.pt``. They are
loaded here, so the index and the service embed without the trainer.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain data (dicts, lists,
tuples, str, int, float, bool, ``None``) only, which is all pairsim writes (RNG states are tensors, the
configuration a dict). Loading a file therefore never runs code from it, whoever made it; a file that
holds anything else is refused with a :class:`ValueError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pairsim._io import atomic_write
from pairsim.models.embedding import EmbeddingModel, Preprocessing
from pairsim.models.registry import create_model

#: What every model file holds.
MODEL_KEYS = ("model_spec", "model")
#: How a ``torch.save`` file starts (a zip archive's first local file header).
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class LoadedModel:
    """An embedding model (in eval mode) with what identifies it.

    Attributes:
        model: the model.
        preprocessing: its input convention.
        fingerprint: :func:`model_fingerprint` of its spec and weights.
        spec: :func:`model_spec` as saved.
        file_sha256: SHA-256 of the file's bytes, of the very bytes the model was loaded from.
        config: the training configuration a trainer checkpoint holds (``None`` in a bare model file).
    """

    model: EmbeddingModel
    preprocessing: Preprocessing
    fingerprint: str
    spec: dict[str, Any]
    file_sha256: str
    config: dict[str, Any] | None


def model_spec(model_name: str, model: EmbeddingModel) -> dict[str, Any]:
    """What :func:`load_model` needs to rebuild ``model``: its registry name, size and preprocessing.

    Example:
        >>> from pairsim.models import create_model
        >>> model_spec("small-cnn", create_model("small-cnn", 8, 1))["embedding_dim"]
        8
    """
    return {
        "name": model_name,
        "embedding_dim": model.embedding_dim,
        "preprocessing": dataclasses.asdict(model.preprocessing),
    }


def model_fingerprint(spec: dict[str, Any], state_dict: dict[str, Any]) -> str:
    """SHA-256 over a model's spec (name, dim, preprocessing) and every weight (name, dtype, shape, bytes).

    Two checkpoints of the same weights (``best.pt`` and ``last.pt`` after the last improvement) share it;
    any change of a weight or of the preprocessing changes it.
    """
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (see :func:`pairsim._io.atomic_write`).

    ``state`` should hold only tensors and plain data, or :func:`read_state` refuses the file.
    """
    with atomic_write(path) as f:
        torch.save(state, f)


def read_state(path: str | Path) -> dict[str, Any]:
    """The dict saved by :func:`save_state` (tensors on the CPU), read without running code from the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a ``torch.save`` dict, or holds something other than tensors and
            plain data (an object whose unpickling would call code); nothing of it was run.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "state.pt"
        >>> save_state({"step": 3, "w": torch.zeros(2)}, path)
        >>> read_state(path)["step"]
        3
    """
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """``(state, SHA-256 of the file)``; the bytes are read once, so the digest is of what was loaded."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()  # in memory once (a model file is MBs): hashed and loaded from the same bytes
    if not data.startswith(ZIP_MAGIC):
        # torch.save has written zip archives since torch 1.6; torch's reader of the older raw pickles is not used.
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (not a torch.save archive)")
    try:
        # weights_only=True passed explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn it off.
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds something other than weights and plain data ({_refused_part(error)}); it was not "
            "loaded: pairsim reads model files and checkpoints without running code from them"
        ) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, AttributeError, ImportError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (torch.load: {reason})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (it holds a {type(state).__name__})")
    return state, hashlib.sha256(data).hexdigest()


def _refused_part(error: pickle.UnpicklingError) -> str:
    # torch's message is a paragraph that advises weights_only=False; keep only what was refused.
    found = re.search(r"GLOBAL (\S+)", str(error))
    if found:
        return found.group(1)
    found = re.search(r"Unsupported operand \S+", str(error))
    return found.group(0) if found else "not a torch.save file of tensors"


def save_model_file(state: dict[str, Any], path: str | Path) -> None:
    """Write the model part (``model_spec`` and ``model``) of a checkpoint ``state`` as a model file."""
    save_state({key: state[key] for key in MODEL_KEYS}, path)


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild the embedding model of a model file or trainer checkpoint, in eval mode, with its fingerprint.

    The file is read once (:func:`read_state`); what a caller needs besides the model (its training
    configuration, the file's digest) is on the result, so no command reads the file again.

    Args:
        path: a ``last.pt`` / ``best.pt`` written by the trainer, or an index's ``model.pt``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a model file (no ``model_spec`` / ``model``, or a spec that names no model), weights
            that do not fit the spec, or a file holding more than weights and plain data.
    """
    path = Path(path)
    state, digest = _read(path)
    missing = [key for key in MODEL_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path} is not a pairsim checkpoint or model file (no {' / '.join(missing)})")
    spec, weights = state["model_spec"], state["model"]
    model = _build(spec, path)
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: its model is a {type(weights).__name__}, not a state dict of weights")
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(
            f"{path}: the weights do not fit model {spec['name']!r} ({str(error).splitlines()[0]})"
        ) from None
    config = state.get("config")
    return LoadedModel(
        model.eval(),
        model.preprocessing,
        model_fingerprint(spec, weights),
        spec,
        digest,
        config if isinstance(config, dict) else None,
    )


def _build(spec: Any, path: Path) -> EmbeddingModel:
    """The untrained model that ``spec`` describes (a clear error for a spec that describes none)."""
    try:
        prep = Preprocessing(**spec["preprocessing"])
        # pretrained=False: the file has every weight, so the ImageNet file is not read again.
        model = create_model(spec["name"], spec["embedding_dim"], prep.in_channels, pretrained=False)
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: its model_spec describes no pairsim model ({error})") from None
    model.preprocessing = prep
    return model


def load_embedding_model(path: str | Path) -> tuple[EmbeddingModel, Preprocessing]:
    """``(model, preprocessing)`` of a model file or trainer checkpoint (see :func:`load_model`).

    The model maps ``(N, in_channels, H, W)`` float images in ``[0, 1]`` (``H = W =
    preprocessing.image_size``) to ``(N, D)`` unit embeddings.
    """
    loaded = load_model(path)
    return loaded.model, loaded.preprocessing
