"""A study's final stage and its results: best parameters retrained with several seeds, tested once.

For each loss, the best trial's parameters train ``seeds`` runs on every training class (seeds
``0..seeds-1``); each is evaluated once on the test classes. Per metric the results give the values, their
mean and the 95% Student-t interval over seeds. With several folds they also give the Reality Check's
"concatenated" variant: the best trial's fold models' test embeddings joined and L2-normalised.
Results are written per run as they finish, so an interrupted final stage resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from typing import Any

import numpy as np
import torch

from pairsim._io import write_text_atomic
from pairsim._optional import require
from pairsim.data import describe_split
from pairsim.jobs.study import COUNTED, counted_trials, loss_study, open_storage, trial_directory
from pairsim.jobs.study_config import LossEntry, StudyConfig
from pairsim.jobs.study_markdown import results_markdown
from pairsim.jobs.study_runs import MODEL_FILE, run_config, train_and_test
from pairsim.losses import search_space_for
from pairsim.models import embed, load_model
from pairsim.training.evaluate import RETRIEVAL_KEYS, retrieval_scores
from pairsim.training.run import load_split

optuna = require("optuna", "pairsim study")


def student_t_interval(values: list[float], confidence: float = 0.95) -> list[float] | None:
    """The two-sided Student-t confidence interval of the mean of ``values`` (``None`` for one value).

    Example:
        >>> [round(v, 4) for v in student_t_interval([0.5, 0.6, 0.7])]
        [0.3516, 0.8484]
    """
    if len(values) < 2:
        return None
    stats = require("scipy.stats", "pairsim study")
    mean, sem = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    if sem == 0.0:
        return [mean, mean]
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return [float(low), float(high)]


def final_run(config: StudyConfig, entry: LossEntry, params: dict[str, Any], seed: int) -> dict[str, float]:
    """Test metrics of the run of ``entry`` with ``params`` and ``seed`` on all training classes (cached)."""
    out = config.directory / "final" / entry.tag / f"seed-{seed}"
    done = out / "test.json"
    if done.exists():
        return dict(json.loads(done.read_text())["test"])
    run = run_config(config, entry, params, {"data.folds": 1, "data.fold": 0, "eval_every": 0, "seed": seed}, out)
    scores = train_and_test(run, config.test_max_classes)
    write_text_atomic(done, json.dumps({"params": params, "seed": seed, "test": scores}, indent=2) + "\n")
    return scores


def concatenated_scores(config: StudyConfig, entry: LossEntry, params: dict[str, Any], number: int) -> dict[str, float]:
    """Test metrics of the best trial's fold models' embeddings, concatenated and L2-normalised."""
    run = run_config(config, entry, params, {"data.folds": 1, "eval_every": 0}, config.directory / "unused")
    test = load_split(run.data, "test", config.test_max_classes, progress=False)
    parts = [
        embed(load_model(trial_directory(config, entry, number) / f"fold-{fold}" / MODEL_FILE).model, test.images)
        for fold in range(config.folds)
    ]
    joined = torch.nn.functional.normalize(torch.cat(parts, dim=1), dim=1)  # (N, folds * D)
    return retrieval_scores(joined, test.labels)


def loss_results(config: StudyConfig, entry: LossEntry, storage: Any) -> dict[str, Any]:
    """The results of one loss: trial counts, best parameters, validation and test metrics.

    Raises:
        ValueError: no trial of the loss completed (all pruned or failed).
    """
    study = loss_study(config, entry, storage)
    counted = counted_trials(study)
    complete = [t for t in counted if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"{entry.tag}: no trial completed ({len(counted)} pruned or failed); raise the budget")
    best = max(complete, key=lambda t: t.value)
    params = dict(best.params)
    seeds = [final_run(config, entry, params, seed) for seed in range(config.seeds)]
    test: dict[str, Any] = {}
    for key in RETRIEVAL_KEYS:
        values = [s[key] for s in seeds]
        test[key] = {"values": values, "mean": statistics.fmean(values), "ci95": student_t_interval(values)}
    all_trials = study.get_trials(deepcopy=False)
    return {
        "paradigm": "class-level" if entry.class_level else "pair-wise",
        "trials": len(counted),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in counted),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in all_trials),
        "surplus": sum(bool(t.user_attrs.get("surplus")) for t in all_trials),
        "best_trial": best.number,
        "best_params": params,
        "search_space": search_space_for(entry.name, entry.class_level).to_dict(),
        "validation": {config.objective: float(best.value)},
        "validation_folds": [best.user_attrs.get(f"fold_{f}") for f in range(config.folds)],
        "test": test,
        "test_concatenated": concatenated_scores(config, entry, params, best.number),
        "trial_seconds": sum(_seconds(t) for t in counted),
        "history": [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in all_trials
        ],
    }


def _seconds(trial: Any) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return float((trial.datetime_complete - trial.datetime_start).total_seconds())


def final_stage(config: StudyConfig, storage_url: str | None = None) -> dict[str, Any]:
    """Retrain and test every loss, and write ``results.json`` and ``results.md`` (see the module docstring).

    Raises:
        ValueError: a loss's budget is not filled yet (run the workers first) or none of its trials completed.
    """
    storage = open_storage(config, storage_url)
    for entry in config.entries:
        study = loss_study(config, entry, storage)
        if len(counted_trials(study)) < config.trials:
            raise ValueError(f"{entry.tag}: {len(counted_trials(study))} of {config.trials} trials done; run the study")
    base = run_config(config, config.entries[0], {}, {}, config.directory / "unused")
    spec = dataclasses.replace(base.data.split(), folds=config.folds, fold=0)
    split = describe_split(base.data.name, base.data.root, spec=spec)
    results = {
        "study": config.name,
        "data": {"name": base.data.name, "seed": base.data.split_seed, **split},
        "budget": {"trials_per_loss": config.trials, "steps_per_trial": config.steps * config.folds},
        "protocol": {
            "folds": config.folds,
            "steps_per_run": config.steps,
            "seeds": config.seeds,
            "test_max_classes": config.test_max_classes,
            "objective": config.objective,
            "pruner": config.pruner,
            "counted_states": [s.name for s in COUNTED],
        },
        "losses": {entry.tag: loss_results(config, entry, storage) for entry in config.entries},
    }
    write_text_atomic(config.directory / "results.json", json.dumps(results, indent=2, default=_plain) + "\n")
    write_text_atomic(config.directory / "results.md", results_markdown(results))
    return results


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
