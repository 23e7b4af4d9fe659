"""The middleware around every request, in order from the outside in.

1. :class:`~pairsim.service.access_log.AccessLog`: one log line per request, whatever answers it.
2. :class:`~pairsim.service.host_origin.HostOriginGuard`: a foreign ``Host`` (400) or a cross-origin
   write (403) never reaches a route.
3. Starlette's ``CORSMiddleware``, only when origins are allowed: it answers their preflight requests
   and adds the headers that let their scripts read the answers. Without it (the default) a browser
   keeps a cross-origin page from reading any answer.
4. :class:`~pairsim.service.body_limits.BodyLimits`: the body counted as it arrives (413, 408).

All of them are pure ASGI (not ``BaseHTTPMiddleware``), so a body is streamed through, never buffered.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from pairsim.service.access_log import AccessLog
from pairsim.service.body_limits import BodyLimits
from pairsim.service.config import ServiceConfig
from pairsim.service.host_origin import HostOriginGuard


def install_guards(app: FastAPI, config: ServiceConfig) -> None:
    """Add the middleware of this module's list to ``app`` (the last added runs first)."""
    app.add_middleware(BodyLimits, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    if config.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.allowed_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key"],
        )
    app.add_middleware(HostOriginGuard, allowed_hosts=config.allowed_hosts, allowed_origins=config.allowed_origins)
    app.add_middleware(AccessLog)
