"""Entry point of the ``pairsim`` command: parses arguments, calls a job or an engine, reports errors.

Every command follows one convention: a user's mistake (a bad value, a missing file, a missing extra)
prints one line ``error: <what is wrong and how to fix it>`` on stderr and exits with code 2; the
traceback is shown only with ``--debug`` (or ``PAIRSIM_DEBUG=1``). Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pairsim._version import __version__
from pairsim.cli import consolidate, demo, evaluate, index, search, serve, study, sweep, train

# Each command module exposes ``register(subparsers)``, which adds its parser and sets
# ``func`` (parsed args -> exit code); new commands are added to this tuple.
COMMANDS = (demo, train, study, sweep, consolidate, evaluate, index, search, serve)
#: What a user's mistake raises; these print one ``error:`` line and exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, ImportError)
DESCRIPTION = "pairsim: deep metric learning with Circle loss and the losses it unifies."
EPILOG = "Run `pairsim COMMAND --help` for a command's options. Exit codes: 0 done, 2 a mistake in the input."


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors follow the one-line ``error:`` convention (exit 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: MESSAGE (see PROG --help)`` and exit 2."""
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


class _OneLineHelp(argparse.HelpFormatter):
    """Wide enough that ``pairsim --help`` shows each command with its summary on one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24, width=max(110, shutil.get_terminal_size().columns))
        # argparse sizes the help column from the options, not from the sub-command names: make room for them.
        self._action_max_length = 20


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (each has ``--debug`` too)."""
    parser = Parser(prog="pairsim", description=DESCRIPTION, epilog=EPILOG, formatter_class=_OneLineHelp)
    parser.add_argument("--version", action="version", version=f"pairsim {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also: PAIRSIM_DEBUG=1)"
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands", parser_class=Parser
    )
    for command in COMMANDS:
        command.register(subparsers)
    for sub in _all_subparsers(parser):
        # SUPPRESS: a sub-command's default must not overwrite `pairsim --debug COMMAND`.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def _all_subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += [sub, *_all_subparsers(sub)]
    return found


def error_message(error: BaseException) -> str:
    """The one-line message of a user's mistake.

    Example:
        >>> error_message(KeyError("no item with id 3"))
        'no item with id 3'
        >>> error_message(FileNotFoundError(2, "No such file or directory", "x.yaml"))
        'no such file or directory: x.yaml'
    """
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    elif isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror[0].lower()}{error.strerror[1:]}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())  # one line, whatever the exception held


def debug_requested(args: Any) -> bool:
    """``--debug`` given, or ``PAIRSIM_DEBUG`` set to anything but empty or 0."""
    return bool(getattr(args, "debug", False)) or os.environ.get("PAIRSIM_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pairsim`` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except USER_ERRORS as error:
        if debug_requested(args):
            raise
        print(f"error: {error_message(error)}", file=sys.stderr)
        return 2
