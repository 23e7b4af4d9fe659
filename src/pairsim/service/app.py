"""The FastAPI app over an index directory: search, add, delete, images, health, and the web page.

Every bad input is answered with a 4xx JSON body ``{"error": "<what is wrong>"}`` and the server keeps
serving; the middleware of :mod:`~pairsim.service.guards` refuses foreign hosts, cross-origin writes and
oversized or stalled bodies before a route runs. Endpoints are plain ``def`` functions, so the CPU work
(decoding, the model, faiss) runs in the thread pool and does not stall the event loop; images are
decoded a bounded number at a time (:mod:`~pairsim.service.decoding`). The endpoints live in the
``routes_*`` modules, what they share in :mod:`~pairsim.service.dependencies`, the error answers in
:mod:`~pairsim.service.errors`.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pairsim.index import Searcher
from pairsim.service import routes_items, routes_search, routes_site
from pairsim.service.config import ServiceConfig
from pairsim.service.decoding import DecodeSlots
from pairsim.service.errors import install_error_handling
from pairsim.service.guards import install_guards


def create_app(directory: str | Path, config: ServiceConfig | None = None, checkpoint: str | None = None) -> FastAPI:
    """The FastAPI app serving the index in ``directory``.

    Args:
        directory: the index directory (``pairsim index build``).
        config: limits, API key and allow-lists; the :class:`ServiceConfig` defaults when omitted (no key,
            so no writes; only loopback host names).
        checkpoint: the model to embed queries with, when not the index's own ``model.pt``.

    Returns:
        The app, with the :class:`~pairsim.index.Searcher` and the config on ``app.state``.
    """
    config = config or ServiceConfig()
    searcher = Searcher(directory, checkpoint)
    store = searcher.store
    app = FastAPI(
        title="pairsim index",
        # The model's name only: the OpenAPI document is public and names no path of the server.
        description=f"Image retrieval with model {store.manifest.model_name}.",
        version="1",
        # Counted while the form is parsed (the body as a whole is BodyLimits's): text fields are short,
        # and an upload has one file and a label, so 900 fields of a megabyte are refused at the fifth.
        form_limits={
            "max_fields": config.max_form_fields,
            "max_files": 1,
            "max_part_size": config.max_field_bytes,
        },
    )
    app.state.config = config
    app.state.searcher = searcher
    app.state.decode_slots = DecodeSlots(config.decode_workers, config.decode_wait_s)
    # Mounted before the routers, as it always was, so /static/... never reaches a route.
    app.mount("/static", StaticFiles(directory=routes_site.STATIC), name="static")
    for router in (routes_site.router, routes_search.router, routes_items.router):
        app.include_router(router)
    install_error_handling(app)
    install_guards(app, config)
    return app
