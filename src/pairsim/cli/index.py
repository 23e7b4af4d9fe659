"""``pairsim index build|add|remove|info|check``: make, update and verify a retrieval index directory.

IMAGES is a folder of class sub-folders, a ``path,label`` CSV, or a built-in data set split
``NAME:SPLIT[:MAX_CLASSES]`` (e.g. ``hangul-fonts:test:100``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from pairsim.cli._console import print_table

# The same as pairsim.index.vectors.KINDS (a test checks); not imported, so `pairsim --help` stays light.
KINDS = ("auto", "flat", "ivf", "hnsw")
IMAGES_HELP = "IMAGES is a folder of class sub-folders, a path,label CSV, or a data set split NAME:SPLIT[:MAX_CLASSES]."


def register(subparsers: Any) -> None:
    """Add the ``index`` sub-command and its five actions."""
    parser = subparsers.add_parser(
        "index",
        help="build and update a retrieval index (faiss + SQLite)",
        description="Build, update and inspect a retrieval index directory. " + IMAGES_HELP,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", title="actions")

    build = actions.add_parser("build", help="embed images with a checkpoint into a new index directory")
    build.add_argument("checkpoint", help="trainer checkpoint (last.pt / best.pt)")
    build.add_argument("images", help="folder, CSV, or NAME:SPLIT[:MAX_CLASSES]")
    build.add_argument("--out", required=True, help="index directory to create")
    build.add_argument("--kind", choices=KINDS, default="auto", help="faiss index (auto: exact, HNSW when large)")
    build.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    build.set_defaults(func=run_build)

    add = actions.add_parser("add", help="embed more images into an index (atomic)")
    add.add_argument("directory", help="index directory")
    add.add_argument("images", help="folder, CSV, or NAME:SPLIT[:MAX_CLASSES]")
    add.add_argument("--checkpoint", help="embed with this checkpoint (must be the index's model)")
    add.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    add.set_defaults(func=run_add)

    remove = actions.add_parser("remove", help="remove items by id (atomic, all or none)")
    remove.add_argument("directory", help="index directory")
    remove.add_argument("ids", nargs="+", type=int, metavar="ID", help="item ids to remove")
    remove.set_defaults(func=run_remove)

    info = actions.add_parser("info", help="counts, model and index settings of an index")
    info.add_argument("directory", help="index directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    check = actions.add_parser(
        "check",
        help="verify database, vectors, files and checksums (exit 1 on a problem)",
        description="Verify an index: SQLite integrity, the manifest, every row's embedding (finite, unit norm), "
        "the faiss file (checksum, one vector per row, equal to the rows), every row's image file and checksum, "
        "unused files. Exit code 0: no problem (warnings allowed), 1: a problem remains.",
    )
    check.add_argument("directory", help="index directory")
    check.add_argument(
        "--repair",
        action="store_true",
        help="first repair what loses nothing: delete unused files and pins of dead adds, write the faiss file "
        "again from the rows; rows are never removed",
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)


def run_build(args: argparse.Namespace) -> int:
    """Build; prints the summary and how to search."""
    from pairsim.index import build_index

    result = build_index(args.checkpoint, args.images, args.out, kind=args.kind, batch_size=args.batch_size)
    print(f"built {result.directory}: {result.added} items in {result.seconds:.1f} s")
    print(f"search it: pairsim search {result.directory} QUERY_IMAGE -k 10")
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Add; prints how many were added and the new total."""
    from pairsim.index import add_images

    result = add_images(args.directory, args.images, checkpoint=args.checkpoint, batch_size=args.batch_size)
    print(f"added {result.added} items to {result.directory}; {result.total} in all ({result.seconds:.1f} s)")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Remove; exit code 2 (nothing removed) when an id is unknown."""
    from pairsim.index import IndexStore

    store = IndexStore(args.directory)
    removed = store.remove(args.ids)
    print(f"removed {len(removed)} items from {store.directory}; {len(store)} left")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the index's counts and settings."""
    from pairsim.index import IndexStore

    info = IndexStore(args.directory).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_table(str(args.directory), ("setting", "value"), [(key, value) for key, value in info.items()])
    if not info["faiss_file"].startswith(("verified", "empty")):
        print(f"warning: faiss file {info['faiss_file']}; run `pairsim index check {args.directory}`", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check (and with ``--repair`` repair); prints the findings and the repairs; exit 1 when a problem remains."""
    from pairsim.index import check_index

    if not Path(args.directory).is_dir():
        raise FileNotFoundError(2, "No such index directory", args.directory)
    report = check_index(args.directory, repair=args.repair)
    if args.json:
        findings = [dataclasses.asdict(f) for f in report.findings]
        print(json.dumps({"ok": report.ok, "findings": findings, "repairs": list(report.repairs)}, indent=2))
    else:
        rows = [(f.check, f.level, f.detail) for f in report.findings]
        print_table(str(args.directory), ("check", "status", "detail"), rows)
        for repair in report.repairs:
            print(f"repaired: {repair}")
        if args.repair and not report.repairs:
            print("repaired: nothing needed repairing that can be repaired safely")
        problems = len(report.problems())
        print("no problem found" if report.ok else f"{problems} problem{'s' * (problems != 1)} found")
    return 0 if report.ok else 1
