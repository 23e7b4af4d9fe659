"""Which sites may talk to the service: a ``Host`` allow-list and an ``Origin`` check (pure ASGI middleware).

Two browser attacks reach a server on a private address. DNS rebinding points a name the attacker
owns at ``127.0.0.1``: the browser then sends the attacker's name as ``Host``, which the allow-list
refuses (400). A cross-site form or ``fetch`` POST carries the attacking page's ``Origin``: a request
that is not ``GET``/``HEAD``/``OPTIONS`` whose ``Origin`` is neither the server's own nor allowed is
refused (403) before it reaches a route. Requests without ``Origin`` (curl, scripts) pass the check;
the API key is what guards them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """The name of a ``Host`` header value, without the port, lower case (``[::1]:8000`` -> ``::1``).

    Example:
        >>> host_name("LocalHost:8000"), host_name("[::1]:8000"), host_name("127.0.0.1")
        ('localhost', '::1', '127.0.0.1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostOriginGuard:
    """Refuse a ``Host`` outside ``allowed_hosts`` (400) and a cross-origin write (403).

    Args:
        app: the ASGI app to guard.
        allowed_hosts: host names (no port; ``"*"`` for any) the server answers to.
        allowed_origins: origins (``scheme://host[:port]``) besides the server's own that may write.

    Example:
        >>> from starlette.applications import Starlette
        >>> guarded = HostOriginGuard(Starlette(), ("localhost", "127.0.0.1"), ())
    """

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...], allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = frozenset(host_name(h) for h in allowed_hosts)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value.decode("latin-1") for key, value in scope["headers"]}
        problem = self.host_problem(headers.get(b"host"))
        status = 400
        if problem is None and scope["method"] not in SAFE_METHODS and b"origin" in headers:
            problem, status = self.origin_problem(headers[b"origin"], headers[b"host"], scope["scheme"]), 403
        if problem is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse({"error": problem}, status_code=status)(scope, receive, send)

    def host_problem(self, host: str | None) -> str | None:
        """Why ``host`` (a ``Host`` header) is refused, or ``None``."""
        if host is None:
            return "the request has no Host header"
        if self.any_host or host_name(host) in self.allowed_hosts:
            return None
        # The names are the operator's own, so they are no secret; they tell a legitimate client what to use.
        return f"host {host_name(host)!r} is not served here (allowed: {', '.join(sorted(self.allowed_hosts))})"

    def origin_problem(self, origin: str, host: str, scheme: str) -> str | None:
        """Why a write from ``origin`` to ``host`` over ``scheme`` is refused, or ``None``."""
        origin = origin.strip().rstrip("/").lower()
        parts = urlsplit(origin)
        same = parts.scheme == scheme and parts.netloc == host.strip().lower()
        if same or origin in self.allowed_origins:
            return None
        return (
            f"cross-origin request from {origin!r} refused: only this server's own page, or an origin the server "
            "allows (pairsim serve --allowed-origin), may send POST or DELETE requests"
        )
