"""Search spaces: the dataclasses' checks, and the contract every registered loss's space keeps.

The contract is parametrised over ``list_losses()`` and the paradigms each class supports, so a new loss
is held to it the moment it registers: it must declare a non-empty space whose keys its constructor and
the training configuration take, and whose whole range (sampled values and every corner of the box)
builds a loss with a finite value and finite gradients.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import random
from collections.abc import Callable, Sequence

import pytest
import torch

from pairsim.losses import (
    CategoricalParam,
    FloatParam,
    IntParam,
    PairLoss,
    SearchSpace,
    create_loss,
    get_loss_class,
    list_losses,
    search_space_for,
)
from pairsim.losses.search_space import PROXY_LR, ParamValue, loss_search_space
from pairsim.training.config import TRAINER_LOSS_ARGS, TrainConfig

C, D = 5, 16
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])  # (B,) P x K with P = C = 5, K = 2
LOSS_PARAMS = "loss.params."


class RandomSuggester:
    """A seeded stand-in for ``optuna.Trial``: uniform, log-uniform and choice draws with ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.names: list[str] = []

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        self.names.append(name)
        if log:
            value = math.exp(self.rng.uniform(math.log(low), math.log(high)))
            return min(max(value, low), high)  # exp(log(x)) may round past a bound
        return self.rng.uniform(low, high)

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        self.names.append(name)
        if log:
            return min(max(round(math.exp(self.rng.uniform(math.log(low), math.log(high)))), low), high)
        return self.rng.randint(low, high)

    def suggest_categorical(self, name: str, choices: Sequence[ParamValue]) -> ParamValue:
        self.names.append(name)
        return self.rng.choice(list(choices))


class CornerSuggester:
    """Picks the lower or the upper end of each dimension (the first or last choice), by key."""

    def __init__(self, upper: dict[str, bool]) -> None:
        self.upper = upper

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return high if self.upper[name] else low

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return high if self.upper[name] else low

    def suggest_categorical(self, name: str, choices: Sequence[ParamValue]) -> ParamValue:
        return choices[-1] if self.upper[name] else choices[0]


def _configs() -> list[tuple[str, bool]]:
    configs = []
    for name in list_losses():
        cls = get_loss_class(name)
        configs += [(name, False)] * cls.supports_pair_wise + [(name, True)] * cls.supports_class_level
    return configs


def _unsupported() -> list[tuple[str, bool]]:
    supported = set(_configs())
    return [(name, level) for name in list_losses() for level in (False, True) if (name, level) not in supported]


CONFIGS = _configs()
UNSUPPORTED = _unsupported()
IDS = [f"{name}-{'class_level' if level else 'pair_wise'}" for name, level in CONFIGS]


def _run(name: str, class_level: bool, values: dict[str, ParamValue], seed: int = 0) -> None:
    """Build ``name`` with the sampled ``loss.params`` and check one forward + backward is finite."""
    params = {key.removeprefix(LOSS_PARAMS): v for key, v in values.items() if key.startswith(LOSS_PARAMS)}
    torch.manual_seed(seed)
    shape = {"num_classes": C, "embedding_dim": D} if class_level else {}
    loss_fn = create_loss(name, **params, **shape)
    x = torch.randn(len(LABELS), D, requires_grad=True)  # (B, D)
    loss = loss_fn(x, LABELS)
    assert loss.dim() == 0
    assert torch.isfinite(loss), (values, loss)
    loss.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all(), values
    if loss_fn.proxies is not None:
        assert loss_fn.proxies.grad is not None
        assert torch.isfinite(loss_fn.proxies.grad).all(), values


def _in_bounds(param: FloatParam | IntParam | CategoricalParam, value: ParamValue) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    return param.low <= value <= param.high


# --- the registry-wide contract -------------------------------------------------------------------------


def test_every_loss_declares_a_space_in_some_paradigm() -> None:
    assert {name for name, _ in CONFIGS} == set(list_losses())


@pytest.mark.parametrize(("name", "class_level"), CONFIGS, ids=IDS)
def test_space_is_declared_and_non_empty(name: str, class_level: bool) -> None:
    space = search_space_for(name, class_level)
    assert isinstance(space, SearchSpace)
    assert len(space) > 0
    assert space == get_loss_class(name).search_space(class_level)


@pytest.mark.parametrize(("name", "class_level"), CONFIGS, ids=IDS)
def test_loss_params_keys_are_constructor_arguments(name: str, class_level: bool) -> None:
    signature = inspect.signature(get_loss_class(name)).parameters
    for key in search_space_for(name, class_level).keys:
        if key.startswith(LOSS_PARAMS):
            arg = key.removeprefix(LOSS_PARAMS)
            assert arg in signature, f"{name} takes no {arg!r} (it takes {', '.join(signature)})"
            assert arg not in TRAINER_LOSS_ARGS, f"{key}: the trainer sets {arg} itself"


@pytest.mark.parametrize(("name", "class_level"), CONFIGS, ids=IDS)
def test_other_keys_are_training_config_fields(name: str, class_level: bool) -> None:
    for key in search_space_for(name, class_level).keys:
        if key.startswith(LOSS_PARAMS):
            continue
        section: object = TrainConfig()
        *parents, leaf = key.split(".")
        for part in parents:
            assert hasattr(section, part), f"{key}: the training configuration has no section {part!r}"
            section = getattr(section, part)
        assert dataclasses.is_dataclass(section), f"{key}: {'.'.join(parents)} is not a configuration section"
        assert leaf in {f.name for f in dataclasses.fields(section)}, f"{key} is not a training-configuration key"


@pytest.mark.parametrize(("name", "class_level"), CONFIGS, ids=IDS)
def test_proxy_lr_exactly_in_class_level_spaces(name: str, class_level: bool) -> None:
    space = search_space_for(name, class_level)
    assert ("optim.proxy_lr" in space.keys) is class_level
    if class_level:
        assert PROXY_LR in space.params


@pytest.mark.parametrize(("name", "class_level"), CONFIGS, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_values_are_in_bounds_and_train(name: str, class_level: bool, seed: int) -> None:
    space = search_space_for(name, class_level)
    trial = RandomSuggester(seed)
    values = space.sample(trial)
    assert list(values) == list(space.keys) == trial.names  # each dimension drawn once, under its key
    for param in space:
        assert _in_bounds(param, values[param.key]), (param, values[param.key])
    _run(name, class_level, values, seed)


@pytest.mark.parametrize(("name", "class_level"), CONFIGS, ids=IDS)
def test_every_corner_of_the_range_trains(name: str, class_level: bool) -> None:
    space = search_space_for(name, class_level)
    for ends in itertools.product((False, True), repeat=len(space)):
        values = space.sample(CornerSuggester(dict(zip(space.keys, ends, strict=True))))
        _run(name, class_level, values)


@pytest.mark.parametrize(("name", "class_level"), UNSUPPORTED)
def test_unsupported_paradigm_is_refused(name: str, class_level: bool) -> None:
    with pytest.raises(ValueError, match=get_loss_class(name).__name__):
        search_space_for(name, class_level)


def test_unknown_loss_is_the_registry_error() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; known losses: .*circle"):
        search_space_for("nope", class_level=False)


def test_a_loss_without_a_space_names_itself() -> None:
    class Bare(PairLoss):
        pass

    with pytest.raises(NotImplementedError, match="Bare declares no hyper-parameter search space"):
        Bare.search_space(class_level=False)


def test_the_helper_refuses_an_empty_pair_wise_space() -> None:
    class Nothing(PairLoss):
        pass

    assert loss_search_space(Nothing, True).params == (PROXY_LR,)
    with pytest.raises(ValueError, match="at least one parameter"):
        loss_search_space(Nothing, False)


# --- the dataclasses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FloatParam("", 0.0, 1.0), "dotted configuration key"),
        (lambda: FloatParam("loss..m", 0.0, 1.0), "dotted configuration key"),
        (lambda: FloatParam("loss.params.m", 1.0, 1.0), "low must be below high"),
        (lambda: FloatParam("loss.params.m", 2.0, 1.0), "low must be below high"),
        (lambda: FloatParam("loss.params.m", 0.0, math.inf), "finite"),
        (lambda: FloatParam("loss.params.m", math.nan, 1.0), "finite"),
        (lambda: FloatParam("loss.params.gamma", 0.0, 1.0, log=True), "positive bounds"),
        (lambda: FloatParam("loss.params.gamma", -1.0, 1.0, log=True), "positive bounds"),
        (lambda: FloatParam("loss.params.m", "0", 1.0), "numbers"),  # type: ignore[arg-type]
        (lambda: IntParam("", 1, 2), "dotted configuration key"),
        (lambda: IntParam("sampler.samples_per_class", 4, 4), "low must be below high"),
        (lambda: IntParam("sampler.samples_per_class", 0, 8, log=True), "positive bounds"),
        (lambda: IntParam("sampler.samples_per_class", 1.5, 8), "integers"),  # type: ignore[arg-type]
        (lambda: IntParam("sampler.samples_per_class", True, 8), "integers"),
        (lambda: CategoricalParam("", ("a",)), "dotted configuration key"),
        (lambda: CategoricalParam("loss.params.mining", ()), "at least one choice"),
        (lambda: CategoricalParam("loss.params.mining", ("all", "all")), "repeated choices"),
        (lambda: CategoricalParam("loss.params.mining", (None,)), "strings, numbers or booleans"),  # type: ignore[arg-type]
    ],
)
def test_param_validation(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_params_are_frozen_and_normalised() -> None:
    param = FloatParam("loss.params.gamma", 16, 1024, log=True)
    assert (param.low, param.high) == (16.0, 1024.0) and isinstance(param.low, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        param.low = 1.0  # type: ignore[misc]
    assert CategoricalParam("loss.params.mining", ["all", "batch_hard"]).choices == ("all", "batch_hard")  # type: ignore[arg-type]
    assert len(CategoricalParam("x.flag", (1, True, 1.0)).choices) == 3  # equal values of different types


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=r"repeated: loss\.params\.m"):
        SearchSpace((FloatParam("loss.params.m", 0.0, 0.5), FloatParam("loss.params.m", 0.1, 0.2)))
    with pytest.raises(ValueError, match="at least one parameter"):
        SearchSpace(())


def test_sample_and_to_dict_of_every_kind() -> None:
    space = SearchSpace(
        (
            FloatParam("loss.params.gamma", 16.0, 1024.0, log=True),
            IntParam("sampler.samples_per_class", 2, 8),
            CategoricalParam("loss.params.mining", ("batch_hard", "all")),
        )
    )
    assert space.sample(CornerSuggester(dict.fromkeys(space.keys, True))) == {
        "loss.params.gamma": 1024.0,
        "sampler.samples_per_class": 8,
        "loss.params.mining": "all",
    }
    assert space.to_dict() == {
        "loss.params.gamma": {"type": "float", "low": 16.0, "high": 1024.0, "log": True},
        "sampler.samples_per_class": {"type": "int", "low": 2, "high": 8, "log": False},
        "loss.params.mining": {"type": "categorical", "choices": ["batch_hard", "all"]},
    }
    for seed in range(20):
        values = space.sample(RandomSuggester(seed))
        assert all(_in_bounds(p, values[p.key]) for p in space)


def test_a_categorical_answer_outside_the_choices_is_refused() -> None:
    class Stray(CornerSuggester):
        def suggest_categorical(self, name: str, choices: Sequence[ParamValue]) -> ParamValue:
            return "hardest"

    with pytest.raises(ValueError, match="suggested 'hardest'"):
        CategoricalParam("loss.params.mining", ("batch_hard", "all")).suggest(Stray({}))
