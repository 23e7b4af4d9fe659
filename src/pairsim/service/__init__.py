"""The web service of an index: ``create_app(directory)`` is a FastAPI app (``pairsim serve`` runs it).

The service needs the ``[serve]`` extra (FastAPI, python-multipart, uvicorn): importing this package
without FastAPI or python-multipart raises :class:`~pairsim._optional.MissingExtraError` naming it.
"""

from types import ModuleType

from pairsim._optional import require

PURPOSE = "the pairsim web service"
require("fastapi", PURPOSE)
require("python_multipart", PURPOSE)  # FastAPI needs it for the File and Form parameters

from pairsim.service.app import create_app  # noqa: E402  (after the checks that name the extra)
from pairsim.service.config import ServiceConfig  # noqa: E402

__all__ = ["ServiceConfig", "create_app", "require_serve_extra"]


def require_serve_extra() -> ModuleType:
    """The uvicorn module that runs the app.

    Raises:
        MissingExtraError: an ImportError naming the ``[serve]`` extra, when uvicorn is not installed.
    """
    return require("uvicorn", "pairsim serve")
