"""Run configuration: frozen dataclasses, filled from YAML and ``key=value`` overrides at the CLI edge."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pairsim.data.splits import SplitSpec
from pairsim.data.transforms import AugmentConfig
from pairsim.losses import get_loss_class
from pairsim.models.execution import check_settings

log = logging.getLogger(__name__)

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and evaluate on (see ``pairsim.data.load_dataset`` and ``pairsim.data.splits``).

    The classes are split once, by a seeded hash of their keys: ``test_ratio`` of them are test classes,
    read only by an explicit final evaluation (``pairsim eval``, the end of the demo, a study's final
    stage); the others are dealt into ``folds`` validation folds. Training uses the ``"train"`` split (the
    training classes but fold ``fold``), the periodic evaluation and the choice of ``best.pt`` the
    ``"val"`` split (fold ``fold``), so model selection never sees a test class.

    Attributes:
        name: a name from ``pairsim.data.list_datasets()``: ``"hangul-fonts"``, ``"emoji"``,
            ``"fashion-mnist"``, or ``"folder"`` (your own images, at ``root``).
        root: the cache directory of the built data sets (``None``: ``$PAIRSIM_DATA``, else ``data/``);
            for ``"folder"``, your images (required): a directory with one sub-folder per class, or a
            CSV of ``path,label`` rows, whose build is cached in the default cache directory. A folder of
            ``train/ val/ test/`` directories or a CSV column ``split`` names each class's split instead.
        image_size: side of the square images (``None``: the data set's default, 64; fashion-mnist 28).
        max_classes: train on a deterministic subset of this many training classes (``None``: all).
        split_seed: seeds the class split and the folds (not ``seed``: runs of several seeds share one split).
        test_ratio: the share of classes held out as test classes, in ``[0, 1)``; 0 trains on every class
            (a production model). Ignored where the data name their splits.
        folds: validation folds of the training classes (``K``; 1: no validation split, then set ``eval_split``
            to another split or ``eval_every`` to 0).
        fold: the fold that validates, in ``[0, folds)``; the run trains on the other ``K - 1``.
        eval_split: the split evaluated during training and used to choose ``best.pt``: ``"val"`` (the
            validation fold), or another split of ``pairsim.data.load_dataset`` (``"test"`` only for a final
            check: choosing ``best.pt`` on test classes is tuning on them).
        eval_max_classes: how many classes of ``eval_split`` the periodic evaluation uses (``None``: all).
    """

    name: str = "hangul-fonts"
    root: str | None = None
    image_size: int | None = None
    max_classes: int | None = None
    split_seed: int = 0
    test_ratio: float = 0.5
    folds: int = 4
    fold: int = 0
    eval_split: str = "val"
    eval_max_classes: int | None = 200

    def __post_init__(self) -> None:
        try:
            self.split()
        except ValueError as error:
            raise ValueError(f"data.{error}") from None

    def split(self) -> SplitSpec:
        """The class split of these settings (``load_dataset``'s ``seed``, ``test_ratio``, ``folds``, ``fold``)."""
        return SplitSpec(seed=self.split_seed, test_ratio=self.test_ratio, folds=self.folds, fold=self.fold)


@dataclass(frozen=True)
class ModelConfig:
    """The embedding network: the arguments of ``pairsim.models.create_model``.

    Attributes:
        name: a name from ``pairsim.models.list_models()``: ``"efficientnet-lite0"`` (has ImageNet weights;
            any image size) or ``"small-cnn"`` (four conv blocks trained from scratch, for small grayscale images).
        embedding_dim: ``D``, the size of the L2-normalised embedding.
        pretrained: start the backbone from its published weights (an error for a model without any).
    """

    name: str = "efficientnet-lite0"
    embedding_dim: int = 128
    pretrained: bool = True


@dataclass(frozen=True)
class LossConfig:
    """A registered loss and its hyper-parameters.

    Attributes:
        name: a name from ``pairsim.list_losses()``.
        class_level: score against learnable class proxies (one per training class) instead of the batch.
        params: the loss's own constructor arguments, e.g. ``{"m": 0.4, "gamma": 80}`` or
            ``{"margin": 0.1, "mining": "batch_hard"}``, checked against its signature when the
            configuration is read.
        sample_ratio: class-level only: the share of negative classes scored per step (Partial FC);
            1.0, the default, is the exact loss.
    """

    name: str = "circle"
    class_level: bool = False
    params: dict[str, float | str] = field(default_factory=lambda: {"m": 0.4, "gamma": 80.0})
    sample_ratio: float = 1.0


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay; class proxies have their own learning rate.

    Attributes:
        lr: peak learning rate of the backbone.
        head_lr: peak learning rate of the embedding head (``None``: ``lr``).
        proxy_lr: peak learning rate of the loss's parameters (class proxies).
        weight_decay: decoupled weight decay of the model (never of the proxies).
        warmup_steps: linear warm-up from 0.
        final_lr_ratio: the cosine ends at ``ratio * peak``.
    """

    lr: float = 1e-3
    head_lr: float | None = None
    proxy_lr: float = 1e-2
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    final_lr_ratio: float = 0.01


@dataclass(frozen=True)
class SamplerConfig:
    """The P-K sampler: ``P`` classes times ``K`` samples per batch, so every anchor has ``K - 1`` positives.

    Attributes:
        classes_per_batch: ``P``, classes per batch (per rank under torchrun); the training split needs at
            least ``P`` classes with 2 or more images.
        samples_per_class: ``K``, images drawn from each of the batch's classes (with replacement when a
            class has fewer).
    """

    classes_per_batch: int = 32
    samples_per_class: int = 4


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; written, resolved, next to its checkpoints.

    Attributes:
        data: which images to train and evaluate on.
        model: the embedding network.
        loss: the training loss and its hyper-parameters.
        optim: the optimiser and its learning-rate schedule.
        sampler: how training batches are drawn.
        augment: random jitter of the training images.
        steps: optimisation steps (may change on ``--resume``, e.g. to train longer).
        seed: seeds the model's initialisation, the sampler and the augmentations.
        out_dir: where checkpoints, the metrics log and the resolved config go (may change on ``--resume``:
            a run directory may be moved, then resumed).
        checkpoint_every: write ``last.pt`` every this many steps (and always at the end).
        eval_every: evaluate every this many steps (``None``: once per sampler epoch; 0: never).
        eval_batch_size: batch size when embedding the evaluation images.
        circle_m: ``m`` of the Eq. 8 circle in the diagnostics (``None``: the loss's ``m``, else 0.25).
        threads: torch CPU threads (``None``: torch's default).
        device: where a single-process run trains: ``"auto"`` (the first GPU when CUDA is available,
            else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under torchrun each rank uses the
            device of its backend (``cuda:LOCAL_RANK`` with NCCL, else the CPU). Not part of a run's
            identity: a run may resume on another device.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``: bf16 runs the model's forward pass under bfloat16
            autocast (the loss, the optimiser state and the retrieval scores stay float32; no loss scaling
            is needed), in training and in the evaluations. ``"auto"`` picks per phase what was measured
            faster: bf16 on GPUs with bf16, bf16 for inference on CPUs with AVX512-BF16 or AMX and for
            training on CPUs with AMX, fp32 elsewhere (``pairsim.models.execution``).
        channels_last: ``"auto"``, true or false: the model and its input batches in NHWC (``auto``: on;
            oneDNN's and cuDNN's convolutions are faster in it).
        compile: ``"auto"``, true or false: ``torch.compile`` (inductor) of the model for training
            (``auto``: off; on the CPU it compiled for about a minute and ran slower than eager, and it is
            not measured on a GPU yet). Graphs, graph breaks, recompilations and the compiling first
            step's time go to the metrics log (``kind: compile``).
            ``precision=fp32``, ``channels_last=false``, ``compile=false`` is the exact path of
            earlier releases. The three are not part of a run's identity: a run may resume under
            others (continuing exactly only under the same ones).
        deterministic: ask torch for deterministic kernels (``torch.use_deterministic_algorithms``,
            warning where an op has none, and cuBLAS's fixed workspace), so that a GPU run and its
            resumed continuation repeat exactly; a little slower. Process-wide once set; not part of
            a run's identity. Without it a CPU run repeats exactly in a fresh process (the resume
            test kills and restarts one), a GPU run does not (cuDNN's backward kernels).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    steps: int = 1000
    seed: int = 0
    out_dir: str = "runs/default"
    checkpoint_every: int = 200
    eval_every: int | None = None
    eval_batch_size: int = 256
    circle_m: float | None = None
    threads: int | None = None
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool | str = "auto"
    deterministic: bool = False

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        check_settings(self.precision, self.channels_last, self.compile)

    @property
    def diagnostic_m(self) -> float:
        """``m`` of the decision circle drawn and tested in the diagnostics."""
        if self.circle_m is not None:
            return self.circle_m
        m = self.loss.params.get("m", 0.25)
        return m if isinstance(m, float) else 0.25


#: What the class-split keys meant before they existed (pairsim 0.1.0 trained on the training half, no folds).
LEGACY_SPLIT = {"split_seed": 0, "test_ratio": 0.5, "folds": 1, "fold": 0}


def upgrade_saved_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration saved by an earlier release, with the keys it lacks set to what it did then.

    Configurations written before ``data.folds`` existed trained on all of the training half and had no
    validation fold; reading them with today's defaults (4 folds) would claim a split they never used.

    Example:
        >>> upgrade_saved_config({"data": {"name": "emoji", "eval_split": "test"}})["data"]["folds"]
        1
    """
    upgraded = dict(raw)
    data = dict(upgraded.get("data") or {})
    if "folds" not in data:
        data = {**LEGACY_SPLIT, **data}
    upgraded["data"] = data
    return upgraded


T = TypeVar("T")


def from_dict(cls: type[T], raw: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from nested plain data, checking names and types.

    Raises:
        ValueError: on an unknown key or a value of the wrong type, naming its dotted path.

    Example:
        >>> from_dict(SamplerConfig, {"classes_per_batch": 8}).classes_per_batch
        8
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {known} (see docs/configuration.md)")
    values = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in raw.items()}
    return cls(**values)


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for inner in (a for a in args if a is not type(None)):
            try:
                return _convert(inner, value, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[T, ...]: any length
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML follows YAML 1.1, which reads "3e-4" (no dot in the mantissa) as a string.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ValueError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested data (lists for tuples) that :func:`from_dict` reads back."""
    raw = dataclasses.asdict(config)
    return typing.cast(dict[str, Any], yaml.safe_load(yaml.safe_dump(_lists(raw), sort_keys=False)))


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    return value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with ``"dotted.key=value"`` overrides applied (values parsed as YAML).

    Raises:
        ValueError: on an override without ``=``.

    Example:
        >>> apply_overrides({"loss": {"name": "circle"}}, ["loss.params.m=0.3", "steps=10"])
        {'loss': {'name': 'circle', 'params': {'m': 0.3}}, 'steps': 10}
    """
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(raw), sort_keys=False)) or {}  # a deep copy
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        node = out
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {name!r} is not a section")
        node[leaf] = yaml.safe_load(text)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The plain data of a YAML run configuration (an empty file: ``{}``).

    Raises:
        FileNotFoundError: there is no file at ``path``.
        ValueError: naming the file, when it is not UTF-8 YAML or its top level is not a mapping.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no configuration file at {file}")
    try:
        with file.open(encoding="utf-8") as stream:  # a stream: YAML's errors name the file and line
            raw = yaml.safe_load(stream)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{file}: not valid YAML: {error}") from error
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: expected a mapping of configuration keys at the top level, got {raw!r:.80}")
    return raw


# What the trainer passes to a class-level loss itself (see ``pairsim.training.loss_setup``): never ``loss.params``.
TRAINER_LOSS_ARGS = frozenset({"num_classes", "embedding_dim"})


def loss_parameters(name: str) -> tuple[str, ...] | None:
    """The constructor parameters of the registered loss ``name`` that ``loss.params`` may set, in order.

    ``None`` when the constructor takes ``**kwargs`` (then any name is passed on).

    Raises:
        ValueError: naming the unknown loss and the known ones (the registry's error).

    Example:
        >>> loss_parameters("triplet")
        ('margin', 'mining')
    """
    parameters = inspect.signature(get_loss_class(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in named and p.name not in TRAINER_LOSS_ARGS)


def resolve_config(raw: Mapping[str, Any], overrides: Sequence[str] = ()) -> tuple[TrainConfig, tuple[str, ...]]:
    """The run configuration of ``raw`` (a YAML file's data) with ``key=value`` overrides, and notes for the user.

    ``loss.params`` are checked against the constructor of the loss ``loss.name`` (less the trainer's own
    ``num_classes`` and ``embedding_dim``), so that a bad one never reaches it. A parameter the loss does
    not take is

    - dropped, with a note, when an override changed ``loss.name`` and the parameter came from ``raw``
      (``--set loss.name=triplet`` on a Circle-loss file drops its ``m`` and ``gamma``);
    - dropped silently when it is one of :class:`LossConfig`'s default params (``raw`` and the
      overrides give no ``loss.params``): Circle loss's ``m`` and ``gamma``;
    - an error when an override set it, or when ``raw`` has it and the name was not changed.

    Raises:
        ValueError: on a bad key or value (naming its dotted path), an unknown loss (naming the known
            ones), or a parameter the loss does not take (naming it, the loss and its parameters).

    Example:
        >>> raw = {"loss": {"name": "circle", "params": {"m": 0.4, "gamma": 80.0}}}
        >>> config, notes = resolve_config(raw, ["loss.name=triplet", "loss.params.margin=0.2"])
        >>> config.loss.params
        {'margin': 0.2}
        >>> notes[0]
        'loss.params.m dropped: triplet does not take it (it takes margin, mining)'
        >>> resolve_config(raw, ["loss.name=triplet", "loss.params.m=0.3"])
        Traceback (most recent call last):
        ...
        ValueError: loss.params.m (set by an override): triplet does not take it (it takes margin, mining)
    """
    merged = apply_overrides(raw, overrides)
    config = from_dict(TrainConfig, merged)
    taken = loss_parameters(config.loss.name)
    if taken is None:
        return config, ()
    by_overrides = _section(apply_overrides({}, overrides), "loss")
    renamed = "name" in by_overrides and by_overrides["name"] != _section(raw, "loss").get("name", LossConfig().name)
    defaults = "params" not in _section(merged, "loss")  # LossConfig's default params: no one wrote them
    takes = f"it takes {', '.join(taken)}" if taken else "it takes no parameters"
    kept: dict[str, float | str] = {}
    notes, errors = [], []
    for key, value in config.loss.params.items():
        if key in taken:
            kept[key] = value
        elif key in _section(by_overrides, "params"):
            errors.append(f"loss.params.{key} (set by an override)")
        elif not (renamed or defaults):
            errors.append(f"loss.params.{key}")
        elif not defaults:
            notes.append(f"loss.params.{key} dropped: {config.loss.name} does not take it ({takes})")
    if errors:
        them = "it" if len(errors) == 1 else "them"
        raise ValueError(f"{' and '.join(errors)}: {config.loss.name} does not take {them} ({takes})")
    if kept != config.loss.params:
        config = dataclasses.replace(config, loss=dataclasses.replace(config.loss, params=kept))
    return config, tuple(notes)


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def load_config_with_notes(
    path: str | Path | None, overrides: Sequence[str] = ()
) -> tuple[TrainConfig, tuple[str, ...]]:
    """:func:`load_config`, and the notes of :func:`resolve_config` (dropped loss parameters) to show the user.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is not a YAML mapping (naming it), or see :func:`resolve_config`.
    """
    return resolve_config(read_config_file(path) if path is not None else {}, overrides)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML run configuration (``None``: the defaults) and apply ``key=value`` overrides.

    The notes of :func:`resolve_config` (loss parameters dropped) are logged as warnings.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is not a YAML mapping (naming it), or see :func:`resolve_config`.

    Example:
        >>> load_config(None, ["loss.name=triplet"]).loss.params  # the default Circle-loss m and gamma dropped
        {}
    """
    config, notes = load_config_with_notes(path, overrides)
    for note in notes:
        log.warning("%s", note)
    return config


def dump_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
