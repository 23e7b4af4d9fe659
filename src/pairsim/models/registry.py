"""The model registry: ``create_model("efficientnet-lite0", embedding_dim=128)`` instead of if-chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pairsim.models.embedding import EmbeddingModel
from pairsim.registry import Registry


class ModelFactory(Protocol):
    """What a registered model builder takes: every model is built from the same three choices."""

    def __call__(self, embedding_dim: int, in_channels: int, pretrained: bool) -> EmbeddingModel: ...


def _load_builtin_models() -> None:
    # Importing the package runs every built-in model module's @register_model.
    import pairsim.models  # noqa: F401


_MODELS: Registry[ModelFactory] = Registry("model", _load_builtin_models)


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Function decorator that makes a model builder available to :func:`create_model` under ``name``.

    Raises:
        ValueError: if ``name`` is already taken.
    """
    return _MODELS.register(name)


def list_models() -> list[str]:
    """Names of all registered models, sorted.

    Example:
        >>> list_models()
        ['efficientnet-lite0', 'small-cnn']
    """
    return _MODELS.names()


def create_model(name: str, embedding_dim: int = 128, in_channels: int = 3, pretrained: bool = False) -> EmbeddingModel:
    """Build a registered embedding model.

    Args:
        name: a name from :func:`list_models`.
        embedding_dim: ``D``, the size of the L2-normalised embedding.
        in_channels: channels of the images the model will be given (1 or 3); a backbone made
            for RGB repeats a grayscale channel.
        pretrained: load the backbone's published weights (an error for a model without any).

    Raises:
        ValueError: naming the unknown model and the known ones, or on a bad argument.

    Example:
        >>> model = create_model("small-cnn", embedding_dim=16, in_channels=1)
        >>> model(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 16])
    """
    factory = _MODELS.get(name)
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    return factory(embedding_dim=embedding_dim, in_channels=in_channels, pretrained=pretrained)
