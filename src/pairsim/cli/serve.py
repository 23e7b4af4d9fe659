"""``pairsim serve DIR``: the search API and web page of an index (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve an index: JSON API, OpenAPI docs and a web page",
        description="Serve an index over HTTP: POST /search, /items, GET /healthz, docs at /docs, a page at /.",
    )
    parser.add_argument("directory", help="index directory (pairsim index build)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("PAIRSIM_API_KEY"),
        help="key required (header X-API-Key) by POST /items and DELETE /items/{id} (default $PAIRSIM_API_KEY)",
    )
    parser.add_argument("--max-k", type=int, default=100, help="largest k a search may ask for (default 100)")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest image upload, in MB (default 10)")
    parser.add_argument(
        "--faiss-threads",
        type=int,
        default=1,
        help="OpenMP threads per faiss search (default 1: concurrent requests already use the cores)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from pairsim._optional import require
    from pairsim.service import ServiceConfig, create_app, require_serve_extra

    uvicorn = require_serve_extra()
    require("faiss", "pairsim serve").omp_set_num_threads(args.faiss_threads)
    config = ServiceConfig(max_k=args.max_k, max_upload_bytes=int(args.max_upload_mb * 1e6), api_key=args.api_key)
    app = create_app(args.directory, config)
    print(f"serving {args.directory} on http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
