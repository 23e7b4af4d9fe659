"""``pairsim index check [--repair]`` and ``index info`` on damaged indexes, through ``main``."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from tests.index.helpers import make_checkpoint, make_folder

from pairsim.cli.main import main


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-check")
    images = make_folder(root / "images", num_classes=2, per_class=3)
    assert main(["index", "build", str(make_checkpoint(root / "model.pt")), str(images), "--out", str(root / "i")]) == 0
    return root / "i"


@pytest.fixture
def index(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "i"))


def test_check_exits_0_when_sound_and_1_with_a_problem_and_repair_says_what_it_did(
    index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", "check", str(index)]) == 0
    assert "no problem found" in capsys.readouterr().out
    faiss_file = next((index / "vectors").iterdir())
    faiss_file.write_bytes(faiss_file.read_bytes()[:-8] + b"\xff" * 8)
    (index / "images" / "stray.png").write_bytes(b"unused")
    assert main(["index", "check", str(index), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and {f["check"]: f["level"] for f in report["findings"]}["faiss file"] == "problem"
    assert main(["index", "check", str(index), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "repaired: deleted 1 files in the store that no item uses" in out
    assert "repaired: wrote the faiss file again from the rows" in out and "no problem found" in out


def test_info_reports_a_faiss_file_it_did_not_serve(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faiss_file = next((index / "vectors").iterdir())
    faiss_file.write_bytes(faiss_file.read_bytes()[:-8] + b"\xff" * 8)
    assert main(["index", "info", str(index), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["faiss_file"].startswith("rebuilt from items.sqlite")
    assert captured.err.startswith("warning: faiss file rebuilt") and f"pairsim index check {index}" in captured.err


def test_a_damaged_database_is_one_error_line_for_every_command(
    index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(index / "items.sqlite")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (index / "items.sqlite").write_bytes(b"\0" * 4096)
    for argv in (["index", "info", str(index)], ["index", "remove", str(index), "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {index / 'items.sqlite'} is damaged"), err
    assert main(["index", "check", str(index)]) == 1
    assert "problem" in capsys.readouterr().out
    assert main(["index", "check", str(index.parent / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: no such index directory")
