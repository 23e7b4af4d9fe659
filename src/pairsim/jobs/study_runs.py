"""The training runs of a study: a run's configuration from the base, the study's overrides and a trial's
parameters, and a run trained on the training folds and scored on a validation fold or on the test classes.

Every run of a study goes through :func:`run_config`, so a trial's runs and the final stage's runs differ
only in the data split and the seed: the budget (steps, batch, backbone, embedding size) is the same for
every loss.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pairsim.data import ImageSet
from pairsim.jobs.study_config import LossEntry, StudyConfig
from pairsim.models import read_state, save_model_file
from pairsim.training.config import DataConfig, TrainConfig, read_config_file, resolve_config
from pairsim.training.evaluate import evaluate_model
from pairsim.training.run import load_split
from pairsim.training.trainer import Trainer

MODEL_FILE = "model.pt"


def run_config(
    study: StudyConfig, entry: LossEntry, params: Mapping[str, Any], run_overrides: Mapping[str, Any], out_dir: Path
) -> TrainConfig:
    """The training configuration of one run of ``entry`` with the sampled ``params`` (dotted keys).

    Order of precedence: the base file, the study's ``set``, the loss and its paradigm (its parameters from
    the base are dropped unless the loss takes them), the trial's ``params``, then ``run_overrides`` (the
    split and the seed of this run) and the study's budget.
    """
    raw = read_config_file(study.base)
    settings: dict[str, Any] = {
        **study.set,
        "loss.name": entry.name,
        "loss.class_level": entry.class_level,
        **params,
        **run_overrides,
        "steps": study.steps,
        "checkpoint_every": study.steps,
        "out_dir": str(out_dir),
    }
    if raw.get("loss", {}).get("name") != entry.name:
        raw.setdefault("loss", {})["params"] = {}  # another loss's parameters are not this one's defaults
    # JSON is YAML: every value is passed as the text `--set` would have, and checked the same way.
    config, _ = resolve_config(raw, [f"{key}={json.dumps(value)}" for key, value in settings.items()])
    return config


@functools.lru_cache(maxsize=8)
def _load(data: DataConfig, split: str, max_classes: int | None) -> ImageSet:
    # A worker trains many runs on the same folds: each split is read from the cache once per process.
    return load_split(data, split, max_classes, progress=False)


def train_fold(
    config: TrainConfig, on_eval: Callable[[int, dict[str, float]], None] | None = None
) -> tuple[dict[str, float], float]:
    """Train ``config`` on its ``"train"`` split, validating on ``"val"``.

    Returns:
        The final validation metrics, and the seconds of the training loop itself (its evaluations included).

    The run directory keeps only ``model.pt`` (the final model) and the run's log and config: trials are
    many, their optimiser states are not needed again.
    """
    data = config.data
    train_set = _load(data, "train", data.max_classes)
    val_set = _load(data, "val", data.eval_max_classes)
    result = Trainer(config, train_set, val_set, progress=False).run(on_eval=on_eval)
    if result.final_eval is None:
        raise RuntimeError(f"run {config.out_dir} ended without a validation result")
    keep_model_only(Path(config.out_dir))
    return result.final_eval, result.seconds


def train_and_test(config: TrainConfig, test_max_classes: int | None = None) -> dict[str, float]:
    """The final stage's run: train on every training class, evaluate once on the test classes (all, or a
    deterministic subset of ``test_max_classes``).

    Returns:
        Test precision@1, R-precision and MAP@R (leave-one-out over the test classes' images).
    """
    data = config.data
    trainer = Trainer(config, _load(data, "train", data.max_classes), None, progress=False)
    trainer.run()
    keep_model_only(Path(config.out_dir))
    test = load_split(data, "test", test_max_classes, progress=False)  # the one read of the test classes
    return evaluate_model(trainer.model, test, config.eval_batch_size)


def keep_model_only(out: Path) -> None:
    """Replace a run's checkpoints by its final model file (``model.pt``)."""
    last = out / "last.pt"
    if last.exists():
        save_model_file(read_state(last), out / MODEL_FILE)
    for name in ("last.pt", "best.pt"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "ranks", ignore_errors=True)
