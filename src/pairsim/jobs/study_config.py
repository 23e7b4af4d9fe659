"""A study's configuration: which losses, what budget, which folds and seeds, from a YAML file.

A study YAML (see ``configs/studies/``)::

    name: hangul-quick
    base: ../hangul-fonts/circle_pair.yaml   # a training config, relative to this file
    losses: [circle, circle@class, triplet, cosface]
    trials: 20        # per loss, the same for all (pruned trials count)
    folds: 4          # validation folds of the training classes; a trial trains one run per fold
    seeds: 5          # final stage: each loss's best parameters retrained with this many seeds
    steps: 300        # per run
    set: {data.image_size: 32, model.name: small-cnn, model.pretrained: false}
    out_dir: runs/studies/hangul-quick

``losses`` names registered losses; ``NAME@class`` is the class-level paradigm (a loss that only
has that paradigm may be named either way).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pairsim.losses import get_loss_class, search_space_for
from pairsim.training.config import from_dict, read_config_file

OBJECTIVES = ("map_at_r", "precision_at_1", "r_precision")
PRUNERS = ("median", "hyperband", "none")
CLASS_LEVEL_SUFFIX = "@class"


@dataclass(frozen=True)
class LossEntry:
    """One loss of a study in one paradigm.

    Attributes:
        name: the registered loss name.
        class_level: against class proxies (``NAME@class``) or pair-wise.
    """

    name: str
    class_level: bool

    @property
    def tag(self) -> str:
        """How the study names it: ``circle``, ``circle@class``."""
        return self.name + (CLASS_LEVEL_SUFFIX if self.class_level else "")


def parse_loss(text: str) -> LossEntry:
    """The loss and paradigm of a ``losses`` entry.

    Raises:
        ValueError: an unknown loss (naming the known ones), or a paradigm the loss does not have.

    Example:
        >>> parse_loss("circle@class"), parse_loss("cosface").class_level
        (LossEntry(name='circle', class_level=True), True)
    """
    name, at, paradigm = text.partition("@")
    if at and paradigm != "class":
        raise ValueError(f"losses: {text!r}: the only paradigm suffix is {CLASS_LEVEL_SUFFIX!r}")
    cls = get_loss_class(name)  # ValueError naming the known losses
    class_level = bool(at) or not cls.supports_pair_wise
    if class_level and not cls.supports_class_level:
        raise ValueError(f"losses: {name} is pair-wise only; drop {CLASS_LEVEL_SUFFIX!r}")
    return LossEntry(name, class_level)


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study depends on; the budget is the same for every loss.

    Attributes:
        name: the study's name (its Optuna studies are ``NAME/LOSS``).
        base: the training configuration every run starts from (a YAML path).
        losses: the losses and paradigms compared (``NAME`` or ``NAME@class``; see :attr:`entries`).
        trials: trials per loss, pruned ones included.
        folds: validation folds of the training classes; a trial trains one run per fold and scores the
            mean of their validation metrics.
        seeds: final-stage runs per loss (seeds ``0..seeds-1``), each evaluated once on the test classes.
        steps: optimisation steps of every run.
        set: training-config overrides for every run (dotted keys, e.g. ``data.name: folder``).
        out_dir: where the storage (SQLite by default), the runs and the results go.
        objective: the validation metric maximised.
        pruner: ``median`` or ``hyperband`` (``none``: no pruning); it sees the metric at each evaluation.
        reports: evaluations per run (what the pruner sees).
        sampler_seed: seeds Optuna's TPE sampler (loss ``i`` uses ``sampler_seed + i``).
        heartbeat_seconds: how often a running trial says it is alive; a trial silent for twice as long
            (a killed worker) is marked failed and retried.
        max_retries: how often a failed trial's parameters are retried.
        search_lr: also search the backbone's learning rate ``optim.lr`` (log-uniform over
            ``lr_range``), alike for every loss.
        lr_range: the range of ``optim.lr`` when searched.
        test_max_classes: the final evaluation's test classes, a deterministic subset of this many
            (``None``: every test class).
    """

    name: str
    base: str
    losses: tuple[str, ...]
    trials: int
    folds: int
    seeds: int
    steps: int
    set: dict[str, Any] = field(default_factory=dict)
    out_dir: str = "runs/studies/study"
    objective: str = "map_at_r"
    pruner: str = "median"
    reports: int = 4
    sampler_seed: int = 0
    heartbeat_seconds: int = 30
    max_retries: int = 2
    search_lr: bool = False
    lr_range: tuple[float, float] = (1e-4, 1e-2)
    test_max_classes: int | None = None

    def __post_init__(self) -> None:
        problems = []
        entries = self.entries  # ValueError naming an unknown loss or paradigm
        if not entries:
            problems.append("losses: name at least one loss")
        if len({e.tag for e in entries}) != len(entries):
            problems.append("losses: a loss is named twice")
        for key, value in [("trials", self.trials), ("seeds", self.seeds), ("steps", self.steps)]:
            if value < 1:
                problems.append(f"{key} must be >= 1, got {value}")
        if self.folds < 2:
            problems.append(f"folds must be >= 2 (a trial validates on held-out folds), got {self.folds}")
        if self.objective not in OBJECTIVES:
            problems.append(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.pruner not in PRUNERS:
            problems.append(f"pruner must be one of {PRUNERS}, got {self.pruner!r}")
        if not 1 <= self.reports <= self.steps:
            problems.append(f"reports must lie in [1, steps], got {self.reports}")
        low, high = self.lr_range
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            problems.append(f"lr_range must be 0 < low < high, got {self.lr_range}")
        if problems:
            raise ValueError("study: " + "; ".join(problems))
        for entry in entries:
            try:
                search_space_for(entry.name, entry.class_level)
            except NotImplementedError:
                raise ValueError(f"study: {entry.tag} declares no search space (PairLoss.search_space)") from None

    @property
    def entries(self) -> tuple[LossEntry, ...]:
        """The parsed :attr:`losses`."""
        return tuple(parse_loss(text) for text in self.losses)

    @property
    def directory(self) -> Path:
        """``out_dir`` as a path."""
        return Path(self.out_dir)

    def default_storage(self) -> str:
        """The embedded default: a SQLite file in the study directory, nothing to start."""
        return f"sqlite:///{(self.directory / 'study.sqlite3').resolve()}"


def load_study_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """Read a study YAML (``base`` is resolved relative to it) with top-level overrides.

    Raises:
        FileNotFoundError: no study file, or no base configuration.
        ValueError: a missing or unknown key, a value of the wrong type, or a bad value (see
            :class:`StudyConfig`).
    """
    path = Path(path)
    raw = read_config_file(path)
    raw.update(overrides or {})
    missing = [f.name for f in dataclasses.fields(StudyConfig) if f.name not in raw and _required(f)]
    if missing:
        raise ValueError(f"study {path}: missing key(s) {missing}")
    base = Path(str(raw["base"]))
    base = base if base.is_absolute() else path.parent / base
    if not base.is_file():
        raise FileNotFoundError(f"study {path}: no base configuration at {base}")
    return from_dict(StudyConfig, {**raw, "base": str(base)}, where=f"study {path}")


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
