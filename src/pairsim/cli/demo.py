"""``pairsim demo``: the main job (:mod:`pairsim.jobs.demo`) with its summary table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pairsim.cli._console import print_table
from pairsim.cli.train import add_overrides


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="the main job: train Circle loss on hangul-fonts, evaluate, report and index",
        description="Train Circle loss on hangul-fonts, evaluate it and the pretrained baseline on 1,000 "
        "unseen classes, and write runs/demo/metrics.json, runs/demo/report.html and runs/demo/index.",
    )
    parser.add_argument("--config", help="a YAML run configuration instead of the built-in demo one")
    add_overrides(parser)
    parser.add_argument(
        "--eval-classes", type=int, default=1000, help="held-out classes of the final evaluation (default 1000)"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a summary; returns 0."""
    from pairsim.jobs.demo import demo_config, run_demo
    from pairsim.jobs.demo_report import loss_label
    from pairsim.training.config import to_dict

    if args.eval_classes < 2:
        raise ValueError(f"--eval-classes must be at least 2, got {args.eval_classes}")
    config, notes = demo_config(args.config, args.overrides)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    result = run_demo(config, eval_classes=args.eval_classes, progress=args.progress)
    rows = [
        (name, *(f"{values[key]:.4f}" for key in ("precision_at_1", "r_precision", "map_at_r")))
        for name, values in (
            ("pretrained baseline", result.baseline),
            (f"trained, {loss_label(to_dict(config.loss))}", result.trained),
        )
    ]
    print()
    print_table("held-out metrics", ("model", "precision@1", "R-precision", "MAP@R"), rows)
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"time: {times}")
    print(f"wrote {result.metrics_path} and {result.report_path}")
    return 0
