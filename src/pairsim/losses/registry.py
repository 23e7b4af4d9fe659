"""The loss registry: ``create_loss("circle", m=0.25, gamma=256)`` instead of if-chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pairsim.losses.base import PairLoss

_LOSSES: dict[str, type[PairLoss]] = {}
LossT = TypeVar("LossT", bound="type[PairLoss]")


def register_loss(name: str) -> Callable[[LossT], LossT]:
    """Class decorator that makes a loss available to :func:`create_loss` under ``name``.

    Raises:
        ValueError: if ``name`` is already taken.
    """

    def add(cls: LossT) -> LossT:
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is already registered by {_LOSSES[name].__name__}")
        _LOSSES[name] = cls
        return cls

    return add


def list_losses() -> list[str]:
    """Names of all registered losses, sorted.

    Example:
        >>> "circle" in list_losses()
        True
    """
    _load_builtin_losses()
    return sorted(_LOSSES)


def get_loss_class(name: str) -> type[PairLoss]:
    """The class registered under ``name``.

    Raises:
        ValueError: naming the unknown loss and the known ones.
    """
    _load_builtin_losses()
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(_LOSSES))}") from None


def create_loss(name: str, **kwargs: Any) -> PairLoss:
    """Build a registered loss from its name and its constructor's arguments.

    Example:
        >>> loss = create_loss("circle", m=0.25, gamma=64.0)
        >>> type(loss).__name__
        'CircleLoss'
    """
    return get_loss_class(name)(**kwargs)


def _load_builtin_losses() -> None:
    # Importing the package runs every built-in loss module's @register_loss.
    import pairsim.losses  # noqa: F401
