"""The Revisited Oxford / Paris ground truth: each query's easy, hard and junk gallery indices.

Read from JSON by default. The official ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` are pickles, and
loading a pickle can run code from it: they are read only with ``trust_pickle=True``, and then through an
unpickler that resolves nothing but plain containers, numbers, strings and numpy arrays. The JSON schema is
the official pickle's structure (indices 0-based, as in the pickle)::

    {
      "gnd": [                                   # one object per query, in query order
        {"easy": [0, 17], "hard": [3], "junk": [5, 8],   # gallery indices; other items are negatives
         "bbx": [136.5, 34.1, 648.5, 955.2]},    # optional: the query's box in its image (x1, y1, x2, y2)
        ...
      ],
      "qimlist": ["all_souls_000013", ...],      # optional: the query images, len(gnd) of them
      "imlist": ["all_souls_000000", ...]        # optional: the gallery images, in gallery order
    }

Convert the official pickle once, on a machine you trust (``docs/evaluation.md``)::

    python -c "from pairsim.evaluation import load_revisited_ground_truth as load; \\
    load('gnd_roxford5k.pkl', trust_pickle=True).save_json('gnd_roxford5k.json')"
"""

from __future__ import annotations

import functools
import io
import json
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from pairsim._io import write_text_atomic

_LISTS = ("easy", "hard", "junk")
#: Per protocol: the lists whose items are positives, and those removed from the ranking.
_PROTOCOL_LISTS = {
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


@dataclass(frozen=True, eq=False)
class RevisitedGroundTruth:
    """Per-query easy / hard / junk gallery indices (converted to tuples of int64 arrays on creation).

    Attributes:
        easy: ``Q`` index lists: the query's landmark, clearly visible.
        hard: ``Q`` index lists: the landmark, hard to recognise.
        junk: ``Q`` index lists: neither positive nor negative (removed from every ranking).
        bbx: ``Q`` query boxes ``(x1, y1, x2, y2)`` or ``None`` each, or ``None``.
        query_names: the ``Q`` query image names, or ``None``.
        gallery_names: the gallery image names in gallery order, or ``None``.

    Raises:
        ValueError: lists of different lengths, an index that is negative, not an integer, repeated, or in two
            lists of one query; a box that is not 4 finite numbers; names of the wrong count.

    Example:
        >>> gt = RevisitedGroundTruth(easy=[[0, 4]], hard=[[2]], junk=[[1]])
        >>> gt.num_queries, gt.protocol(0, "hard")
        (1, (array([2]), array([1, 0, 4])))
    """

    easy: Sequence[Any]
    hard: Sequence[Any]
    junk: Sequence[Any]
    bbx: Sequence[Sequence[float] | None] | None = None
    query_names: Sequence[str] | None = None
    gallery_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.easy)
        if n == 0:
            raise ValueError("the ground truth has no query")
        for name in _LISTS:
            lists = getattr(self, name)
            if len(lists) != n:
                raise ValueError(f"the ground truth has {n} easy lists but {len(lists)} {name} lists")
            object.__setattr__(self, name, tuple(_indices(v, f"query {q} {name}") for q, v in enumerate(lists)))
        for q in range(n):
            items = np.concatenate([getattr(self, name)[q] for name in _LISTS])
            values, counts = np.unique(items, return_counts=True)
            if (counts > 1).any():
                raise ValueError(f"query {q}: gallery index {int(values[counts > 1][0])} is listed twice")
        if self.bbx is not None:
            _check_count(self.bbx, n, "bbx")
            object.__setattr__(self, "bbx", tuple(_box(b, q) for q, b in enumerate(self.bbx)))
        if self.query_names is not None:
            _check_count(self.query_names, n, "query names (qimlist)")
            object.__setattr__(self, "query_names", tuple(str(s) for s in self.query_names))
        if self.gallery_names is not None:
            object.__setattr__(self, "gallery_names", tuple(str(s) for s in self.gallery_names))
            self.check_gallery_size(len(self.gallery_names))

    @property
    def num_queries(self) -> int:
        """The number of queries ``Q``."""
        return len(self.easy)

    def protocol(self, query: int, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        """``(positives, junk)`` gallery indices of ``query`` under ``protocol`` (easy, medium or hard)."""
        if protocol not in _PROTOCOL_LISTS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(_PROTOCOL_LISTS)}")
        positive, junk = _PROTOCOL_LISTS[protocol]
        return tuple(np.concatenate([getattr(self, n)[query] for n in names]) for names in (positive, junk))  # type: ignore[return-value]

    def check_gallery_size(self, num_gallery: int) -> None:
        """Raise ``ValueError`` unless every index is below ``num_gallery`` (and the names agree)."""
        if self.gallery_names is not None and len(self.gallery_names) != num_gallery:
            raise ValueError(f"the ground truth names {len(self.gallery_names)} gallery images, got {num_gallery}")
        for q in range(self.num_queries):
            for name in _LISTS:
                indices = getattr(self, name)[q]
                if len(indices) and int(indices.max()) >= num_gallery:
                    raise ValueError(
                        f"query {q} {name} lists gallery index {int(indices.max())}, "
                        f"but the gallery has {num_gallery} items"
                    )

    @classmethod
    def from_dict(cls, data: Any, source: str = "the ground truth") -> RevisitedGroundTruth:
        """Build from the JSON / official-pickle structure (the module docstring's schema)."""
        if not isinstance(data, dict) or not isinstance(data.get("gnd"), list | tuple):
            raise ValueError(f"{source} must be an object with a list 'gnd' (one entry per query)")
        entries = data["gnd"]
        for q, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"{source}: gnd entry {q} must be an object, got {type(entry).__name__}")
            missing = [name for name in _LISTS if name not in entry]
            if missing:
                raise ValueError(f"{source}: gnd entry {q} has no {missing} (each needs easy, hard and junk)")
        has_box = any("bbx" in entry for entry in entries)
        try:
            return cls(
                easy=[entry["easy"] for entry in entries],
                hard=[entry["hard"] for entry in entries],
                junk=[entry["junk"] for entry in entries],
                bbx=[entry.get("bbx") for entry in entries] if has_box else None,
                query_names=data.get("qimlist"),
                gallery_names=data.get("imlist"),
            )
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON structure (``from_dict`` reads it back)."""
        entries: list[dict[str, Any]] = [
            {name: getattr(self, name)[q].tolist() for name in _LISTS} for q in range(self.num_queries)
        ]
        for entry, box in zip(entries, self.bbx or (), strict=False):
            if box is not None:
                entry["bbx"] = list(box)
        out: dict[str, Any] = {"gnd": entries}
        if self.query_names is not None:
            out["qimlist"] = list(self.query_names)
        if self.gallery_names is not None:
            out["imlist"] = list(self.gallery_names)
        return out

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        write_text_atomic(path, json.dumps(self.to_dict()) + "\n")


def load_revisited_ground_truth(path: str | Path, *, trust_pickle: bool = False) -> RevisitedGroundTruth:
    """Read a ground truth from its JSON form or, with ``trust_pickle``, from the official pickle.

    Args:
        path: a JSON file (the module docstring's schema), or an official ``gnd_*.pkl``.
        trust_pickle: allow a pickle, read by an unpickler that resolves only builtin containers, numbers,
            strings and numpy arrays (anything else, e.g. a function to call, is refused).

    Returns:
        The :class:`RevisitedGroundTruth`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a pickle without ``trust_pickle``, a pickle asking for anything but plain data, invalid
            JSON, or a structure that is not the schema.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "gnd.json"
        >>> _ = path.write_text('{"gnd": [{"easy": [0], "hard": [], "junk": [2]}]}')
        >>> load_revisited_ground_truth(path).junk
        (array([2]),)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:1] == b"\x80" or path.suffix.lower() in (".pkl", ".pickle"):
        if not trust_pickle:
            raise ValueError(
                f"{path} is a pickle, and loading a pickle can run code from it: convert it to JSON on a machine "
                "you trust (see docs/evaluation.md), or pass --trust-pickle (trust_pickle=True) to read it with an "
                "unpickler that allows only plain data and numpy arrays"
            )
        data = _load_plain_pickle(raw, path)
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}); expected the schema of docs/evaluation.md") from None
    return RevisitedGroundTruth.from_dict(data, str(path))


class _PlainDataUnpickler(pickle.Unpickler):
    """Resolves only the globals of :func:`_allowed_globals`; every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which is not plain data")
        return allowed


def _load_plain_pickle(raw: bytes, path: Path) -> Any:
    try:
        return _PlainDataUnpickler(io.BytesIO(raw)).load()
    except Exception as error:  # a hostile or damaged file may raise anything while it is read
        raise ValueError(f"{path}: refused to load the pickle: {error}") from None


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """Builtin containers and numbers, and what numpy arrays and scalars are rebuilt with (numpy 1 and 2)."""
    plain: list[Callable[..., Any]] = [set, frozenset, list, dict, tuple, int, float, complex, bool, str, bytes]
    allowed: dict[tuple[str, str], Callable[..., Any]] = {}
    for module in ("builtins", "__builtin__"):  # protocol 0-2 pickles name the Python 2 module
        allowed.update({(module, t.__name__): t for t in plain})
    allowed[("_codecs", "encode")] = _latin1_encode  # bytes in protocol 0-2 pickles
    allowed[("numpy", "ndarray")], allowed[("numpy", "dtype")] = np.ndarray, np.dtype
    # numpy's own rebuilders, found the way a pickle names them (numpy.core in numpy 1, numpy._core in 2)
    rebuild: dict[str, dict[str, Callable[..., Any]]] = {
        "multiarray": {
            "_reconstruct": cast(Callable[..., Any], np.ndarray((0,)).__reduce__()[0]),
            "scalar": cast(Callable[..., Any], np.float64(0).__reduce__()[0]),
        },
        "numeric": {"_frombuffer": cast(Callable[..., Any], np.arange(2).__reduce_ex__(5)[0])},
    }
    for package in ("numpy.core", "numpy._core"):
        for module, functions in rebuild.items():
            allowed.update({(f"{package}.{module}", name): f for name, f in functions.items()})
    return allowed


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"it asks for _codecs.encode with {encoding!r}, which is not plain data")
    return text.encode("latin1")


def _indices(value: Any, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{where} must be a list of gallery indices, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        raise ValueError(f"{where} must hold integer gallery indices, got {array.dtype}")
    if int(array.min()) < 0:
        raise ValueError(f"{where} holds a negative gallery index ({int(array.min())}); indices are 0-based")
    return array.astype(np.int64)


def _box(value: Any, query: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        box = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"query {query} bbx must be 4 finite numbers (x1, y1, x2, y2), got {value!r}")
    return box


def _check_count(values: Sequence[Any], expected: int, what: str) -> None:
    if len(values) != expected:
        raise ValueError(f"the ground truth has {expected} queries but {len(values)} {what}")
