"""``pairsim serve DIR``: the search API and web page of an index (FastAPI + uvicorn).

Secure by default: only loopback host names are answered when bound to loopback, writes need the API
key (from ``$PAIRSIM_API_KEY`` or ``--api-key-file``, never needed on the command line, where ``ps``
shows it) unless ``--allow-anonymous-writes``, and cross-origin writes are refused unless the origin is
named with ``--allowed-origin``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KEY_ENV = "PAIRSIM_API_KEY"


def register(subparsers: Any) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve an index: JSON API, OpenAPI docs and a web page",
        description="Serve an index over HTTP: POST /search, /items, GET /healthz, docs at /docs, a page at /. "
        f"Writes (POST /items, DELETE /items/ID) need the key of ${KEY_ENV} or --api-key-file.",
    )
    parser.add_argument("directory", help="index directory (pairsim index build)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--api-key-file", type=Path, help=f"file holding the write key (default: ${KEY_ENV})")
    parser.add_argument("--api-key", help=f"deprecated: the key shows in `ps`; use ${KEY_ENV} or --api-key-file")
    parser.add_argument(
        "--allow-anonymous-writes", action="store_true", help="let POST /items and DELETE without a key"
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients use (repeatable; '*' for any); loopback names are allowed on a loopback address",
    )
    parser.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (https://app.example) whose pages may write and read answers (CORS; repeatable)",
    )
    parser.add_argument("--max-k", type=int, default=100, help="largest k a search may ask for (default 100)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image upload, in MB (default 10)")
    parser.add_argument("--decode-workers", type=int, default=2, help="images decoded at once (default 2)")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="seconds for request headers (10)")
    parser.add_argument("--body-timeout", type=float, default=30.0, help="seconds for each part of a body (30)")
    parser.add_argument("--keep-alive", type=int, default=5, help="seconds an idle connection stays open (5)")
    parser.add_argument("--limit-concurrency", type=int, default=64, help="connections before a 503 (64)")
    parser.add_argument("--no-access-log", action="store_true", help="do not log each request on stderr")
    parser.add_argument(
        "--faiss-threads",
        type=int,
        default=1,
        help="OpenMP threads per faiss search (default 1: concurrent requests already use the cores)",
    )
    parser.set_defaults(func=run)


def read_api_key(args: argparse.Namespace) -> str | None:
    """The write key: ``--api-key-file``, else ``$PAIRSIM_API_KEY``, else the deprecated ``--api-key``.

    Raises:
        ValueError: the key found is empty (an empty key would silently mean "no key").
        OSError: the key file cannot be read.
    """
    if args.api_key_file is not None:
        key, where = args.api_key_file.read_text().strip(), f"--api-key-file {args.api_key_file}"
    elif KEY_ENV in os.environ:
        key, where = os.environ[KEY_ENV].strip(), f"${KEY_ENV}"
    elif args.api_key is not None:
        print(f"warning: --api-key shows in `ps`; set ${KEY_ENV} or use --api-key-file", file=sys.stderr)
        key, where = args.api_key.strip(), "--api-key"
    else:
        return None
    if not key:
        raise ValueError(f"the API key of {where} is empty: give a non-empty key, or none (read-only server)")
    return key


def allowed_hosts(bind: str, extra: list[str]) -> tuple[str, ...]:
    """The Host names to answer: ``extra``, with the loopback names on a loopback address, or the address.

    Raises:
        ValueError: bound to every address (``0.0.0.0``, ``::``) without a name to answer to.

    Example:
        >>> allowed_hosts("127.0.0.1", ["pairsim.lan"])
        ('localhost', '127.0.0.1', '::1', 'pairsim.lan')
    """
    from pairsim.service.config import LOOPBACK_HOSTS

    try:
        address = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:  # a host name
        return (*LOOPBACK_HOSTS, *extra) if bind == "localhost" else (bind, *extra)
    if address.is_loopback:
        return (*LOOPBACK_HOSTS, *extra)
    if address.is_unspecified:
        if not extra:
            raise ValueError(
                f"--host {bind} listens on every address: name the host names clients use with "
                "--allowed-host NAME (repeatable, '*' for any)"
            )
        return tuple(extra)
    return (str(address), *extra)


def checked_origins(origins: list[str]) -> tuple[str, ...]:
    """``origins`` as given, each checked to be ``scheme://host[:port]`` (what a browser sends as Origin).

    Raises:
        ValueError: naming an origin with a path, no host, or a scheme other than http(s).
    """
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
            raise ValueError(f"--allowed-origin {origin!r} is not an origin like https://app.example[:PORT]")
    return tuple(origins)


def settings_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The ``(ServiceConfig, ServerSettings)`` of the parsed arguments."""
    from pairsim.service import ServiceConfig
    from pairsim.service.server import ServerSettings

    config = ServiceConfig(
        max_k=args.max_k,
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        api_key=read_api_key(args),
        allow_anonymous_writes=args.allow_anonymous_writes,
        allowed_hosts=allowed_hosts(args.host, args.allowed_host),
        allowed_origins=checked_origins(args.allowed_origin),
        decode_workers=args.decode_workers,
        body_timeout_s=args.body_timeout,
    )
    server = ServerSettings(
        host=args.host,
        port=args.port,
        header_timeout_s=args.header_timeout,
        keep_alive_s=args.keep_alive,
        limit_concurrency=args.limit_concurrency,
    )
    return config, server


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from pairsim._optional import require
    from pairsim.service import create_app, require_serve_extra

    uvicorn = require_serve_extra()
    from pairsim.service.server import enable_access_log, uvicorn_config

    config, server = settings_from_args(args)  # before the index loads: a bad flag fails fast
    require("faiss", "pairsim serve").omp_set_num_threads(args.faiss_threads)
    app = create_app(args.directory, config)
    writes = "with the key" if config.api_key else "by anyone" if config.allow_anonymous_writes else "off"
    print(
        f"serving {args.directory} on http://{args.host}:{args.port}/ (API docs at /docs; writes {writes})", flush=True
    )
    if not args.no_access_log:
        enable_access_log()
    uvicorn.Server(uvicorn_config(app, server)).run()
    return 0
