"""``pairsim train CONFIG.yaml [--set key=value ...] [--resume]``: train an embedding model.

Multi-process: ``torchrun --nproc-per-node N -m pairsim train CONFIG.yaml`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from pairsim.training.config import load_config


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser("train", help="train an embedding model from a YAML configuration")
    parser.add_argument("config", help="YAML run configuration (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration entry, e.g. --set loss.params.m=0.3 (repeatable; values are YAML)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt when it exists")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, print where the run went and its held-out metrics; returns 0."""
    from pairsim.training.run import train

    config = load_config(args.config, args.overrides)
    result = train(config, resume=args.resume, progress=args.progress)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports for all
    print(f"trained {result.steps} steps in {result.seconds:.0f} s; run directory {result.out_dir}")
    if result.final_eval is not None:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in result.final_eval.items())
        print(f"held-out ({config.data.eval_split}) final: {scores}; best precision@1 {result.best_precision_at_1:.4f}")
    return 0
