"""Hyper-parameter search spaces, declared by each loss next to its own code.

Each registered loss answers :meth:`PairLoss.search_space(class_level) <pairsim.losses.base.PairLoss.search_space>`
with the dimensions a study tunes, keyed by the dotted training-configuration key each value goes to
(``"loss.params.m"``, ``"optim.proxy_lr"``); :func:`search_space_for` looks a loss up by its registered name.
Nothing here imports Optuna: :meth:`SearchSpace.sample` takes any :class:`Suggester`, which an
``optuna.Trial`` is, so the study code may use Optuna while this layer does not need it.

Example:
    >>> space = search_space_for("circle", class_level=True)
    >>> space.keys
    ('loss.params.m', 'loss.params.gamma', 'optim.proxy_lr')
    >>> space.to_dict()["loss.params.gamma"]
    {'type': 'float', 'low': 16.0, 'high': 1024.0, 'log': True}
    >>> class Lowest:  # stands in for an optuna.Trial: always the lower bound, or the first choice
    ...     def suggest_float(self, name, low, high, *, log=False): return low
    ...     def suggest_int(self, name, low, high, *, log=False): return low
    ...     def suggest_categorical(self, name, choices): return choices[0]
    >>> space.sample(Lowest())
    {'loss.params.m': 0.0, 'loss.params.gamma': 16.0, 'optim.proxy_lr': 0.001}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

from pairsim.losses.registry import get_loss_class

if TYPE_CHECKING:
    from pairsim.losses.base import PairLoss

ParamValue: TypeAlias = str | float | int | bool
"""A sampled value: what a dotted configuration key is set to."""

JSONValue: TypeAlias = str | float | int | bool | list[ParamValue]


class Suggester(Protocol):
    """What :meth:`SearchSpace.sample` needs of a trial: the suggest methods of ``optuna.Trial``.

    Each method draws the value named ``name`` (here the dotted configuration key) and records it.
    """

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        """A float in ``[low, high]``, log-uniformly spread when ``log``."""
        ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        """An integer in ``[low, high]``, log-uniformly spread when ``log``."""
        ...

    def suggest_categorical(self, name: str, choices: Sequence[ParamValue]) -> ParamValue | None:
        """One of ``choices`` (Optuna's choices may also be ``None``, hence the return type)."""
        ...


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or any(not part.strip() for part in key.split(".")):
        raise ValueError(f"a search parameter needs a dotted configuration key such as 'loss.params.m', got {key!r}")


def _check_bounds(key: str, low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{key}: the bounds must be finite, got [{low!r}, {high!r}]")
    if not low < high:
        raise ValueError(f"{key}: low must be below high, got [{low!r}, {high!r}]")
    if log and low <= 0:
        raise ValueError(f"{key}: a log-scale range needs positive bounds, got [{low!r}, {high!r}]")


@dataclass(frozen=True)
class FloatParam:
    """A float dimension: uniform (or log-uniform) in ``[low, high]``.

    Args:
        key: the dotted configuration key the value goes to, e.g. ``"loss.params.gamma"``.
        low: the lower bound, included.
        high: the upper bound, included; above ``low``.
        log: draw ``log(value)`` uniformly (for scales and learning rates); needs ``low > 0``.

    Raises:
        ValueError: on an empty key, non-finite or unordered bounds, or a log scale with ``low <= 0``.
    """

    key: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key)
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise ValueError(f"{self.key}: the bounds must be numbers, got [{self.low!r}, {self.high!r}]")
        _check_bounds(self.key, self.low, self.high, self.log)
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))

    def suggest(self, trial: Suggester) -> float:
        """The value ``trial`` draws for :attr:`key`."""
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def to_dict(self) -> dict[str, JSONValue]:
        """A JSON-able description (without the key)."""
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class IntParam:
    """An integer dimension: uniform (or log-uniform) in ``[low, high]``.

    Args:
        key: the dotted configuration key the value goes to.
        low: the lower bound, included.
        high: the upper bound, included; above ``low``.
        log: draw on a log scale; needs ``low >= 1``.

    Raises:
        ValueError: on an empty key, non-integer or unordered bounds, or a log scale with ``low < 1``.
    """

    key: str
    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        _check_key(self.key)
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, int):
                raise ValueError(f"{self.key}: the bounds must be integers, got [{self.low!r}, {self.high!r}]")
        _check_bounds(self.key, self.low, self.high, self.log)

    def suggest(self, trial: Suggester) -> int:
        """The value ``trial`` draws for :attr:`key`."""
        return trial.suggest_int(self.key, self.low, self.high, log=self.log)

    def to_dict(self) -> dict[str, JSONValue]:
        """A JSON-able description (without the key)."""
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class CategoricalParam:
    """A categorical dimension: one of ``choices``.

    Args:
        key: the dotted configuration key the value goes to.
        choices: the distinct values, strings, numbers or booleans (a list is stored as a tuple).

    Raises:
        ValueError: on an empty key, no choices, a repeated choice, or a choice of another type.
    """

    key: str
    choices: tuple[ParamValue, ...]

    def __post_init__(self) -> None:
        _check_key(self.key)
        choices = tuple(self.choices)
        if not choices:
            raise ValueError(f"{self.key}: a categorical parameter needs at least one choice")
        for choice in choices:
            if not isinstance(choice, (str, float, int, bool)):
                raise ValueError(f"{self.key}: choices must be strings, numbers or booleans, got {choice!r}")
        # 1 == 1.0 == True: compare with the type so that such choices stay distinct.
        if len({(type(c), c) for c in choices}) != len(choices):
            raise ValueError(f"{self.key}: repeated choices in {choices!r}")
        object.__setattr__(self, "choices", choices)

    def suggest(self, trial: Suggester) -> ParamValue:
        """The value ``trial`` draws for :attr:`key`.

        Raises:
            ValueError: if ``trial`` returns something that is not one of :attr:`choices`.
        """
        value = trial.suggest_categorical(self.key, self.choices)
        if value is None or not any(type(value) is type(c) and value == c for c in self.choices):
            raise ValueError(f"{self.key}: the trial suggested {value!r}, not one of {self.choices!r}")
        return value

    def to_dict(self) -> dict[str, JSONValue]:
        """A JSON-able description (without the key)."""
        return {"type": "categorical", "choices": list(self.choices)}


SearchParam: TypeAlias = FloatParam | IntParam | CategoricalParam


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions a study tunes for one loss in one paradigm; never empty, one dimension per key.

    Args:
        params: the dimensions, in the order they are sampled (a list is stored as a tuple).

    Raises:
        ValueError: on no parameters, or two parameters with the same key.
    """

    params: tuple[SearchParam, ...]

    def __post_init__(self) -> None:
        params = tuple(self.params)
        if not params:
            raise ValueError("a search space needs at least one parameter")
        keys = [p.key for p in params]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"a search space has one parameter per key; repeated: {', '.join(repeated)}")
        object.__setattr__(self, "params", params)

    @property
    def keys(self) -> tuple[str, ...]:
        """The dotted configuration keys, in order."""
        return tuple(p.key for p in self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[SearchParam]:
        return iter(self.params)

    def sample(self, trial: Suggester) -> dict[str, ParamValue]:
        """One value per dimension, drawn by ``trial`` (an ``optuna.Trial`` or any :class:`Suggester`).

        Returns:
            The values by dotted configuration key, e.g. ``{"loss.params.m": 0.31, "optim.proxy_lr": 0.02}``.
        """
        return {p.key: p.suggest(trial) for p in self.params}

    def to_dict(self) -> dict[str, dict[str, JSONValue]]:
        """A JSON-able description for reports: each key's type and bounds or choices."""
        return {p.key: p.to_dict() for p in self.params}


# The learning rate of the class proxies (``OptimConfig.proxy_lr``, default 1e-2), tuned with every class-level loss.
PROXY_LR = FloatParam("optim.proxy_lr", 1e-3, 1.0, log=True)


def loss_search_space(loss_class: type[PairLoss], class_level: bool, *params: SearchParam) -> SearchSpace:
    """A loss's search space: its own ``params`` plus, in the class-level paradigm, :data:`PROXY_LR`.

    What each loss's :meth:`~pairsim.losses.base.PairLoss.search_space` returns.

    Args:
        loss_class: the loss whose space this is (for its paradigms and its name in errors).
        class_level: the space for training against class proxies (``True``) or pair-wise (``False``).
        *params: the loss's own dimensions, usually ``loss.params.<constructor argument>`` keys.

    Raises:
        ValueError: if ``loss_class`` does not support the paradigm, or the space would be empty.
    """
    name = loss_class.__name__
    if class_level and not loss_class.supports_class_level:
        raise ValueError(f"{name} is a pair-wise loss: it has no class-level search space (use class_level=False)")
    if not class_level and not loss_class.supports_pair_wise:
        raise ValueError(f"{name} scores against class proxies: it has only a class-level search space")
    return SearchSpace(params + ((PROXY_LR,) if class_level else ()))


def search_space_for(loss_name: str, class_level: bool) -> SearchSpace:
    """The search space the registered loss ``loss_name`` declares for the paradigm ``class_level``.

    Raises:
        ValueError: for an unknown loss (the registry's error, naming the known ones), or a paradigm
            the loss does not support.
    """
    return get_loss_class(loss_name).search_space(class_level)
