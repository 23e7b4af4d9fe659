"""``pairsim sweep CONFIG --param KEY=V1,V2,...``: the validation metric over a grid (the paper's Fig. 3)."""

from __future__ import annotations

import argparse
from typing import Any

from pairsim.cli._console import print_table


def register(subparsers: Any) -> None:
    """Add the ``sweep`` sub-command."""
    parser = subparsers.add_parser(
        "sweep",
        help="validation metric over a grid of hyper-parameters and its plot (paper Fig. 3)",
        description="Train every point of a grid on validation folds (resumable, on the study machinery) and "
        "plot the validation metric against each parameter, one curve per loss.",
    )
    parser.add_argument("config", help="training YAML (its loss is swept unless --loss is given)")
    parser.add_argument(
        "--param",
        dest="params",
        action="append",
        required=True,
        metavar="[LOSS:]KEY=V1,V2,...",
        help="a swept parameter and its values, e.g. loss.params.gamma=16,32,64 (repeatable)",
    )
    parser.add_argument(
        "--loss",
        dest="losses",
        action="append",
        default=[],
        metavar="NAME[@class]",
        help="sweep this loss (repeatable; default: the config's loss)",
    )
    parser.add_argument("--folds", type=int, default=2, help="validation folds per point (default 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the config's steps)")
    parser.add_argument("--out", default=None, help="sweep directory (default runs/sweeps/CONFIG_NAME)")
    parser.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite in the sweep directory)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the grid, print each point's validation metric, and say where the plot is."""
    from pairsim.jobs.sweep import make_sweep, run_sweep

    sweep = make_sweep(args.config, args.params, args.losses, folds=args.folds, steps=args.steps, out_dir=args.out)
    results = run_sweep(sweep, args.storage)
    rows = [
        (tag, ", ".join(f"{k}={v}" for k, v in sorted(p["params"].items())), f"{p['validation']:.4f}")
        for tag, loss in results["losses"].items()
        for p in sorted(loss["points"], key=lambda p: sorted(p["params"].items()))
    ]
    print_table(f"validation {results['objective']}, mean over {args.folds} folds", ("loss", "point", "value"), rows)
    print(f"wrote {sweep.study.directory / 'sweep.json'} and {sweep.study.directory / 'sweep.png'}")
    return 0
