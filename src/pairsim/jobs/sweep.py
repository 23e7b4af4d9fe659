"""``pairsim sweep``: a grid of runs and the validation metric at each point, as the Circle Loss paper's Fig. 3.

A sweep is a study whose sampler is a grid (every combination once) and which has no final stage: each
point trains one run per validation fold on the same budget and scores the mean validation metric.
It runs on the study machinery, so it shares the storage (SQLite in its directory or any Optuna RDB
URL), its workers and its resumption.

Example grid: ``--param loss.params.gamma=16,32,64,128,256,512,1024 --param loss.params.m=0.25``.
A parameter may be given for one loss only with its tag: ``--param cosface@class:loss.params.scale=16,64``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pairsim._io import write_text_atomic
from pairsim.jobs.study import COUNTED, loss_study, open_storage, run_worker
from pairsim.jobs.study_config import StudyConfig, parse_loss
from pairsim.report import figure_png, pyplot
from pairsim.training.config import read_config_file


@dataclass(frozen=True)
class Sweep:
    """A sweep: the study it runs as and each loss's grid (dotted key -> values)."""

    study: StudyConfig
    grids: dict[str, dict[str, list[Any]]]


def parse_params(params: Sequence[str], tags: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """Each loss's grid from ``[TAG:]KEY=V1,V2,...`` arguments (values are YAML).

    Raises:
        ValueError: a malformed argument, a tag not among ``tags``, or a loss left without any parameter.

    Example:
        >>> parse_params(["loss.params.gamma=16,64", "cosface@class:loss.params.scale=8"], ["circle", "cosface@class"])
        {'circle': {'loss.params.gamma': [16, 64]}, 'cosface@class': {'loss.params.gamma': [16, 64], 'loss.params.scale': [8]}}
    """  # noqa: E501
    grids: dict[str, dict[str, list[Any]]] = {tag: {} for tag in tags}
    for item in params:
        target, sep, text = item.partition("=")
        tag, colon, key = target.rpartition(":") if ":" in target else ("", "", target)
        values = [yaml.safe_load(v) for v in text.split(",") if v.strip()]
        if not sep or not key or not values:
            raise ValueError(f"--param {item!r} is not of the form [LOSS:]KEY=V1,V2,...")
        if colon and tag not in grids:
            raise ValueError(f"--param {item!r}: {tag!r} is not one of the swept losses {list(grids)}")
        for name in [tag] if colon else grids:
            grids[name][key] = values
    empty = [tag for tag, grid in grids.items() if not grid]
    if empty:
        raise ValueError(f"no --param for {empty}: give each swept loss at least one parameter")
    return grids


def make_sweep(
    config_path: str | Path,
    params: Sequence[str],
    losses: Sequence[str] = (),
    *,
    folds: int = 2,
    steps: int | None = None,
    out_dir: str | None = None,
    objective: str = "map_at_r",
) -> Sweep:
    """The sweep of the training config at ``config_path`` (its loss, or ``losses``) over ``params``."""
    path = Path(config_path)
    raw = read_config_file(path)
    loss = raw.get("loss", {})
    tags = list(losses) or [str(loss.get("name", "circle")) + ("@class" if loss.get("class_level") else "")]
    entries = [parse_loss(tag) for tag in tags]
    grids = parse_params(params, [e.tag for e in entries])
    size = max(math.prod(len(v) for v in grid.values()) for grid in grids.values())
    name = f"sweep-{path.stem}"
    study = StudyConfig(
        name=name,
        base=str(path),
        losses=tuple(e.tag for e in entries),
        trials=size,  # every point of the largest grid; smaller grids stop when done
        folds=folds,
        seeds=1,
        steps=int(steps if steps is not None else raw.get("steps", 1000)),
        out_dir=out_dir or f"runs/sweeps/{path.stem}",
        objective=objective,
        pruner="none",
        reports=1,
    )
    return Sweep(study, grids)


def run_sweep(sweep: Sweep, storage_url: str | None = None) -> dict[str, Any]:
    """Run every grid point (resuming what is done), then write ``sweep.json`` and ``sweep.png``."""
    for tag, grid in sweep.grids.items():
        size = math.prod(len(v) for v in grid.values())
        entry = parse_loss(tag)
        study = StudyConfig(**{**_fields(sweep.study), "losses": (tag,), "trials": size})
        run_worker(study, storage_url, say=lambda _: None, grids={entry.tag: grid})
    results = sweep_results(sweep, storage_url)
    directory = sweep.study.directory
    write_text_atomic(directory / "sweep.json", json.dumps(results, indent=2) + "\n")
    (directory / "sweep.png").write_bytes(robustness_plot(results))
    return results


def _fields(config: StudyConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def sweep_results(sweep: Sweep, storage_url: str | None = None) -> dict[str, Any]:
    """Each loss's grid points with their validation metric (mean over folds) and the folds' values."""
    storage = open_storage(sweep.study, storage_url)
    losses = {}
    for entry in sweep.study.entries:
        study = loss_study(sweep.study, entry, storage, grid=sweep.grids[entry.tag])
        points = [
            {
                "params": dict(t.params),
                "validation": t.value,
                "folds": [t.user_attrs[f"fold_{f}"][sweep.study.objective] for f in range(sweep.study.folds)],
            }
            for t in study.get_trials(deepcopy=False, states=COUNTED)
            if t.value is not None
        ]
        losses[entry.tag] = {"grid": sweep.grids[entry.tag], "points": points}
    return {"sweep": sweep.study.name, "objective": sweep.study.objective, "steps": sweep.study.steps, "losses": losses}


def robustness_plot(results: Mapping[str, Any]) -> bytes:
    """The validation metric against each swept parameter, one curve per loss (and per other parameters'
    values): the paper's Fig. 3 for any loss."""
    grids = [loss["grid"] for loss in results["losses"].values()]
    varied = sorted({key for grid in grids for key, values in grid.items() if len(values) > 1})
    keys = varied or sorted({key for grid in grids for key in grid})  # a fixed parameter is no axis
    fig, axes = pyplot().subplots(1, len(keys), figsize=(4.8 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for tag, loss in results["losses"].items():
            if key not in loss["grid"]:
                continue
            curves: dict[str, list[tuple[float, float]]] = {}
            for point in loss["points"]:
                others = ", ".join(
                    f"{k.rsplit('.', 1)[-1]}={v}" for k, v in sorted(point["params"].items()) if k != key
                )
                curves.setdefault(others, []).append((point["params"][key], point["validation"]))
            for others, xy in curves.items():
                xy.sort()
                ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=f"{tag} {others}".strip())
        values = [v for loss in results["losses"].values() for v in loss["grid"].get(key, [])]
        if values and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(key.rsplit(".", 1)[-1])
        ax.set_ylabel(f"validation {results['objective']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return figure_png(fig)
