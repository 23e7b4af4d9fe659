"""``pairsim study``: every loss tuned with the same budget on validation folds, then tested once.

The protocol of "A Metric Learning Reality Check" (Musgrave et al., ECCV 2020) with Circle loss in it:

1. Search. Each loss (in each paradigm asked for) gets its own Optuna study ``NAME/LOSS`` with a seeded
   TPE sampler over the loss's registered search space (:func:`pairsim.losses.search_space_for`). A trial
   trains one run per validation fold (the other folds train) and scores the mean validation metric; the
   pruner stops a trial whose intermediate validation metric lags. Pruned trials count against the budget.
2. Final stage (:mod:`pairsim.jobs.study_final`). Each loss's best parameters are retrained with several
   seeds on all training classes and evaluated once on the test classes.

Storage is any Optuna RDB URL: SQLite in the study directory by default (nothing to start); PostgreSQL
for workers on many machines. Trials send heartbeats: a trial whose worker was killed is marked failed
and its parameters retried; running the study again resumes it.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pairsim._optional import require
from pairsim.jobs.study_config import LossEntry, StudyConfig
from pairsim.jobs.study_runs import run_config, train_fold
from pairsim.losses import search_space_for

optuna = require("optuna", "pairsim study")
#: Trials that count against a loss's budget (a failed trial is retried instead).
COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
SURPLUS = "surplus"
#: What a lost race to create the storage's tables says.
CREATION_RACE = ("already exists", "duplicate key", "UniqueViolation")


def open_storage(config: StudyConfig, url: str | None) -> Any:
    """The Optuna RDB storage at ``url`` (default: SQLite in the study directory), with heartbeats and retries.

    Raises:
        ValueError: the storage cannot be reached or its URL is not one SQLAlchemy knows.
    """
    sqlalchemy = require("sqlalchemy", "pairsim study")
    url = url or config.default_storage()
    if url.startswith("sqlite:///"):
        config.directory.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return _rdb_storage(config, url, engine_kwargs)
        except sqlalchemy.exc.SQLAlchemyError as error:
            # Workers starting together race to create the tables (SQLite: "already exists"; PostgreSQL: a
            # duplicate key in its catalogue); the loser finds them made on the next try.
            if any(sign in str(error) for sign in CREATION_RACE) and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise _storage_error(sqlalchemy, url, error) from None
        except (ImportError, ValueError) as error:
            raise _storage_error(sqlalchemy, url, error) from None
    raise AssertionError("unreachable")


def _rdb_storage(config: StudyConfig, url: str, engine_kwargs: dict[str, Any]) -> Any:
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5; they are what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=config.max_retries)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=config.heartbeat_seconds,
            grace_period=2 * config.heartbeat_seconds,
            heartbeat_stale_trial_callback=retry,
        )


def _storage_error(sqlalchemy: Any, url: str, error: BaseException) -> ValueError:
    shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
    return ValueError(f"cannot open the study storage {shown}: {str(error).splitlines()[0]}")


def loss_study(
    config: StudyConfig,
    entry: LossEntry,
    storage: Any,
    worker: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> Any:
    """The Optuna study of one loss (created on first use, shared by every worker).

    Args:
        grid: dotted key -> values: every combination once (a sweep, Optuna's grid sampler) instead of TPE.
    """
    index = [e.tag for e in config.entries].index(entry.tag)
    pruner = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.steps * config.folds),
        "none": optuna.pruners.NopPruner(),
    }[config.pruner]
    # Each worker its own seed (the same one would propose the same first trials); one worker repeats exactly.
    seed = config.sampler_seed + 1000 * index + worker
    sampler = optuna.samplers.GridSampler(dict(grid), seed=seed) if grid else optuna.samplers.TPESampler(seed=seed)
    return optuna.create_study(
        storage=storage,
        study_name=f"{config.name}/{entry.tag}",
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def counted_trials(study: Any) -> list[Any]:
    """The trials that used the budget: complete or pruned, surplus ones left out."""
    return [t for t in study.get_trials(deepcopy=False, states=COUNTED) if not t.user_attrs.get(SURPLUS)]


def _is_surplus(study: Any, number: int, budget: int) -> bool:
    # Two workers can start the last trial at once: the one with the higher number stands down, so every
    # loss ends with exactly `trials` counted trials.
    states = (*COUNTED, optuna.trial.TrialState.RUNNING)
    earlier = [
        t
        for t in study.get_trials(deepcopy=False, states=states)
        if t.number < number and not t.user_attrs.get(SURPLUS)
    ]
    return len(earlier) >= budget


def make_objective(
    config: StudyConfig, entry: LossEntry, study: Any, worker: int = 0, space: Sampleable | None = None
) -> Callable[[Any], float]:
    """The trial function of ``entry``: one run per validation fold, the mean final validation metric.

    Args:
        space: what a trial samples (default: the loss's registered search space).
    """
    space = search_space_for(entry.name, entry.class_level) if space is None else space

    def objective(trial: Any) -> float:
        if _is_surplus(study, trial.number, config.trials):
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned("the budget was filled by other workers")
        trial.set_user_attr("worker", worker)
        params = space.sample(trial)
        if config.search_lr:
            params["optim.lr"] = trial.suggest_float("optim.lr", *config.lr_range, log=True)
        every = max(1, config.steps // config.reports)
        scores = []
        for fold in range(config.folds):
            split = {"data.folds": config.folds, "data.fold": fold, "data.eval_split": "val", "eval_every": every}
            out = trial_directory(config, entry, trial.number) / f"fold-{fold}"
            run = run_config(config, entry, params, {**split, "seed": 0}, out)

            def report(step: int, metrics: dict[str, float], fold: int = fold) -> None:
                trial.report(metrics[config.objective], fold * config.steps + step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation {config.objective} {metrics[config.objective]:.4f} lags")

            final, seconds = train_fold(run, on_eval=report)
            trial.set_user_attr(f"fold_{fold}", final)
            trial.set_user_attr(f"train_seconds_{fold}", seconds)  # the trainer's own time: the overhead's base
            scores.append(final[config.objective])
        return statistics.fmean(scores)

    return objective


class _Lowest:
    """A stand-in trial that picks each dimension's lower bound (or first choice)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return low

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return low

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[0]


def check_runs(config: StudyConfig) -> None:
    """Build every loss's run configuration once, at the low end of its space, before any run starts.

    Raises:
        ValueError: a study or base setting the runs cannot take (an unknown key, a parameter the loss
            does not take), named as ``pairsim train`` names it.
    """
    for entry in config.entries:
        params = search_space_for(entry.name, entry.class_level).sample(_Lowest())
        split = {"data.folds": config.folds, "data.fold": 0, "data.eval_split": "val", "eval_every": 1}
        try:
            run_config(config, entry, params, split, config.directory / "check")
        except ValueError as error:
            raise ValueError(f"study {config.name}, loss {entry.tag}: {error}") from None


def trial_directory(config: StudyConfig, entry: LossEntry, number: int) -> Path:
    """Where trial ``number`` of ``entry`` keeps its fold runs."""
    return config.directory / "trials" / entry.tag / f"trial-{number:04d}"


class Sampleable(Protocol):
    """What a trial draws its parameters from: a loss's ``SearchSpace``, or a sweep's grid."""

    def sample(self, trial: Any) -> dict[str, Any]:
        """Dotted configuration key -> value for this trial."""
        ...


def run_worker(
    config: StudyConfig,
    storage_url: str | None = None,
    worker: int = 0,
    say: Callable[[str], None] = print,
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
) -> None:
    """Fill every loss's budget, one trial of each unfilled loss in turn, alongside any other workers on the
    same storage; a loss whose remaining trials run elsewhere is left to them, and at the end the worker
    waits for (or fails, once stale) the trials still running.

    Args:
        grids: per loss tag, a sweep's grid (see :func:`loss_study`); the budget is then its size.
    """
    storage = open_storage(config, storage_url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One study object (and so one sampler, whose random state moves on) per loss for the whole worker:
    # a sampler made anew for each trial would draw its seeded start-up points again and again.
    grids = grids or {}
    studies = {e.tag: loss_study(config, e, storage, worker, grids.get(e.tag)) for e in config.entries}
    pending = list(config.entries)
    while pending:
        progressed = False
        for entry in list(pending):
            grid, study = grids.get(entry.tag), studies[entry.tag]
            _fail_stale(study)  # a killed worker's trial: failed, its parameters queued for a retry
            done, running = len(counted_trials(study)), len(_running(study))
            if done >= config.trials:
                pending.remove(entry)
            elif done + running < config.trials:  # else the rest of its budget is running elsewhere
                space = None if grid is None else GridSpace(grid)
                # An error in a run stops the worker: it is a bug, not a trial.
                study.optimize(make_objective(config, entry, study, worker, space), n_trials=1)
                drop_other_models(config, entry, study)
                say(f"{entry.tag}: {len(counted_trials(study))}/{config.trials} trials")
                progressed = True
        if pending and not progressed:  # only others' running trials are left: wait for them, or their staleness
            time.sleep(min(2.0, config.heartbeat_seconds))


def drop_other_models(config: StudyConfig, entry: LossEntry, study: Any) -> None:
    """Delete the run directories of finished trials but the best one (whose fold models the final stage
    joins); a study of 12 losses x 20 trials x 4 folds would otherwise keep ~1,000 models."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    best = max(complete, key=lambda t: t.value).number if complete else None
    finished = (*COUNTED, optuna.trial.TrialState.FAIL)
    for trial in study.get_trials(deepcopy=False, states=finished):
        if trial.number != best:
            shutil.rmtree(trial_directory(config, entry, trial.number), ignore_errors=True)


class GridSpace:
    """A sweep's grid as something a trial samples from (the grid sampler picks the point)."""

    def __init__(self, grid: Mapping[str, Sequence[Any]]) -> None:
        self.grid = {key: list(values) for key, values in grid.items()}

    def sample(self, trial: Any) -> dict[str, Any]:
        """The grid point of ``trial``."""
        return {key: trial.suggest_categorical(key, values) for key, values in self.grid.items()}


def _fail_stale(study: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _running(study: Any) -> list[Any]:
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return [t for t in running if not t.user_attrs.get(SURPLUS)]


def run_workers(
    config: StudyConfig, study_file: Path, overrides: Sequence[str], storage_url: str | None, workers: int
) -> None:
    """Run ``workers`` worker processes on the same storage and wait for them (1: this process works).

    Raises:
        RuntimeError: a worker process failed.
    """
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    check_runs(config)
    if workers == 1:
        run_worker(config, storage_url)
        return
    url = storage_url or config.default_storage()
    open_storage(config, url)  # the tables exist before the workers start (they would race to create them)
    command = [sys.executable, "-m", "pairsim", "study", "worker", str(study_file), "--storage", url]
    command += [f"--set={item}" for item in overrides]
    processes = [subprocess.Popen([*command, "--worker-id", str(i)]) for i in range(workers)]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise RuntimeError(f"study workers exited with codes {codes}")
