"""Run configuration: frozen dataclasses, filled from YAML and ``key=value`` overrides at the CLI edge."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pairsim.data.transforms import AugmentConfig

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and evaluate on (see ``pairsim.data.load_dataset``).

    Attributes:
        name: data set name.
        root: data directory (``None``: the cache ``data/`` or ``$PAIRSIM_DATA``).
        image_size: side the images are built at (``None``: the data set's default).
        max_classes: keep this many training classes (``None``: all).
        eval_split: split of the held-out classes evaluated every epoch.
        eval_max_classes: how many held-out classes the periodic evaluation uses (``None``: all).
    """

    name: str = "hangul-fonts"
    root: str | None = None
    image_size: int | None = None
    max_classes: int | None = None
    eval_split: str = "test"
    eval_max_classes: int | None = 200


@dataclass(frozen=True)
class ModelConfig:
    """Arguments of ``pairsim.models.create_model``."""

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
            ``{"margin": 0.1, "mining": "batch_hard"}``.
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
    """The P-K sampler: ``P`` classes times ``K`` samples per batch."""

    classes_per_batch: int = 32
    samples_per_class: int = 4


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; written, resolved, next to its checkpoints.

    Attributes:
        steps: optimisation steps.
        seed: seeds the model's initialisation, the sampler and the augmentations.
        out_dir: where checkpoints, the metrics log and the resolved config go.
        checkpoint_every: write ``last.pt`` every this many steps (and always at the end).
        eval_every: evaluate every this many steps (``None``: once per sampler epoch; 0: never).
        eval_batch_size: batch size when embedding the evaluation images.
        circle_m: ``m`` of the Eq. 8 circle in the diagnostics (``None``: the loss's ``m``, else 0.25).
        threads: torch CPU threads (``None``: torch's default).
        device: where a single-process run trains: ``"auto"`` (the first GPU when CUDA is available,
            else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under torchrun each rank uses the
            device of its backend (``cuda:LOCAL_RANK`` with NCCL, else the CPU). Not part of a run's
            identity: a run may resume on another device.
        precision: ``"fp32"``, or ``"bf16"``: the model's forward pass under bfloat16 autocast (the
            loss, the optimiser and the evaluation stay in float32; no loss scaling is needed).
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
    precision: str = "fp32"
    deterministic: bool = False

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    @property
    def diagnostic_m(self) -> float:
        """``m`` of the decision circle drawn and tested in the diagnostics."""
        if self.circle_m is not None:
            return self.circle_m
        m = self.loss.params.get("m", 0.25)
        return m if isinstance(m, float) else 0.25


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
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    values = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in raw.items()}
    return cls(**values)


def _convert(tp: Any, value: Any, where: str) -> Any:
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
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(raw))) or {}
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


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML run configuration (``None``: the defaults) and apply ``key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    return from_dict(TrainConfig, apply_overrides(raw, overrides))


def dump_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
