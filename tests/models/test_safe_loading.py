"""Model files and checkpoints load without running code from them (issue 17, fault 1).

Each crafted file below runs code when fully unpickled (a control test shows it does); read through
pairsim it is refused with a ValueError naming the file, and the code has not run.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import dataclasses
import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pairsim.models import create_model, load_model, model_spec, read_state, save_state

REFUSED = "holds something other than weights and plain data"


class ShellCommand:
    """Unpickles as ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.system, (self.command,)


class PythonCode:
    """Unpickles as ``exec(code)``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return builtins.exec, (self.code,)


def model_state() -> dict[str, Any]:
    model = create_model("small-cnn", embedding_dim=4, in_channels=1)
    model.preprocessing = dataclasses.replace(model.preprocessing, image_size=16)
    return {"model_spec": model_spec("small-cnn", model), "model": model.state_dict()}


def crafted_files(directory: Path, marker: Path) -> dict[str, Path]:
    """Files that create ``marker`` when fully unpickled: the payload as the weights, in the config, alone."""
    shell, python = ShellCommand(f"touch {marker}"), PythonCode(f"open({str(marker)!r}, 'w').close()")
    states = {
        "weights.pt": {**model_state(), "model": shell},
        "config.pt": {**model_state(), "config": {"data": {"name": python}}},
        "top.pt": {"payload": shell},
    }
    files = {}
    for name, state in states.items():
        torch.save(state, directory / name)
        files[name] = directory / name
    with (directory / "raw.pt").open("wb") as f:  # a plain pickle, not torch.save's zip: torch's legacy format
        pickle.dump({"model_spec": {}, "model": shell}, f)
    files["raw.pt"] = directory / "raw.pt"
    return files


def expected_refusal(name: str) -> str:
    # A raw pickle is refused before any unpickling: it is no torch.save archive.
    return "is not a pairsim checkpoint or model file" if name == "raw.pt" else REFUSED


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    marker = tmp_path / "MARKER"
    return crafted_files(tmp_path, marker), marker


def test_the_crafted_files_do_run_code_when_fully_unpickled(crafted: tuple[dict[str, Path], Path]) -> None:
    # The control: without it the tests below could pass with a payload that never worked.
    files, marker = crafted
    for path in files.values():
        # The raw pickle's payload runs as torch reads it, before torch finds no magic number after it.
        with contextlib.suppress(RuntimeError):
            torch.load(path, weights_only=False)
        assert marker.exists(), path.name
        marker.unlink()


@pytest.mark.parametrize("reader", [read_state, load_model], ids=["read_state", "load_model"])
def test_a_crafted_file_is_refused_and_runs_nothing(
    crafted: tuple[dict[str, Path], Path], reader: Callable[[Path], object]
) -> None:
    files, marker = crafted
    for name, path in files.items():
        with pytest.raises(ValueError, match=expected_refusal(name)) as error:
            reader(path)
        message = str(error.value)
        assert str(path) in message and "weights_only" not in message  # no advice to turn the check off
        refused = {"config.pt": "(exec)", "raw.pt": "(not a torch.save archive)"}.get(name, f"({os.name}.system)")
        assert refused in message  # what was refused ("posix.system": os.system on Linux)
        assert not marker.exists(), name


def test_forcing_full_unpickling_by_environment_changes_nothing(
    crafted: tuple[dict[str, Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 unless the caller passes weights_only itself.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    files, marker = crafted
    with pytest.raises(ValueError, match=REFUSED):
        load_model(files["weights.pt"])
    assert not marker.exists()


def test_numpy_objects_are_not_plain_data(tmp_path: Path) -> None:
    # numpy's RNG state or scalars would need numpy's reconstructors: pairsim saves neither.
    for name, value in (("rng.pt", np.random.get_state()), ("scalar.pt", np.float64(0.5))):
        save_state({"step": 1, "value": value}, tmp_path / name)
        with pytest.raises(ValueError, match=f"{name} {REFUSED} \\(numpy"):
            read_state(tmp_path / name)


def test_tensors_and_plain_data_round_trip(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    state = {
        "step": 7,
        "best": None,
        "flags": [True, False],
        "betas": (0.9, 0.999),
        "config": {"data": {"name": "folder", "test_ratio": 0.5}, "scale": [1.0, 1.0]},
        "torch_rng": torch.get_rng_state(),
        "sampler": generator.get_state(),
        "ordered": collections.OrderedDict(w=torch.arange(3.0)),
        "bf16": torch.ones(2, dtype=torch.bfloat16),
    }
    save_state(state, tmp_path / "s.pt")
    loaded = read_state(tmp_path / "s.pt")
    assert {k: v for k, v in loaded.items() if not isinstance(v, (torch.Tensor, dict))} == {
        k: v for k, v in state.items() if not isinstance(v, (torch.Tensor, dict))
    }
    assert loaded["config"] == state["config"]
    for key in ("torch_rng", "sampler", "bf16"):
        assert torch.equal(loaded[key], state[key]) and loaded[key].dtype == state[key].dtype
    assert torch.equal(loaded["ordered"]["w"], torch.arange(3.0))
    restored = torch.Generator()
    restored.set_state(loaded["sampler"])
    assert torch.equal(torch.rand(4, generator=restored), torch.rand(4, generator=generator))


def test_load_model_reads_the_file_once_and_keeps_what_callers_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"data": {"name": "folder", "split_seed": 2}}
    save_state({**model_state(), "config": config, "step": 5}, tmp_path / "last.pt")
    save_state(model_state(), tmp_path / "model.pt")
    loads: list[object] = []
    real_load = torch.load

    def counting_load(f: object, *args: Any, **kwargs: Any) -> Any:
        loads.append(f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    checkpoint = load_model(tmp_path / "last.pt")
    assert len(loads) == 1
    assert checkpoint.config == config
    assert checkpoint.file_sha256 == hashlib.sha256((tmp_path / "last.pt").read_bytes()).hexdigest()
    assert load_model(tmp_path / "model.pt").config is None  # a bare model file has no training config
