"""The web service of an index: ``create_app(directory)`` is a FastAPI app (``pairsim serve`` runs it)."""

from pairsim.service.app import ServiceConfig, create_app, require_serve_extra

__all__ = ["ServiceConfig", "create_app", "require_serve_extra"]
