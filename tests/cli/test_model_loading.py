"""Commands that read a model file (issue 17, fault 1): a crafted file runs no code and is one ``error:``
line (exit 2); every command reads its model file once."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tests.cli.test_errors import assert_one_error_line, run_cli
from tests.index.helpers import make_checkpoint, make_folder
from tests.models.test_safe_loading import REFUSED, ShellCommand

from pairsim.cli.main import main
from pairsim.models import create_model, model_spec, save_state


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A grayscale checkpoint and images for the index, an RGB checkpoint and images for ``eval``, an index."""
    root = tmp_path_factory.mktemp("model-loading")
    rgb = create_model("small-cnn", embedding_dim=8, in_channels=3)
    rgb.preprocessing = dataclasses.replace(rgb.preprocessing, image_size=16)
    config = {"data": {"name": "folder", "split_seed": 0, "test_ratio": 0.5, "folds": 1, "fold": 0}}
    save_state(
        {"model": rgb.state_dict(), "model_spec": model_spec("small-cnn", rgb), "config": config}, root / "rgb.pt"
    )
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / "rgb" / f"class{c}").mkdir(parents=True)
        for i in range(3):
            pixels = (rng.random((16, 16, 3)) * 60 + 60 * c).astype(np.uint8)
            Image.fromarray(pixels).save(root / "rgb" / f"class{c}" / f"{i}.png")
    found = {
        "root": root,
        "checkpoint": make_checkpoint(root / "model.pt"),
        "images": make_folder(root / "images", num_classes=3, per_class=2),
        "rgb_checkpoint": root / "rgb.pt",
        "rgb_images": root / "rgb",
    }
    assert main(["index", "build", str(found["checkpoint"]), str(found["images"]), "--out", str(root / "index")]) == 0
    found["index"] = root / "index"
    return found


@pytest.fixture
def crafted(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(evil.pt, MARKER)``: a model file whose weights unpickle as ``touch MARKER``."""
    marker = tmp_path / "MARKER"
    model = create_model("small-cnn", embedding_dim=4, in_channels=1)
    torch.save(
        {"model_spec": model_spec("small-cnn", model), "model": ShellCommand(f"touch {marker}")}, tmp_path / "evil.pt"
    )
    yield tmp_path / "evil.pt", marker
    assert not marker.exists(), "the crafted file's code ran"


def test_eval_refuses_a_crafted_checkpoint(
    files: dict[str, Path], crafted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evil, _ = crafted
    data = ["folder", "--root", str(files["rgb_images"]), "--split", "all"]
    code, _, err = run_cli(capsys, "eval", str(evil), *data, "--out", str(evil.parent / "o"))
    assert_one_error_line(code, err, "evil.pt", REFUSED)


def test_index_build_refuses_a_crafted_checkpoint(
    files: dict[str, Path], crafted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evil, _ = crafted
    out = evil.parent / "index"
    code, _, err = run_cli(capsys, "index", "build", str(evil), str(files["images"]), "--out", str(out))
    assert_one_error_line(code, err, "evil.pt", REFUSED)
    assert not out.exists()


def test_search_refuses_a_crafted_index_model_and_checkpoint(
    files: dict[str, Path], crafted: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evil, _ = crafted
    query = str(files["images"] / "c0" / "0.png")
    code, _, err = run_cli(capsys, "search", str(files["index"]), query, "--checkpoint", str(evil))
    assert_one_error_line(code, err, "evil.pt", REFUSED)
    index = Path(shutil.copytree(files["index"], evil.parent / "index"))
    shutil.copyfile(evil, index / "model.pt")  # an index whose own model file was replaced
    code, _, err = run_cli(capsys, "search", str(index), query)
    assert_one_error_line(code, err, "model.pt", REFUSED)


def test_serve_refuses_an_index_with_a_crafted_model(files: dict[str, Path], crafted: tuple[Path, Path]) -> None:
    from pairsim.service import create_app

    evil, _ = crafted
    index = Path(shutil.copytree(files["index"], evil.parent / "index"))
    shutil.copyfile(evil, index / "model.pt")
    with pytest.raises(ValueError, match=REFUSED):
        create_app(index)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ``torch.load`` from now on (what it was given): each is one read of a model file."""
    calls: list[object] = []
    real_load = torch.load

    def counting_load(f: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    return calls


def test_each_command_reads_its_model_file_once(
    files: dict[str, Path], loads: list[object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = str(files["images"] / "c1" / "1.png")
    index = Path(shutil.copytree(files["index"], tmp_path / "index"))
    commands = {
        "index build": ["index", "build", str(files["checkpoint"]), str(files["images"]), "--out", str(tmp_path / "i")],
        "index add": ["index", "add", str(index), str(files["images"])],
        "search": ["search", str(index), query, "-k", "2"],
        "search --checkpoint": ["search", str(index), query, "--checkpoint", str(files["checkpoint"])],
        "eval": ["eval", str(files["rgb_checkpoint"]), "folder", "--root", str(files["rgb_images"]), "--split", "all",
                 "--ks", "1", "--out", str(tmp_path / "eval")],
    }  # fmt: skip
    for name, argv in commands.items():
        loads.clear()
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, (name, err)
        assert len(loads) == 1, (name, loads)


def test_serve_reads_the_index_model_once(files: dict[str, Path], loads: list[object]) -> None:
    from pairsim.service import create_app

    app = create_app(files["index"])
    assert len(loads) == 1
    assert app.state.searcher.loaded.fingerprint  # the one load is the model the app embeds with
