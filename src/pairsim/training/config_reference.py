"""The configuration reference, ``docs/configuration.md``, generated from the config dataclasses.

Every key's type comes from the dataclass annotations, its default from the field, its meaning from
the ``Attributes:`` section of its class's docstring, so the reference cannot drift from the code:
``python -m pairsim.training.config_reference > docs/configuration.md`` regenerates it, and a test
checks that the file is up to date.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pairsim.training.config import TrainConfig

REGENERATE = "python -m pairsim.training.config_reference > docs/configuration.md"
# The example configuration at the end of the document (the file's own text, comments included).
EXAMPLE_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "folder" / "circle_pair.yaml"

INTRO = f"""\
# Configuration

<!-- Generated from the dataclasses of src/pairsim/training/config.py: do not edit by hand;
regenerate with `{REGENERATE}`. -->

A run is described by a YAML file, one section per table below plus the top-level keys (see
`configs/DATA_SET/LOSS.yaml` for each shipped data set and loss):

```sh
pairsim train configs/hangul-fonts/circle_pair.yaml --set optim.lr=3e-4 --set loss.params.m=0.3
```

- **Keys.** A key left out takes the default below; an unknown key or a value of the wrong type
  is an error that names its dotted path. In the types, `None` is YAML's `null`, a `tuple` is a
  YAML list of that many values, and a `dict` is a mapping.
- **Overrides.** `--set KEY=VALUE` (repeatable, applied in order after the file) sets one dotted
  key; the value is parsed as YAML: `--set data.max_classes=null`, `--set augment.scale=[0.9,1.1]`,
  `--set model.pretrained=false`. `--set loss.params.m=0.3` sets one loss parameter;
  `--set "loss.params={{m: 0.3, gamma: 64}}"` replaces them all.
- **Loss parameters.** `loss.params` are checked against the constructor of the loss
  `loss.name` when the configuration is read (`num_classes` and `embedding_dim` are the
  trainer's, never parameters). When `--set loss.name=...` switches the loss, the file's
  parameters the new loss does not take are dropped, each with a note (`pairsim train` prints
  them). A parameter the loss does not take is an error, naming the parameters it does take,
  when it is set with `--set`, or when it is in the file and the name was not changed.
- **The resolved configuration.** Every run writes `OUT_DIR/config.yaml`: every key, defaults
  filled in and overrides applied. It is a configuration file itself: `pairsim train
  OUT_DIR/config.yaml` repeats the run.
- **Resuming.** `pairsim train CONFIG --resume` continues from `OUT_DIR/last.pt`. The
  configuration must be the checkpoint's except for `steps` (e.g. to train longer), `device`,
  `deterministic` and `out_dir` (a run directory may be moved or copied, then resumed); any other
  difference is an error that names the keys.
"""

EXAMPLE_INTRO = """\
## Example: your own photos (`folder`)

The `folder` data set reads your images: `data.root` is a directory with one sub-folder per
class, or a CSV of `path,label` rows (see [datasets.md](datasets.md)). As for every data set,
training uses the `train` half of the classes and evaluates on the other, unseen, half. This is
`configs/folder/circle_pair.yaml`:
"""

_TABLE_HEAD = "| Key | Type | Default | Meaning |\n|---|---|---|---|"
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")  # :class:`~pairsim.x.Y` -> `Y`, :func:`f` -> `f`
_ENTRY = re.compile(r"(?P<name>\w+)(?: \([^)]*\))?: (?P<text>.*)")


def render_configuration_reference(root: type[Any] = TrainConfig, example: str | Path | None = EXAMPLE_CONFIG) -> str:
    """The Markdown reference of every key of ``root`` (a dataclass), nested dataclasses as sections.

    Args:
        root: the configuration dataclass; its dataclass-typed fields are sections (``data.name``).
        example: a YAML file shown at the end, as an example configuration; ``None``: none.

    Raises:
        ValueError: naming the field, when a field has no entry in its class's ``Attributes:``
            docstring section, or an entry names no field.

    Example:
        >>> "| `device` | `str` | `auto` |" in render_configuration_reference()
        True
    """
    sections = list(_sections(root, "", "the keys outside any section."))
    parts = [INTRO, "## Sections\n"]
    for prefix, cls, meaning in sections:
        parts.append(f"- {f'`{prefix}`' if prefix else 'Top-level keys'} (`{cls.__name__}`): {meaning}")
    for prefix, cls, _ in sections:
        rows = [_row(prefix, name, tp, default, meaning) for name, tp, default, meaning in _fields(cls)]
        if not rows:
            continue
        parts.append(f"\n## {f'`{prefix}`' if prefix else 'Top-level keys'}\n\n{_markdown(_description(cls))}\n")
        parts.append("\n".join([_TABLE_HEAD, *rows]))
    if example is not None:
        parts.append("\n" + EXAMPLE_INTRO)
        parts.append(f"```yaml\n{Path(example).read_text(encoding='utf-8').rstrip()}\n```")
    return "\n".join(parts) + "\n"


def _sections(cls: type[Any], prefix: str, meaning: str) -> Iterator[tuple[str, type[Any], str]]:
    """``(dotted prefix, dataclass, meaning)`` of ``cls`` and of every section nested in it, depth first."""
    yield prefix, cls, meaning
    hints, docs = typing.get_type_hints(cls), attribute_docs(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            yield from _sections(tp, f"{prefix}.{f.name}" if prefix else f.name, _markdown(docs[f.name]))


def _fields(cls: type[Any]) -> Iterator[tuple[str, Any, Any, str]]:
    """``(name, type, default, meaning)`` of each non-section field of ``cls``."""
    hints, docs = typing.get_type_hints(cls), attribute_docs(cls)
    for f in dataclasses.fields(cls):
        if not dataclasses.is_dataclass(hints[f.name]):
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            yield f.name, hints[f.name], default, docs[f.name]


def attribute_docs(cls: type[Any]) -> dict[str, str]:
    """Each field of dataclass ``cls`` and its meaning, from the Google-style ``Attributes:`` docstring section.

    Raises:
        ValueError: naming the field, when a field has no entry, or an entry names no field.

    Example:
        >>> from pairsim.training.config import SamplerConfig
        >>> attribute_docs(SamplerConfig)["samples_per_class"][:38]
        '``K``, images drawn from each of the b'
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    docs: dict[str, list[str]] = {}
    if start is not None:
        indent = len(lines[start]) - len(lines[start].lstrip())
        entry_indent: int | None = None
        for line in lines[start + 1 :]:
            depth = len(line) - len(line.lstrip())
            if line.strip() and depth <= indent:
                break  # the next section
            match = _ENTRY.fullmatch(line.strip())
            if match and (entry_indent is None or depth == entry_indent):
                entry_indent = depth
                docs[match["name"]] = [match["text"]]
            elif line.strip() and docs:
                docs[next(reversed(docs))].append(line.strip())
    names = [f.name for f in dataclasses.fields(cls)]
    for name in names:
        if name not in docs:
            raise ValueError(
                f"{cls.__qualname__}.{name} is undocumented: add `{name}: what it means` to the Attributes: "
                f"section of {cls.__qualname__}'s docstring"
            )
    for name in docs:
        if name not in names:
            raise ValueError(f"{cls.__qualname__}'s docstring documents {name!r}, which is not one of its fields")
    return {name: " ".join(docs[name]) for name in names}


def _description(cls: type[Any]) -> str:
    """The docstring of ``cls`` up to its ``Attributes:`` section."""
    text = inspect.cleandoc(cls.__doc__ or "")
    return text.split("\nAttributes:")[0].strip()


def _row(prefix: str, name: str, tp: Any, default: Any, meaning: str) -> str:
    key = f"{prefix}.{name}" if prefix else name
    value = "required" if default is dataclasses.MISSING else f"`{yaml_value(default)}`"
    cells = (f"`{key}`", f"`{type_name(tp)}`", value, _markdown(meaning))
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _markdown(text: str) -> str:
    """reStructuredText's inline markup (``x``, :class:`~a.B`) as Markdown code spans."""
    text = _ROLE.sub(lambda m: f"``{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}``", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def type_name(tp: Any) -> str:
    """An annotation as it is written in Python.

    Example:
        >>> type_name(dict[str, float | str]), type_name(tuple[float, float] | None)
        ('dict[str, float | str]', 'tuple[float, float] | None')
    """
    if tp is type(None):
        return "None"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in args)}]"
    return str(getattr(tp, "__name__", tp))


def yaml_value(value: Any) -> str:
    """``value`` as one line of YAML (tuples as lists).

    Example:
        >>> yaml_value(None), yaml_value((1.0, 1.0)), yaml_value({"m": 0.4, "gamma": 80.0}), yaml_value(1e-4)
        ('null', '[1.0, 1.0]', '{m: 0.4, gamma: 80.0}', '0.0001')
    """
    plain = list(value) if isinstance(value, tuple) else value
    text = yaml.safe_dump(plain, default_flow_style=True, sort_keys=False, width=sys.maxsize)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def main() -> None:
    """Write the reference to standard output: ``python -m pairsim.training.config_reference > FILE``."""
    sys.stdout.write(render_configuration_reference())


if __name__ == "__main__":
    main()
