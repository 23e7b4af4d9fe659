"""Start gloo ranks as subprocesses of the test, rendezvous through a file in ``tmp_path``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

WORKER = Path(__file__).with_name("worker.py")


def load_worker() -> ModuleType:
    """The worker module, for the case definitions the reference run shares with the ranks."""
    spec = importlib.util.spec_from_file_location("pairsim_dist_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_ranks(tmp_path: Path) -> Callable[[str, int], list[Any]]:
    """``run_ranks(scenario, world)``: each rank's saved results, after all exited with status 0."""

    def run(scenario: str, world: int) -> list[Any]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        rendezvous = tmp_path / "rendezvous"
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), scenario, str(rank), str(world), str(rendezvous), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for rank in range(world)
        ]
        outputs = []
        try:
            for proc in procs:
                outputs.append(proc.communicate(timeout=180)[0].decode(errors="replace"))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for rank, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
            assert proc.returncode == 0, f"rank {rank} failed:\n{out[-4000:]}"
        return [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(world)]

    return run


@pytest.fixture(scope="session")
def worker() -> ModuleType:
    """The worker module (case definitions shared by the ranks and the single-process reference)."""
    return load_worker()
