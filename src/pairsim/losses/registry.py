"""The loss registry: ``create_loss("circle", m=0.25, gamma=256)`` instead of if-chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pairsim.registry import Registry

if TYPE_CHECKING:
    from pairsim.losses.base import PairLoss


def _load_builtin_losses() -> None:
    # Importing the package runs every built-in loss module's @register_loss.
    import pairsim.losses  # noqa: F401


_LOSSES: Registry[type[PairLoss]] = Registry("loss", _load_builtin_losses, plural="losses")
LossT = TypeVar("LossT", bound="type[PairLoss]")


def register_loss(name: str) -> Callable[[LossT], LossT]:
    """Class decorator that makes a loss available to :func:`create_loss` under ``name``.

    Raises:
        ValueError: if ``name`` is already taken.
    """
    return _LOSSES.register(name)  # type: ignore[return-value]


def list_losses() -> list[str]:
    """Names of all registered losses, sorted.

    Example:
        >>> "circle" in list_losses()
        True
    """
    return _LOSSES.names()


def get_loss_class(name: str) -> type[PairLoss]:
    """The class registered under ``name``.

    Raises:
        ValueError: naming the unknown loss and the known ones.
    """
    return _LOSSES.get(name)


def create_loss(name: str, **kwargs: Any) -> PairLoss:
    """Build a registered loss from its name and its constructor's arguments.

    Example:
        >>> loss = create_loss("circle", m=0.25, gamma=64.0)
        >>> type(loss).__name__
        'CircleLoss'
    """
    return get_loss_class(name)(**kwargs)
