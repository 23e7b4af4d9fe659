"""The import contract: layers import only downwards, imports inside functions included.

``lint-imports`` (import-linter) checks the contract in ``pyproject.toml``; these tests run it on the
tree, show it catches an upward import hidden in a function and an import between the two engines, and
check that no module escapes the contract.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pairsim"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the ``pairsim`` package under ``root/src`` with ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    command = [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)


def layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in config if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.replace(":", "|").split("|")]


def test_the_package_keeps_the_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_part_of_the_package_is_in_a_layer() -> None:
    parts = {p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert parts - {"__init__", "__main__"} == set(layers())
    assert all((PACKAGE / part / "__init__.py").exists() for part in parts if (PACKAGE / part).is_dir())


@pytest.fixture(scope="module")
def copy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package and its pyproject.toml to break on purpose."""
    root = tmp_path_factory.mktemp("contract")
    shutil.copytree(PACKAGE, root / "src" / "pairsim", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("models/embedding.py", "pairsim.jobs.demo"),  # a component reaching up to an application
        ("training/trainer.py", "pairsim.index.build"),  # one engine into the other
        ("losses/base.py", "pairsim.models.registry"),  # one component into another
    ],
)
def test_an_import_against_the_layers_breaks_the_contract(copy_root: Path, module: str, imported: str) -> None:
    path = copy_root / "src" / "pairsim" / module
    original = path.read_text()
    try:
        # Inside a function, where round 1 hid its package cycle: it counts all the same.
        path.write_text(original + f"\n\ndef _hidden() -> None:\n    import {imported}  # noqa\n")
        result = lint_imports(copy_root)
    finally:
        path.write_text(original)
    importer = "pairsim." + module.removesuffix(".py").replace("/", ".")
    assert result.returncode != 0
    assert "1 broken" in result.stdout and f"{importer} -> {imported}" in result.stdout


def test_no_module_imports_the_package_facade() -> None:
    # pairsim/__init__.py re-exports from every layer: a module taking a name from it imports upwards.
    parts = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name in ("__init__.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(alias.name == "pairsim" for alias in node.names):
                offenders.append(f"{path.relative_to(PACKAGE)}: import pairsim")
            if isinstance(node, ast.ImportFrom) and node.module == "pairsim" and node.level == 0:
                offenders += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names if a.name not in parts]
    assert offenders == []
