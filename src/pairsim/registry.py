"""One name -> entry registry, shared by the losses, the models and the data sets.

Each kind keeps its own :class:`Registry` (``create_loss``, ``create_model``, ``load_dataset``
stay the public entry points); this class only holds the mapping, refuses duplicate names, and
names the known entries when asked for an unknown one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name.

    Args:
        kind: what the entries are, for messages (``"loss"``, ``"model"``, ``"data set"``).
        load_builtins: called before every lookup; imports the modules whose decorators register the
            built-in entries (imports are cached, so this is cheap after the first call).
        plural: ``kind`` in the plural, when it is not ``kind + "s"``.

    Example:
        >>> colours: Registry[int] = Registry("colour")
        >>> @colours.register("red")
        ... def _red() -> int:
        ...     return 1
        >>> colours.names(), colours.get("red")()
        (['red'], 1)
        >>> colours.get("blue")
        Traceback (most recent call last):
        ...
        ValueError: unknown colour 'blue'; known colours: red
    """

    def __init__(self, kind: str, load_builtins: Callable[[], None] | None = None, plural: str | None = None) -> None:
        self.kind, self.plural, self._load_builtins = kind, plural or kind + "s", load_builtins
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds an entry under ``name``.

        Raises:
            ValueError: if ``name`` is already taken.
        """

        def add(entry: T) -> T:
            if name in self._entries:
                owner = getattr(self._entries[name], "__name__", repr(self._entries[name]))
                raise ValueError(f"{self.kind} {name!r} is already registered by {owner}")
            self._entries[name] = entry
            return entry

        return add

    def names(self) -> list[str]:
        """All registered names, sorted."""
        if self._load_builtins is not None:
            self._load_builtins()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry registered under ``name``.

        Raises:
            ValueError: naming the unknown entry and the known ones.
        """
        if self._load_builtins is not None:
            self._load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.plural}: {known}") from None
