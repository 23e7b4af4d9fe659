"""``pairsim study run|worker STUDY.yaml``: tune every loss with the same budget, then test each once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from pairsim.cli._console import print_table


def register(subparsers: Any) -> None:
    """Add the ``study`` sub-command and its actions."""
    parser = subparsers.add_parser(
        "study",
        help="compare losses honestly: equal-budget Optuna search on validation folds, one test",
        description="Tune every loss of a study with the same budget on validation folds of the training "
        "classes (Optuna, resumable), retrain the best with several seeds and test once (see configs/studies/).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION", title="actions")
    run = actions.add_parser("run", help="run (or resume) a study to the end and write its results")
    worker = actions.add_parser("worker", help="join a study's search from this process (any machine)")
    for sub in (run, worker):
        sub.add_argument("study", help="study YAML (see configs/studies/)")
        sub.add_argument(
            "--storage",
            default=None,
            help="Optuna RDB URL shared by the workers, e.g. postgresql://user@host/db "
            "(default: sqlite in the study's out_dir)",
        )
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a top-level study key, e.g. --set trials=5 (values are YAML; repeatable)",
        )
    run.add_argument("--workers", type=int, default=1, help="local worker processes for the search (default 1)")
    worker.add_argument("--worker-id", type=int, default=0, help="this worker's number (seeds its sampler)")
    run.set_defaults(func=run_study)
    worker.set_defaults(func=run_worker)


def _config(args: argparse.Namespace) -> Any:
    from pairsim.jobs.study_config import load_study_config

    overrides = {}
    for item in args.overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        overrides[key] = yaml.safe_load(text)
    return load_study_config(args.study, overrides)


def run_worker(args: argparse.Namespace) -> int:
    """Search until every loss's budget is filled."""
    from pairsim.jobs.study import run_worker as work

    work(_config(args), args.storage, worker=args.worker_id)
    return 0


def run_study(args: argparse.Namespace) -> int:
    """Search, then the final stage; print the table and where the results are."""
    from pairsim.jobs.study import run_workers
    from pairsim.jobs.study_final import final_stage
    from pairsim.jobs.study_report import write_study_report

    config = _config(args)
    run_workers(config, Path(args.study), args.overrides, args.storage, args.workers)
    results = final_stage(config, args.storage)
    page = write_study_report(config, results, args.storage)
    rows = []
    for name, loss in results["losses"].items():
        test = loss["test"]
        rows.append(
            (
                name,
                *(f"{test[k]['mean']:.4f}" for k in ("precision_at_1", "r_precision", "map_at_r")),
                loss["trials"],
                loss["pruned"],
            )
        )
    print_table(
        f"study {config.name}: test classes, mean over {config.seeds} seeds",
        ("loss", "P@1", "R-precision", "MAP@R", "trials", "pruned"),
        rows,
    )
    print(f"wrote {config.directory / 'results.json'}, {config.directory / 'results.md'} and {page}")
    return 0
