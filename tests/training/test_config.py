"""Run configuration: YAML and overrides in, frozen dataclasses out; every shipped config is valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pairsim.cli.demo import DEMO_CONFIG
from pairsim.losses import get_loss_class
from pairsim.models import list_models
from pairsim.training.config import TrainConfig, apply_overrides, dump_config, from_dict, load_config, to_dict

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    config = load_config(None, ["augment.scale=[0.9, 1.1]", "loss.params={m: 0.3, gamma: 64}"])
    dump_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_overrides_are_parsed_as_yaml_and_typed() -> None:
    config = load_config(None, ["steps=7", "optim.lr=3e-4", "data.max_classes=null", "model.pretrained=false"])
    assert config.steps == 7 and config.optim.lr == pytest.approx(3e-4)
    assert config.data.max_classes is None and config.model.pretrained is False
    assert config.augment.scale == (1.0, 1.0)  # tuples, not lists
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("stepz=3", "unknown key"),
        ("optim.lr=fast", "optim.lr: expected float"),
        ("steps=1.5", "steps: expected int"),
        ("augment.scale=[1.0]", "expected 2 values"),
        ("model.pretrained=maybe", "expected bool"),
        ("steps", "key=value"),
    ],
)
def test_bad_entries_name_their_path(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_config(None, [override])


def test_apply_overrides_does_not_modify_its_input() -> None:
    raw = {"optim": {"lr": 0.1}}
    assert apply_overrides(raw, ["optim.lr=0.2"]) == {"optim": {"lr": 0.2}}
    assert raw == {"optim": {"lr": 0.1}}


def test_diagnostic_margin_follows_the_loss() -> None:
    assert load_config(None, ["loss.params={m: 0.3}"]).diagnostic_m == 0.3
    assert load_config(None, ["loss.name=triplet", "loss.params={margin: 0.1}"]).diagnostic_m == 0.25
    assert load_config(None, ["circle_m=0.1"]).diagnostic_m == 0.1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_is_valid(path: Path) -> None:
    config = load_config(path)
    cls = get_loss_class(config.loss.name)
    assert cls.supports_class_level if config.loss.class_level else cls.supports_pair_wise
    proxies = {"num_classes": 3, "embedding_dim": 4} if config.loss.class_level else {}
    cls(**config.loss.params, **proxies)  # type: ignore[arg-type]  # the parameters are the loss's own
    assert config.model.name in list_models()


def test_configs_cover_each_data_set_and_loss() -> None:
    names = {(p.parent.name, p.stem) for p in CONFIGS}
    for data in ("hangul-fonts", "emoji", "fashion-mnist"):
        for loss in ("circle_pair", "circle_class", "triplet", "multi_similarity", "cosface", "arcface"):
            assert (data, loss) in names


def test_demo_yaml_is_the_demo_configuration() -> None:
    assert load_config(Path(CONFIGS[0]).parents[1] / "hangul-fonts" / "demo.yaml") == DEMO_CONFIG
