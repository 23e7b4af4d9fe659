"""``pairsim search DIR QUERY_IMAGE [-k 10]``: the nearest items of an index to an image, as a table."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``search`` sub-command."""
    parser = subparsers.add_parser("search", help="search an index with a query image")
    parser.add_argument("directory", help="index directory (pairsim index build)")
    parser.add_argument("query", help="query image file")
    parser.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    parser.add_argument("--checkpoint", help="embed the query with this checkpoint (must be the index's model)")
    parser.set_defaults(func=run)


def format_table(rows: list[tuple[int, str, float, str]]) -> str:
    """A plain-text table of ``(id, label, score, path)`` rows.

    Example:
        >>> print(format_table([(3, "cat", 0.98765, "ab/ab12.png")]), end="")
        id  label  score   path
         3  cat    0.9877  ab/ab12.png
    """
    header = ("id", "label", "score", "path")
    cells = [(str(i), label, f"{score:.4f}", path) for i, label, score, path in rows]
    widths = [max(len(h), *(len(c[j]) for c in cells)) for j, h in enumerate(header)]
    lines = [
        "  ".join([header[0].rjust(widths[0]), *(h.ljust(w) for h, w in zip(header[1:], widths[1:], strict=True))])
    ]
    lines += [
        "  ".join([c[0].rjust(widths[0]), *(x.ljust(w) for x, w in zip(c[1:], widths[1:], strict=True))]) for c in cells
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Search and print the table; exit code 2 on bad input (no image, other model, k < 1)."""
    from pairsim.index import Searcher

    try:
        if args.k < 1:
            raise ValueError(f"-k must be >= 1, got {args.k}")
        with open(args.query, "rb") as f:
            data = f.read()
        searcher = Searcher(args.directory, args.checkpoint)
        hits = searcher.search_bytes(data, args.k)
    except (ValueError, OSError) as error:
        print(f"pairsim search: error: {error}", file=sys.stderr)
        return 2
    rows = [(h.item.id, h.item.label or "", h.score, str(searcher.store.images_dir / h.item.path)) for h in hits]
    print(format_table(rows), end="")
    return 0
