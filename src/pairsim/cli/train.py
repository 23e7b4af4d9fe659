"""``pairsim train CONFIG.yaml [--set key=value ...] [--resume]``: train an embedding model.

Multi-process: ``torchrun --nproc-per-node N -m pairsim train CONFIG.yaml`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pairsim.training.config import load_config_with_notes


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--set KEY=VALUE`` option shared by ``train`` and ``demo``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration entry, e.g. --set loss.params.m=0.3 (repeatable; values are YAML; "
        "keys: docs/configuration.md)",
    )


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train an embedding model from a YAML configuration",
        description="Train an embedding model from a YAML configuration (see configs/ and docs/configuration.md).",
    )
    parser.add_argument("config", help="YAML run configuration (see configs/)")
    add_overrides(parser)
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt when it exists")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, print where the run went and its held-out metrics; returns 0."""
    from pairsim.training.run import train  # torch's model zoo loads here, not for `pairsim --help`

    config, notes = load_config_with_notes(args.config, args.overrides)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 speaks for all
    for note in notes if main_rank else ():
        print(f"note: {note}", file=sys.stderr)
    result = train(config, resume=args.resume, progress=args.progress)
    if not main_rank:
        return 0
    print(f"trained {result.steps} steps in {result.seconds:.0f} s; run directory {result.out_dir}")
    if result.final_eval is not None:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in result.final_eval.items())
        print(f"held-out ({config.data.eval_split}) final: {scores}; best precision@1 {result.best_precision_at_1:.4f}")
    return 0
