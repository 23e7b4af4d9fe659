"""docs/configuration.md: generated from the config dataclasses, complete, and its example configuration valid."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pairsim.data import list_datasets
from pairsim.losses import get_loss_class
from pairsim.models import list_models
from pairsim.training.config import TrainConfig, load_config
from pairsim.training.config_reference import EXAMPLE_CONFIG, REGENERATE, main, render_configuration_reference

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def dotted_keys(cls: type[Any], prefix: str = "") -> Iterator[str]:
    """Every leaf key of the dataclass ``cls``, dotted (written apart from the generator's own walk)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from dotted_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_the_document_is_what_the_generator_writes() -> None:
    assert DOC.read_text(encoding="utf-8") == render_configuration_reference(), (
        f"docs/configuration.md is out of date: regenerate it with `{REGENERATE}`"
    )


def test_main_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    assert capsys.readouterr().out == render_configuration_reference()


def test_every_field_has_a_row_with_its_type_and_default() -> None:
    text = render_configuration_reference()
    keys = list(dotted_keys(TrainConfig))
    assert {"data.image_size", "loss.sample_ratio", "augment.degrees", "device", "precision", "deterministic"} <= set(
        keys
    )
    for key in keys:
        assert f"| `{key}` |" in text, key
    assert "| `augment.scale` | `tuple[float, float]` | `[1.0, 1.0]` |" in text
    assert "| `data.root` | `str \\| None` | `null` |" in text  # escaped pipe: one table cell
    for section in ("data", "model", "loss", "optim", "sampler", "augment"):
        assert f"\n## `{section}`\n" in text


def test_the_example_is_the_shipped_file() -> None:
    text = render_configuration_reference()
    assert f"```yaml\n{EXAMPLE_CONFIG.read_text(encoding='utf-8')}```\n" in text
    assert text.endswith("```\n")
    assert "## Example" not in render_configuration_reference(example=None)


def test_the_folder_example_loads_and_validates() -> None:
    assert EXAMPLE_CONFIG == ROOT / "configs" / "folder" / "circle_pair.yaml"
    config = load_config(EXAMPLE_CONFIG)
    assert config.data.name == "folder" and config.data.name in list_datasets()
    assert config.data.root  # the folder data set needs one
    assert config.model.name in list_models()
    assert config.loss.name == "circle" and not config.loss.class_level
    assert get_loss_class(config.loss.name).supports_pair_wise
    get_loss_class(config.loss.name)(**config.loss.params)  # type: ignore[arg-type]  # the loss's own parameters
    assert config.augment.enabled


@dataclass(frozen=True)
class _Section:
    """A throw-away section.

    Attributes:
        size: documented.
            Over two lines.
    """

    size: int = 3
    colour: str = "red"


@dataclass(frozen=True)
class _Root:
    """A throw-away root.

    Attributes:
        section: a section.
        name: the name.
    """

    section: _Section = field(default_factory=_Section)
    name: str | None = None


@dataclass(frozen=True)
class _Documented:
    """A throw-away root whose every field is documented.

    Attributes:
        ratios: the ratios.
        count (int): with a type in parentheses, as Google style allows.
    """

    ratios: tuple[float, float] = (0.5, 2.0)
    count: int = 1


@dataclass(frozen=True)
class _Stale:
    """A throw-away root that documents a field it lacks.

    Attributes:
        count: the count.
        gone: no such field.
    """

    count: int = 1


def test_an_undocumented_field_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"_Section\.colour is undocumented"):
        render_configuration_reference(_Root, example=None)


def test_a_documented_field_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(ValueError, match="'gone', which is not one of its fields"):
        render_configuration_reference(_Stale, example=None)


def test_a_documented_root_renders_its_rows() -> None:
    text = render_configuration_reference(_Documented, example=None)
    assert "| `ratios` | `tuple[float, float]` | `[0.5, 2.0]` | the ratios. |" in text
    assert "| `count` | `int` | `1` | with a type in parentheses, as Google style allows. |" in text
