"""``pairsim consolidate CHECKPOINT [--out FILE]``: one file from a multi-process run's checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``consolidate`` sub-command."""
    parser = subparsers.add_parser(
        "consolidate",
        help="merge a torchrun checkpoint and its rank files into one file",
        description="Merge a multi-process checkpoint and its ranks/ files into one file with all class proxies.",
    )
    parser.add_argument("checkpoint", help="the summary file of a multi-process run, e.g. runs/x/last.pt")
    parser.add_argument("--out", default=None, help="output file (default: CHECKPOINT with a .consolidated.pt suffix)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the consolidated checkpoint and say what it holds; returns 0."""
    from pairsim.training.rank_checkpoint import consolidate_checkpoint

    source = Path(args.checkpoint)
    out = Path(args.out) if args.out else source.with_suffix(".consolidated.pt")
    state = consolidate_checkpoint(source, out)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in state["loss"].items() if hasattr(v, "shape")) or "none"
    print(
        f"{out}: step {state['step']} of a {state['consolidated_from']}-process run; "
        f"model {state['model_spec']['name']}, loss parameters: {shapes}"
    )
    return 0
