"""Entry point of the ``pairsim`` command: parses arguments, then calls the library."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pairsim.cli import consolidate, demo, evaluate, index, search, serve, train

# Each command module exposes ``register(subparsers)``, which adds its parser and sets
# ``func`` (parsed args -> exit code); new commands are added to this tuple.
COMMANDS = (demo, train, consolidate, evaluate, index, search, serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="pairsim", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pairsim`` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
