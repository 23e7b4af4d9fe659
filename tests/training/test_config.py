"""Run configuration: YAML and overrides in, frozen dataclasses out; every shipped config is valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pairsim.jobs.demo import DEMO_CONFIG
from pairsim.losses import get_loss_class
from pairsim.models import list_models
from pairsim.training.config import (
    TrainConfig,
    apply_overrides,
    dump_config,
    from_dict,
    load_config,
    load_config_with_notes,
    loss_parameters,
    resolve_config,
    to_dict,
)

# Training configurations; configs/studies/ holds study presets (tests/jobs/test_study.py checks those).
CONFIGS = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml") if p.parent.name != "studies"
)
CIRCLE_PAIR = Path(__file__).resolve().parents[2] / "configs" / "hangul-fonts" / "circle_pair.yaml"


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


def test_switching_the_loss_drops_the_files_params_with_notes() -> None:
    config, notes = load_config_with_notes(CIRCLE_PAIR, ["loss.name=triplet", "loss.params.margin=0.2"])
    assert config.loss.name == "triplet" and config.loss.params == {"margin": 0.2}
    assert notes == (
        "loss.params.m dropped: triplet does not take it (it takes margin, mining)",
        "loss.params.gamma dropped: triplet does not take it (it takes margin, mining)",
    )
    get_loss_class("triplet")(**config.loss.params)  # type: ignore[arg-type]  # no TypeError: m and gamma are gone
    assert load_config(CIRCLE_PAIR, ["loss.name=triplet"]) == dataclasses.replace(
        config, loss=dataclasses.replace(config.loss, params={})
    )


def test_params_the_new_loss_takes_are_kept_and_nothing_is_noted() -> None:
    config, notes = load_config_with_notes(CIRCLE_PAIR, ["loss.name=cosface"])
    assert config.loss.params == {"m": 0.4, "gamma": 80.0} and notes == ()
    assert load_config_with_notes(CIRCLE_PAIR)[1] == ()


def test_the_default_params_are_dropped_silently() -> None:
    # LossConfig's default params (Circle loss's m and gamma) were written by no one: no note about them.
    assert resolve_config({"loss": {"name": "triplet"}}) == (load_config(None, ["loss.name=triplet"]), ())
    assert resolve_config({"loss": {"name": "triplet"}})[0].loss.params == {}


def test_load_config_logs_the_notes(caplog: pytest.LogCaptureFixture) -> None:
    load_config(CIRCLE_PAIR, ["loss.name=triplet"])
    assert "loss.params.m dropped: triplet does not take it" in caplog.text


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss.name=triplet", "loss.params.gamma=64"],
        ["loss.name=triplet", "loss.params={margin: 0.1, gamma: 64}"],
        ["loss.params.gamma=64", "loss.name=triplet"],
    ],
)
def test_a_param_set_explicitly_that_the_loss_does_not_take_is_an_error(overrides: list[str]) -> None:
    with pytest.raises(ValueError, match=r"loss\.params\.gamma \(set by an override\): triplet does not take it") as e:
        load_config(CIRCLE_PAIR, overrides)
    assert "(it takes margin, mining)" in str(e.value)


def test_an_explicit_bad_param_is_an_error_without_a_name_change() -> None:
    with pytest.raises(ValueError, match=r"loss\.params\.margin .*circle does not take it \(it takes m, gamma"):
        load_config(CIRCLE_PAIR, ["loss.params.margin=0.1"])


def test_a_bad_param_in_the_yaml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  name: triplet\n  params:\n    margin: 0.1\n    gamma: 64\n")
    with pytest.raises(ValueError, match=r"loss\.params\.gamma: triplet does not take it \(it takes margin, mining\)"):
        load_config(path)
    with pytest.raises(ValueError, match=r"loss\.params\.gamma: triplet does not take it"):
        load_config(path, ["steps=3"])  # other overrides change nothing: the name is the file's
    with pytest.raises(ValueError, match=r"loss\.params\.gamma: triplet does not take it"):
        load_config(path, ["loss.name=triplet"])  # the same name is no change


def test_two_bad_params_are_named_together() -> None:
    with pytest.raises(ValueError, match=r"loss\.params\.x .* and loss\.params\.y .*: softmax does not take them"):
        load_config(None, ["loss.name=softmax", "loss.params={x: 1, y: 2}"])
    with pytest.raises(ValueError, match=r"it takes no parameters"):
        load_config(None, ["loss.name=softmax", "loss.params.x=1"])


def test_an_unknown_loss_is_the_registrys_error() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; known losses: .*circle.*triplet"):
        load_config(CIRCLE_PAIR, ["loss.name=nope"])


def test_loss_parameters_leave_out_the_trainers_own_arguments() -> None:
    assert loss_parameters("triplet") == ("margin", "mining")
    assert loss_parameters("softmax") == ()
    for name in ("circle", "cosface", "arcface"):
        assert {"m", "gamma"} <= set(loss_parameters(name) or ()) and "num_classes" not in (loss_parameters(name) or ())


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no configuration file at {tmp_path / 'absent.yaml'}"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(FileNotFoundError, match="no configuration file at"):
        load_config(tmp_path)  # a directory is no file


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("steps: [1,\n", "not valid YAML"),
        ("data:\n  name: folder\n   root: x\n", "not valid YAML"),
        ("- steps\n- seed\n", "expected a mapping of configuration keys at the top level"),
        ("just text\n", "expected a mapping of configuration keys at the top level"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_an_error_naming_it(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        load_config(path)
    assert str(path) in str(e.value)


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    assert load_config(tmp_path / "empty.yaml") == load_config(None) == TrainConfig()
