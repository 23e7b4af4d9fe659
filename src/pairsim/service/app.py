"""The FastAPI app over an index directory: search, add, delete, images, health, and the web page.

Every bad input is answered with a 4xx JSON body ``{"error": "<what is wrong>"}`` and the server keeps
serving. Endpoints are plain ``def`` functions, so the CPU work (decoding, the model, faiss) runs in
the thread pool and does not stall the event loop. The endpoints live in the ``routes_*`` modules,
what they share in :mod:`~pairsim.service.dependencies`, the error answers in
:mod:`~pairsim.service.errors`.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pairsim.index import Searcher
from pairsim.service import routes_items, routes_search, routes_site
from pairsim.service.config import ServiceConfig
from pairsim.service.errors import install_error_handling


def create_app(directory: str | Path, config: ServiceConfig | None = None, checkpoint: str | None = None) -> FastAPI:
    """The FastAPI app serving the index in ``directory``.

    Args:
        directory: the index directory (``pairsim index build``).
        config: limits and API key; the :class:`ServiceConfig` defaults when omitted.
        checkpoint: the model to embed queries with, when not the index's own ``model.pt``.

    Returns:
        The app, with the :class:`~pairsim.index.Searcher` and the config on ``app.state``.
    """
    config = config or ServiceConfig()
    searcher = Searcher(directory, checkpoint)
    store = searcher.store
    app = FastAPI(
        title="pairsim index",
        description=f"Image retrieval over {store.directory} ({store.manifest.model_name}).",
        version="1",
    )
    app.state.config = config
    app.state.searcher = searcher
    # Mounted before the routers, as it always was, so /static/... never reaches a route.
    app.mount("/static", StaticFiles(directory=routes_site.STATIC), name="static")
    for router in (routes_site.router, routes_search.router, routes_items.router):
        app.include_router(router)
    install_error_handling(app)
    return app
