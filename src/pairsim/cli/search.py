"""``pairsim search DIR QUERY_IMAGE [-k 10] [--json]``: the nearest items of an index to an image."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pairsim.cli._console import print_table

COLUMNS = ("id", "label", "score", "path")


def register(subparsers: Any) -> None:
    """Add the ``search`` sub-command."""
    parser = subparsers.add_parser(
        "search", help="search an index with a query image", description="The k nearest items of an index to an image."
    )
    parser.add_argument("directory", help="index directory (pairsim index build)")
    parser.add_argument("query", help="query image file")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--checkpoint", help="embed the query with this checkpoint (must be the index's model)")
    parser.add_argument("--json", action="store_true", help="print JSON (one object per hit) instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search and print the hits, best first; bad input (no image, another model, k < 1) raises ValueError."""
    from pairsim.index import Searcher

    if args.k < 1:
        raise ValueError(f"-k must be >= 1, got {args.k}")
    with open(args.query, "rb") as f:
        data = f.read()
    searcher = Searcher(args.directory, args.checkpoint)
    hits = searcher.search_bytes(data, args.k)
    rows = [
        (h.item.id, h.item.label or "", round(h.score, 6), str(searcher.store.images_dir / h.item.path)) for h in hits
    ]
    if args.json:
        print(json.dumps([dict(zip(("id", "label", "score", "path"), row, strict=True)) for row in rows], indent=2))
    else:
        print_table(
            None, ("id", "label", "score", "path"), [(i, label, f"{s:.4f}", path) for i, label, s, path in rows]
        )
    return 0
