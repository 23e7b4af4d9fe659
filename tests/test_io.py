"""The one atomic writer (``pairsim._io``) and the one optional-extra importer (``pairsim._optional``)."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from pairsim._io import atomic_directory, atomic_write, write_bytes_atomic, write_text_atomic
from pairsim._optional import EXTRAS, MissingExtraError, require

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pairsim"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"new, half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_writers_of_one_file_use_their_own_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    with atomic_write(target, "w") as first, atomic_write(target, "w") as second:
        temporaries = sorted(p.name for p in tmp_path.iterdir())
        assert len(temporaries) == 2 and all(n.startswith(".manifest.json.") for n in temporaries)  # own names
        first.write("first")
        second.write("second")
    assert target.read_text() == "first"  # the writer that finished last wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_the_file_and_its_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text_atomic(tmp_path / "a" / "note.txt", "héllo")
    assert synced == ["file", "dir"]
    assert (tmp_path / "a" / "note.txt").read_bytes() == "héllo".encode()
    synced.clear()
    write_bytes_atomic(tmp_path / "b.png", b"x", sync_directory=False)  # the image store syncs directories itself
    assert synced == ["file"]


def test_atomic_write_refuses_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        atomic_write(tmp_path / "x", "a")  # type: ignore[call-overload]


def test_atomic_directory(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError), atomic_directory(target) as work:
        (work / "images.npy").write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty directory is replaced
    with atomic_directory(target) as work:
        (work / "meta.json").write_text("{}")
        (work / "sub").mkdir()
        (work / "sub" / "f").write_text("x")
    assert sorted(p.name for p in target.rglob("*")) == ["f", "meta.json", "sub"]
    with pytest.raises(FileExistsError, match="not empty"), atomic_directory(target) as work:
        (work / "other").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"] and not (target / "other").exists()


def test_no_module_writes_files_its_own_way() -> None:
    # One mechanism: temporary names, renames and fsyncs live in pairsim._io alone. data/emoji.py moves the
    # node_modules directory that npm wrote (not a file of pairsim's) and is the one exception.
    allowed = {"_io.py", "data/emoji.py"}
    calls = {"mkstemp", "mkdtemp", "replace", "rename", "fsync", "NamedTemporaryFile"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            func = node.func if isinstance(node, ast.Call) else None
            if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
                continue
            if func.value.id in ("os", "tempfile") and func.attr in calls and name not in allowed:
                offenders.append(f"{name}: {func.value.id}.{func.attr}")
    assert offenders == []


def test_require_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss were not installed
    with pytest.raises(MissingExtraError, match=r"the k-NN search needs faiss: pip install 'pairsim\[faiss\]'"):
        require("faiss", "the k-NN search")
    with pytest.raises(ImportError):  # callers that catch ImportError keep working
        require("faiss", "x")
    with pytest.raises(KeyError):
        require("json", "nothing")  # not an optional package: a programming error
    assert require("uvicorn", "pairsim serve").__name__ == "uvicorn"


def test_every_optional_import_belongs_to_an_extra_of_pyproject() -> None:
    import tomllib

    extras = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS.values()) <= set(extras)
    for node in (n for p in PACKAGE.rglob("*.py") for n in ast.walk(ast.parse(p.read_text()))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require" and node.args:
            module = node.args[0]
            assert isinstance(module, ast.Constant) and str(module.value).partition(".")[0] in EXTRAS
